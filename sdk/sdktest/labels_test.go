package sdktest_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/sdktest"
)

// labelProbe records, per received batch, whether its series' label slices
// are ones an earlier batch received (shared); Mutate writes into them
// in place in the first batch (allowed unless the plugin is a
// LabelReader): later batches must not see the change.
type labelProbe struct {
	ReadOnly bool `toml:"read_only"`
	Mutate   bool `toml:"mutate"`

	mu     sync.Mutex
	seen   map[*sdk.Label]bool
	shared []bool
}

func (p *labelProbe) ReadsLabelsOnly() bool { return p.ReadOnly }

func (p *labelProbe) Process(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	p.mu.Lock()
	if p.seen == nil {
		p.seen = map[*sdk.Label]bool{}
	}
	// Only slices an earlier batch received count: series of one batch may
	// share a slice among themselves (the dictionary's, one per label set).
	shared := false
	for _, s := range b.Series {
		if len(s.Labels) > 0 {
			shared = shared || p.seen[&s.Labels[0]]
		}
	}
	for _, s := range b.Series {
		if len(s.Labels) > 0 {
			p.seen[&s.Labels[0]] = true
		}
	}
	p.shared = append(p.shared, shared)
	p.mu.Unlock()
	if p.Mutate && b.Points[0].Time == 0 { // the first batch only
		out := &sdk.Batch{}
		for _, s := range b.Series {
			s.Labels[0].Value = "mutated" // in place: the batch owns it
			out.AddSeries(s.Name, s.Labels)
		}
		out.Points = b.Points
		return []*sdk.Batch{out}, nil
	}
	return []*sdk.Batch{b}, nil
}

func scrape(i int) *sdk.Batch {
	b := &sdk.Batch{}
	for g := 0; g < 4; g++ {
		ls := sdk.Labels{{Key: "gpu", Value: fmt.Sprint(g)}, {Key: "host", Value: "h1"}}
		for m := 0; m < 3; m++ {
			b.Add(b.AddSeries(fmt.Sprintf("metric_%d", m), ls), int64(i), float64(i*100+g*10+m))
		}
	}
	return b
}

// Received labels are owned per batch unless the processor is a
// LabelReader; an in-place change never leaks into later batches.
func TestReceivedLabelOwnership(t *testing.T) {
	cases := []struct {
		name       string
		config     string
		wantShared bool
		mutate     bool
	}{
		{name: "owned", config: ``},
		{name: "owned, changed in place", config: `mutate = true`, mutate: true},
		{name: "label reader", config: `read_only = true`, wantShared: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probe := &labelProbe{}
			reg := sdk.Registration{Name: "probe", Kind: sdk.KindProcessor, New: func() any { return probe }}
			p := sdktest.Processor(t, reg, tc.config)
			for i := 0; i < 3; i++ {
				out, err := p.Process(context.Background(), scrape(i))
				if err != nil {
					t.Fatal(err)
				}
				want := scrape(i)
				if tc.mutate && i == 0 {
					for j := range want.Series {
						want.Series[j].Labels = append(sdk.Labels(nil), want.Series[j].Labels...)
						want.Series[j].Labels[0].Value = "mutated"
					}
				}
				if len(out) != 1 || !reflect.DeepEqual(out[0].Series, want.Series) || !reflect.DeepEqual(out[0].Points, want.Points) {
					t.Fatalf("batch %d: got %+v", i, out[0].Series[:2])
				}
			}
			probe.mu.Lock()
			defer probe.mu.Unlock()
			if want := []bool{false, tc.wantShared, tc.wantShared}; !reflect.DeepEqual(probe.shared, want) {
				t.Fatalf("shared per batch = %v, want %v", probe.shared, want)
			}
		})
	}
}

// passthrough returns its batch; ReadOnly makes it a LabelReader.
type passthrough struct {
	ReadOnly bool `toml:"read_only"`
}

func (p *passthrough) ReadsLabelsOnly() bool { return p.ReadOnly }

func (p *passthrough) Process(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	return []*sdk.Batch{b}, nil
}

// BenchmarkScrapeHop is one processor hop over the real protocol (gRPC on a
// unix socket, both sides in this process) for scrape-shaped batches (328
// GPUs x 30 metrics, 6 labels, one point per series) in the steady state
// of a stream: with the received labels owned per batch (copied) and with
// a LabelReader plugin (shared).
func BenchmarkScrapeHop(b *testing.B) {
	batch := &sdk.Batch{}
	for g := 0; g < 328; g++ {
		ls := sdk.Labels{
			{Key: sdk.LabelDevice, Value: fmt.Sprintf("nvidia%d", g%8)},
			{Key: sdk.LabelDriverVersion, Value: "535.129.03"},
			{Key: sdk.LabelGPUIndex, Value: fmt.Sprint(g % 8)},
			{Key: sdk.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
			{Key: sdk.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08d-aaaa-bbbb-cccc-0000%08d", g, g)},
			{Key: sdk.LabelHost, Value: fmt.Sprintf("dgx-node-%04d", g/8)},
		}
		for m := 0; m < 30; m++ {
			batch.Add(batch.AddSeries(fmt.Sprintf("gpu_metric_%d", m), ls), 1_700_000_000_000_000_000, float64(g*m))
		}
	}
	n := len(batch.Points)
	for _, readOnly := range []bool{false, true} {
		b.Run(fmt.Sprintf("label-reader=%v", readOnly), func(b *testing.B) {
			reg := sdk.Registration{Name: "passthrough", Kind: sdk.KindProcessor, New: func() any { return &passthrough{} }}
			p := sdktest.Processor(b, reg, fmt.Sprintf("read_only = %v", readOnly))
			in := batch
			for i := 0; i < 2; i++ { // define the series; then, as in a pipeline, send what came back
				out, err := p.Process(context.Background(), in)
				if err != nil {
					b.Fatal(err)
				}
				in = out[0]
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Process(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}

// batchProbe records the arrays of the batches it receives; with Releases
// it is a BatchReleaser (keeps nothing of a batch once Process returned),
// without it keeps every batch (as an aggregating processor may).
type batchProbe struct {
	Releases bool `toml:"releases"`

	mu     sync.Mutex
	arrays map[*sdk.Point]int
	kept   []*sdk.Batch
}

func (p *batchProbe) ReleasesBatches() bool { return p.Releases }
func (p *batchProbe) ReadsLabelsOnly() bool { return true }

func (p *batchProbe) Process(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.arrays == nil {
		p.arrays = map[*sdk.Point]int{}
	}
	p.arrays[&b.Points[0]]++
	if !p.Releases {
		p.kept = append(p.kept, b)
	}
	return []*sdk.Batch{b}, nil
}

// A BatchReleaser gets later batches decoded into the arrays of earlier
// ones, and every result still equals its input; a processor that keeps
// batches never sees its batches' memory reused.
func TestBatchReleaserReuse(t *testing.T) {
	for _, releases := range []bool{true, false} {
		t.Run(fmt.Sprintf("releases=%v", releases), func(t *testing.T) {
			probe := &batchProbe{}
			reg := sdk.Registration{Name: "probe", Kind: sdk.KindProcessor, New: func() any { return probe }}
			p := sdktest.Processor(t, reg, fmt.Sprintf("releases = %v", releases))
			const calls = 12
			for i := 0; i < calls; i++ {
				in := scrape(i)
				out, err := p.Process(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if len(out) != 1 || !reflect.DeepEqual(samples(out[0]), samples(scrape(i))) {
					t.Fatalf("call %d: result differs from its input", i)
				}
			}
			probe.mu.Lock()
			defer probe.mu.Unlock()
			if releases && len(probe.arrays) >= calls {
				t.Errorf("%d calls in %d distinct point arrays: no batch memory reused", calls, len(probe.arrays))
			}
			if !releases && len(probe.arrays) != calls {
				t.Errorf("%d calls in %d distinct point arrays: a kept batch's memory was reused", calls, len(probe.arrays))
			}
			for k, b := range probe.kept {
				if !reflect.DeepEqual(samples(b), samples(scrape(k))) {
					t.Fatalf("kept batch %d changed after its call", k)
				}
			}
		})
	}
}

// samples renders a batch's points as self-contained samples.
func samples(b *sdk.Batch) []string {
	var out []string
	for i := range b.Points {
		s := b.Sample(i)
		out = append(out, fmt.Sprintf("%s%s %d %g", s.Name, s.Labels, s.Time.UnixNano(), s.Value))
	}
	return out
}
