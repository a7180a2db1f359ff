package plugins_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

func gpuBatch(n int) *sdk.Batch {
	b := &sdk.Batch{}
	for g := 0; g < 8; g++ {
		for m := 0; m < 30; m++ {
			b.AddSeries(fmt.Sprintf("gpu_metric_%d", m), sdk.Labels{
				{Key: sdk.LabelGPUIndex, Value: fmt.Sprint(g)},
				{Key: sdk.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
				{Key: sdk.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08d-aaaa-bbbb-cccc-0000%08d", g, g)},
				{Key: sdk.LabelHost, Value: "gpu-node-017"},
			})
		}
	}
	for i := 0; i < n; i++ {
		b.Add(uint32(i%len(b.Series)), 1_700_000_000_000_000_000+int64(i/len(b.Series))*1e9, float64(i))
	}
	return b
}

// BenchmarkProcessorRoundTrip sends 10,000-point GPU batches through the
// passthrough processor plugin process and back (encode, gRPC over
// go-plugin's unix socket with mTLS, decode, process, encode, decode).
func BenchmarkProcessorRoundTrip(b *testing.B) {
	for _, conc := range []int{1, 4} {
		b.Run(fmt.Sprintf("inflight=%d", conc), func(b *testing.B) {
			l := &plugins.Launcher{PluginDir: "/", BuiltinBinary: testPluginBin[1:]}
			p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough", ConfigJSON: []byte(fmt.Sprintf(`{"max_concurrency":%d}`, conc))})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			const n = 10_000
			batch := gpuBatch(n)
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(conc)
			sem := make(chan struct{}, conc)
			errs := make(chan error, conc)
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem }()
					if _, err := p.Process(context.Background(), batch); err != nil {
						errs <- err
					}
				}()
			}
			for i := 0; i < conc; i++ {
				sem <- struct{}{}
			}
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/point")
		})
	}
}
