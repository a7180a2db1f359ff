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
		return newDCGMCSV(), nil
	case FormatNvidiaSMICSV:
		return newNvidiaSMICSV(loc), nil
	case FormatPrometheus:
		return newPrometheus(), nil
	case FormatGPUTelJSON:
		return newGPUTelJSON(), nil
	}
	return nil, fmt.Errorf("parsers: unknown data format %q (want %s, %s, %s or %s)", format,
		FormatDCGMCSV, FormatNvidiaSMICSV, FormatPrometheus, FormatGPUTelJSON)
}
