package dedup

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// syntheticBatch is one scrape of gpus GPUs with metrics canonical fields
// each, one point per series, canonical labels.
func syntheticBatch(gpus, metrics int) *sdk.Batch {
	b := &sdk.Batch{}
	for g := range gpus {
		labels := sdk.Labels{
			{Key: "device", Value: fmt.Sprintf("nvidia%d", g%8)},
			{Key: "driver_version", Value: "535.129.03"},
			{Key: "gpu_index", Value: fmt.Sprint(g % 8)},
			{Key: "gpu_model", Value: "NVIDIA H100 80GB HBM3"},
			{Key: "gpu_uuid", Value: fmt.Sprintf("GPU-5fd4f087-86f3-7a43-b711-%012d", g)},
			{Key: "host", Value: fmt.Sprintf("dgx-node-%03d", g/8)},
		}
		for m := range metrics {
			b.Add(b.AddSeries(fmt.Sprintf("gpu_metric_%02d", m), labels), t0, float64(g*m%100))
		}
	}
	return b
}

// BenchmarkProcess: "new" feeds scrapes one second apart (every point is
// new; with max_entries at its default the cap is reached and buckets are
// evicted, the steady state of a busy agent); "redelivered" feeds the same
// scrape again and again (every point a duplicate).
func BenchmarkProcess(b *testing.B) {
	for _, mode := range []string{"new", "redelivered", "new+suppress"} {
		b.Run(fmt.Sprintf("%s/gpus=1024/metrics=30", mode), func(b *testing.B) {
			tmpl := syntheticBatch(1024, 30)
			d := New()
			d.now = func() time.Time { return time.Unix(0, t0).Add(time.Hour) }
			d.SuppressUnchanged = mode == "new+suppress"
			batch := &sdk.Batch{Series: make([]sdk.Series, len(tmpl.Series)), Points: make([]sdk.Point, len(tmpl.Points))}
			step := int64(0)
			ctx := context.Background()
			feed := func() {
				batch.Series = append(batch.Series[:0], tmpl.Series...)
				batch.Points = append(batch.Points[:0], tmpl.Points...)
				for i := range batch.Points {
					batch.Points[i].Time += step
				}
				if mode != "redelivered" {
					step += int64(time.Second)
				}
				if _, err := d.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			for range 80 { // warm up: reach the cap
				feed()
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				feed()
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			samples := float64(b.N) * float64(len(tmpl.Points))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
			b.ReportMetric(float64(d.Stats().Entries), "entries")
		})
	}
}

// BenchmarkProcessStream is the end-to-end benchmark's shape: 1024 GPUs x
// 30 metrics = 30,720 series (the fields of a GPU share one label slice,
// the same slice round after round, as the sdk's stream dictionary hands
// them to a LabelReader), one point per series per round, 66 rounds one
// second apart, each round sent as 3 batches of 10,240 points (one point
// per series per batch), window 10m, max_entries at its default (the last
// round evicts). One op is the whole stream, 2,027,520 samples, through a
// fresh processor. heap-B/series is the heap the processor retains after
// the 66 rounds (after a GC), per series. labels=copied gives every batch
// its own label slices, as the sdk does for a processor that is not a
// LabelReader (one slab per batch).
func BenchmarkProcessStream(b *testing.B) {
	for _, labels := range []string{"shared", "copied"} {
		b.Run("labels="+labels, func(b *testing.B) { benchmarkStream(b, labels == "copied") })
	}
}

func benchmarkStream(b *testing.B, copyLabels bool) {
	const rounds, perBatch = 66, 10_240
	tmpl := syntheticBatch(1024, 30)
	nSeries := len(tmpl.Series)
	batch := &sdk.Batch{Series: make([]sdk.Series, 0, perBatch), Points: make([]sdk.Point, 0, perBatch)}
	ctx := context.Background()
	var m0, m1, h0, h1 runtime.MemStats
	var d *Dedup
	runtime.GC()
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for range b.N {
		d = New()
		d.now = func() time.Time { return time.Unix(0, t0).Add(time.Hour) }
		for r := range rounds {
			step := int64(r) * int64(time.Second)
			for lo := 0; lo < nSeries; lo += perBatch {
				hi := min(lo+perBatch, nSeries)
				batch.Series = append(batch.Series[:0], tmpl.Series[lo:hi]...)
				if copyLabels {
					var slab sdk.Labels
					for i := range batch.Series {
						ls := batch.Series[i].Labels
						if len(slab) < len(ls) {
							slab = make(sdk.Labels, 1024*len(ls))
						}
						batch.Series[i].Labels = slab[:len(ls):len(ls)]
						slab = slab[copy(slab, ls):]
					}
				}
				batch.Points = batch.Points[:0]
				for i, p := range tmpl.Points[lo:hi] {
					batch.Points = append(batch.Points, sdk.Point{Series: uint32(i), Time: p.Time + step, Value: p.Value})
				}
				if _, err := d.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	samples := float64(b.N) * float64(rounds*nSeries)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/samples, "B/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
	// Retained heap: the last processor's state, against none.
	runtime.GC()
	runtime.ReadMemStats(&h1)
	keep := d
	d = nil
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
	runtime.ReadMemStats(&h0)
	b.ReportMetric(float64(int64(h1.HeapAlloc)-int64(h0.HeapAlloc))/float64(nSeries), "heap-B/series")
	b.ReportMetric(float64(int64(h1.HeapAlloc)-int64(h0.HeapAlloc))/(1<<20), "heap-MiB")
}

// BenchmarkProcessScrape is the shape dedup sees under make bench's scrape
// workload: 128 hosts x 8 GPUs x 30 fields = 30,720 series, each host's
// series in dcgm-exporter's order (by field, then GPU: consecutive series
// have different label slices), one label slice per GPU shared batch after
// batch (a LabelReader's labels), the stream of rounds one second apart
// cut into batches of 10,000 points (batch boundaries drift from round to
// round, so a series sits at another index in each batch). One op is one
// batch, after a warm-up of 80 rounds (past the max_entries cap: evicting,
// the steady state of a busy agent).
func BenchmarkProcessScrape(b *testing.B) {
	const hosts, gpus, fields, perBatch = 128, 8, 30, 10_000
	var stream []sdk.Series
	for h := range hosts {
		var lab [gpus]sdk.Labels
		for i := range gpus {
			g := h*gpus + i
			lab[i] = sdk.Labels{
				{Key: "device", Value: fmt.Sprintf("nvidia%d", i)},
				{Key: "driver_version", Value: "535.129.03"},
				{Key: "gpu_index", Value: fmt.Sprint(i)},
				{Key: "gpu_model", Value: "NVIDIA H100 80GB HBM3"},
				{Key: "gpu_uuid", Value: fmt.Sprintf("GPU-5fd4f087-86f3-7a43-b711-%012d", g)},
				{Key: "host", Value: fmt.Sprintf("dgx-node-%03d", h)},
				{Key: "pci_bus_id", Value: fmt.Sprintf("00000000:%02X:00.0", 0x18+i*0x10)},
			}
		}
		for f := range fields {
			name := fmt.Sprintf("gpu_metric_%02d", f)
			for i := range gpus {
				stream = append(stream, sdk.Series{Name: name, Labels: lab[i]})
			}
		}
	}
	nStream := len(stream)
	stream = append(stream, stream[:perBatch]...) // a batch is one copy from it
	d := New()
	d.now = func() time.Time { return time.Unix(0, t0).Add(time.Hour) }
	batch := &sdk.Batch{Series: make([]sdk.Series, 0, perBatch), Points: make([]sdk.Point, perBatch)}
	ctx := context.Background()
	pos, round := 0, int64(0)
	feed := func() { // ~2 ns/sample of the figures
		batch.Series = append(batch.Series[:0], stream[pos:pos+perBatch]...)
		batch.Points = batch.Points[:perBatch]
		t := t0 + round*int64(time.Second)
		for i := range batch.Points {
			if pos+i == nStream {
				t += int64(time.Second)
			}
			batch.Points[i] = sdk.Point{Series: uint32(i), Time: t, Value: float64(i % 100)}
		}
		if pos += perBatch; pos >= nStream {
			pos, round = pos-nStream, round+1
		}
		if _, err := d.Process(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	for round < 80 {
		feed()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := procfs.SelfCPU()
	for range b.N {
		feed()
	}
	cpu1 := procfs.SelfCPU()
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	samples := float64(b.N) * perBatch
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
	b.ReportMetric(float64(cpu1-cpu0)/samples, "cpu-ns/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
	if s := d.Stats(); s.Duplicates != 0 {
		b.Fatalf("%d duplicates", s.Duplicates)
	}
}
