package dedup

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

var t0 = time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC).UnixNano()

// pt is one test point.
type pt struct {
	series string // metric name; label gpu=series suffix after '/'
	t      int64  // offset from t0
	v      float64
}

func seriesOf(s string) (string, sdk.Labels) {
	name, gpu, _ := strings.Cut(s, "/")
	if gpu == "" {
		return name, nil
	}
	return name, sdk.Labels{{Key: "gpu_index", Value: gpu}, {Key: "host", Value: "h1"}}
}

// batchOf builds a batch with one series entry per point (so equal series
// appear under several indexes, as they may in real batches).
func batchOf(pts ...pt) *sdk.Batch {
	b := &sdk.Batch{}
	for _, p := range pts {
		name, ls := seriesOf(p.series)
		b.Add(b.AddSeries(name, ls), t0+p.t, p.v)
	}
	return b
}

// run processes b and returns the points passed on, as pts.
func run(t *testing.T, d *Dedup, b *sdk.Batch) []pt {
	t.Helper()
	res, err := d.Process(context.Background(), b)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	var got []pt
	for _, rb := range res {
		used := make([]bool, len(rb.Series))
		for _, p := range rb.Points {
			s := rb.Series[p.Series]
			used[p.Series] = true
			name := s.Name
			if g, ok := s.Labels.Get("gpu_index"); ok {
				name += "/" + g
			}
			got = append(got, pt{name, p.Time - t0, p.Value})
		}
		for i, u := range used {
			if !u {
				t.Errorf("series %d (%s) left without points", i, rb.Series[i].Name)
			}
		}
	}
	return got
}

// newTest returns a processor whose clock is fixed at t0+1h.
func newTest(cfg func(*Dedup)) *Dedup {
	d := New()
	d.now = func() time.Time { return time.Unix(0, t0).Add(time.Hour) }
	if cfg != nil {
		cfg(d)
	}
	return d
}

const (
	sec = int64(time.Second)
	mn  = int64(time.Minute)
)

func TestDedup(t *testing.T) {
	cases := []struct {
		name    string
		cfg     func(*Dedup)
		batches [][]pt
		want    [][]pt // per batch; nil: batch dropped
		stats   Stats  // only non-zero fields are checked
	}{
		{
			name:    "duplicates within a batch",
			batches: [][]pt{{{"a/0", 0, 1}, {"a/0", 0, 1}, {"a/1", 0, 1}, {"a/0", sec, 2}, {"b/0", 0, 5}, {"a/0", 0, 9}}},
			want:    [][]pt{{{"a/0", 0, 1}, {"a/1", 0, 1}, {"a/0", sec, 2}, {"b/0", 0, 5}}},
			stats:   Stats{Seen: 6, Out: 4, Duplicates: 2, Entries: 4},
		},
		{
			name:    "duplicates across batches; a fully duplicate batch is dropped",
			batches: [][]pt{{{"a/0", 0, 1}, {"a/1", 0, 1}}, {{"a/1", 0, 1}, {"a/0", 0, 1}}, {{"a/0", 0, 1}, {"a/0", sec, 1}}},
			want:    [][]pt{{{"a/0", 0, 1}, {"a/1", 0, 1}}, nil, {{"a/0", sec, 1}}},
			stats:   Stats{Seen: 6, Out: 3, Duplicates: 3},
		},
		{
			name: "late copy within the window is dropped",
			batches: [][]pt{
				{{"a/0", 0, 1}},
				{{"a/0", 5 * mn, 2}},
				{{"a/0", 9*mn + 59*sec, 3}},
				{{"a/0", 0, 1}, {"a/0", 5 * mn, 2}}, // redelivered much later
			},
			want:  [][]pt{{{"a/0", 0, 1}}, {{"a/0", 5 * mn, 2}}, {{"a/0", 9*mn + 59*sec, 3}}, nil},
			stats: Stats{Duplicates: 2},
		},
		{
			name: "copy exactly one window old is still dropped",
			batches: [][]pt{
				{{"a/0", 0, 1}},
				{{"a/0", 10 * mn, 2}},
				{{"a/0", 0, 1}},
			},
			want:  [][]pt{{{"a/0", 0, 1}}, {{"a/0", 10 * mn, 2}}, nil},
			stats: Stats{Duplicates: 1},
		},
		{
			name: "copy older than the window passes",
			batches: [][]pt{
				{{"a/0", 0, 1}},
				{{"a/0", 10*mn + 1, 2}},
				{{"a/0", 0, 1}},
				{{"a/0", 0, 1}},
			},
			want: [][]pt{{{"a/0", 0, 1}}, {{"a/0", 10*mn + 1, 2}}, {{"a/0", 0, 1}}, {{"a/0", 0, 1}}},
			// t0's entry lives on until its bucket (1/16 window) is wholly out.
			stats: Stats{Expired: 2, Entries: 2},
		},
		{
			name: "window option",
			cfg:  func(d *Dedup) { d.Window = sdk.Duration(time.Minute) },
			batches: [][]pt{
				{{"a/0", 0, 1}},
				{{"a/0", 2 * mn, 2}},
				{{"a/0", 0, 1}, {"a/0", 2 * mn, 2}},
			},
			want:  [][]pt{{{"a/0", 0, 1}}, {{"a/0", 2 * mn, 2}}, {{"a/0", 0, 1}}},
			stats: Stats{Expired: 1, Duplicates: 1, Entries: 1},
		},
		{
			name: "out-of-order points inside the window are checked",
			batches: [][]pt{
				{{"a/0", 5 * mn, 1}, {"a/0", 1 * mn, 2}},
				{{"a/0", 1 * mn, 2}, {"a/0", 3 * mn, 3}},
			},
			want:  [][]pt{{{"a/0", 5 * mn, 1}, {"a/0", 1 * mn, 2}}, {{"a/0", 3 * mn, 3}}},
			stats: Stats{Duplicates: 1, Entries: 3},
		},
		{
			name: "a future sample does not move the window past now+window",
			// now is t0+1h: the watermark stops at t0+1h10m, so t0+1h
			// stays inside the window although a point at t0+100h arrived.
			batches: [][]pt{
				{{"a/0", 60 * mn, 1}},
				{{"a/0", 6000 * mn, 2}},
				{{"a/0", 60 * mn, 1}},
			},
			want:  [][]pt{{{"a/0", 60 * mn, 1}}, {{"a/0", 6000 * mn, 2}}, nil},
			stats: Stats{Duplicates: 1},
		},
		{
			name:    "times before 1970",
			batches: [][]pt{{{"a/0", -t0 - 5*sec, 1}, {"a/0", -t0 - 5*sec, 1}, {"a/0", -t0 + 5*sec, 1}}},
			want:    [][]pt{{{"a/0", -t0 - 5*sec, 1}, {"a/0", -t0 + 5*sec, 1}}},
			stats:   Stats{Duplicates: 1},
		},
		{
			name: "max_entries evicts the oldest buckets, counted; their copies pass",
			cfg:  func(d *Dedup) { d.MaxEntries = 3 },
			batches: [][]pt{
				{{"a/0", 0, 1}, {"a/0", mn, 2}, {"a/0", 2 * mn, 3}, {"a/0", 3 * mn, 4}},
				{{"a/0", 0, 1}, {"a/0", 3 * mn, 4}},
			},
			want:  [][]pt{{{"a/0", 0, 1}, {"a/0", mn, 2}, {"a/0", 2 * mn, 3}, {"a/0", 3 * mn, 4}}, {{"a/0", 0, 1}}},
			stats: Stats{Evicted: 1, Expired: 1, Duplicates: 1, Entries: 3},
		},
		{
			name: "suppress_unchanged",
			cfg: func(d *Dedup) {
				d.SuppressUnchanged = true
				d.SuppressMaxAge = sdk.Duration(25 * time.Second)
			},
			batches: [][]pt{
				{{"a/0", 0, 1}, {"a/0", 10 * sec, 1}, {"a/1", 10 * sec, 1}, {"a/0", 20 * sec, 1}, {"a/0", 30 * sec, 2}},
				{{"a/0", 40 * sec, 2}, {"a/0", 60 * sec, 2}, {"a/0", 50 * sec, 2}, {"a/0", 70 * sec, 2}, {"a/0", 80 * sec, 7}},
				{{"a/0", 80 * sec, 7}},
			},
			want: [][]pt{
				{{"a/0", 0, 1}, {"a/1", 10 * sec, 1}, {"a/0", 30 * sec, 2}},
				// 60s: 30s since the last one passed on (>= 25s); 50s: out of order, passes.
				{{"a/0", 60 * sec, 2}, {"a/0", 50 * sec, 2}, {"a/0", 80 * sec, 7}},
				nil,
			},
			stats: Stats{Suppressed: 4, Duplicates: 1},
		},
		{
			name:    "suppression is off by default",
			batches: [][]pt{{{"a/0", 0, 1}, {"a/0", 10 * sec, 1}, {"a/0", 20 * sec, 1}}},
			want:    [][]pt{{{"a/0", 0, 1}, {"a/0", 10 * sec, 1}, {"a/0", 20 * sec, 1}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newTest(c.cfg)
			for i, pts := range c.batches {
				got := run(t, d, batchOf(pts...))
				if !reflect.DeepEqual(got, c.want[i]) {
					t.Fatalf("batch %d: got %v, want %v", i, got, c.want[i])
				}
			}
			got := d.Stats()
			check := func(name string, g, w uint64) {
				if w != 0 && g != w {
					t.Errorf("%s = %d, want %d", name, g, w)
				}
			}
			w := c.stats
			check("Seen", got.Seen, w.Seen)
			check("Out", got.Out, w.Out)
			check("Duplicates", got.Duplicates, w.Duplicates)
			check("Expired", got.Expired, w.Expired)
			check("Evicted", got.Evicted, w.Evicted)
			check("Suppressed", got.Suppressed, w.Suppressed)
			check("Entries", uint64(got.Entries), uint64(w.Entries))
			checkConsistent(t, d)
			if got.Entries > int64(d.MaxEntries) {
				t.Errorf("Entries %d over max_entries %d", got.Entries, d.MaxEntries)
			}
		})
	}
}

// TestSeriesIdentity: the name and every label count; equal series under
// different batch indexes are one series.
func TestSeriesIdentity(t *testing.T) {
	b := &sdk.Batch{}
	l := func(kv ...string) sdk.Labels {
		var ls sdk.Labels
		for i := 0; i < len(kv); i += 2 {
			ls = append(ls, sdk.Label{Key: kv[i], Value: kv[i+1]})
		}
		return ls
	}
	series := []sdk.Series{
		{Name: "m", Labels: l("a", "1")},
		{Name: "m", Labels: l("a", "1")},          // same: dropped
		{Name: "m", Labels: l("a", "1", "b", "")}, // extra label
		{Name: "m", Labels: l("a", "2")},
		{Name: "n", Labels: l("a", "1")},
		{Name: "m", Labels: l("b", "1")},
		{Name: "ma", Labels: l("", "1")}, // not confused with m{a="1"}
		{Name: "m", Labels: nil},
	}
	for _, s := range series {
		b.Add(b.AddSeries(s.Name, s.Labels), t0, 1)
	}
	res, err := newTest(nil).Process(context.Background(), b)
	if err != nil || len(res) != 1 {
		t.Fatal(res, err)
	}
	if len(b.Points) != len(series)-1 || len(b.Series) != len(series)-1 {
		t.Fatalf("got %d points, %d series; want %d", len(b.Points), len(b.Series), len(series)-1)
	}
}

func TestRejectsBadSeriesIndex(t *testing.T) {
	b := batchOf(pt{"a/0", 0, 1})
	b.Add(5, t0, 1)
	d := newTest(nil)
	res, err := d.Process(context.Background(), b)
	if err != nil || len(res) != 1 || len(b.Points) != 1 || len(b.Rejects) != 1 {
		t.Fatalf("res %v err %v batch %+v", res, err, b)
	}
	if d.Stats().Rejected != 1 {
		t.Errorf("Rejected = %d", d.Stats().Rejected)
	}
}

func TestEmptyAndCancelled(t *testing.T) {
	d := newTest(nil)
	if res, err := d.Process(context.Background(), &sdk.Batch{}); res != nil || err != nil {
		t.Errorf("empty batch: %v %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Process(ctx, batchOf(pt{"a/0", 0, 1})); err == nil {
		t.Error("no error with a cancelled context")
	}
}

// TestMemoryBounded: a long stream with a small cap never holds more than
// max_entries, and entries older than the window are pruned.
func TestMemoryBounded(t *testing.T) {
	for _, maxEntries := range []int{50, 100_000} {
		t.Run(fmt.Sprint(maxEntries), func(t *testing.T) {
			d := newTest(func(d *Dedup) { d.MaxEntries = maxEntries; d.Window = sdk.Duration(time.Minute) })
			for i := range 300 { // 300 s of 1 Hz data for 20 series
				var pts []pt
				for g := range 20 {
					pts = append(pts, pt{fmt.Sprintf("a/%d", g), int64(i) * sec, 1})
				}
				run(t, d, batchOf(pts...))
				if e := d.Stats().Entries; e > int64(maxEntries) {
					t.Fatalf("entries %d over %d", e, maxEntries)
				}
			}
			// 1 minute of 20 series at 1 Hz, plus at most one bucket (1/16 mn).
			if e := d.Stats().Entries; e > 20*(60+60/bucketsPerWindow+1) {
				t.Errorf("entries %d: not pruned", e)
			}
			if maxEntries == 50 && d.Stats().Evicted == 0 {
				t.Error("no eviction counted")
			}
			checkConsistent(t, d)
		})
	}
}

// checkConsistent checks the bookkeeping: bucket counts add up to the
// entries, and so do the series' remembered times at or above the floor.
func checkConsistent(t *testing.T, d *Dedup) {
	t.Helper()
	sum := 0
	for i, c := range d.buckets {
		sum += c.n
		if i > 0 && d.buckets[i-1].bn >= c.bn {
			t.Errorf("buckets not ascending: %v", d.buckets)
		}
	}
	times := 0
	for _, s := range d.series {
		ts := s.times.appendTo(nil)
		for i, x := range ts {
			if i > 0 && ts[i-1] >= x {
				t.Errorf("times not ascending: %v", ts)
			}
			if x >= d.floor {
				times++
			}
		}
	}
	if sum != d.entries || times != d.entries {
		t.Errorf("entries %d, bucket counts %d, remembered times %d", d.entries, sum, times)
	}
}

func TestSuppressStateBounded(t *testing.T) {
	d := newTest(func(d *Dedup) {
		d.SuppressUnchanged = true
		d.SuppressMaxAge = sdk.Duration(time.Second)
		d.Window = sdk.Duration(time.Second)
	})
	for i := range 100 { // every series seen once, a second apart
		run(t, d, batchOf(pt{fmt.Sprintf("a/%d", i), int64(i) * sec, 1}))
	}
	if n := len(d.series); n > 5 {
		t.Errorf("state holds %d series", n)
	}
	checkConsistent(t, d)
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*Dedup)
		want []string
	}{
		{"defaults", func(*Dedup) {}, nil},
		{"zero window", func(d *Dedup) { d.Window = 0 }, []string{"window"}},
		{"negative window", func(d *Dedup) { d.Window = sdk.Duration(-time.Second) }, []string{"window"}},
		{"zero max_entries", func(d *Dedup) { d.MaxEntries = 0 }, []string{"max_entries"}},
		{"negative max age", func(d *Dedup) { d.SuppressMaxAge = -1 }, []string{"suppress_max_age"}},
		{"all", func(d *Dedup) { d.Window, d.MaxEntries, d.SuppressMaxAge = 0, -1, 0 },
			[]string{"window", "max_entries", "suppress_max_age"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := New()
			c.cfg(d)
			err := d.Validate()
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if ierr := d.Init(context.Background()); !sdk.IsPermanent(ierr) {
				t.Errorf("Init: %v, want permanent", ierr)
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	decode := func(text string) (*Dedup, error) {
		var doc struct {
			Processors map[string][]toml.Primitive `toml:"processors"`
		}
		md, err := toml.Decode(text, &doc)
		if err != nil {
			return nil, err
		}
		if len(doc.Processors[Name]) != 1 {
			return nil, fmt.Errorf("want one table, got %d", len(doc.Processors[Name]))
		}
		d := New()
		if err := md.PrimitiveDecode(doc.Processors[Name][0], d); err != nil {
			return nil, err
		}
		if un := md.Undecoded(); len(un) > 0 {
			return nil, fmt.Errorf("undecoded keys %v", un)
		}
		return d, d.Validate()
	}
	if _, err := decode(SampleConfig); err != nil {
		t.Fatal(err)
	}
	d, err := decode(strings.ReplaceAll(SampleConfig, "  # ", "  "))
	if err != nil {
		t.Fatal(err)
	}
	if d.Window.D() != 10*time.Minute || d.MaxEntries != 2000000 || d.SuppressUnchanged || d.SuppressMaxAge.D() != 5*time.Minute {
		t.Errorf("decoded %+v", d)
	}
	d, err = decode("[[processors.dedup]]\nwindow = \"30s\"\nsuppress_unchanged = true\nsuppress_max_age = \"1m\"\nmax_entries = 10\n")
	if err != nil || d.Window.D() != 30*time.Second || !d.SuppressUnchanged || d.SuppressMaxAge.D() != time.Minute || d.MaxEntries != 10 {
		t.Errorf("decoded %+v, %v", d, err)
	}
}

// TestConcurrentProcess: concurrent calls are safe (run with -race) and
// every copy is caught once.
func TestConcurrentProcess(t *testing.T) {
	d := newTest(nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				// every worker sends the same 100 points: 4 copies of each
				b := batchOf(pt{fmt.Sprintf("a/%d", i%10), int64(i/10) * sec, 1})
				if _, err := d.Process(context.Background(), b); err != nil {
					t.Errorf("worker %d: %v", w, err)
				}
				_ = d.Stats()
			}
		}()
	}
	wg.Wait()
	if s := d.Stats(); s.Seen != 400 || s.Out != 100 || s.Duplicates != 300 {
		t.Errorf("stats %+v", s)
	}
}

// TestNoAllocSteadyState: with time moving on, a warm processor allocates
// about once per batch (the returned slice), not per point.
func TestNoAllocSteadyState(t *testing.T) {
	tmpl := syntheticBatch(64, 10)
	d := newTest(func(d *Dedup) { d.Window = sdk.Duration(10 * time.Second) })
	b := &sdk.Batch{Series: make([]sdk.Series, len(tmpl.Series)), Points: make([]sdk.Point, len(tmpl.Points))}
	step := int64(0)
	next := func() {
		b.Series = append(b.Series[:0], tmpl.Series...)
		b.Points = append(b.Points[:0], tmpl.Points...)
		for i := range b.Points {
			b.Points[i].Time += step
		}
		step += sec
	}
	for range 40 { // warm: fill the window, recycle buckets
		next()
		if _, err := d.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(50, func() {
		next()
		if _, err := d.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("%v allocations per batch of %d points", allocs, len(tmpl.Points))
	}
}

// TestHashClash: two series whose first 64 hash bits collide are kept apart.
func TestHashClash(t *testing.T) {
	d := newTest(nil)
	if err := d.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	ka, kb := key{1, 2}, key{1, 3}
	sa := d.add(ka)
	if d.lookup(kb) != nil {
		t.Fatal("clashing key found before it was added")
	}
	sb := d.add(kb)
	if d.lookup(ka) != sa || d.lookup(kb) != sb || sa == sb {
		t.Fatal("clashing keys confused")
	}
	d.forget(sb)
	if d.lookup(kb) != nil || d.lookup(ka) != sa {
		t.Fatal("forget removed the wrong state")
	}
	d.forget(sa)
	if d.lookup(ka) != nil || len(d.series)+len(d.clash) != 0 {
		t.Fatal("state left")
	}
}

// TestLeavesReceivedLabelsAlone backs ReadsLabelsOnly.
func TestLeavesReceivedLabelsAlone(t *testing.T) {
	d := newTest(nil)
	shared := sdk.Labels{{Key: "gpu_uuid", Value: "GPU-1"}, {Key: "host", Value: "h1"}}
	before := append(sdk.Labels(nil), shared...)
	for i := 0; i < 2; i++ { // the second batch is all duplicates
		b := &sdk.Batch{}
		b.Add(b.AddSeries("gpu_power_watts", shared), t0, 1)
		b.Add(b.AddSeries("gpu_temperature_celsius", shared), t0, 2)
		if _, err := d.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if !d.ReadsLabelsOnly() || shared.String() != before.String() {
		t.Fatalf("received labels changed: %v -> %v", before, shared)
	}
}
