package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

func TestAckWaitsForEveryOutput(t *testing.T) {
	gate := make(chan struct{})
	slow := &testOutput{hook: func(ctx context.Context, _ *sdk.Batch) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	fast := &testOutput{}
	h := start(t, setup{
		outputs: []conf.Plugin{outputPlugin("fast", nil), outputPlugin("slow", nil)},
		outImpl: map[string]sdk.Output{"fast": fast, "slow": slow},
	})
	h.emit(t, 1, batchOf(0, 10))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if w, _ := fast.snapshot(); w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fast output never wrote")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond)
	if _, ok := h.acks.get(1); ok {
		t.Fatal("acknowledged before the slow output wrote")
	}
	close(gate)
	h.acks.wait(t, 1, 5*time.Second)
	if d, _ := h.acks.get(1); !d.OK {
		t.Fatalf("delivery = %+v, want OK", d)
	}
	for name, o := range map[string]*testOutput{"fast": fast, "slow": slow} {
		if _, v := o.snapshot(); len(v) != 10 {
			t.Errorf("%s wrote %d points, want 10", name, len(v))
		}
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestProcessorDropAndSplit(t *testing.T) {
	tests := []struct {
		name       string
		proc       func(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error)
		points     int
		wantWrites int
		wantPoints int
	}{
		{
			name:   "drop",
			proc:   func(context.Context, *sdk.Batch) ([]*sdk.Batch, error) { return nil, nil },
			points: 10,
		},
		{
			name: "drop all points keeps batch",
			proc: func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
				b.Points = b.Points[:0]
				return []*sdk.Batch{b}, nil
			},
			points: 10,
		},
		{
			name: "split in three",
			proc: func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
				var out []*sdk.Batch
				for i := 0; i < 3; i++ {
					part := &sdk.Batch{Series: b.Series, Points: append([]sdk.Point(nil), b.Points[i*4:i*4+4]...)}
					out = append(out, part)
				}
				return out, nil
			},
			points: 12, wantWrites: 3, wantPoints: 12,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var writes atomic.Int32
			release := make(chan struct{})
			out := &testOutput{hook: func(ctx context.Context, _ *sdk.Batch) error {
				// Hold the last part back until the test lets it go.
				if writes.Add(1) == int32(tc.wantWrites) {
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}}
			h := start(t, setup{
				order:   []string{"p"},
				procs:   map[string]sdk.Processor{"p": &funcProcessor{fn: tc.proc}},
				outputs: []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.BatchSize = 4; p.Workers = 3 })},
				outImpl: map[string]sdk.Output{"out": out},
			})
			h.emit(t, 1, batchOf(0, tc.points))
			if tc.wantWrites > 0 {
				deadline := time.Now().Add(5 * time.Second)
				for writes.Load() < int32(tc.wantWrites) {
					if time.Now().After(deadline) {
						t.Fatalf("only %d writes", writes.Load())
					}
					time.Sleep(time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
				if _, ok := h.acks.get(1); ok {
					t.Fatal("acknowledged before every part was written")
				}
			}
			close(release)
			h.acks.wait(t, 1, 5*time.Second)
			if d, _ := h.acks.get(1); !d.OK {
				t.Fatalf("delivery = %+v, want OK", d)
			}
			w, v := out.snapshot()
			if w != tc.wantWrites || len(v) != tc.wantPoints {
				t.Fatalf("writes=%d points=%d, want %d and %d", w, len(v), tc.wantWrites, tc.wantPoints)
			}
			if err := h.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func TestFullOutputQueueStopsIntake(t *testing.T) {
	const credits = 5
	block := make(chan struct{})
	out := &testOutput{hook: func(context.Context, *sdk.Batch) error { <-block; return nil }}
	h := start(t, setup{
		agent:   conf.Agent{QueueSize: 1, InputCredits: credits, ShutdownTimeout: 200 * time.Millisecond},
		order:   []string{"p"},
		procs:   map[string]sdk.Processor{"p": passThrough()},
		outputs: []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.QueueSize = 1; p.BatchSize = 10 })},
		outImpl: map[string]sdk.Output{"out": out},
	})
	t.Cleanup(func() { close(block) })

	var emitted atomic.Int32
	ctx, cancelEmit := context.WithCancel(context.Background())
	emitterDone := make(chan struct{})
	go func() {
		defer close(emitterDone)
		for i := 0; i < 1000; i++ {
			if err := h.acc.Emit(ctx, batchOf(i*10, 10), h.acks.done(i)); err != nil {
				return
			}
			emitted.Add(1)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	g0 := runtime.NumGoroutine()
	first := emitted.Load()
	for i := 0; i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		if n := emitted.Load(); n != first {
			t.Fatalf("intake kept going: %d then %d batches emitted", first, n)
		}
		if inflight := metricValue(t, h.a.Registry(), "collector_inflight_batches", nil); inflight > credits {
			t.Fatalf("in-flight batches %v > credits %d", inflight, credits)
		}
	}
	if first > credits {
		t.Fatalf("%d batches emitted and unsettled, bound is %d", first, credits)
	}
	if first == 0 {
		t.Fatal("nothing was emitted")
	}
	if n, _ := h.acks.count(); n != 0 {
		t.Fatalf("%d batches acknowledged while the output is blocked", n)
	}
	if g := runtime.NumGoroutine(); g > g0+2 {
		t.Fatalf("goroutines grew from %d to %d while blocked", g0, g)
	}
	cancelEmit()
	<-emitterDone
	// The blocked output makes shutdown time out: every batch is given up.
	start := time.Now()
	if err := h.stop(t); err == nil {
		t.Fatal("Run returned nil with a stuck output")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("shutdown took %s with a 200ms timeout", took)
	}
	n, dups := h.acks.count()
	if n != int(first) || dups != 0 {
		t.Fatalf("deliveries=%d dups=%d, want %d and 0", n, dups, first)
	}
	for i := 0; i < int(first); i++ {
		if d, _ := h.acks.get(i); d.OK || d.Err == nil {
			t.Fatalf("batch %d: delivery %+v, want OK=false with an error", i, d)
		}
	}
}

func TestRetryThenSuccess(t *testing.T) {
	const failures = 3
	var calls atomic.Int32
	var wrote atomic.Bool
	out := &testOutput{}
	out.hook = func(_ context.Context, b *sdk.Batch) error {
		if calls.Add(1) <= failures {
			b.Reject("partial junk from a failed attempt", "", nil) // must not leak
			return errors.New("connection reset")
		}
		wrote.Store(true)
		return nil
	}
	h := start(t, setup{
		outputs: []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.MaxRetries = 10 })},
		outImpl: map[string]sdk.Output{"out": out},
	})
	var ackedAfterWrite atomic.Bool
	ctx := context.Background()
	if err := h.acc.Emit(ctx, batchOf(0, 50), func(d sdk.Delivery) {
		ackedAfterWrite.Store(wrote.Load() && d.OK)
		h.acks.done(1)(d)
	}); err != nil {
		t.Fatal(err)
	}
	h.acks.wait(t, 1, 5*time.Second)
	if !ackedAfterWrite.Load() {
		t.Fatal("acknowledged before the successful write (or not OK)")
	}
	w, v := out.snapshot()
	if w != 1 || len(v) != 50 {
		t.Fatalf("writes=%d points=%d, want 1 and 50", w, len(v))
	}
	sort.Float64s(v)
	for i, x := range v {
		if x != float64(i) {
			t.Fatalf("point %d = %v: data changed or duplicated", i, x)
		}
	}
	if got := metricValue(t, h.a.Registry(), "collector_errors_total", map[string]string{"plugin": "outputs.out", "type": "retryable"}); got != failures {
		t.Fatalf("retryable errors = %v, want %d", got, failures)
	}
	if got := metricValue(t, h.a.Registry(), "collector_errors_total", map[string]string{"type": "reject"}); got != 0 {
		t.Fatalf("rejects of failed attempts were kept: %v", got)
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// readDeadLetter returns the records of dir/dead-letter.jsonl.
func readDeadLetter(t *testing.T, dir string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "dead-letter.jsonl"))
	if err != nil {
		t.Fatalf("dead-letter file: %v", err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad dead-letter line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

func TestFailedBatchesAreDeadLettered(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		maxRetries int
		panicMsg   string
		wantType   string
	}{
		{name: "permanent", err: sdk.Permanent(errors.New("column type mismatch")), wantType: errTypePermanent},
		{name: "retries exhausted", err: errors.New("timeout"), maxRetries: 3, wantType: errTypeExhausted},
		{name: "panic", panicMsg: "index out of range", err: errors.New("output panicked: index out of range"), wantType: errTypePermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			out := &testOutput{hook: func(context.Context, *sdk.Batch) error {
				calls.Add(1)
				if tc.panicMsg != "" {
					panic(tc.panicMsg)
				}
				return tc.err
			}}
			h := start(t, setup{
				outputs: []conf.Plugin{outputPlugin("pg", func(p *conf.Plugin) { p.MaxRetries = tc.maxRetries })},
				outImpl: map[string]sdk.Output{"pg": out},
			})
			h.emit(t, 1, batchOf(0, 7))
			h.acks.wait(t, 1, 5*time.Second)
			if d, _ := h.acks.get(1); !d.OK {
				t.Fatalf("delivery = %+v, want OK (dead-lettered counts as done)", d)
			}
			if want := max(1, tc.maxRetries); int(calls.Load()) != want {
				t.Fatalf("Write called %d times, want %d", calls.Load(), want)
			}
			recs := readDeadLetter(t, h.dir)
			if len(recs) != 1 {
				t.Fatalf("%d dead-letter records, want 1", len(recs))
			}
			r := recs[0]
			if r["plugin"] != "outputs.pg" || r["kind"] != "batch" || !strings.Contains(r["reason"].(string), tc.err.Error()) {
				t.Fatalf("record = %v", r)
			}
			samples, _ := r["samples"].([]any)
			if len(samples) != 7 || r["points"] != float64(7) {
				t.Fatalf("record has %d samples (points %v), want 7", len(samples), r["points"])
			}
			s0 := samples[1].(map[string]any)
			if s0["name"] != "gpu_power" || s0["value"] != float64(1) || s0["labels"].(map[string]any)["gpu_uuid"] != "GPU-1" {
				t.Fatalf("sample = %v", s0)
			}
			reg := h.a.Registry()
			if got := metricValue(t, reg, "collector_dead_letter_total", map[string]string{"plugin": "outputs.pg"}); got != 1 {
				t.Fatalf("collector_dead_letter_total = %v", got)
			}
			if got := metricValue(t, reg, "collector_errors_total", map[string]string{"plugin": "outputs.pg", "type": tc.wantType}); got != 1 {
				t.Fatalf("errors{%s} = %v", tc.wantType, got)
			}
			if err := h.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func TestRejectsReachDeadLetter(t *testing.T) {
	proc := &funcProcessor{fn: func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
		b.Reject("value out of range", "point 3", []byte("gpu_temp=-9999"))
		return []*sdk.Batch{b}, nil
	}}
	out := &testOutput{}
	out.hook = func(_ context.Context, b *sdk.Batch) error {
		b.Reject("unknown metric", "row 1", nil)
		return nil
	}
	h := start(t, setup{
		order:   []string{"norm"},
		procs:   map[string]sdk.Processor{"norm": proc},
		outputs: []conf.Plugin{outputPlugin("pg", nil)},
		outImpl: map[string]sdk.Output{"pg": out},
	})
	b := batchOf(0, 4)
	b.Reject("bad json", "message m1 line 2", []byte(`{"metric_name": oops}`))
	b.Reject("bad bytes", "message m1 line 3", []byte{0xff, 0xfe, 0x00})
	h.emit(t, 1, b)
	// A batch of rejects only settles at once.
	only := &sdk.Batch{}
	only.Reject("not a number", "message m2", []byte("abc"))
	h.emit(t, 2, only)
	h.acks.wait(t, 2, 5*time.Second)
	for id := 1; id <= 2; id++ {
		if d, _ := h.acks.get(id); !d.OK {
			t.Fatalf("batch %d delivery %+v", id, d)
		}
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := readDeadLetter(t, h.dir)
	byReason := map[string]map[string]any{}
	for _, r := range recs {
		byReason[r["reason"].(string)] = r
	}
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5: %v", len(recs), recs)
	}
	checks := []struct{ reason, plugin, field, value string }{
		{"bad json", "inputs.test", "raw", `{"metric_name": oops}`},
		{"bad bytes", "inputs.test", "raw_base64", "//4A"},
		{"not a number", "inputs.test", "raw", "abc"},
		{"value out of range", "processors.norm", "raw", "gpu_temp=-9999"},
		{"unknown metric", "outputs.pg", "position", "row 1"},
	}
	for _, c := range checks {
		r := byReason[c.reason]
		if r == nil || r["plugin"] != c.plugin || r[c.field] != c.value || r["kind"] != "reject" {
			t.Errorf("record for %q = %v, want plugin %s and %s=%q", c.reason, r, c.plugin, c.field, c.value)
		}
	}
	reg := h.a.Registry()
	for plugin, want := range map[string]float64{"inputs.test": 3, "processors.norm": 1, "outputs.pg": 1} {
		if got := metricValue(t, reg, "collector_errors_total", map[string]string{"plugin": plugin, "type": "reject"}); got != want {
			t.Errorf("collector_errors_total{plugin=%s,type=reject} = %v, want %v", plugin, got, want)
		}
	}
	// The processor saw the batch with points only: rejects-only batches skip it.
	if got := metricValue(t, reg, "collector_messages_processed_total", map[string]string{"plugin": "processors.norm"}); got != 1 {
		t.Errorf("processor calls = %v, want 1", got)
	}
}

func TestBestEffortOutputDropsWithoutStalling(t *testing.T) {
	block := make(chan struct{})
	slow := &testOutput{hook: func(ctx context.Context, _ *sdk.Batch) error {
		select {
		case <-block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	main := &testOutput{}
	h := start(t, setup{
		agent: conf.Agent{InputCredits: 4, ShutdownTimeout: 300 * time.Millisecond},
		outputs: []conf.Plugin{
			outputPlugin("main", nil),
			outputPlugin("archive", func(p *conf.Plugin) { p.Required = false; p.QueueSize = 1; p.BatchSize = 10 }),
		},
		outImpl: map[string]sdk.Output{"main": main, "archive": slow},
	})
	const n = 30
	for i := 0; i < n; i++ {
		h.emit(t, i, batchOf(i*10, 10))
	}
	h.acks.wait(t, n, 5*time.Second)
	for i := 0; i < n; i++ {
		if d, _ := h.acks.get(i); !d.OK {
			t.Fatalf("batch %d: %+v", i, d)
		}
	}
	if _, v := main.snapshot(); len(v) != n*10 {
		t.Fatalf("required output wrote %d points, want %d", len(v), n*10)
	}
	dropped := metricValue(t, h.a.Registry(), "collector_dropped_total", map[string]string{"plugin": "outputs.archive"})
	// archive holds at most: 1 in Write, 1 in its batcher, 1 queued.
	if dropped < n-3 {
		t.Fatalf("collector_dropped_total = %v, want >= %d", dropped, n-3)
	}
	close(block)
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	out := &testOutput{hook: func(context.Context, *sdk.Batch) error { time.Sleep(2 * time.Millisecond); return nil }}
	const n = 20
	h := start(t, setup{
		order: []string{"p"},
		procs: map[string]sdk.Processor{"p": passThrough()},
		// A long flush interval: the last partial batch is written only by
		// the shutdown flush.
		outputs: []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.BatchSize = 35; p.FlushInterval = time.Hour; p.Workers = 2 })},
		outImpl: map[string]sdk.Output{"out": out},
	})
	var acksAtClose atomic.Int32
	h.in.onClose = func() { n, _ := h.acks.count(); acksAtClose.Store(int32(n)) }
	for i := 0; i < n; i++ {
		h.emit(t, i, batchOf(i*10, 10))
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, dups := h.acks.count()
	if got != n || dups != 0 {
		t.Fatalf("deliveries=%d dups=%d, want %d and 0", got, dups, n)
	}
	for i := 0; i < n; i++ {
		if d, _ := h.acks.get(i); !d.OK {
			t.Fatalf("batch %d: %+v", i, d)
		}
	}
	_, v := out.snapshot()
	if len(v) != n*10 {
		t.Fatalf("wrote %d points, want %d", len(v), n*10)
	}
	if acksAtClose.Load() != n || !h.in.drained.Load() || !out.closed.Load() {
		t.Fatalf("input closed with %d acks (drained %v), output closed %v", acksAtClose.Load(), h.in.drained.Load(), out.closed.Load())
	}
	if err := h.acc.Emit(context.Background(), batchOf(0, 1), nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Emit after shutdown = %v, want ErrStopped", err)
	}
}

func TestShutdownTimeoutWithStuckOutput(t *testing.T) {
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	out := &testOutput{hook: func(context.Context, *sdk.Batch) error { <-stuck; return nil }} // ignores ctx
	const timeout = 300 * time.Millisecond
	h := start(t, setup{
		agent:   conf.Agent{ShutdownTimeout: timeout},
		outputs: []conf.Plugin{outputPlugin("out", nil)},
		outImpl: map[string]sdk.Output{"out": out},
	})
	h.emit(t, 1, batchOf(0, 5))
	h.emit(t, 2, batchOf(5, 5))
	time.Sleep(20 * time.Millisecond)
	began := time.Now()
	err := h.stop(t)
	took := time.Since(began)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Run = %v, want a timeout error", err)
	}
	if took > timeout+150*time.Millisecond {
		t.Fatalf("Run returned after %s, timeout %s", took, timeout)
	}
	for id := 1; id <= 2; id++ {
		d, ok := h.acks.get(id)
		if !ok || d.OK || !errors.Is(d.Err, errShutdownTimeout) {
			t.Fatalf("batch %d: delivered=%v %+v, want OK=false", id, ok, d)
		}
	}
	if !h.in.closed.Load() {
		t.Fatal("input not closed after timeout")
	}
}

func TestReadinessAndMetrics(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	out := &testOutput{}
	h := start(t, setup{
		outputs: []conf.Plugin{outputPlugin("pg", nil)},
		outImpl: map[string]sdk.Output{"pg": out},
		factory: func(f *fakeFactory) {
			f.beforeOutput = func(ctx context.Context) error {
				once.Do(func() {
					// While the factory works, the agent is not ready.
					go func() {
						time.Sleep(20 * time.Millisecond)
						close(release)
					}()
				})
				<-release
				return nil
			}
		},
	})
	a := h.a
	if code, body := get(t, a.Handler(), "/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	if code, _ := get(t, a.Handler(), "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	h.emit(t, 1, batchOf(0, 6))
	h.acks.wait(t, 1, 5*time.Second)
	a.PluginRestarted("pg")
	code, body := get(t, a.Handler(), "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`collector_messages_processed_total{plugin="inputs.test"} 1`,
		`collector_messages_processed_total{plugin="outputs.pg"} 1`,
		`collector_samples_processed_total{plugin="outputs.pg"} 6`,
		`collector_processing_time_seconds_count{plugin="outputs.pg"} 1`,
		`collector_batch_size_bucket{plugin="inputs.test",le="16"} 1`,
		`collector_inflight_batches{plugin="inputs.test"} 0`,
		`collector_queue_depth{plugin="outputs.pg"} 0`,
		`collector_plugin_restarts_total{plugin="outputs.pg"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, a.Handler(), "/readyz"); code != 503 {
		t.Fatalf("/readyz after shutdown = %d", code)
	}
	if code, _ := get(t, a.Handler(), "/healthz"); code != 503 {
		t.Fatalf("/healthz after Run returned = %d", code)
	}
}

func TestNotReadyUntilPluginsCreated(t *testing.T) {
	release := make(chan struct{})
	f := &fakeFactory{
		inputs:       map[string]sdk.Input{"inputs.test": newTestInput()},
		outputs:      map[string]sdk.Output{"outputs.pg": &testOutput{}},
		beforeOutput: func(context.Context) error { <-release; return nil },
	}
	cfg := &conf.Config{
		Agent:   conf.Agent{DeadLetterDir: t.TempDir()},
		Inputs:  []conf.Plugin{{Kind: conf.KindInput, Name: "test"}},
		Outputs: []conf.Plugin{outputPlugin("pg", nil)},
	}
	a, err := New(cfg, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, a.Handler(), "/readyz"); code != 503 {
		t.Fatalf("/readyz before Run = %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	if code, body := get(t, a.Handler(), "/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz while creating plugins = %d %q", code, body)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := get(t, a.Handler(), "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestRunEdgeCases(t *testing.T) {
	cfg := func() *conf.Config {
		return &conf.Config{
			Agent:   conf.Agent{DeadLetterDir: t.TempDir()},
			Inputs:  []conf.Plugin{{Kind: conf.KindInput, Name: "test"}},
			Outputs: []conf.Plugin{outputPlugin("pg", nil)},
		}
	}
	t.Run("cancelled before start", func(t *testing.T) {
		f := &fakeFactory{}
		a, err := New(cfg(), f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := a.Run(ctx); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if f.calls.Load() != 0 {
			t.Fatal("factory called after cancel")
		}
		if err := a.Run(ctx); err == nil {
			t.Fatal("second Run succeeded")
		}
	})
	t.Run("factory error closes created plugins", func(t *testing.T) {
		out := &testOutput{}
		f := &fakeFactory{outputs: map[string]sdk.Output{"outputs.pg": out}} // no input
		a, err := New(cfg(), f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = a.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "inputs.test") {
			t.Fatalf("Run = %v, want an error naming inputs.test", err)
		}
		if !out.closed.Load() {
			t.Fatal("created output not closed")
		}
	})
	t.Run("config errors", func(t *testing.T) {
		c := cfg()
		c.Outputs = nil
		if _, err := New(c, &fakeFactory{}, Options{}); err == nil {
			t.Fatal("no outputs accepted")
		}
		c = cfg()
		c.Outputs = append(c.Outputs, c.Outputs[0])
		if _, err := New(c, &fakeFactory{}, Options{}); err == nil {
			t.Fatal("duplicate IDs accepted")
		}
		if _, err := New(nil, &fakeFactory{}, Options{}); err == nil {
			t.Fatal("nil config accepted")
		}
	})
}

func TestRetryableProcessorError(t *testing.T) {
	var calls atomic.Int32
	proc := &funcProcessor{fn: func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
		if calls.Add(1) <= 2 {
			return nil, errors.New("plugin process restarting")
		}
		return []*sdk.Batch{b}, nil
	}}
	out := &testOutput{}
	h := start(t, setup{
		order:   []string{"p"},
		procs:   map[string]sdk.Processor{"p": proc},
		outputs: []conf.Plugin{outputPlugin("out", nil)},
		outImpl: map[string]sdk.Output{"out": out},
	})
	h.emit(t, 1, batchOf(0, 3))
	h.acks.wait(t, 1, 5*time.Second)
	if d, _ := h.acks.get(1); !d.OK {
		t.Fatalf("delivery %+v", d)
	}
	if _, v := out.snapshot(); len(v) != 3 {
		t.Fatalf("wrote %d points", len(v))
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestMergeAndSplitForOutputBatchSize(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	out := &testOutput{hook: func(_ context.Context, b *sdk.Batch) error {
		mu.Lock()
		sizes = append(sizes, len(b.Points))
		mu.Unlock()
		return nil
	}}
	h := start(t, setup{
		outputs: []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.BatchSize = 25; p.FlushInterval = time.Hour })},
		outImpl: map[string]sdk.Output{"out": out},
	})
	// 10+10 merge; the third (10) would exceed 25: flush 20. Then 60 is
	// split 25+25 with 10 pending... merged with nothing else until shutdown.
	h.emit(t, 1, batchOf(0, 10))
	h.emit(t, 2, batchOf(10, 10))
	h.emit(t, 3, batchOf(20, 10))
	h.emit(t, 4, batchOf(30, 60))
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	h.acks.wait(t, 4, time.Second)
	_, v := out.snapshot()
	sort.Float64s(v)
	if len(v) != 90 {
		t.Fatalf("wrote %d points", len(v))
	}
	for i, x := range v {
		if x != float64(i) {
			t.Fatalf("value %d = %v", i, x)
		}
	}
	total := 0
	for _, s := range sizes {
		if s > 25 {
			t.Fatalf("write of %d points > batch_size 25 (%v)", s, sizes)
		}
		total += s
	}
	if len(sizes) > 5 {
		t.Fatalf("writes %v: batches were not merged", sizes)
	}
}

// TestFailingBestEffortOutputDoesNotHoldShutdown: a best-effort output
// whose every write fails (a full disk) never holds an acknowledgement,
// and at shutdown it is abandoned as soon as the required path drained:
// Run returns nil well before the shutdown timeout, and what it still held
// is counted as dropped. A healthy best-effort output still flushes.
func TestFailingBestEffortOutputDoesNotHoldShutdown(t *testing.T) {
	broken := &testOutput{hook: func(context.Context, *sdk.Batch) error {
		return errors.New("write /var/log/x.jsonl: no space left on device")
	}}
	healthy := &testOutput{}
	main := &testOutput{}
	h := start(t, setup{
		agent: conf.Agent{ShutdownTimeout: 10 * time.Second},
		outputs: []conf.Plugin{
			outputPlugin("main", nil),
			outputPlugin("broken", func(p *conf.Plugin) { p.Required = false; p.QueueSize = 2; p.BatchSize = 10 }),
			outputPlugin("healthy", func(p *conf.Plugin) { p.Required = false; p.QueueSize = 64; p.FlushInterval = time.Hour }),
		},
		outImpl: map[string]sdk.Output{"main": main, "broken": broken, "healthy": healthy},
	})
	const n = 20
	for i := 0; i < n; i++ {
		h.emit(t, i, batchOf(i*10, 10))
	}
	h.acks.wait(t, n, 5*time.Second)
	began := time.Now()
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("shutdown took %v with a failing best-effort output (timeout 10s): it held the shutdown", took)
	}
	for i := 0; i < n; i++ {
		if d, _ := h.acks.get(i); !d.OK {
			t.Fatalf("batch %d: %+v", i, d)
		}
	}
	if _, v := healthy.snapshot(); len(v) != n*10 {
		t.Errorf("healthy best-effort output wrote %d points at shutdown, want %d", len(v), n*10)
	}
	dropped := metricValue(t, h.a.Registry(), "collector_dropped_total", map[string]string{"plugin": "outputs.broken"})
	if dropped < 1 {
		t.Errorf("collector_dropped_total{plugin=outputs.broken} = %v, want >= 1", dropped)
	}
}

// releaseRecorder takes back batches (as plugins.ProcessorClient and
// OutputClient do) and records them.
type releaseRecorder struct {
	mu       sync.Mutex
	released []*sdk.Batch
}

func (r *releaseRecorder) ReleaseBatch(b *sdk.Batch) {
	r.mu.Lock()
	r.released = append(r.released, b)
	r.mu.Unlock()
}

// releasingProcessor is a processor that takes back the batches it
// replaced.
type releasingProcessor struct {
	funcProcessor
	releaseRecorder
}

// TestReleaseReplacedBatches: a batch a processor replaced with results
// (or dropped) goes back to a processor that takes batches back; one it
// returned itself, or that failed (dead-lettered), does not.
func TestReleaseReplacedBatches(t *testing.T) {
	copyOf := func(b *sdk.Batch) *sdk.Batch {
		return &sdk.Batch{Series: slices.Clone(b.Series), Points: slices.Clone(b.Points)}
	}
	tests := []struct {
		name        string
		proc        func(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error)
		wantRelease bool
		wantOK      bool
	}{
		{"replaced", func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) { return []*sdk.Batch{copyOf(b)}, nil }, true, true},
		{"dropped", func(context.Context, *sdk.Batch) ([]*sdk.Batch, error) { return nil, nil }, true, true},
		{"returned itself", func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) { return []*sdk.Batch{b}, nil }, false, true},
		{"failed (dead-lettered, which acknowledges it)", func(context.Context, *sdk.Batch) ([]*sdk.Batch, error) {
			return nil, sdk.Permanent(errors.New("no"))
		}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proc := &releasingProcessor{funcProcessor: funcProcessor{fn: tc.proc}}
			out := &testOutput{}
			h := start(t, setup{
				order:   []string{"p"},
				procs:   map[string]sdk.Processor{"p": proc},
				outputs: []conf.Plugin{outputPlugin("out", nil)},
				outImpl: map[string]sdk.Output{"out": out},
			})
			in := batchOf(0, 5)
			h.emit(t, 1, in)
			h.acks.wait(t, 1, 5*time.Second)
			if d, _ := h.acks.get(1); d.OK != tc.wantOK {
				t.Fatalf("delivery = %+v, want OK %v", d, tc.wantOK)
			}
			if err := h.stop(t); err != nil && tc.wantOK {
				t.Fatalf("Run: %v", err)
			}
			proc.mu.Lock()
			defer proc.mu.Unlock()
			released := len(proc.released) == 1 && proc.released[0] == in
			if released != tc.wantRelease || len(proc.released) > 1 {
				t.Fatalf("released %d batches (the input: %v), want the input released: %v", len(proc.released), released, tc.wantRelease)
			}
		})
	}
}

// releasingOutput is a testOutput that takes back the batches the agent
// is done with.
type releasingOutput struct {
	testOutput
	releaseRecorder
}

// TestOutputReleasesBatches: an output stage hands back a batch it merged
// into another, one it cut into pieces, and one Write stored; a batch a
// failed Write dead-lettered is not handed back; what is written is right.
func TestOutputReleasesBatches(t *testing.T) {
	tests := []struct {
		name      string
		batches   []*sdk.Batch
		fail      bool
		wantWrite []float64
		released  int // batches handed back
	}{
		{"merged, then written", []*sdk.Batch{batchOf(0, 2), batchOf(2, 2)}, false, []float64{0, 1, 2, 3}, 2},
		{"cut into pieces", []*sdk.Batch{batchOf(0, 9)}, false, []float64{0, 1, 2, 3, 4, 5, 6, 7, 8}, 4},
		{"dead-lettered", []*sdk.Batch{batchOf(0, 4)}, true, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := &releasingOutput{}
			if tc.fail {
				out.hook = func(context.Context, *sdk.Batch) error { return sdk.Permanent(errors.New("no")) }
			}
			h := start(t, setup{
				outputs: []conf.Plugin{outputPlugin("out", func(p *conf.Plugin) { p.BatchSize = 4; p.FlushInterval = time.Hour })},
				outImpl: map[string]sdk.Output{"out": out},
			})
			for i, b := range tc.batches {
				h.emit(t, i+1, b)
			}
			if err := h.stop(t); err != nil && !tc.fail {
				t.Fatalf("Run: %v", err)
			}
			_, values := out.snapshot()
			if !slices.Equal(values, tc.wantWrite) {
				t.Fatalf("written %v, want %v", values, tc.wantWrite)
			}
			out.releaseRecorder.mu.Lock()
			defer out.releaseRecorder.mu.Unlock()
			if len(out.released) != tc.released {
				t.Fatalf("%d batches handed back, want %d", len(out.released), tc.released)
			}
		})
	}
}
