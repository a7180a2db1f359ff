package plugins_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// scrapeBatch is one scrape of gpus GPUs x 30 metrics: every series has a
// single point, 6 GPU labels (the shape batches have under scrape load).
func scrapeBatch(gpus int) *sdk.Batch {
	b := &sdk.Batch{}
	for g := 0; g < gpus; g++ {
		for m := 0; m < 30; m++ {
			s := b.AddSeries(fmt.Sprintf("gpu_metric_%d", m), sdk.Labels{
				{Key: sdk.LabelDevice, Value: fmt.Sprintf("nvidia%d", g%8)},
				{Key: sdk.LabelDriverVersion, Value: "535.129.03"},
				{Key: sdk.LabelGPUIndex, Value: fmt.Sprint(g % 8)},
				{Key: sdk.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
				{Key: sdk.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08d-aaaa-bbbb-cccc-0000%08d", g, g)},
				{Key: sdk.LabelHost, Value: fmt.Sprintf("dgx-node-%04d", g/8)},
			})
			b.Add(s, 1_700_000_000_000_000_000, float64(g*m))
		}
	}
	return b
}

// BenchmarkProcessorRoundTripScrape is BenchmarkProcessorRoundTrip with
// scrape-shaped batches (9,840 samples, one point per series): the hop's
// cost per sample is then dominated by the series table.
func BenchmarkProcessorRoundTripScrape(b *testing.B) {
	l := &plugins.Launcher{PluginDir: "/", BuiltinBinary: testPluginBin[1:]}
	p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough", ConfigJSON: []byte(`{"max_concurrency":1}`)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	batch := scrapeBatch(328)
	n := len(batch.Points)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Process(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
}
