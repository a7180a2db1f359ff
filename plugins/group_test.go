package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/testplugins"
	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// memberStats collects ProcessGroup's stat calls.
type memberStats struct {
	mu                     sync.Mutex
	calls, points, retries map[int]int
	spent                  map[int]time.Duration
}

func newMemberStats() *memberStats {
	return &memberStats{calls: map[int]int{}, points: map[int]int{}, retries: map[int]int{}, spent: map[int]time.Duration{}}
}

func (m *memberStats) stat(member, calls, points, retries int, spent time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[member] += calls
	m.points[member] += points
	m.retries[member] += retries
	m.spent[member] += spent
}

func (m *memberStats) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("calls %v points %v retries %v", m.calls, m.points, m.retries)
}

func groupSpec(t *testing.T, a, b string) plugins.Spec {
	return plugins.Spec{Name: "transform", Alias: "a", ConfigJSON: cfg(t, a),
		Group: []plugins.Member{{Name: "transform", Alias: "b", ConfigJSON: cfg(t, b)}}}
}

// TestProcessGroup runs two processors in one real plugin process over
// gRPC: the second gets what the first returned, rejects come back marked
// with the member that made them, and each member's calls, points and
// in-process retries are reported.
func TestProcessGroup(t *testing.T) {
	l := newLauncher(t, nil)
	// a: v*2+1, every 4th point rejected; b: v*10, pieces of 2 points,
	// its first 2 calls fail (retried inside the process).
	p, err := l.Processor(context.Background(), groupSpec(t,
		"tag = 'a'\nscale = 2.0\nadd = 1.0\nreject_every = 4\n",
		"tag = 'b'\nscale = 10.0\nsplit = 2\nfail_times = 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt(t, p)
	st := newMemberStats()
	in := testplugins.SeqBatch(0, 8) // values 0..7
	out, members, failed, err := p.ProcessGroup(context.Background(), in, st.stat)
	if err != nil || failed != -1 {
		t.Fatalf("ProcessGroup: %v (failed member %d)", err, failed)
	}
	var values []float64
	var rejects []string
	finals := 0
	for i, b := range out {
		if len(b.Points) > 0 {
			finals++
			if members[i] != 1 {
				t.Errorf("batch %d with points marked member %d, want 1", i, members[i])
			}
		}
		for _, pt := range b.Points {
			values = append(values, pt.Value)
		}
		for _, r := range b.Rejects {
			rejects = append(rejects, fmt.Sprintf("%d:%s:%s", members[i], r.Reason, r.Raw))
		}
	}
	want := []float64{10, 30, 50, 90, 110, 130} // points 0,1,2,4,5,6 as (v*2+1)*10
	if fmt.Sprint(values) != fmt.Sprint(want) || finals != 3 {
		t.Errorf("values %v in %d batches, want %v in 3", values, finals, want)
	}
	if strings.Join(rejects, " ") != "0:a rejected:3 0:a rejected:7" {
		t.Errorf("rejects %v, want points 3 and 7 rejected by member 0", rejects)
	}
	if st.calls[0] != 1 || st.points[0] != 8 || st.calls[1] != 1 || st.points[1] != 6 || st.retries[1] != 2 || st.retries[0] != 0 {
		t.Errorf("stats %v; want member 0: 1 call, 8 points; member 1: 1 call, 6 points, 2 retries", st)
	}
	if st.spent[1] <= 0 {
		t.Errorf("member 1 spent %v, want > 0", st.spent[1])
	}
}

// TestProcessGroupErrors: a member's permanent failure (or panic) names
// the member; a configuration issue names the member's table; a binary
// that ignores groups is refused.
func TestProcessGroupErrors(t *testing.T) {
	l := newLauncher(t, nil)
	t.Run("permanent", func(t *testing.T) {
		p, err := l.Processor(context.Background(), groupSpec(t, "tag = 'a'\nscale = 1.0\n", "tag = 'b'\nscale = 1.0\nfail_times = 1\nfail_permanent = true\n"))
		if err != nil {
			t.Fatal(err)
		}
		defer closeIt(t, p)
		_, _, failed, err := p.ProcessGroup(context.Background(), testplugins.SeqBatch(0, 2), nil)
		if err == nil || !sdk.IsPermanent(err) || failed != 1 || !strings.Contains(err.Error(), "b: told to fail") {
			t.Fatalf("err %v (permanent %v), failed %d; want member 1's permanent error", err, sdk.IsPermanent(err), failed)
		}
	})
	t.Run("panic", func(t *testing.T) {
		p, err := l.Processor(context.Background(), groupSpec(t, "tag = 'a'\nscale = 1.0\n", "tag = 'b'\nscale = 1.0\npanic_on = 1000.0\n"))
		if err != nil {
			t.Fatal(err)
		}
		defer closeIt(t, p)
		_, _, failed, err := p.ProcessGroup(context.Background(), testplugins.SeqBatch(1, 2), nil)
		if err == nil || !sdk.IsPermanent(err) || failed != 1 || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("err %v, failed %d; want member 1's panic as a permanent error", err, failed)
		}
		// The process survives: the next batch goes through.
		out, _, _, err := p.ProcessGroup(context.Background(), testplugins.SeqBatch(2, 2), nil)
		if err != nil || len(out) != 1 || len(out[0].Points) != 2 {
			t.Fatalf("after the panic: %v %v", out, err)
		}
	})
	t.Run("config issue of the second member", func(t *testing.T) {
		_, err := l.Processor(context.Background(), groupSpec(t, "tag = 'a'\nscale = 1.0\n", "tag = 'b'\nscale = 0.0\n"))
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || len(ce.Issues) != 1 || ce.Issues[0].Member != 1 || ce.Issues[0].Key != "scale" || !sdk.IsPermanent(err) {
			t.Fatalf("err %v, want one permanent issue about member 1's scale", err)
		}
		spec := groupSpec(t, "tag = 'a'\nscale = 0.0\n", "tag = 'b'\nscale = 1.0\nnope = 1\n")
		spec.Kind = plugins.KindProcessor
		issues, err := l.Check(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, is := range issues {
			got = append(got, fmt.Sprintf("%d:%s", is.Member, is.Key))
		}
		sort.Strings(got)
		if strings.Join(got, " ") != "0:scale 1:nope" {
			t.Errorf("check issues %v, want 0:scale and 1:nope", got)
		}
	})
	t.Run("binary without groups", func(t *testing.T) {
		spec := groupSpec(t, "", "")
		spec.Name, spec.Group[0].Name, spec.Command = "passthrough", "passthrough", noGroupsBin
		_, err := l.Processor(context.Background(), spec)
		if err == nil || !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "cannot run process groups") {
			t.Fatalf("err %v, want a permanent refusal", err)
		}
	})
}

// TestProcessGroupCrashReplays: when the group's process is killed, calls
// in flight are replayed on the replacement, which runs every member
// again; Close closes every member.
func TestProcessGroupCrashReplays(t *testing.T) {
	var restarts atomic.Int64
	l := newLauncher(t, &restarts)
	closed := filepath.Join(t.TempDir(), "closed")
	p, err := l.Processor(context.Background(), groupSpec(t,
		"tag = 'a'\nscale = 1.0\nadd = 1.0\nmax_concurrency = 4\nclosed_file = '"+closed+"'\n",
		"tag = 'b'\nscale = 1.0\nmax_concurrency = 8\nclosed_file = '"+closed+"'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxConcurrency() != 4 {
		t.Errorf("MaxConcurrency %d, want 4 (the smaller member limit)", p.MaxConcurrency())
	}
	firstPID := p.PID()
	const n = 200
	results := make([]atomic.Int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, _, _, err := p.ProcessGroup(context.Background(), testplugins.SeqBatch(i, 3), nil)
			if err != nil {
				t.Errorf("batch %d: %v", i, err)
				return
			}
			for _, b := range out {
				if b.Points[0].Value != float64(i*1000)+1 {
					t.Errorf("batch %d: first value %v, want %d (member a ran once)", i, b.Points[0].Value, i*1000+1)
				}
				results[i].Add(1)
			}
		}()
		if i == n/4 {
			if err := syscall.Kill(firstPID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	for i := range results {
		if c := results[i].Load(); c != 1 {
			t.Fatalf("batch %d came back %d times", i, c)
		}
	}
	if restarts.Load() != 1 || p.PID() == firstPID {
		t.Fatalf("restarts %d, pid %d (was %d): want one restart", restarts.Load(), p.PID(), firstPID)
	}
	closeIt(t, p)
	data, err := os.ReadFile(closed)
	if err != nil || string(data) != "a\nb\n" {
		t.Fatalf("closed file %q (%v), want both members closed in order", data, err)
	}
}
