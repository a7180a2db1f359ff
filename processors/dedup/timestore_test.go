package dedup

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// storeOp is one step on a timeStore: insert t (dup: t is expected to be
// stored already), or with drop, dropBelow(t).
type storeOp struct {
	t    int64
	dup  bool
	drop bool
}

func ins(ts ...int64) []storeOp {
	ops := make([]storeOp, len(ts))
	for i, t := range ts {
		ops[i] = storeOp{t: t}
	}
	return ops
}

func dup(ts ...int64) []storeOp {
	ops := ins(ts...)
	for i := range ops {
		ops[i].dup = true
	}
	return ops
}

func drop(t int64) []storeOp { return []storeOp{{t: t, drop: true}} }

func seq(parts ...[]storeOp) []storeOp { return slices.Concat(parts...) }

// checkStore checks s against the reference set want (ascending): the same
// times, and the form's invariants.
func checkStore(t *testing.T, s *timeStore, want []int64) {
	t.Helper()
	if got := s.appendTo(nil); !slices.Equal(got, want) {
		t.Fatalf("times %v, want %v", got, want)
	}
	if s.len() != len(want) {
		t.Fatalf("len %d, want %d", s.len(), len(want))
	}
	for i, x := range want {
		if got := s.at(i); got != x {
			t.Fatalf("at(%d) = %d, want %d", i, got, x)
		}
	}
	switch s.unit {
	case wideUnit:
		if len(s.offs)%2 != 0 {
			t.Fatalf("wide store with %d offs", len(s.offs))
		}
	default:
		if !slices.Contains(storeUnits[:], s.unit) {
			t.Fatalf("unit %d", s.unit)
		}
		for i := 1; i < len(s.offs); i++ {
			if s.offs[i-1] >= s.offs[i] {
				t.Fatalf("offsets not ascending: %v", s.offs)
			}
		}
		for _, x := range want { // every stored time is exactly base + off*unit
			if off, ok := s.encode(x); !ok || s.base+int64(off)*s.unit != x {
				t.Fatalf("time %d does not encode (base %d, unit %d)", x, s.base, s.unit)
			}
		}
	}
}

// applyOps runs ops on s, checking each step against a reference set.
func applyOps(t *testing.T, s *timeStore, ref map[int64]bool, ops []storeOp, checkDup bool) {
	t.Helper()
	for k, op := range ops {
		if op.drop {
			s.dropBelow(op.t)
			for x := range ref {
				if x < op.t {
					delete(ref, x)
				}
			}
		} else {
			isNew := s.insert(op.t)
			if isNew == ref[op.t] {
				t.Fatalf("op %d: insert(%d) = %v, but stored already: %v", k, op.t, isNew, ref[op.t])
			}
			if checkDup && isNew == op.dup {
				t.Fatalf("op %d: insert(%d) = %v, want %v", k, op.t, isNew, !op.dup)
			}
			ref[op.t] = true
		}
		want := make([]int64, 0, len(ref))
		for x := range ref {
			want = append(want, x)
		}
		slices.Sort(want)
		checkStore(t, s, want)
	}
}

func TestTimeStore(t *testing.T) {
	const (
		ns = int64(1)
		us = int64(time.Microsecond)
		ms = int64(time.Millisecond)
		s  = int64(time.Second)
		y  = 365 * 24 * int64(time.Hour)
	)
	T := t0 + 123_456_789 // not a whole second: offsets count from the first time
	cases := []struct {
		name     string
		ops      []storeOp
		wantUnit int64 // after the ops
	}{
		{"empty", nil, wideUnit},
		{"one", ins(T), s},
		{"in order, seconds", seq(ins(T, T+s, T+2*s, T+3*s), dup(T+3*s, T, T+s)), s},
		{"not a multiple: milliseconds", seq(ins(T, T+s, T+1500*ms, T+2*s), dup(T+1500*ms, T+s)), ms},
		{"not a multiple: microseconds", seq(ins(T, T+s, T+s+us), dup(T+s+us)), us},
		{"not a multiple: nanoseconds", seq(ins(T, T+s, T+s+ns), dup(T+s+ns, T+s)), ns},
		{"before the base", seq(ins(T, T+s, T-s, T-5*s), dup(T-5*s, T-s, T, T+s)), s},
		{"before the base, not a multiple", seq(ins(T, T+s, T-ms), dup(T-ms, T)), ms},
		{"out of order", seq(ins(T+5*s, T+s, T+3*s, T+2*s, T+4*s), dup(T+3*s, T+5*s, T+s), ins(T+6*s, T)), s},
		{"out of order, finer", seq(ins(T+5*s, T+s, T+3*s+7*ms, T+2*s), dup(T+3*s+7*ms), ins(T+3*s+8*ms)), ms},
		{"nanosecond neighbours are not duplicates", seq(ins(T, T+s, T+2*s), ins(T+s-ns, T+s+ns, T-ns, T+2*s+ns), dup(T+s, T+s-ns, T+s+ns, T-ns, T)), ns},
		{"nanosecond neighbours, wide", seq(ins(T, T+s, T+10*s), ins(T+s-ns, T+s+ns), dup(T+s, T+s-ns, T+s+ns, T+10*s)), wideUnit},
		{"fallback: nanoseconds over 4.3s", seq(ins(T, T+s, T+ns, T+10*s), dup(T+ns, T+10*s, T)), wideUnit},
		{"fallback: seconds over 136 years", seq(ins(T, T+200*y), dup(T, T+200*y)), wideUnit},
		{"wide: out of order and duplicates", seq(ins(T, T+ns, T+10*s, T+5*s, T-3*s, T+7*s+1), dup(T+5*s, T-3*s, T+7*s+1, T+ns), ins(T+7*s)), wideUnit},
		{"wide turns compact when its old times go", seq(ins(T, T+ns, T+10*s, T+11*s, T+12*s), drop(T+10*s)), s},
		{"wide stays wide when the rest does not fit", seq(ins(T, T+ns, T+10*s, T+10*s+ns, T+20*s), drop(T+10*s)), wideUnit},
		{"wide to compact, then duplicates", seq(ins(T, T+ns, T+10*s, T+11*s), drop(T+5*s), dup(T+10*s, T+11*s), ins(T+12*s, T+9*s)), s},
		{"range: rebased to the oldest time", seq(ins(T, T+us, T+30*int64(time.Minute)), drop(T+time.Minute.Nanoseconds()), ins(T+80*int64(time.Minute)), dup(T+30*int64(time.Minute))), us},
		{"dropBelow: nothing, some, all", seq(ins(T, T+s, T+2*s), drop(T-s), drop(T), drop(T+s+ns), dup(T+2*s), drop(T+3*s)), s},
		{"emptied restarts in seconds", seq(ins(T, T+ns), drop(T+s), ins(T+7*s, T+8*s)), s},
		{"emptied wide restarts compact", seq(ins(T, T+ns, T+10*s), drop(T+11*s), ins(T+ns, T+ns+s), dup(T+ns)), s},
		{"extremes", seq(ins(0, -1, math.MaxInt64, math.MinInt64, math.MinInt64+1, math.MaxInt64-1), dup(0, -1, math.MaxInt64, math.MinInt64)), wideUnit},
		{"before 1970", seq(ins(-T, -T+s, -T-s), dup(-T)), s},
		{"around zero", seq(ins(-s, 0, s), dup(0), ins(-ns)), ns},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st timeStore
			applyOps(t, &st, map[int64]bool{}, c.ops, true)
			if st.len() > 0 && st.unit != c.wantUnit {
				t.Errorf("unit %d, want %d", st.unit, c.wantUnit)
			}
		})
	}
}

// TestTimeStoreRoundTrip inserts random times (in order mostly, sometimes
// out of order, sometimes copies, in several granularities) and drops old
// ones, checking the store against a reference set at each step.
func TestTimeStoreRoundTrip(t *testing.T) {
	grains := []int64{int64(time.Second), int64(time.Millisecond), int64(time.Microsecond), 1, 15 * int64(time.Second)}
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		var st timeStore
		ref := map[int64]bool{}
		base := t0 + r.Int64N(int64(time.Second))
		var ops []storeOp
		now := base
		for range 400 {
			g := grains[r.IntN(len(grains))]
			if seed%5 == 0 {
				g = grains[0] // some stores stay in seconds throughout
			}
			switch k := r.IntN(20); {
			case k < 12: // in order
				now += g * (1 + r.Int64N(3))
				ops = append(ops, storeOp{t: now})
			case k < 15: // out of order, within the last minute
				ops = append(ops, storeOp{t: now - g*r.Int64N(60)})
			case k < 18: // a copy, or a nanosecond next to one
				if len(ops) > 0 {
					x := ops[r.IntN(len(ops))].t
					ops = append(ops, storeOp{t: x + r.Int64N(3) - 1})
				}
			case k < 19: // forget the old ones
				ops = append(ops, storeOp{t: now - r.Int64N(int64(2*time.Minute)), drop: true})
			default: // far away
				ops = append(ops, storeOp{t: now + r.Int64N(int64(2*time.Hour)) - int64(time.Hour)})
			}
		}
		applyOps(t, &st, ref, ops, false)
	}
}

// TestDuplicateAtWindowEdges checks that a duplicate is the same series at
// the same time to the nanosecond, at both edges of the window, with times
// that are whole seconds (the compact form) and ones that are not.
func TestDuplicateAtWindowEdges(t *testing.T) {
	const w = 10 * mn
	for _, frac := range []int64{0, 1, 999_999_999} {
		d := newTest(nil) // window 10m
		if got := run(t, d, batchOf(pt{"a/0", frac, 1}, pt{"a/0", frac + sec, 1}, pt{"a/0", frac + w, 1})); len(got) != 3 {
			t.Fatalf("frac %d: first batch passed %v", frac, got)
		}
		got := run(t, d, batchOf(
			pt{"a/0", frac, 2},           // exactly window old: a duplicate
			pt{"a/0", frac + w, 2},       // the newest: a duplicate
			pt{"a/0", frac + sec, 2},     // a duplicate
			pt{"a/0", frac + 1, 3},       // a nanosecond later: new
			pt{"a/0", frac - 1, 4},       // a nanosecond older than the window: expired, passes
			pt{"a/1", frac, 9},           // another series: new
			pt{"a/0", frac + w - 1, 5},   // a nanosecond before the newest: new
			pt{"a/0", frac + sec - 1, 6}, // new
			pt{"a/0", frac + w + 1, 7},   // a nanosecond after the newest: new
			pt{"a/0", frac + 1, 8},       // a copy of one of this batch, still in the moved window: a duplicate
		))
		want := []pt{{"a/0", frac + 1, 3}, {"a/0", frac - 1, 4}, {"a/1", frac, 9}, {"a/0", frac + w - 1, 5}, {"a/0", frac + sec - 1, 6}, {"a/0", frac + w + 1, 7}}
		if !slices.Equal(got, want) {
			t.Errorf("frac %d: got %v, want %v", frac, got, want)
		}
		st := d.Stats()
		if st.Duplicates != 4 || st.Expired != 1 {
			t.Errorf("frac %d: stats %+v", frac, st)
		}
		checkConsistent(t, d)
	}
}
