package gpunormalize

import (
	"fmt"
	"slices"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestLabelsChangedInPlace: a label slice found by its address is compared
// with its contents, so a caller that rewrites a slice between batches
// gets the new labels, not the cached ones.
func TestLabelsChangedInPlace(t *testing.T) {
	n := New()
	ls := labelsOf("gpu", "0", "Hostname", "a")
	for round := range 4 {
		b := &sdk.Batch{}
		b.Add(b.AddSeries("DCGM_FI_DEV_GPU_TEMP", ls), 1, 40)
		b.Add(b.AddSeries("DCGM_FI_DEV_FB_USED", ls), 1, 1)
		got := run(t, n, b)
		want := []out{
			{"gpu_temperature_celsius", fmt.Sprintf(`{gpu_index="%d",host="a"}`, round), 40},
			{"gpu_memory_used_bytes", fmt.Sprintf(`{gpu_index="%d",host="a"}`, round), 1048576},
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: got %v, want %v", round, got, want)
		}
		ls[slices.IndexFunc(ls, func(l sdk.Label) bool { return l.Key == "gpu" })].Value = fmt.Sprint(round + 1)
	}
}

// TestSharedFreshSlicesAgree: whether the label slices are shared between
// batches (as the sdk hands them to a LabelReader), copied per batch, or
// a mix, the output is the same as a fresh processor's.
func TestSharedFreshSlicesAgree(t *testing.T) {
	tmpl := syntheticBatch(16, 30)
	n := New()
	copyOf := func(fresh bool) *sdk.Batch {
		b := &sdk.Batch{Series: slices.Clone(tmpl.Series), Points: slices.Clone(tmpl.Points)}
		if fresh {
			for i := range b.Series {
				b.Series[i].Labels = slices.Clone(b.Series[i].Labels)
			}
		}
		return b
	}
	want := run(t, New(), copyOf(true))
	for round := range 60 {
		fresh := round%20 >= 5 && round%20 < 15 // runs of each, past the alias heuristics
		if got := run(t, n, copyOf(fresh)); !slices.Equal(got, want) {
			t.Fatalf("round %d (fresh %v): output differs", round, fresh)
		}
	}
	if len(n.sets) != 16 {
		t.Errorf("%d label sets, want 16", len(n.sets))
	}
	if n.cached != 16*30 {
		t.Errorf("%d cached series, want %d", n.cached, 16*30)
	}
}

// TestSparseNames: a label set whose name ids are far apart keeps its
// series in the sparse map, found again batch after batch (resolved once:
// UnknownSeries counts each source series once), the output as a fresh
// processor's.
func TestSparseNames(t *testing.T) {
	n := New()
	a, b := labelsOf("gpu", "0"), labelsOf("gpu", "1")
	batch := func(ls sdk.Labels, fields ...int) *sdk.Batch {
		bt := &sdk.Batch{}
		for _, f := range fields {
			bt.Add(bt.AddSeries(fmt.Sprintf("X_FIELD_%d", f), ls), 1, float64(f))
		}
		return bt
	}
	var up, down, mixed []int
	for f := range 40 {
		up = append(up, f)
		down = append(down, 39-f)
		mixed = append(mixed, (f*7)%40)
	}
	for i, bt := range []func() *sdk.Batch{
		func() *sdk.Batch { return batch(a, up...) },
		func() *sdk.Batch { return batch(b, down...) },
		func() *sdk.Batch { return batch(b, mixed...) },
		func() *sdk.Batch { return batch(a, mixed...) },
		func() *sdk.Batch { return batch(b, 40, 3, 41, 39) },
		func() *sdk.Batch { return batch(b, mixed...) },
	} {
		got, want := run(t, n, bt()), run(t, New(), bt())
		if !slices.Equal(got, want) {
			t.Fatalf("batch %d: got %v, want %v", i, got, want)
		}
	}
	if s := n.Stats(); s.UnknownSeries != 82 {
		t.Errorf("UnknownSeries = %d, want 82", s.UnknownSeries)
	}
	if len(n.sparse) == 0 {
		t.Error("no series in the sparse map")
	}
}

// TestAliasTable: put, overwrite, get through growth, reset.
func TestAliasTable(t *testing.T) {
	var a aliasTable
	if _, ok := a.get(1); ok {
		t.Fatal("empty table found a key")
	}
	for k := range uint64(5000) {
		a.put(k<<20|k+1, int32(k))
	}
	a.put(7<<20|8, -7)
	if a.n != 5000 {
		t.Fatalf("n = %d, want 5000", a.n)
	}
	for k := range uint64(5000) {
		want := int32(k)
		if k == 7 {
			want = -7
		}
		if v, ok := a.get(k<<20 | k + 1); !ok || v != want {
			t.Fatalf("get(%d) = %d, %v, want %d", k, v, ok, want)
		}
	}
	if _, ok := a.get(5001<<20 | 5002); ok {
		t.Fatal("found a key never put")
	}
	a.reset()
	if _, ok := a.get(1<<20 | 2); ok || a.n != 0 {
		t.Fatal("reset table found a key")
	}
}
