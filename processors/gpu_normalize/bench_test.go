package gpunormalize

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// syntheticBatch is a dcgm-exporter scrape of gpus GPUs (8 per host) with
// metrics fields each, one point per series, labels as dcgm-csv has them.
func syntheticBatch(gpus, metrics int) *sdk.Batch {
	fields := []string{
		"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
		"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_POWER_USAGE",
		"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP",
		"DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_VIDEO_CLOCK", "DCGM_FI_PROF_PCIE_TX_BYTES",
		"DCGM_FI_PROF_PCIE_RX_BYTES", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
		"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
		"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
		"DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
		"DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_POWER_VIOLATION",
		"DCGM_FI_DEV_THERMAL_VIOLATION",
	}
	b := &sdk.Batch{}
	for g := range gpus {
		host := fmt.Sprintf("dgx-node-%03d", g/8)
		labels := labelsOf(
			"DCGM_FI_DRIVER_VERSION", "535.129.03", "Hostname", host,
			"UUID", fmt.Sprintf("GPU-5fd4f087-86f3-7a43-b711-%012d", g), "__name__", "x",
			"device", fmt.Sprintf("nvidia%d", g%8), "gpu", fmt.Sprint(g%8),
			"instance", host+":9400", "job", "dgx_dcgm_exporter", "modelName", "NVIDIA H100 80GB HBM3")
		for m := range metrics {
			b.Add(b.AddSeries(fields[m%len(fields)], labels), 1752871354000000000, float64(g*m%100))
		}
	}
	return b
}

func BenchmarkProcess(b *testing.B) {
	for _, size := range []struct{ gpus, metrics, points int }{{1024, 30, 1}, {8, 10, 1}} {
		b.Run(fmt.Sprintf("gpus=%d/metrics=%d", size.gpus, size.metrics), func(b *testing.B) {
			tmpl := syntheticBatch(size.gpus, size.metrics)
			batch := &sdk.Batch{Series: make([]sdk.Series, len(tmpl.Series)), Points: make([]sdk.Point, len(tmpl.Points))}
			n := New()
			ctx := context.Background()
			// Warm the series cache: the steady state is what matters.
			warm := &sdk.Batch{Series: append([]sdk.Series(nil), tmpl.Series...), Points: append([]sdk.Point(nil), tmpl.Points...)}
			if _, err := n.Process(ctx, warm); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for range b.N {
				batch.Series = batch.Series[:len(tmpl.Series)]
				copy(batch.Series, tmpl.Series)
				batch.Points = batch.Points[:len(tmpl.Points)]
				copy(batch.Points, tmpl.Points)
				if _, err := n.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			samples := float64(b.N) * float64(len(tmpl.Points))
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/samples, "allocs/sample")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// streamBatches splits the series of a 1024-GPU x 30-field scrape into
// batches of about size points, one point per series per batch, in the
// order a dcgm-exporter scrape lists them (field by field, every GPU per
// field). The fields of one GPU share a label slice, as the sdk's stream
// dictionary hands them to a sdk.LabelReader batch after batch; with fresh,
// each batch gets its own copy of every label slice (a caller that does not
// share them).
func streamBatches(tmpl *sdk.Batch, gpus, metrics, size int) [][]sdk.Series {
	var order []sdk.Series
	for m := range metrics {
		for g := range gpus {
			order = append(order, tmpl.Series[g*metrics+m])
		}
	}
	var out [][]sdk.Series
	for len(order) > 0 {
		k := min(size, len(order))
		out = append(out, order[:k])
		order = order[k:]
	}
	return out
}

// BenchmarkProcessStream is the end-to-end benchmark's shape: 30,720
// distinct series cycling through batches of ~10,000 points, one point per
// series per batch. Reports ns/sample, allocs/sample and the heap retained
// per series (after GC) by the processor.
func BenchmarkProcessStream(b *testing.B) {
	const gpus, metrics, size = 1024, 30, 10000
	for _, fresh := range []bool{false, true} {
		b.Run(fmt.Sprintf("shared=%v", !fresh), func(b *testing.B) {
			tmpl := syntheticBatch(gpus, metrics)
			parts := streamBatches(tmpl, gpus, metrics, size)
			batch := &sdk.Batch{Series: make([]sdk.Series, 0, size), Points: make([]sdk.Point, 0, size)}
			var slab []sdk.Label
			fill := func(part []sdk.Series) {
				batch.Series = append(batch.Series[:0], part...)
				batch.Points = batch.Points[:0]
				if fresh {
					slab = make([]sdk.Label, 0, len(part)*12)
				}
				for i := range batch.Series {
					if fresh {
						ls := batch.Series[i].Labels
						slab = append(slab, ls...)
						batch.Series[i].Labels = slab[len(slab)-len(ls) : len(slab) : len(slab)]
					}
					batch.Points = append(batch.Points, sdk.Point{Series: uint32(i), Time: 1752871354000000000, Value: float64(i % 100)})
				}
			}
			ctx := context.Background()
			var m0, m1, m2 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			n := New()
			for _, part := range parts { // warm the series cache
				fill(part)
				if _, err := n.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			runtime.ReadMemStats(&m1)
			b.ResetTimer()
			samples := 0
			for i := range b.N {
				b.StopTimer() // building the batch is the caller's work
				fill(parts[i%len(parts)])
				samples += len(batch.Points)
				b.StartTimer()
				if _, err := n.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&m2)
			b.ReportMetric(float64(m2.Mallocs-m1.Mallocs)/float64(samples), "allocs/sample")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
			b.ReportMetric(0, "ns/op")
			slab, batch = nil, nil
			runtime.GC()
			runtime.ReadMemStats(&m2)
			b.ReportMetric(float64(int64(m2.HeapAlloc)-int64(m0.HeapAlloc))/float64(gpus*metrics), "heapB/series")
			runtime.KeepAlive(n)
			runtime.KeepAlive(tmpl)
		})
	}
}
