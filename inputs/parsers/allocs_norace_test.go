//go:build !race

// The race detector's instrumentation changes allocation counts, so they
// are only meaningful without it: this file is not built with -race.

package parsers

import (
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestSteadyStateAllocs: once a parser has seen the series, a payload
// costs at most a few allocations (the label slab its batch owns), not
// one per sample.
func TestSteadyStateAllocs(t *testing.T) {
	tests := []struct {
		format   string
		payloads [][]byte
		perMsg   float64
	}{
		{FormatDCGMCSV, splitCSVMessages(readTestdata(t, "dcgm_metrics.csv"), 100), 2},
		{FormatGPUTelJSON, ndjsonMessages(dcgmToTelJSON(t, readTestdata(t, "dcgm_metrics.csv")), 100), 2},
		{FormatGPUTelJSON, dcgmToTelJSON(t, readTestdata(t, "dcgm_metrics.csv"))[:50], 2},
		{FormatNvidiaSMICSV, [][]byte{readTestdata(t, "nvidia-smi-query-gpu.csv")}, 3},
		{FormatNvidiaSMICSV, splitCSVMessages(readTestdata(t, "nvidia-smi-query-gpu.csv"), 1), 3},
	}
	for _, tt := range tests {
		p := mustParser(t, tt.format, Options{Location: time.UTC})
		var b sdk.Batch
		run := func() {
			for _, pl := range tt.payloads {
				b.Reset()
				if err := p.Parse(pl, testMsgTime, "m", &b); err != nil {
					t.Fatal(err)
				}
			}
		}
		run()
		got := testing.AllocsPerRun(5, run) / float64(len(tt.payloads))
		t.Logf("%s: %.2f allocations per payload", tt.format, got)
		if got > tt.perMsg {
			t.Errorf("%s: %.1f allocations per payload, want <= %v", tt.format, got, tt.perMsg)
		}
	}
}
