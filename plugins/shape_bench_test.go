package plugins_test

import (
	"context"
	"fmt"
	"strings"
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
//
// label-copies: a processor that may change labels (the sdk gives it its
// own copy of every label slice); label-reader: one that only reads them
// (sdk.LabelReader, as gpu_normalize, dedup and the outputs are), with the
// series of a GPU sharing one label slice as the wire decoder and the
// parsers hand them out; +releaser: one that also keeps no batch
// (sdk.BatchReleaser, as they are), so the plugin side decodes into reused
// batches.
//
// inflight: batches sent before the first reply is awaited (the agent
// keeps up to a processor's max_concurrency in flight), so both processes
// work at once; with 1, every step waits for the one before.
func BenchmarkProcessorRoundTripScrape(b *testing.B) {
	for _, tc := range []struct {
		name     string
		reader   bool
		inflight int
	}{
		{"label-copies/inflight=1", false, 1},
		{"label-reader/inflight=1", true, 1},
		{"label-reader/inflight=4", true, 4},
		{"label-reader+releaser/inflight=1", true, 1},
		{"label-reader+releaser/inflight=4", true, 4},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := &plugins.Launcher{PluginDir: "/", BuiltinBinary: testPluginBin[1:]}
			conf := fmt.Sprintf(`{"max_concurrency":%d,"labels_read_only":%t,"releases_batches":%t}`, tc.inflight, tc.reader,
				strings.Contains(tc.name, "releaser"))
			p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough", ConfigJSON: []byte(conf)})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			batch := scrapeBatch(328)
			if tc.reader {
				batch = shareGPULabels(batch)
			}
			n := len(batch.Points)
			b.ReportAllocs()
			b.ResetTimer()
			sem := make(chan struct{}, tc.inflight)
			errs := make(chan error, tc.inflight)
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem }()
					if _, err := p.Process(context.Background(), batch); err != nil {
						errs <- err
					}
				}()
			}
			for i := 0; i < tc.inflight; i++ {
				sem <- struct{}{}
			}
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}

// shareGPULabels makes the series of b with equal labels share one label
// slice.
func shareGPULabels(b *sdk.Batch) *sdk.Batch {
	seen := map[string]sdk.Labels{}
	for i := range b.Series {
		k := b.Series[i].Labels.String()
		if ls, ok := seen[k]; ok {
			b.Series[i].Labels = ls
		} else {
			seen[k] = b.Series[i].Labels
		}
	}
	return b
}

// BenchmarkTwoProcessorsScrape passes scrape-shaped batches (as in
// BenchmarkProcessorRoundTripScrape, processors that read labels only and
// keep no batch, 4 batches in flight) through two processors: each in its
// own process (two round trips, the second on the first's result) or both
// in one process group (one round trip; ProcessGroup).
func BenchmarkTwoProcessorsScrape(b *testing.B) {
	const conf = `{"max_concurrency":4,"labels_read_only":true,"releases_batches":true}`
	for _, grouped := range []bool{false, true} {
		name := "two-processes"
		if grouped {
			name = "process-group"
		}
		b.Run(name, func(b *testing.B) {
			l := &plugins.Launcher{PluginDir: "/", BuiltinBinary: testPluginBin[1:]}
			spec := plugins.Spec{Name: "passthrough", ConfigJSON: []byte(conf)}
			var procs []*plugins.ProcessorClient
			if grouped {
				spec.Group = []plugins.Member{{Name: "passthrough", Alias: "second", ConfigJSON: []byte(conf)}}
			}
			for range map[bool]int{false: 2, true: 1}[grouped] {
				p, err := l.Processor(context.Background(), spec)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(context.Background())
				procs = append(procs, p)
			}
			batch := shareGPULabels(scrapeBatch(328))
			n := len(batch.Points)
			run := func() error {
				if grouped {
					_, _, _, err := procs[0].ProcessGroup(context.Background(), batch, nil)
					return err
				}
				out, err := procs[0].Process(context.Background(), batch)
				for _, o := range out {
					if err == nil {
						_, err = procs[1].Process(context.Background(), o)
					}
				}
				return err
			}
			b.ReportAllocs()
			b.ResetTimer()
			sem := make(chan struct{}, 4)
			errs := make(chan error, 4)
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem }()
					if err := run(); err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				}()
			}
			for range 4 {
				sem <- struct{}{}
			}
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}
