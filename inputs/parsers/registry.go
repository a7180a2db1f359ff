package parsers

import "fmt"

// newParser is filled in format by format.
func newParser(format string, opts Options) (Parser, error) {
	return nil, fmt.Errorf("parsers: unknown data format %q (want %s, %s, %s or %s)", format,
		FormatDCGMCSV, FormatNvidiaSMICSV, FormatPrometheus, FormatGPUTelJSON)
}
