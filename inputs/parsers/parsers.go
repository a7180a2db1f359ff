// Package parsers turns message payloads of the supported data formats into
// sdk batches. It is shared by the mq_service input and anything else that
// reads telemetry files.
package parsers

import (
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Content types (metadata["content-type"] of an mq.v1 message, and the
// data_format option).
const (
	FormatDCGMCSV      = "dcgm-csv"
	FormatNvidiaSMICSV = "nvidia-smi-csv"
	FormatPrometheus   = "prometheus"
	FormatGPUTelJSON   = "gpu-tel-json"
)

// Parser parses one payload. Implementations are safe for concurrent use
// unless their doc says otherwise.
type Parser interface {
	// Parse appends the samples of payload to b. A row that does not parse
	// is rejected alone (b.Reject with position "<pos> line N" and the raw
	// row) and parsing goes on. A value that is not a number by
	// CANONICAL_METRICS.md rules ("[N/A]", empty, ...) yields no sample and
	// no reject. Parse returns an error only when nothing in payload can be
	// used (e.g. no valid header); the caller then dead-letters the whole
	// payload. msgTime is the time for samples whose source has none.
	Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error
}

// Options tune parsers.
type Options struct {
	// Location is the zone of timestamps written without one (nvidia-smi
	// prints local time). Nil means time.Local.
	Location *time.Location
	// SharedLabels lets batches share the parser's label slices: the
	// label slice of a series is the same (immutable) slice in every
	// batch the parser fills, instead of a copy per batch. The caller
	// must then never modify a batch's labels in place (replace the
	// slice instead). It saves a copy of every series's labels per
	// payload, and lets callers recognise a series by its slice.
	SharedLabels bool
}

// New returns the parser for format (one of the Format constants).
func New(format string, opts Options) (Parser, error) {
	return newParser(format, opts)
}
