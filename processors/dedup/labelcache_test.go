package dedup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// process runs b through d and returns the number of points passed on.
func process(t *testing.T, d *Dedup, b *sdk.Batch) int {
	t.Helper()
	res, err := d.Process(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rb := range res {
		n += len(rb.Points)
	}
	return n
}

// TestLabelSetRewrittenInPlace: a label slice handed in again with other
// contents (a caller that reuses its slices) is another series, never a
// cache hit on the old one.
func TestLabelSetRewrittenInPlace(t *testing.T) {
	d := newTest(nil)
	ls := sdk.Labels{{Key: "gpu_index", Value: "0"}, {Key: "host", Value: "h1"}}
	one := func(ls sdk.Labels, name string, at int64) int {
		b := &sdk.Batch{}
		b.Add(b.AddSeries(name, ls), t0+at, 1)
		return process(t, d, b)
	}
	if one(ls, "m", 0) != 1 || one(ls, "m", 0) != 0 {
		t.Fatal("first copy not passed or second not dropped")
	}
	ls[1].Value = "h2" // rewritten in place: another series
	if one(ls, "m", 0) != 1 {
		t.Fatal("rewritten labels taken for the old series")
	}
	if one(ls, "m", 0) != 0 {
		t.Fatal("copy of the rewritten series passed")
	}
	fresh := sdk.Labels{{Key: "gpu_index", Value: "0"}, {Key: "host", Value: "h1"}}
	if one(fresh, "m", 0) != 0 {
		t.Fatal("the first series under a fresh slice passed again")
	}
	if one(fresh, "other", 0) != 1 || one(ls, "other", 0) != 1 {
		t.Fatal("another name under a cached label set dropped")
	}
	checkConsistent(t, d)
}

// TestLabelSetForgottenSeries: a series whose state was forgotten (idle
// past the window) and that comes back under the same label slice gets a
// new state in the series table, not the forgotten one.
func TestLabelSetForgottenSeries(t *testing.T) {
	d := newTest(func(d *Dedup) { d.Window = sdk.Duration(time.Second) })
	ls := sdk.Labels{{Key: "gpu_index", Value: "0"}}
	batch := func(at int64, names ...string) *sdk.Batch {
		b := &sdk.Batch{}
		for _, n := range names {
			b.Add(b.AddSeries(n, ls), t0+at, 1)
		}
		return b
	}
	process(t, d, batch(0, "a", "b"))
	for i := int64(1); i <= 10; i++ { // a goes idle and is forgotten
		process(t, d, batch(i*sec, "b"))
	}
	if len(d.series) != 1 {
		t.Fatalf("%d series remembered, want 1", len(d.series))
	}
	if process(t, d, batch(10*sec, "a", "b")) != 1 {
		t.Fatal("a's return not passed (or b's copy passed)")
	}
	if process(t, d, batch(10*sec, "a")) != 0 {
		t.Fatal("a's copy passed")
	}
	if len(d.series) != 2 {
		t.Fatalf("%d series remembered, want 2", len(d.series))
	}
	checkConsistent(t, d)
}

// TestLabelSetManyNamesShuffled: many series under one label slice, in a
// new order every batch, with copies.
func TestLabelSetManyNamesShuffled(t *testing.T) {
	d := newTest(nil)
	ls := sdk.Labels{{Key: "host", Value: "h1"}}
	names := make([]string, 3*manyNames)
	for i := range names {
		names[i] = fmt.Sprintf("m%03d", i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range int64(20) {
		for rep := range 2 { // the second is all copies
			r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
			b := &sdk.Batch{}
			for _, n := range names {
				b.Add(b.AddSeries(n, ls), t0+round*sec, 1)
			}
			want := len(names)
			if rep == 1 {
				want = 0
			}
			if got := process(t, d, b); got != want {
				t.Fatalf("round %d copy %d: %d passed, want %d", round, rep, got, want)
			}
		}
	}
	checkConsistent(t, d)
}

// TestLabelSetsBounded: fresh label slices every batch (a caller that is
// not sharing them) do not grow the cache without bound.
func TestLabelSetsBounded(t *testing.T) {
	d := newTest(nil)
	for i := range 2000 {
		b := &sdk.Batch{}
		for g := range 10 {
			b.Add(b.AddSeries("m", sdk.Labels{{Key: "gpu_index", Value: fmt.Sprint(g)}}), t0+int64(i)*sec, 1)
		}
		if got := process(t, d, b); got != 10 {
			t.Fatalf("batch %d: %d passed", i, got)
		}
		if len(d.sets) > 2*len(d.series)+1024+10 {
			t.Fatalf("batch %d: %d label sets cached for %d series", i, len(d.sets), len(d.series))
		}
	}
	checkConsistent(t, d)
}

// TestLabelSetsOffForFreshSlices: a caller that hands in fresh label
// slices every batch turns the sets off (and their memory is let go);
// copies are still dropped; sets come back once slices are shared.
func TestLabelSetsOffForFreshSlices(t *testing.T) {
	d := newTest(nil)
	shared := make([]sdk.Labels, 200)
	for g := range shared {
		shared[g] = sdk.Labels{{Key: "gpu_index", Value: fmt.Sprint(g)}}
	}
	batch := func(at int64, fresh bool) *sdk.Batch {
		b := &sdk.Batch{}
		for g, ls := range shared {
			if fresh {
				ls = append(sdk.Labels(nil), ls...)
			}
			b.Add(b.AddSeries("m", ls), t0+at, float64(g))
		}
		return b
	}
	for i := range int64(40) {
		if got := process(t, d, batch(i*sec, true)); got != len(shared) {
			t.Fatalf("batch %d: %d passed", i, got)
		}
		if got := process(t, d, batch(i*sec, true)); got != 0 {
			t.Fatalf("batch %d again: %d passed", i, got)
		}
		if i >= 2 && len(d.sets) > len(shared) {
			t.Fatalf("batch %d: %d label sets kept for fresh slices", i, len(d.sets))
		}
	}
	if d.setsPause == 0 {
		t.Error("sets never turned off")
	}
	if d.setsOff > 0 && len(d.sets) > 0 {
		t.Errorf("sets off, %d kept", len(d.sets))
	}
	for i := int64(40); i < 1200; i++ {
		if got := process(t, d, batch(i*sec, false)); got != len(shared) {
			t.Fatalf("shared batch %d: %d passed", i, got)
		}
	}
	if len(d.sets) != len(shared) || d.setsOff != 0 || d.setsPause != 0 {
		t.Errorf("sets not back: %d cached, off for %d, pause %d", len(d.sets), d.setsOff, d.setsPause)
	}
	checkConsistent(t, d)
}

// TestLabelSetMatches: a set matches a label slice holding what it was
// made from, whether the headers are the copy's (the fast path) or equal
// strings lying elsewhere, and never one with another length, key or value.
func TestLabelSetMatches(t *testing.T) {
	orig := sdk.Labels{{Key: "gpu_index", Value: "0"}, {Key: "host", Value: "h1"}, {Key: "z", Value: ""}}
	clone := func(ls sdk.Labels) sdk.Labels {
		out := make(sdk.Labels, len(ls))
		for i, l := range ls {
			out[i] = sdk.Label{Key: strings.Clone(l.Key), Value: strings.Clone(l.Value)}
		}
		return out
	}
	with := func(i int, l sdk.Label) sdk.Labels {
		ls := append(sdk.Labels(nil), orig...)
		ls[i] = l
		return ls
	}
	for _, c := range []struct {
		name string
		ls   sdk.Labels
		want bool
	}{
		{"same slice", orig, true},
		{"copied headers", append(sdk.Labels(nil), orig...), true},
		{"equal strings elsewhere", clone(orig), true},
		{"shorter", orig[:2], false},
		{"longer", append(append(sdk.Labels(nil), orig...), sdk.Label{Key: "zz", Value: "1"}), false},
		{"empty", sdk.Labels{}, false},
		{"value changed", with(1, sdk.Label{Key: "host", Value: "h2"}), false},
		{"value same length", with(0, sdk.Label{Key: "gpu_index", Value: "1"}), false},
		{"key changed", with(2, sdk.Label{Key: "y", Value: ""}), false},
		{"value moved into key", with(2, sdk.Label{Key: "", Value: "z"}), false},
	} {
		set := &labelSet{labels: append(sdk.Labels(nil), orig...)}
		if got := set.matches(c.ls); got != c.want {
			t.Errorf("%s: matches = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestLabelSetStale: between two batches the series' label slice is
// rewritten in place, cut short, lengthened within its capacity, replaced,
// or the series is forgotten; the second batch must find the series the
// labels now name, never the state cached under the slice before.
func TestLabelSetStale(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(ls sdk.Labels) sdk.Labels // returns the labels of the second batch
		at     int64                          // time of the second point, from t0 (the first is at t0)
		want   int                            // points passed of the second batch
	}{
		{"unchanged", func(ls sdk.Labels) sdk.Labels { return ls }, 0, 0},
		{"value rewritten", func(ls sdk.Labels) sdk.Labels { ls[1].Value = "h2"; return ls }, 0, 1},
		{"key rewritten", func(ls sdk.Labels) sdk.Labels { ls[0].Key = "gpu_uuid"; return ls }, 0, 1},
		{"rewritten equal", func(ls sdk.Labels) sdk.Labels {
			ls[1].Value = strings.Clone(ls[1].Value)
			return ls
		}, 0, 0},
		{"rewritten and back", func(ls sdk.Labels) sdk.Labels {
			ls[1].Value = "h2"
			ls[1].Value = "h" + fmt.Sprint(1)
			return ls
		}, 0, 0},
		{"same pointer shorter", func(ls sdk.Labels) sdk.Labels { return ls[:1] }, 0, 1},
		{"same pointer longer", func(ls sdk.Labels) sdk.Labels {
			ls = ls[:3]
			ls[2] = sdk.Label{Key: "zone", Value: "a"}
			return ls
		}, 0, 1},
		{"replaced, equal", func(ls sdk.Labels) sdk.Labels { return append(sdk.Labels(nil), ls...) }, 0, 0},
		{"replaced, other", func(ls sdk.Labels) sdk.Labels {
			return sdk.Labels{{Key: "gpu_index", Value: "1"}, {Key: "host", Value: "h1"}}
		}, 0, 1},
		{"new time", func(ls sdk.Labels) sdk.Labels { return ls }, sec, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newTest(nil)
			backing := make(sdk.Labels, 3)
			backing[0], backing[1] = sdk.Label{Key: "gpu_index", Value: "0"}, sdk.Label{Key: "host", Value: "h1"}
			ls := backing[:2]
			one := func(ls sdk.Labels, at int64) int {
				b := &sdk.Batch{}
				b.Add(b.AddSeries("other", ls), t0+at, 1) // the set holds two names
				b.Add(b.AddSeries("m", ls), t0+at, 1)
				return process(t, d, b)
			}
			if one(ls, 0) != 2 || one(ls, 0) != 0 {
				t.Fatal("first point not passed or its copy not dropped")
			}
			ls2 := c.change(ls)
			b := &sdk.Batch{}
			b.Add(b.AddSeries("m", ls2), t0+c.at, 1)
			if got := process(t, d, b); got != c.want {
				t.Fatalf("second batch: %d passed, want %d", got, c.want)
			}
			b = &sdk.Batch{}
			b.Add(b.AddSeries("m", ls2), t0+c.at, 1)
			if got := process(t, d, b); got != 0 {
				t.Fatalf("copy of the second point: %d passed", got)
			}
			checkConsistent(t, d)
		})
	}
}

// checkSetIndex checks that d.setTab indexes exactly d.sets, at most half
// full.
func checkSetIndex(t *testing.T, d *Dedup) {
	t.Helper()
	n := 0
	for _, sl := range d.setTab.slots {
		if sl.at != nil {
			n++
			if d.sets[sl.at] != sl.set {
				t.Fatalf("index holds a set the map does not")
			}
		}
	}
	if n != len(d.sets) || 2*n > len(d.setTab.slots) && n > 0 {
		t.Fatalf("index holds %d sets in %d slots, map %d", n, len(d.setTab.slots), len(d.sets))
	}
	for p, set := range d.sets {
		if got := d.findSet(p); got != set {
			t.Fatalf("findSet: %p, want %p", got, set)
		}
	}
}

// TestSetIndex: the index of label sets follows the map through growth,
// sets remade for rewritten slices, sweeps of unused sets (a swept slice
// is not found again, and its series are found afresh) and the sets
// turning off and on, and every batch dedups as it should meanwhile.
func TestSetIndex(t *testing.T) {
	type step struct {
		name   string
		slices func(round int) []sdk.Labels // the label slices of the round's batch
		rounds int
	}
	mk := func(n int, tag string) []sdk.Labels {
		out := make([]sdk.Labels, n)
		for g := range out {
			out[g] = sdk.Labels{{Key: "gpu_index", Value: fmt.Sprint(g)}, {Key: "tag", Value: tag}}
		}
		return out
	}
	grow := mk(300, "a")   // many slices: the index grows past its first size
	other := mk(50, "b")   // replaces grow: grow's sets are swept
	rewrite := mk(20, "c") // rewritten in place every round
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"grow, then others", []step{
			{"grow", func(r int) []sdk.Labels { return grow[:min(len(grow), 10+10*r)] }, 40},
			{"others", func(int) []sdk.Labels { return other }, 40},
			{"grow again", func(int) []sdk.Labels { return grow }, 5},
		}},
		{"rewritten in place", []step{
			{"rewrite", func(r int) []sdk.Labels {
				for _, ls := range rewrite {
					ls[1].Value = fmt.Sprint("c", r%3)
				}
				return rewrite
			}, 30},
		}},
		{"fresh slices, then shared", []step{ // the sets turn off, then on
			{"fresh", func(int) []sdk.Labels { return mk(200, "d") }, 30},
			{"shared", func(int) []sdk.Labels { return grow }, 60},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newTest(func(d *Dedup) { d.Window = sdk.Duration(5 * time.Second) })
			at := int64(0)
			for _, st := range c.steps {
				for r := range st.rounds {
					at += sec
					ls := st.slices(r)
					b := &sdk.Batch{}
					for _, l := range ls {
						b.Add(b.AddSeries("m", l), t0+at, 1)
						b.Add(b.AddSeries("n", l), t0+at, 1)
					}
					if got := process(t, d, b); got != 2*len(ls) {
						t.Fatalf("%s round %d: %d passed, want %d", st.name, r, got, 2*len(ls))
					}
					b = &sdk.Batch{}
					for _, l := range st.slices(r) {
						b.Add(b.AddSeries("n", l), t0+at, 1)
						b.Add(b.AddSeries("m", l), t0+at, 1)
					}
					if got := process(t, d, b); got != 0 {
						t.Fatalf("%s round %d: %d copies passed", st.name, r, got)
					}
					checkSetIndex(t, d)
				}
			}
			checkConsistent(t, d)
		})
	}
}

// TestLabelSetSameBatch: within one batch, slices with the same address
// and another length (arr[:1], arr[:2]) are other label sets, however they
// alternate; a slice met again later in the batch is its set.
func TestLabelSetSameBatch(t *testing.T) {
	arr := sdk.Labels{{Key: "gpu_index", Value: "0"}, {Key: "host", Value: "h1"}}
	other := sdk.Labels{{Key: "gpu_index", Value: "1"}}
	type ser struct {
		ls   sdk.Labels
		name string
	}
	for _, c := range []struct {
		name    string
		batches [][]ser // each series gets one point at t0
		want    []int   // passed per batch
	}{
		{"long then short", [][]ser{
			{{arr, "m"}},
			{{arr[:1], "m"}, {other, "m"}, {arr, "m"}, {other, "n"}, {arr[:1], "m"}},
		}, []int{1, 3}},
		{"short then long", [][]ser{
			{{arr[:1], "m"}},
			{{arr, "m"}, {other, "m"}, {arr[:1], "m"}, {other, "n"}, {arr, "m"}, {arr[:1], "n"}},
		}, []int{1, 4}},
		{"alternating", [][]ser{
			{{arr, "m"}, {other, "m"}, {arr[:1], "m"}, {other, "n"}, {arr, "m"}, {arr[:1], "m"}},
			{{arr[:1], "m"}, {other, "m"}, {arr, "m"}, {arr[:1], "n"}, {arr, "n"}, {arr[:1], "n"}},
		}, []int{4, 2}},
		{"one slice many times", [][]ser{
			{{arr, "a"}, {other, "a"}, {arr, "b"}, {other, "b"}, {arr, "a"}, {arr, "c"}},
			{{arr, "c"}, {other, "c"}, {arr, "b"}, {other, "a"}, {arr, "d"}},
		}, []int{5, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newTest(nil)
			for i, ss := range c.batches {
				b := &sdk.Batch{}
				for _, s := range ss {
					b.Add(b.AddSeries(s.name, s.ls), t0, 1)
				}
				if got := process(t, d, b); got != c.want[i] {
					t.Fatalf("batch %d: %d passed, want %d", i, got, c.want[i])
				}
				checkSetIndex(t, d)
			}
			checkConsistent(t, d)
		})
	}
}
