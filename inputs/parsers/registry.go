package parsers

import (
	"fmt"
	"time"
)

// newParser dispatches on the data format name.
func newParser(format string, opts Options) (Parser, error) {
	loc := opts.Location
	if loc == nil {
		loc = time.Local
	}
	switch format {
	case FormatDCGMCSV:
		p := newDCGMCSV()
		if opts.SharedLabels {
			shareLabels(&p.pool, func(st *dcgmState) *seriesCache { return &st.cache })
			return sharedParser{p}, nil
		}
		return p, nil
	case FormatNvidiaSMICSV:
		p := newNvidiaSMICSV(loc)
		if opts.SharedLabels {
			shareLabels(&p.pool, func(st *smiState) *seriesCache { return &st.cache })
			return sharedParser{p}, nil
		}
		return p, nil
	case FormatPrometheus:
		p := newPrometheus()
		if opts.SharedLabels {
			shareLabels(&p.pool, func(st *promState) *seriesCache { return &st.cache })
			return sharedParser{p}, nil
		}
		return p, nil
	case FormatGPUTelJSON:
		p := newGPUTelJSON()
		if opts.SharedLabels {
			shareLabels(&p.pool, func(st *telState) *seriesCache { return &st.cache })
			return sharedParser{p}, nil
		}
		return p, nil
	}
	return nil, fmt.Errorf("parsers: unknown data format %q (want %s, %s, %s or %s)", format,
		FormatDCGMCSV, FormatNvidiaSMICSV, FormatPrometheus, FormatGPUTelJSON)
}

// shareLabels makes the states pool hands out share their series caches'
// label slices with the batches (Options.SharedLabels). It must be called
// before the parser's first Parse.
func shareLabels[T any](pool *statePool[T], cache func(*T) *seriesCache) {
	mk := pool.make
	pool.make = func() *T {
		st := mk()
		cache(st).shared = true
		return st
	}
}

// sharedParser marks a parser built with Options.SharedLabels.
type sharedParser struct{ Parser }

// SharesLabels reports whether p hands out shared, immutable label slices
// (it was made by New with Options.SharedLabels): then the points of one
// series carry the same label slice in every batch p fills, and a caller
// may recognise the series by that slice.
func SharesLabels(p Parser) bool {
	_, ok := p.(sharedParser)
	return ok
}
