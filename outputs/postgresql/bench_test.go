package postgresql

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// 1024 GPUs x 30 canonical metrics x 33 scrapes = 1,013,760 samples in
// batches of 9,990 samples (333 whole GPU rows, so no row spans two batches
// and the ceiling's plain COPY sees no duplicates).
const benchGPUs, benchMetrics, benchSteps, benchBatch = 1024, 30, 33, 9990

func benchSamples(bs []*sdk.Batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Points)
	}
	return n
}

// writeAll writes batches with workers concurrent Writes.
func writeAll(b *testing.B, o *Output, bs []*sdk.Batch, workers int) {
	ch := make(chan *sdk.Batch)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range ch {
				if err := o.Write(context.Background(), x); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for _, x := range bs {
		ch <- x
	}
	close(ch)
	wg.Wait()
}

func benchWrite(b *testing.B, workers int, redeliver bool) {
	benchWriteSize(b, workers, redeliver, benchBatch)
}

func benchWriteSize(b *testing.B, workers int, redeliver bool, batch int) {
	o := newOutput(b, newDB(b))
	start := time.Now().UTC().Truncate(time.Hour)
	total, elapsed := 0, time.Duration(0)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bs := SyntheticBatches(benchGPUs, benchMetrics, benchSteps, batch, start.Add(time.Duration(i)*time.Minute))
		if redeliver {
			writeAll(b, o, bs, workers)
		}
		b.StartTimer()
		t := time.Now()
		writeAll(b, o, bs, workers)
		elapsed += time.Since(t)
		total += benchSamples(bs)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "samples/s")
}

// BenchmarkWrite: new data, the COPY fast path.
func BenchmarkWrite(b *testing.B)         { benchWrite(b, 1, false) }
func BenchmarkWrite3Workers(b *testing.B) { benchWrite(b, 3, false) }

// BenchmarkWriteSplitRows: 10,000-sample batches, so a GPU's row is split
// across two batches every 333 rows (those rows merge).
func BenchmarkWriteSplitRows(b *testing.B) { benchWriteSize(b, 1, false, 10000) }

// BenchmarkWriteRedelivery: the same data again (the merge path; no change).
func BenchmarkWriteRedelivery(b *testing.B) { benchWrite(b, 1, true) }

// BenchmarkCeiling: plain pgx CopyFrom of the same final rows into the same
// table, one connection.
func BenchmarkCeiling(b *testing.B) {
	url := newDB(b)
	o := newOutput(b, url)
	c := connect(b, url)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Hour)
	total, elapsed := 0, time.Duration(0)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bs := SyntheticBatches(benchGPUs, benchMetrics, benchSteps, benchBatch, start.Add(time.Duration(i)*time.Minute))
		rows := make([][][]any, len(bs))
		for j, x := range bs {
			r, err := o.CeilingRows(ctx, x)
			if err != nil {
				b.Fatal(err)
			}
			rows[j] = r
		}
		b.StartTimer()
		t := time.Now()
		if _, err := CeilingWrite(ctx, c, "public", rows); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(t)
		total += benchSamples(bs)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "samples/s")
}

// BenchmarkWriteMerge is the output's own CPU per sample on the merge path,
// the steady state of the scrape workload (its rows split across batches):
// one 9,990-sample batch written again and again after its first Write
// stored it. cpu-ns/sample is this process's CPU (the server is another
// process): row building, COPY encoding, and the protocol's work per round
// trip (system calls, the driver's goroutine hand-offs).
func BenchmarkWriteMerge(b *testing.B) {
	o := newOutput(b, newDB(b))
	ctx := context.Background()
	x := SyntheticBatches(benchGPUs, benchMetrics, 1, benchBatch, time.Now().UTC().Truncate(time.Hour))[0]
	if err := o.Write(ctx, x); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	c0 := procfs.SelfCPU()
	for range b.N {
		if err := o.Write(ctx, x); err != nil {
			b.Fatal(err)
		}
	}
	cpu := procfs.SelfCPU() - c0
	samples := float64(b.N) * float64(len(x.Points))
	b.ReportMetric(float64(cpu)/samples, "cpu-ns/sample")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
}
