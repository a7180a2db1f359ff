package parsers

import (
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// benchParse parses payload b.N times into a reused batch and reports
// ns/sample and allocs/sample.
func benchParse(b *testing.B, format string, payload []byte) {
	p, err := New(format, Options{Location: time.UTC})
	if err != nil {
		b.Fatal(err)
	}
	var batch sdk.Batch
	if err := p.Parse(payload, testMsgTime, "b", &batch); err != nil {
		b.Fatal(err)
	}
	samples := batch.Len()
	if samples == 0 || len(batch.Rejects) != 0 {
		b.Fatalf("%d samples, %d rejects", samples, len(batch.Rejects))
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch.Reset()
		if err := p.Parse(payload, testMsgTime, "b", &batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*samples), "ns/sample")
	// testing.AllocsPerRun is not usable inside a benchmark; measure one
	// extra run.
	allocs := testing.AllocsPerRun(3, func() {
		batch.Reset()
		_ = p.Parse(payload, testMsgTime, "b", &batch)
	})
	b.ReportMetric(allocs/float64(samples), "allocs/sample")
}

func BenchmarkDCGMCSV(b *testing.B) {
	benchParse(b, FormatDCGMCSV, readTestdata(b, "dcgm_metrics.csv"))
}

func BenchmarkNvidiaSMICSV(b *testing.B) {
	benchParse(b, FormatNvidiaSMICSV, readTestdata(b, "nvidia-smi-query-gpu.csv"))
}

func BenchmarkPrometheus(b *testing.B) {
	benchParse(b, FormatPrometheus, readTestdata(b, "dcgm-exporter-metrics.txt"))
}

func BenchmarkGPUTelJSON(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 1000; i++ {
		sb.WriteString(telObj)
		sb.WriteByte('\n')
	}
	benchParse(b, FormatGPUTelJSON, []byte(sb.String()))
}
