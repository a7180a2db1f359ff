package postgresql

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/sdk"
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
	cpu0 := procfs.SelfCPU()
	for range b.N {
		run()
	}
	cpu := procfs.SelfCPU() - cpu0
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	samples := float64(b.N) * float64(len(batch.Points))
	b.ReportMetric(float64(cpu)/samples, "cpu-ns/sample")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
}

// BenchmarkBuildStream is the end-to-end shape without the database: 1,024
// GPUs x 30 canonical metrics, batches of 10,000 points (one point per
// series, a GPU's 30 metrics adjacent and sharing one label slice, rows
// split across batches every 333 GPUs), scrapes 1 s apart. As through the
// plugin protocol for a LabelReader, every batch has its own Series slice
// but the label slices are the same from batch to batch. Each op is the
// in-process part of one Write: a pooled scratch, build, and the COPY
// encoding of wide and extra rows.
func BenchmarkBuildStream(b *testing.B) { benchBuildStream(b, false, false) }

// BenchmarkBuildStreamHostMajor is BenchmarkBuildStream in the order a
// Prometheus scrape of a host yields (the end-to-end scrape workload): per
// host, metric by metric, each for the host's 8 GPUs, so a GPU's series
// and points are interleaved with those of the 7 others.
func BenchmarkBuildStreamHostMajor(b *testing.B) { benchBuildStream(b, false, true) }

// BenchmarkBuildStreamFreshLabels is BenchmarkBuildStream with a fresh copy
// of every label slice in every batch (no identity shared between batches,
// as from callers that are not the plugin protocol), cycling through more
// label sets than the label cache holds, so every label set is a miss.
func BenchmarkBuildStreamFreshLabels(b *testing.B) { benchBuildStream(b, true, false) }

func benchBuildStream(b *testing.B, fresh, hostMajor bool) {
	o := newOutput(b, newDB(b))
	ctx := context.Background()
	steps := 4
	if fresh {
		steps = 12 // more label sets than a scratch's label cache holds
	}
	start := time.Now().UTC().Truncate(time.Hour)
	bs := SyntheticBatches(benchGPUs, benchMetrics, steps, 10000, start)
	if hostMajor {
		bs = hostMajorBatches(bs, steps, 10000, start)
	}
	if fresh {
		for _, x := range bs {
			copies := map[*sdk.Label]sdk.Labels{}
			for i, s := range x.Series {
				c, ok := copies[&s.Labels[0]]
				if !ok {
					c = slices.Clone(s.Labels)
					copies[&s.Labels[0]] = c
				}
				x.Series[i].Labels = c
			}
		}
	}
	write := func(x *sdk.Batch) {
		sc := o.getScratch()
		if err := o.build(ctx, x, sc); err != nil {
			b.Fatal(err)
		}
		sc.buf = encodeSamples(sc.buf[:0], sc.rows, sc)
		sc.ebuf = encodeExtra(sc.ebuf[:0], sc.extra)
		o.putScratch(sc)
	}
	for _, x := range bs { // fills the dictionary cache (the steady state)
		write(x)
		if len(x.Rejects) != 0 {
			b.Fatalf("%d rejects: %v", len(x.Rejects), x.Rejects[0])
		}
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	samples := 0
	cpu0 := procfs.SelfCPU()
	for i := range b.N {
		x := bs[i%len(bs)]
		write(x)
		samples += len(x.Points)
	}
	cpu := procfs.SelfCPU() - cpu0
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(cpu)/float64(samples), "cpu-ns/sample")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(samples), "allocs/sample")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(samples), "B/sample")
}

// hostMajorBatches reorders the samples of scrape batches (from
// SyntheticBatches: GPU by GPU, 8 GPUs per host) host by host, metric by
// metric, GPU by GPU, and cuts them into batches of batchSize points. Label
// slices stay shared.
func hostMajorBatches(bs []*sdk.Batch, steps, batchSize int, start time.Time) []*sdk.Batch {
	type sample struct {
		s sdk.Series
		p sdk.Point
	}
	var all []sample
	for _, x := range bs {
		for _, p := range x.Points {
			all = append(all, sample{x.Series[p.Series], p})
		}
	}
	// all is step, GPU, metric; reorder to step, host, metric, GPU.
	per := benchGPUs * benchMetrics
	var out []*sdk.Batch
	var b *sdk.Batch
	var idx *sdk.SeriesIndex
	for st := 0; st < steps; st++ {
		for h := 0; h < benchGPUs/8; h++ {
			for m := 0; m < benchMetrics; m++ {
				for g := h * 8; g < h*8+8; g++ {
					x := all[st*per+g*benchMetrics+m]
					if b == nil || len(b.Points) >= batchSize {
						b = &sdk.Batch{Points: make([]sdk.Point, 0, batchSize)}
						idx = sdk.NewSeriesIndex(b)
						out = append(out, b)
					}
					b.Add(idx.ID(x.s.Name, x.s.Labels), x.p.Time, x.p.Value)
				}
			}
		}
	}
	return out
}
