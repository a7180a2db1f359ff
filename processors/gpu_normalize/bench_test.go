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
