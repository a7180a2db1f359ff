package agent

import (
	"context"
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
		_ = cloneBatch(src)
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
