package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// fakeGroup is an in-process GroupProcessor: it runs its member functions
// in order as a process group's plugin does (rejects of a member travel in
// a batch of their own, marked with the member), and fails as told.
type fakeGroup struct {
	members []func(*sdk.Batch) ([]*sdk.Batch, error)
	// fail, if set, is asked before each call: a non-nil error fails the
	// call as member failed.
	fail   func(call int) (failed int, err error)
	calls  atomic.Int32
	closed atomic.Bool
}

func (g *fakeGroup) Process(context.Context, *sdk.Batch) ([]*sdk.Batch, error) {
	return nil, errors.New("the agent must call ProcessGroup")
}

func (g *fakeGroup) Close(context.Context) error { g.closed.Store(true); return nil }

func (g *fakeGroup) ProcessGroup(_ context.Context, b *sdk.Batch, stat func(member, calls, points, retries int, spent time.Duration)) ([]*sdk.Batch, []int, int, error) {
	n := int(g.calls.Add(1))
	if g.fail != nil {
		if failed, err := g.fail(n); err != nil {
			for i := 0; i <= failed && i < len(g.members); i++ {
				stat(i, 1, len(b.Points), 0, time.Millisecond)
			}
			return nil, nil, failed, err
		}
	}
	var out []*sdk.Batch
	var members []int
	cur := []*sdk.Batch{b}
	for i, fn := range g.members {
		var next []*sdk.Batch
		points := 0
		for _, x := range cur {
			points += len(x.Points)
			res, err := fn(x)
			if err != nil {
				return nil, nil, i, err
			}
			for _, r := range res {
				if len(r.Rejects) > 0 && i < len(g.members)-1 {
					out, members = append(out, &sdk.Batch{Rejects: r.Rejects}), append(members, i)
					r.Rejects = nil
				}
				next = append(next, r)
			}
		}
		stat(i, len(cur), points, i, time.Millisecond) // member i "retried" i times
		cur = next
	}
	for _, r := range cur {
		out, members = append(out, r), append(members, len(g.members)-1)
	}
	return out, members, -1, nil
}

// scaleAndReject multiplies values by k and rejects points whose value
// (before) equals bad.
func scaleAndReject(k, bad float64, reason string) func(*sdk.Batch) ([]*sdk.Batch, error) {
	return func(b *sdk.Batch) ([]*sdk.Batch, error) {
		kept := b.Points[:0]
		for _, p := range b.Points {
			if p.Value == bad {
				b.Reject(reason, "", nil)
				continue
			}
			p.Value *= k
			kept = append(kept, p)
		}
		b.Points = kept
		return []*sdk.Batch{b}, nil
	}
}

// deliverThroughGroup starts an agent whose processors a and b are the
// process group g, in front of one output, emits b and waits until it is
// delivered (acknowledged OK).
func deliverThroughGroup(t *testing.T, g *fakeGroup, b *sdk.Batch) (*harness, *testOutput) {
	t.Helper()
	out := &testOutput{}
	h := start(t, setup{
		order: []string{"a", "b"}, group: "gpu",
		outputs: []conf.Plugin{outputPlugin("pg", nil)},
		outImpl: map[string]sdk.Output{"pg": out},
		factory: func(f *fakeFactory) { f.groups["processors.a"] = g },
	})
	h.emit(t, 1, b)
	h.acks.wait(t, 1, 5*time.Second)
	if d, _ := h.acks.get(1); !d.OK {
		t.Fatalf("delivery %+v", d)
	}
	return h, out
}

// TestProcessGroupStage: a process group is one stage; metrics, rejects
// and restarts are counted under each member's ID.
func TestProcessGroupStage(t *testing.T) {
	g := &fakeGroup{members: []func(*sdk.Batch) ([]*sdk.Batch, error){
		scaleAndReject(2, 3, "a refused"),  // values 0..5 -> 0,2,4,8,10 (3 rejected)
		scaleAndReject(10, 8, "b refused"), // 8 (was 4) rejected
	}}
	h, out := deliverThroughGroup(t, g, batchOf(0, 6))
	h.a.PluginRestarted("a") // the launcher names a group by its first member
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	_, values := out.snapshot()
	if fmt.Sprint(values) != "[0 20 40 100]" {
		t.Errorf("stored %v, want [0 20 40 100] (both members, in order)", values)
	}
	reg := h.a.Registry()
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"collector_samples_processed_total", map[string]string{"plugin": "processors.a"}, 6},
		{"collector_samples_processed_total", map[string]string{"plugin": "processors.b"}, 5},
		{"collector_messages_processed_total", map[string]string{"plugin": "processors.b"}, 1},
		{"collector_processing_time_seconds", map[string]string{"plugin": "processors.b"}, 1},
		{"collector_errors_total", map[string]string{"plugin": "processors.a", "type": errTypeReject}, 1},
		{"collector_errors_total", map[string]string{"plugin": "processors.b", "type": errTypeReject}, 1},
		{"collector_errors_total", map[string]string{"plugin": "processors.b", "type": errTypeRetryable}, 1},
		{"collector_dead_letter_total", map[string]string{"plugin": "processors.a"}, 1},
		{"collector_dead_letter_total", map[string]string{"plugin": "processors.b"}, 1},
		{"collector_plugin_restarts_total", map[string]string{"plugin": "processors.a"}, 1},
		{"collector_plugin_restarts_total", map[string]string{"plugin": "processors.b"}, 1},
	} {
		if got := metricValue(t, reg, c.metric, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	byReason := map[string]string{}
	for _, r := range readDeadLetter(t, h.dir) {
		byReason[r["reason"].(string)] = r["plugin"].(string)
	}
	if byReason["a refused"] != "processors.a" || byReason["b refused"] != "processors.b" {
		t.Errorf("dead-letter records by reason: %v", byReason)
	}
	if !g.closed.Load() {
		t.Error("the group was not closed")
	}
}

// TestProcessGroupFailures: a retryable failure is retried and counted
// under the member that failed; a permanent one dead-letters the batch the
// group was given, under that member.
func TestProcessGroupFailures(t *testing.T) {
	tests := []struct {
		name     string
		fail     func(call int) (int, error)
		wantType string
		wantDL   bool
		plugin   string
	}{
		{name: "retryable, first member", fail: func(call int) (int, error) {
			if call == 1 {
				return 0, errors.New("enrichment service unavailable")
			}
			return 0, nil
		}, wantType: errTypeRetryable, plugin: "processors.a"},
		{name: "permanent, second member", fail: func(int) (int, error) {
			return 1, sdk.Permanent(errors.New("b: schema conflict"))
		}, wantType: errTypePermanent, wantDL: true, plugin: "processors.b"},
		{name: "not a member's", fail: func(int) (int, error) {
			return -1, sdk.Permanent(errors.New("malformed result"))
		}, wantType: errTypePermanent, wantDL: true, plugin: "processors.a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeGroup{members: []func(*sdk.Batch) ([]*sdk.Batch, error){scaleAndReject(1, -1, ""), scaleAndReject(1, -1, "")}, fail: tc.fail}
			h, out := deliverThroughGroup(t, g, batchOf(0, 3))
			if err := h.stop(t); err != nil {
				t.Fatal(err)
			}
			if got := metricValue(t, h.a.Registry(), "collector_errors_total", map[string]string{"plugin": tc.plugin, "type": tc.wantType}); got != 1 {
				t.Errorf("errors{%s,%s} = %v, want 1", tc.plugin, tc.wantType, got)
			}
			writes, _ := out.snapshot()
			if tc.wantDL {
				recs := readDeadLetter(t, h.dir)
				if len(recs) != 1 || recs[0]["plugin"] != tc.plugin || recs[0]["points"] != float64(3) || writes != 0 {
					t.Fatalf("dead-letter %v, writes %d; want the group's input batch under %s", recs, writes, tc.plugin)
				}
			} else if writes != 1 || g.calls.Load() != 2 {
				t.Fatalf("writes %d, group calls %d; want the retry to get through", writes, g.calls.Load())
			}
		})
	}
}

// TestProcessGroupNeedsGroupFactory: a configuration with a process
// group fails to start, naming the group, with a factory that cannot run
// groups.
func TestProcessGroupNeedsGroupFactory(t *testing.T) {
	cfg := &conf.Config{Agent: conf.Agent{DeadLetterDir: t.TempDir(), ShutdownTimeout: time.Second}}
	cfg.Inputs = []conf.Plugin{{Kind: conf.KindInput, Name: "test"}}
	cfg.Processors = []conf.Plugin{{Kind: conf.KindProcessor, Name: "a", ProcessGroup: "gpu"}, {Kind: conf.KindProcessor, Name: "b", ProcessGroup: "gpu"}}
	cfg.Outputs = []conf.Plugin{outputPlugin("pg", nil)}
	f := &fakeFactory{inputs: map[string]sdk.Input{"inputs.test": newTestInput()}, outputs: map[string]sdk.Output{"outputs.pg": &testOutput{}}}
	a, err := New(cfg, struct{ Factory }{f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `process_group "gpu"`) || !strings.Contains(err.Error(), "cannot run process groups") {
		t.Fatalf("Run: %v", err)
	}
}
