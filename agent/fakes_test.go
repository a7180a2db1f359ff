package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// fakeFactory hands out in-process fakes by plugin ID.
type fakeFactory struct {
	inputs  map[string]sdk.Input
	procs   map[string]sdk.Processor
	outputs map[string]sdk.Output
	// groups: process groups by their first member's ID.
	groups map[string]GroupProcessor
	// beforeOutput, if set, runs before each NewOutput (e.g. to block).
	beforeOutput func(ctx context.Context) error
	calls        atomic.Int32
}

func (f *fakeFactory) NewInput(_ context.Context, p *conf.Plugin) (sdk.Input, error) {
	f.calls.Add(1)
	if v, ok := f.inputs[p.ID()]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("no fake input %s", p.ID())
}

func (f *fakeFactory) NewProcessor(_ context.Context, p *conf.Plugin) (sdk.Processor, error) {
	f.calls.Add(1)
	if v, ok := f.procs[p.ID()]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("no fake processor %s", p.ID())
}

func (f *fakeFactory) NewProcessorGroup(_ context.Context, ps []*conf.Plugin) (GroupProcessor, error) {
	f.calls.Add(1)
	if v, ok := f.groups[ps[0].ID()]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("no fake process group %s", ps[0].ID())
}

func (f *fakeFactory) NewOutput(ctx context.Context, p *conf.Plugin) (sdk.Output, error) {
	f.calls.Add(1)
	if f.beforeOutput != nil {
		if err := f.beforeOutput(ctx); err != nil {
			return nil, err
		}
	}
	if v, ok := f.outputs[p.ID()]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("no fake output %s", p.ID())
}

// testInput hands its Accumulator to the test and waits for cancellation.
type testInput struct {
	accCh   chan sdk.Accumulator
	closed  atomic.Bool
	drained atomic.Bool
	// onClose runs in Close (e.g. to check that every ack arrived before).
	onClose func()
}

func newTestInput() *testInput { return &testInput{accCh: make(chan sdk.Accumulator, 1)} }

func (i *testInput) Run(ctx context.Context, acc sdk.Accumulator) error {
	i.accCh <- acc
	<-ctx.Done()
	return nil
}

func (i *testInput) Drain(context.Context) error { i.drained.Store(true); return nil }

func (i *testInput) Close(context.Context) error {
	if i.onClose != nil {
		i.onClose()
	}
	i.closed.Store(true)
	return nil
}

// funcProcessor runs fn.
type funcProcessor struct {
	fn     func(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error)
	closed atomic.Bool
}

func (p *funcProcessor) Process(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	return p.fn(ctx, b)
}

func (p *funcProcessor) Close(context.Context) error { p.closed.Store(true); return nil }

func passThrough() *funcProcessor {
	return &funcProcessor{fn: func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
		return []*sdk.Batch{b}, nil
	}}
}

// testOutput records the values of every successful Write; hook, if set, runs
// first and its error is returned.
type testOutput struct {
	hook   func(ctx context.Context, b *sdk.Batch) error
	mu     sync.Mutex
	values []float64 // every point value of successful writes, in order
	writes int
	closed atomic.Bool
}

func (o *testOutput) Write(ctx context.Context, b *sdk.Batch) error {
	if o.hook != nil {
		if err := o.hook(ctx, b); err != nil {
			return err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes++
	for _, p := range b.Points {
		if int(p.Series) >= len(b.Series) {
			return sdk.Permanent(errors.New("point refers to a missing series"))
		}
		o.values = append(o.values, p.Value)
	}
	return nil
}

func (o *testOutput) Close(context.Context) error { o.closed.Store(true); return nil }

func (o *testOutput) snapshot() (writes int, values []float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes, append([]float64(nil), o.values...)
}

// acks records the deliveries of emitted batches by id.
type acks struct {
	mu   sync.Mutex
	got  map[int]sdk.Delivery
	dups int
	ch   chan int
}

func newAcks() *acks { return &acks{got: make(map[int]sdk.Delivery), ch: make(chan int, 10000)} }

func (a *acks) done(id int) func(sdk.Delivery) {
	return func(d sdk.Delivery) {
		a.mu.Lock()
		if _, dup := a.got[id]; dup {
			a.dups++
		}
		a.got[id] = d
		a.mu.Unlock()
		a.ch <- id
	}
}

func (a *acks) get(id int) (sdk.Delivery, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.got[id]
	return d, ok
}

func (a *acks) count() (n, dups int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got), a.dups
}

// wait waits for n deliveries.
func (a *acks) wait(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for i := 0; i < n; i++ {
		select {
		case <-a.ch:
		case <-deadline:
			got, _ := a.count()
			t.Fatalf("waited %s for %d deliveries, got %d", timeout, n, got)
		}
	}
}

// batchOf returns a batch of n points with values start..start+n-1 over two
// series.
func batchOf(start, n int) *sdk.Batch {
	b := &sdk.Batch{}
	s0 := b.AddSeries("gpu_temp", sdk.Labels{{Key: "gpu_uuid", Value: "GPU-0"}})
	s1 := b.AddSeries("gpu_power", sdk.Labels{{Key: "gpu_uuid", Value: "GPU-1"}})
	for i := 0; i < n; i++ {
		s := s0
		if i%2 == 1 {
			s = s1
		}
		b.Add(s, int64(1_700_000_000_000_000_000+i), float64(start+i))
	}
	return b
}

func outputPlugin(name string, mod func(*conf.Plugin)) conf.Plugin {
	p := conf.Plugin{Kind: conf.KindOutput, Name: name, Required: true, BatchSize: 1000,
		FlushInterval: 5 * time.Millisecond, Workers: 1, QueueSize: 4}
	if mod != nil {
		mod(&p)
	}
	return p
}

// harness is an agent under test with one input "inputs.test".
type harness struct {
	a      *Agent
	in     *testInput
	acc    sdk.Accumulator
	acks   *acks
	dir    string
	cancel context.CancelFunc
	errc   chan error
}

type setup struct {
	agent   conf.Agent
	procs   map[string]sdk.Processor // by name, in procOrder
	order   []string
	outputs []conf.Plugin
	outImpl map[string]sdk.Output // by name
	opts    Options
	factory func(f *fakeFactory)
	// group, when set, is the process_group of every processor in order.
	group string
	// plainFactory hides the fake factory's GroupFactory ability.
	plainFactory bool
}

func start(t *testing.T, s setup) *harness {
	t.Helper()
	h := &harness{in: newTestInput(), acks: newAcks(), dir: t.TempDir(), errc: make(chan error, 1)}
	cfg := &conf.Config{Agent: s.agent}
	if cfg.Agent.DeadLetterDir == "" {
		cfg.Agent.DeadLetterDir = h.dir
	}
	if cfg.Agent.ShutdownTimeout == 0 {
		cfg.Agent.ShutdownTimeout = 5 * time.Second
	}
	cfg.Inputs = []conf.Plugin{{Kind: conf.KindInput, Name: "test"}}
	f := &fakeFactory{
		inputs:  map[string]sdk.Input{"inputs.test": h.in},
		procs:   map[string]sdk.Processor{},
		outputs: map[string]sdk.Output{},
		groups:  map[string]GroupProcessor{},
	}
	for _, name := range s.order {
		p := conf.Plugin{Kind: conf.KindProcessor, Name: name, ProcessGroup: s.group}
		cfg.Processors = append(cfg.Processors, p)
		f.procs[p.ID()] = s.procs[name]
	}
	for _, p := range s.outputs {
		cfg.Outputs = append(cfg.Outputs, p)
		f.outputs[p.ID()] = s.outImpl[p.Name]
	}
	if s.factory != nil {
		s.factory(f)
	}
	opts := s.opts
	if opts.RetryInitial == 0 {
		opts.RetryInitial, opts.RetryMax = time.Millisecond, 5*time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Warn})
	}
	var factory Factory = f
	if s.plainFactory {
		factory = struct{ Factory }{f}
	}
	a, err := New(cfg, factory, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.errc <- a.Run(ctx) }()
	select {
	case h.acc = <-h.in.accCh:
	case err := <-h.errc:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("input never started")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.errc:
		case <-time.After(10 * time.Second):
		}
	})
	return h
}

// stop cancels and returns Run's result.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.errc:
		h.errc <- err // for Cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func (h *harness) emit(t *testing.T, id int, b *sdk.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.acc.Emit(ctx, b, h.acks.done(id)); err != nil {
		t.Fatalf("Emit %d: %v", id, err)
	}
}

// testWriter sends logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// metricValue returns the value of the counter or gauge (or the sample count
// of the histogram) name whose labels include labels; 0 if absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}
