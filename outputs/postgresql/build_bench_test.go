package postgresql

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// BenchmarkBuildRows is the output's CPU cost per sample without the
// database: turning a 9,990-sample scrape batch (333 GPUs x 30 canonical
// metrics) into sorted wide rows (build, dictionaries already cached) and
// encoding them for binary COPY (encodeSamples).
func BenchmarkBuildRows(b *testing.B) {
	o := newOutput(b, newDB(b))
	ctx := context.Background()
	bs := SyntheticBatches(benchGPUs, benchMetrics, 1, benchBatch, time.Now().UTC().Truncate(time.Hour))
	batch := bs[0]
	sc := newScratch()
	run := func() {
		sc.reset()
		if err := o.build(ctx, batch, sc); err != nil {
			b.Fatal(err)
		}
		sc.buf = encodeSamples(sc.buf[:0], sc.rows, sc)
	}
	run() // fills the dictionary cache (the steady state)
	if len(batch.Rejects) != 0 || len(sc.rows) != len(batch.Points)/benchMetrics {
		b.Fatalf("%d rows, %d rejects", len(sc.rows), len(batch.Rejects))
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	samples := float64(b.N) * float64(len(batch.Points))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
}
