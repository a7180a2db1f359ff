package agent

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

type nopOutput struct{}

func (nopOutput) Write(context.Context, *sdk.Batch) error { return nil }

// BenchmarkPipeline measures the in-process cost of the agent per point:
// input -> 1 pass-through processor -> 1 output, 10k-point batches, acks
// included. Batches are prebuilt outside the timer.
func BenchmarkPipeline(b *testing.B) {
	const points = 10_000
	in := newTestInput()
	cfg := &conf.Config{
		Agent:      conf.Agent{DeadLetterDir: b.TempDir()},
		Inputs:     []conf.Plugin{{Kind: conf.KindInput, Name: "test"}},
		Processors: []conf.Plugin{{Kind: conf.KindProcessor, Name: "p"}},
		Outputs:    []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.BatchSize = points; p.FlushInterval = time.Second })},
	}
	f := &fakeFactory{
		inputs:  map[string]sdk.Input{"inputs.test": in},
		procs:   map[string]sdk.Processor{"processors.p": passThrough()},
		outputs: map[string]sdk.Output{"outputs.out": nopOutput{}},
	}
	a, err := New(cfg, f, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	acc := <-in.accCh
	// A ring of batches larger than the input's credits: nothing in this
	// pipeline modifies a batch of exactly batch_size points (no merge, no
	// split, pass-through processor, no-op output), so reuse is safe.
	batches := make([]*sdk.Batch, 2*DefaultInputCredits)
	for i := range batches {
		batches[i] = batchOf(i, points)
	}
	done := make(chan struct{}, b.N)
	ack := func(sdk.Delivery) { done <- struct{}{} }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := acc.Emit(ctx, batches[i%len(batches)], ack); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < b.N; i++ {
		<-done
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*points), "ns/point")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCloneBatch is the per-point cost of fan-out to each extra output.
func BenchmarkCloneBatch(b *testing.B) {
	src := batchOf(0, 10_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = cloneBatch(src, false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10_000), "ns/point")
}

// BenchmarkMergeInto is the per-point cost of merging small input batches
// into one output write (10 batches of 1,000 points into 10,000).
func BenchmarkMergeInto(b *testing.B) {
	parts := make([]*sdk.Batch, 10)
	for i := range parts {
		parts[i] = batchOf(i*1000, 1000)
	}
	dst := &sdk.Batch{Points: make([]sdk.Point, 0, 10_000), Series: make([]sdk.Series, 0, 20)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst.Points, dst.Series = dst.Points[:0], dst.Series[:0]
		for _, p := range parts {
			mergeInto(dst, p)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10_000), "ns/point")
}

// scrapeBatch is a scrape-shaped batch: n series of 8 labels, one point
// each (a GPU's label set shared by its 30 fields).
func scrapeBatch(n int) *sdk.Batch {
	b := &sdk.Batch{}
	var ls sdk.Labels
	for i := range n {
		if i%30 == 0 {
			ls = sdk.Labels{{Key: "Hostname", Value: "host-" + strconv.Itoa(i/240)}, {Key: "UUID", Value: "GPU-" + strconv.Itoa(i/30)},
				{Key: "device", Value: "nvidia" + strconv.Itoa(i/30%8)}, {Key: "gpu", Value: strconv.Itoa(i / 30 % 8)},
				{Key: "modelName", Value: "NVIDIA H100 80GB HBM3"}, {Key: "pci_bus_id", Value: "00000000:1A:00.0"},
				{Key: "DCGM_FI_DRIVER_VERSION", Value: "535.129.03"}, {Key: "cluster", Value: "c1"}}
		}
		s := b.AddSeries("DCGM_FI_DEV_FIELD_"+strconv.Itoa(i%30), ls)
		b.Add(s, int64(1_700_000_000_000_000_000), float64(i))
	}
	return b
}

// BenchmarkSlicePoints is the per-point cost of cutting a batch larger
// than the output's batch_size (20,000 scrape-shaped points) into two
// writes, for an output that only reads labels (an OutputClient) and for
// one that may change them.
func BenchmarkSlicePoints(b *testing.B) {
	src := scrapeBatch(20_000)
	for _, share := range []bool{true, false} {
		b.Run(fmt.Sprintf("share_labels=%v", share), func(b *testing.B) {
			var sl slicer
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = sl.slice(src, 0, 10_000, share)
				_ = sl.slice(src, 10_000, 20_000, share)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20_000), "ns/point")
		})
	}
}
