package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
)

// stepProc is a processor for the group tests: value*scale+add on every
// point, every rejectEvery-th point rejected, pieces of at most split
// points, the first fail calls failing (permanent with perm).
type stepProc struct {
	tag               string
	scale, add        float64
	rejectEvery       int
	split             int
	fail              int
	perm, drop, panik bool
	calls             int
	seen              []int // points per call
}

func (p *stepProc) Process(_ context.Context, b *Batch) ([]*Batch, error) {
	p.calls++
	if p.calls <= p.fail {
		err := errors.New(p.tag + " failed")
		if p.perm {
			err = Permanent(err)
		}
		return nil, err
	}
	if p.panik {
		panic("boom")
	}
	p.seen = append(p.seen, len(b.Points))
	if p.drop {
		return nil, nil
	}
	kept := b.Points[:0]
	for i, pt := range b.Points {
		if p.rejectEvery > 0 && (i+1)%p.rejectEvery == 0 {
			b.Rejects = append(b.Rejects, Reject{Reason: p.tag})
			continue
		}
		pt.Value = pt.Value*p.scale + p.add
		kept = append(kept, pt)
	}
	b.Points = kept
	if p.split <= 0 || len(b.Points) <= p.split {
		return []*Batch{b}, nil
	}
	var out []*Batch
	for s := 0; s < len(b.Points); s += p.split {
		out = append(out, &Batch{Series: b.Series, Points: append([]Point(nil), b.Points[s:min(s+p.split, len(b.Points))]...)})
	}
	out[0].Rejects = b.Rejects
	return out, nil
}

func testGroup(ps ...*stepProc) *group {
	g := &group{retryInitial: time.Millisecond, retryMax: 4 * time.Millisecond}
	for _, p := range ps {
		g.members = append(g.members, groupMember{alias: p.tag, p: p, log: hclog.NewNullLogger()})
	}
	return g
}

func groupBatch(n int) *Batch {
	b := &Batch{Series: []Series{{Name: "m"}}}
	for i := range n {
		b.Points = append(b.Points, Point{Series: 0, Time: int64(i), Value: float64(i)})
	}
	return b
}

func TestGroupRun(t *testing.T) {
	tests := []struct {
		name        string
		a, b        stepProc
		points      int
		wantValues  []float64 // of the final batches, in order
		wantBatches int       // final batches (member 1)
		wantRejects []string  // reasons, batch by batch, with the member index
		wantMembers []uint32
		wantCalls   []uint64
		wantPoints  []uint64
		wantRetries []uint64
		wantErr     string
		wantFailed  int
		permanent   bool
	}{
		{
			name: "in order", a: stepProc{tag: "a", scale: 2, add: 1}, b: stepProc{tag: "b", scale: 10}, points: 3,
			wantValues: []float64{10, 30, 50}, wantBatches: 1, wantMembers: []uint32{1},
			wantCalls: []uint64{1, 1}, wantPoints: []uint64{3, 3}, wantRetries: []uint64{0, 0},
		},
		{
			name: "rejects of the first member travel apart, marked", a: stepProc{tag: "a", scale: 1, rejectEvery: 2}, b: stepProc{tag: "b", scale: 1, rejectEvery: 3}, points: 6,
			// a rejects points 1,3,5 (values 1,3,5); b gets 0,2,4 and rejects its 3rd (4).
			wantValues: []float64{0, 2}, wantBatches: 1, wantRejects: []string{"0:a,a,a", "1:b"}, wantMembers: []uint32{0, 1},
			wantCalls: []uint64{1, 1}, wantPoints: []uint64{6, 3}, wantRetries: []uint64{0, 0},
		},
		{
			name: "a split runs the next member once per piece", a: stepProc{tag: "a", scale: 1, split: 2}, b: stepProc{tag: "b", scale: 1, add: 100}, points: 5,
			wantValues: []float64{100, 101, 102, 103, 104}, wantBatches: 3, wantMembers: []uint32{1, 1, 1},
			wantCalls: []uint64{1, 3}, wantPoints: []uint64{5, 5}, wantRetries: []uint64{0, 0},
		},
		{
			name: "a drop ends the batch's way", a: stepProc{tag: "a", scale: 1, drop: true}, b: stepProc{tag: "b", scale: 1}, points: 4,
			wantCalls: []uint64{1, 0}, wantPoints: []uint64{4, 0}, wantRetries: []uint64{0, 0},
		},
		{
			name: "all rejected: nothing for the next member", a: stepProc{tag: "a", scale: 1, rejectEvery: 1}, b: stepProc{tag: "b", scale: 1}, points: 2,
			wantRejects: []string{"0:a,a"}, wantMembers: []uint32{0},
			wantCalls: []uint64{1, 0}, wantPoints: []uint64{2, 0}, wantRetries: []uint64{0, 0},
		},
		{
			name: "the first member's retryable error goes to the agent", a: stepProc{tag: "a", scale: 1, fail: 1}, b: stepProc{tag: "b", scale: 1}, points: 2,
			wantErr: "a: a failed", wantFailed: 0,
			wantCalls: []uint64{1, 0}, wantPoints: []uint64{2, 0}, wantRetries: []uint64{0, 0},
		},
		{
			name: "a later member's retryable errors are retried in the process", a: stepProc{tag: "a", scale: 2}, b: stepProc{tag: "b", scale: 1, add: 1, fail: 3}, points: 2,
			wantValues: []float64{1, 3}, wantBatches: 1, wantMembers: []uint32{1},
			wantCalls: []uint64{1, 1}, wantPoints: []uint64{2, 2}, wantRetries: []uint64{0, 3},
		},
		{
			name: "a later member's permanent error ends the call", a: stepProc{tag: "a", scale: 1}, b: stepProc{tag: "b", scale: 1, fail: 1, perm: true}, points: 2,
			wantErr: "b: b failed", wantFailed: 1, permanent: true,
			wantCalls: []uint64{1, 1}, wantPoints: []uint64{2, 2}, wantRetries: []uint64{0, 0},
		},
		{
			name: "a panic is a permanent error of the member", a: stepProc{tag: "a", scale: 1}, b: stepProc{tag: "b", scale: 1, panik: true}, points: 2,
			wantErr: "processor panicked", wantFailed: 1, permanent: true,
			wantCalls: []uint64{1, 1}, wantPoints: []uint64{2, 2}, wantRetries: []uint64{0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.a, tt.b
			g := testGroup(&a, &b)
			out, members, st, failed, err := g.run(context.Background(), groupBatch(tt.points))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if failed != tt.wantFailed || IsPermanent(err) != tt.permanent {
					t.Errorf("failed member %d permanent %v, want %d %v", failed, IsPermanent(err), tt.wantFailed, tt.permanent)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st.calls, tt.wantCalls) || !slices.Equal(st.points, tt.wantPoints) || !slices.Equal(st.retries, tt.wantRetries) {
				t.Errorf("stats calls %v points %v retries %v, want %v %v %v", st.calls, st.points, st.retries, tt.wantCalls, tt.wantPoints, tt.wantRetries)
			}
			if len(out) != len(members) {
				t.Fatalf("%d batches, %d member marks", len(out), len(members))
			}
			var values []float64
			var rejects []string
			finals := 0
			for i, ob := range out {
				if members[i] == 1 && len(ob.Points) > 0 {
					finals++
				}
				for _, p := range ob.Points {
					values = append(values, p.Value)
				}
				if len(ob.Rejects) > 0 {
					var rs []string
					for _, r := range ob.Rejects {
						rs = append(rs, r.Reason)
					}
					rejects = append(rejects, string(rune('0'+members[i]))+":"+strings.Join(rs, ","))
				}
			}
			if !slices.Equal(values, tt.wantValues) || finals != tt.wantBatches {
				t.Errorf("values %v in %d batches, want %v in %d", values, finals, tt.wantValues, tt.wantBatches)
			}
			if strings.Join(rejects, "|") != strings.Join(tt.wantRejects, "|") {
				t.Errorf("rejects %v, want %v", rejects, tt.wantRejects)
			}
			if tt.wantErr == "" && !slices.Equal(members, tt.wantMembers) {
				t.Errorf("members %v, want %v", members, tt.wantMembers)
			}
		})
	}
}

// TestGroupRetryStopsWithContext: a later member that keeps failing is
// retried until the call's context ends, then the call fails retryably.
func TestGroupRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := stepProc{tag: "a", scale: 1}
	b := &cancelAfter{n: 3, cancel: cancel}
	g := testGroup(&a)
	g.members = append(g.members, groupMember{alias: "b", p: b, log: hclog.NewNullLogger()})
	_, _, st, failed, err := g.run(ctx, groupBatch(1))
	if err == nil || IsPermanent(err) || failed != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v (permanent %v), failed %d; want a retryable error of member 1 ending with the context", err, IsPermanent(err), failed)
	}
	if st.retries[1] != 2 || b.calls != 3 || a.calls != 1 {
		t.Errorf("member 1 retried %d times in %d calls, member 0 called %d times; want 2, 3 and 1", st.retries[1], b.calls, a.calls)
	}
}

// cancelAfter always fails (retryably), and cancels the call's context on
// its n-th call.
type cancelAfter struct {
	n, calls int
	cancel   context.CancelFunc
}

func (c *cancelAfter) Process(context.Context, *Batch) ([]*Batch, error) {
	c.calls++
	if c.calls == c.n {
		c.cancel()
	}
	return nil, errors.New("unavailable")
}

func TestGroupBackoff(t *testing.T) {
	g := &group{retryInitial: 100 * time.Millisecond, retryMax: 30 * time.Second}
	for attempt, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 30 * time.Second} {
		if attempt == 3 {
			attempt = 40 // far past the cap: no overflow
		}
		for range 20 {
			if d := g.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

// TestGroupAbilities: the group is as concurrent as its least concurrent
// member, and a LabelReader or BatchReleaser only if every member is.
func TestGroupAbilities(t *testing.T) {
	type caps struct {
		conc        int
		labels, rel bool
	}
	mk := func(c caps) Processor { return &capsProc{c.conc, c.labels, c.rel} }
	tests := []struct {
		a, b             caps
		conc             int
		labels, releases bool
	}{
		{caps{4, true, true}, caps{2, true, true}, 2, true, true},
		{caps{0, true, false}, caps{8, true, true}, 1, true, false},
		{caps{3, false, true}, caps{3, true, true}, 3, false, true},
	}
	for _, tt := range tests {
		g := &group{members: []groupMember{{p: mk(tt.a)}, {p: mk(tt.b)}}}
		if g.MaxConcurrency() != tt.conc || g.ReadsLabelsOnly() != tt.labels || g.ReleasesBatches() != tt.releases {
			t.Errorf("%v+%v: conc %d labels %v releases %v, want %d %v %v", tt.a, tt.b,
				g.MaxConcurrency(), g.ReadsLabelsOnly(), g.ReleasesBatches(), tt.conc, tt.labels, tt.releases)
		}
	}
}

type capsProc struct {
	conc        int
	labels, rel bool
}

func (c *capsProc) Process(_ context.Context, b *Batch) ([]*Batch, error) { return []*Batch{b}, nil }
func (c *capsProc) MaxConcurrency() int                                   { return c.conc }
func (c *capsProc) ReadsLabelsOnly() bool                                 { return c.labels }
func (c *capsProc) ReleasesBatches() bool                                 { return c.rel }

// cfgProc is a configurable processor for the Configure tests.
type cfgProc struct {
	Scale  float64 `toml:"scale"`
	InitOK bool    `toml:"init_ok"`
	closed *[]string
	alias  string
}

func (c *cfgProc) SetEnvironment(env Environment) { c.alias = env.Alias }
func (c *cfgProc) Validate() error {
	if c.Scale == 0 {
		return &ConfigIssue{Key: "scale", Message: "must not be 0"}
	}
	return nil
}
func (c *cfgProc) Init(context.Context) error {
	if !c.InitOK {
		return Permanent(errors.New("init refused"))
	}
	return nil
}
func (c *cfgProc) Close(context.Context) error {
	*c.closed = append(*c.closed, c.alias)
	return nil
}
func (c *cfgProc) Process(_ context.Context, b *Batch) ([]*Batch, error) {
	for i := range b.Points {
		b.Points[i].Value *= c.Scale
	}
	return []*Batch{b}, nil
}

// TestConfigureGroup: a process group is configured member by member;
// issues name their member, a binary without a member's plugin refuses,
// an Init failure closes the members initialised before it, and a
// configured group runs its members in order.
func TestConfigureGroup(t *testing.T) {
	var closed []string
	regs := []Registration{
		{Name: "p", Kind: KindProcessor, New: func() any { return &cfgProc{closed: &closed} }},
		{Name: "out", Kind: KindOutput, New: func() any { return &discardOut{} }},
	}
	member := func(name, alias, cfg string) *pluginpb.GroupMember {
		return &pluginpb.GroupMember{Name: name, Alias: alias, ConfigJson: []byte(cfg)}
	}
	tests := []struct {
		name      string
		req       *pluginpb.ConfigureRequest
		wantErr   string
		wantIssue string // "member:key:message"
		wantSize  uint32
		wantClose string
	}{
		{name: "ok", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", Alias: "a", ConfigJson: []byte(`{"scale":2,"init_ok":true}`),
			Group: []*pluginpb.GroupMember{member("p", "b", `{"scale":3,"init_ok":true}`)}}, wantSize: 2},
		{name: "check only", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", Alias: "a", ConfigJson: []byte(`{"scale":2}`), CheckOnly: true,
			Group: []*pluginpb.GroupMember{member("p", "b", `{"scale":3}`)}}, wantSize: 2},
		{name: "issue of the second member", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", ConfigJson: []byte(`{"scale":2}`),
			Group: []*pluginpb.GroupMember{member("p", "b", `{"scale":0}`)}}, wantIssue: "1:scale:must not be 0"},
		{name: "unknown key of the second member", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", ConfigJson: []byte(`{"scale":2}`),
			Group: []*pluginpb.GroupMember{member("p", "b", `{"scale":1,"bogus":1}`)}}, wantIssue: "1:bogus:"},
		{name: "no such member plugin", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", ConfigJson: []byte(`{"scale":2}`),
			Group: []*pluginpb.GroupMember{member("nope", "", `{}`)}}, wantErr: `member 1: this binary has no processor plugin "nope"`},
		{name: "an output member", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", ConfigJson: []byte(`{"scale":2}`),
			Group: []*pluginpb.GroupMember{member("out", "", `{}`)}}, wantErr: `no processor plugin "out"`},
		{name: "not processors", req: &pluginpb.ConfigureRequest{Name: "out", Kind: "output",
			Group: []*pluginpb.GroupMember{member("out", "", `{}`)}}, wantErr: "a process group runs processors"},
		{name: "init failure closes the initialised members", req: &pluginpb.ConfigureRequest{Name: "p", Kind: "processor", Alias: "a", ConfigJson: []byte(`{"scale":2,"init_ok":true}`),
			Group: []*pluginpb.GroupMember{member("p", "b", `{"scale":3}`)}}, wantErr: "b: init refused", wantClose: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed = nil
			s := newServer(hclog.NewNullLogger(), regs)
			resp, err := s.Configure(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			var issues []string
			for _, is := range resp.GetIssues() {
				issues = append(issues, fmt.Sprintf("%d:%s:%s", is.GetMember(), is.GetKey(), is.GetMessage()))
			}
			switch {
			case tt.wantIssue != "":
				if len(issues) != 1 || !strings.HasPrefix(issues[0], tt.wantIssue) || !resp.GetPermanent() {
					t.Fatalf("issues %v (permanent %v), want one starting %q", issues, resp.GetPermanent(), tt.wantIssue)
				}
			case tt.wantErr != "":
				if !strings.Contains(resp.GetError(), tt.wantErr) || len(issues) > 0 {
					t.Fatalf("error %q issues %v, want %q", resp.GetError(), issues, tt.wantErr)
				}
			default:
				if resp.GetError() != "" || len(issues) > 0 || resp.GetGroupSize() != tt.wantSize {
					t.Fatalf("error %q issues %v size %d, want size %d", resp.GetError(), issues, resp.GetGroupSize(), tt.wantSize)
				}
			}
			if strings.Join(closed, ",") != tt.wantClose {
				t.Errorf("closed %v, want %q", closed, tt.wantClose)
			}
			if tt.name != "ok" {
				return
			}
			v, _, err := s.plugin(KindProcessor)
			if err != nil {
				t.Fatal(err)
			}
			out, err := v.(Processor).Process(context.Background(), groupBatch(2))
			if err != nil || len(out) != 1 || out[0].Points[1].Value != 6 {
				t.Fatalf("Process: %v %v, want the value 1 scaled by 2 then 3", out, err)
			}
			if err := s.closeAll(context.Background()); err != nil || strings.Join(closed, ",") != "a,b" {
				t.Errorf("close: %v, closed %v; want a,b", err, closed)
			}
		})
	}
}

type discardOut struct{}

func (discardOut) Write(context.Context, *Batch) error { return nil }
