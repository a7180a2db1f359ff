package postgresql

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// parsedLike reports how got differs from a fresh parse of labels ("" if
// it does not): what a label set resolves to must never come from a stale
// cache entry.
func parsedLike(got *labelSet, labels sdk.Labels) string {
	var want labelSet
	parseLabels(labels, &want)
	switch {
	case got.attrs != want.attrs:
		return fmt.Sprintf("attrs %+v, want %+v", got.attrs, want.attrs)
	case got.wla != want.wla || got.wlKey != want.wlKey:
		return fmt.Sprintf("workload %q %q, want %q %q", got.wla, got.wlKey, want.wla, want.wlKey)
	case got.why != want.why:
		return fmt.Sprintf("why %q, want %q", got.why, want.why)
	case !slices.Equal(got.labels, labels):
		return fmt.Sprintf("labels %v, want %v", got.labels, labels)
	}
	return ""
}

// TestLabelCacheIdentityTable: a label slice found by address in the
// recent table in one batch must be verified in the next one. Each case
// resolves a slice in two batches, changes what the caller hands over
// between them, and resolves again (twice, so a hit in the same batch is
// checked too): the result must be a fresh parse of the new contents.
func TestLabelCacheIdentityTable(t *testing.T) {
	base := func() sdk.Labels {
		// Spare capacity: the same address can be handed over longer.
		ls := make(sdk.Labels, 0, 8)
		return append(ls, gpuLabels("node1", 0)...)
	}
	cases := []struct {
		name   string
		change func(sdk.Labels) sdk.Labels // the labels of the next batch
	}{
		{"unchanged", func(ls sdk.Labels) sdk.Labels { return ls }},
		{"value changed in place", func(ls sdk.Labels) sdk.Labels {
			ls[2].Value = "GPU-changed"
			return ls
		}},
		{"same string length, other bytes", func(ls sdk.Labels) sdk.Labels {
			ls[3].Value = "node2"
			return ls
		}},
		{"key changed in place", func(ls sdk.Labels) sdk.Labels {
			ls[1].Key = sdk.LabelPod
			return ls
		}},
		{"new label key, same address, longer", func(ls sdk.Labels) sdk.Labels {
			return append(ls, sdk.Label{Key: sdk.LabelNamespace, Value: "ml"})
		}},
		{"same address, shorter (no identity left)", func(ls sdk.Labels) sdk.Labels {
			return ls[:1]
		}},
		{"same address, shorter, gpu_uuid kept", func(ls sdk.Labels) sdk.Labels {
			return ls[:3]
		}},
		{"identity label removed in place", func(ls sdk.Labels) sdk.Labels {
			ls[2] = sdk.Label{Key: "other", Value: "x"}
			return ls
		}},
		{"slice replaced, same contents", func(ls sdk.Labels) sdk.Labels {
			return slices.Clone(ls)
		}},
		{"slice replaced, other contents", func(ls sdk.Labels) sdk.Labels {
			c := slices.Clone(ls)
			c[2].Value = "GPU-other"
			return c
		}},
		{"value replaced by an equal copy", func(ls sdk.Labels) sdk.Labels {
			ls[2].Value = strings.Clone(ls[2].Value)
			return ls
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c labelCache
			ls := base()
			c.next()
			first := c.get(ls)
			if why := parsedLike(first, ls); why != "" {
				t.Fatal(why)
			}
			c.next()
			if c.get(ls) != first {
				t.Fatal("unchanged slice, next batch: not served from the cache")
			}
			now := tc.change(ls)
			for batch := 0; batch < 2; batch++ {
				c.next()
				for round := 0; round < 2; round++ {
					if why := parsedLike(c.get(now), now); why != "" {
						t.Fatalf("batch %d round %d: %s", batch, round, why)
					}
				}
			}
		})
	}
}

// TestLabelCacheIdentityTableCollisions: slices whose addresses share a
// recent slot, in every order, each keep their own set across batches.
func TestLabelCacheIdentityTableCollisions(t *testing.T) {
	// Slices of one backing array: addresses a label apart.
	arr := make([]sdk.Label, 0, 3*recentSlots)
	for i := 0; i < recentSlots; i++ {
		arr = append(arr, gpuLabels("n", i)[2:]...) // gpu_uuid, host
		arr = append(arr, sdk.Label{Key: sdk.LabelGPUIndex, Value: fmt.Sprint(i)})
	}
	bySlot := map[int][]sdk.Labels{}
	for i := 0; i < recentSlots; i++ {
		ls := arr[3*i : 3*i+3 : 3*i+3]
		bySlot[recentSlot(&ls[0])] = append(bySlot[recentSlot(&ls[0])], ls)
	}
	var colliding [][]sdk.Labels
	for _, v := range bySlot {
		if len(v) > 1 {
			colliding = append(colliding, v)
		}
	}
	if len(colliding) == 0 {
		t.Fatal("no two slices share a slot: the test covers nothing")
	}
	var c labelCache
	for batch := 0; batch < 3; batch++ {
		c.next()
		for _, group := range colliding {
			for round := 0; round < 2; round++ {
				for _, ls := range group {
					if why := parsedLike(c.get(ls), ls); why != "" {
						t.Fatalf("batch %d: %s", batch, why)
					}
				}
			}
			// Changed in place: seen in the next batch.
			group[0][0].Value += "x"
		}
	}
}

// TestNameColumnTable: the metric name -> column table gives the canonical
// column of any name, wherever its bytes are, for names that share a set
// of the table, and in any order.
func TestNameColumnTable(t *testing.T) {
	var d dictCache
	d.init()
	want := func(name string) int16 {
		if col, ok := d.canon[name]; ok {
			return col
		}
		return -1
	}
	// Names that share a set of the table (more than its two ways).
	var colliding []string
	bySet := map[int][]string{}
	for i := 0; len(colliding) == 0; i++ {
		n := fmt.Sprintf("vendor_metric_%d", i)
		s := nameSetOf(n)
		bySet[s] = append(bySet[s], n)
		if len(bySet[s]) == 3 {
			colliding = bySet[s]
		}
	}
	canon := gpumetrics.Canonical[0].Name
	colliding = append(colliding, canon)
	// Two canonical names of one length (other columns) in one set, and
	// an extra name of that length in it too.
	var sameLen []string
	for i, a := range gpumetrics.Canonical {
		for _, b := range gpumetrics.Canonical[i+1:] {
			if len(a.Name) == len(b.Name) && sameLen == nil {
				sameLen = sameLenCollision(a.Name, b.Name)
			}
		}
	}
	if sameLen == nil {
		t.Fatal("no two canonical names of one length")
	}
	sameLen = append(sameLen, sameLenCollision(sameLen[0], strings.Repeat("x", len(sameLen[0])))[1])
	// A canonical name in a set with other names, and at another address.
	canonCopy := strings.Clone(canon)
	cases := []struct {
		name  string
		names []string
	}{
		{"canonical", []string{gpumetrics.Canonical[0].Name, gpumetrics.Canonical[1].Name, gpumetrics.Canonical[2].Name}},
		{"extra", []string{"vendor_specific_thing", "another_one"}},
		{"empty name", []string{"", gpumetrics.Canonical[0].Name, ""}},
		{"same bytes at another address", []string{canon, canonCopy, canon, canonCopy}},
		{"colliding names", colliding},
		{"colliding names, reversed", []string{colliding[3], colliding[2], colliding[1], colliding[0]}},
		{"colliding names of one length", sameLen},
		{"colliding names of one length, reversed", []string{sameLen[2], sameLen[1], sameLen[0], sameLen[2]}},
	}
	var c labelCache
	c.next()
	ls := c.get(gpuLabels("node1", 0))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for round := 0; round < 3; round++ {
				for _, n := range tc.names {
					if got := c.column(&d, ls, n); got != want(n) {
						t.Fatalf("round %d: %q -> column %d, want %d", round, n, got, want(n))
					}
				}
			}
		})
	}
}

// sameLenCollision returns copies of a and b (of equal length) whose
// addresses fall in the same set of the name table.
func sameLenCollision(a, b string) []string {
	sets := map[int]string{}
	for i := 0; i < 64; i++ {
		c := strings.Clone(a)
		sets[nameSetOf(c)] = c
	}
	for {
		c := strings.Clone(b)
		if x, ok := sets[nameSetOf(c)]; ok {
			return []string{x, c}
		}
	}
}

// TestBuildWarmEqualsCold writes batches through one scratch whose caches
// stay warm while the callers' label slices change between batches
// (replaced, changed in place, shortened or lengthened at the same
// address, given a new key), and builds each batch again with a new
// scratch (nothing cached): the rows, values, series resolutions and
// rejects must be the same.
func TestBuildWarmEqualsCold(t *testing.T) {
	o := newOutput(t, newDB(t))
	ctx := context.Background()
	const gpus = 4
	labels := make([]sdk.Labels, gpus)
	for g := range labels {
		ls := make(sdk.Labels, 0, 8)
		labels[g] = append(ls, gpuLabels("node1", g)...)
	}
	names := []string{gpumetrics.Canonical[0].Name, gpumetrics.Canonical[1].Name, "vendor_specific_thing", gpumetrics.Canonical[2].Name, ""}
	steps := []struct {
		name   string
		change func()
	}{
		{"first", func() {}},
		{"same slices", func() {}},
		{"uuid changed in place", func() { labels[0][2].Value = "GPU-renamed" }},
		{"slice replaced", func() { labels[1] = slices.Clone(labels[1]); labels[1][3].Value = "node9" }},
		{"new key at the same address", func() { labels[2] = append(labels[2], sdk.Label{Key: sdk.LabelPod, Value: "p0"}) }},
		{"pod changed in place", func() { labels[2][4].Value = "p1" }},
		{"shorter at the same address: no identity", func() { labels[3] = labels[3][:2] }},
		{"longer again", func() { labels[3] = labels[3][:4] }},
		{"another model for GPU 1, in a second slice", func() {
			other := slices.Clone(labels[1])
			other[1].Value = "NVIDIA A100"
			labels = append(labels, other)
		}},
		{"both models again", func() {}},
		{"bad text in place", func() { labels[0][3].Value = "bad\x00host" }},
		{"fixed", func() { labels[0][3].Value = "node1" }},
	}
	warm := o.getScratch()
	defer o.putScratch(warm)
	for st, step := range steps {
		step.change()
		batch := func() *sdk.Batch {
			b := &sdk.Batch{}
			// Interleaved, as a Prometheus scrape of a host lists them.
			for _, n := range names {
				for g := range labels {
					b.Add(b.AddSeries(n, labels[g]), t0.Add(time.Duration(st)*time.Second).UnixNano(), float64(st*100+g*10))
				}
			}
			return b
		}
		bw, bc := batch(), batch()
		warm.reset()
		if err := o.build(ctx, bw, warm); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		cold := newScratch()
		if err := o.build(ctx, bc, cold); err != nil {
			t.Fatalf("%s: cold: %v", step.name, err)
		}
		if !slices.Equal(warm.rows, cold.rows) || !slices.Equal(warm.vals, cold.vals) ||
			!slices.Equal(warm.present, cold.present) || !slices.Equal(warm.extra, cold.extra) {
			t.Fatalf("%s: rows differ:\nwarm %v %v\ncold %v %v", step.name, warm.rows, warm.extra, cold.rows, cold.extra)
		}
		for i := range warm.info {
			w, c := warm.info[i], cold.info[i]
			if w.refs != c.refs || w.gpu != c.gpu || w.wl != c.wl || w.col != c.col || w.metric != c.metric {
				t.Fatalf("%s: series %d: warm %+v, cold %+v", step.name, i, w, c)
			}
		}
		if !slices.EqualFunc(bw.Rejects, bc.Rejects, func(a, b sdk.Reject) bool {
			return a.Reason == b.Reason && a.Position == b.Position && string(a.Raw) == string(b.Raw)
		}) {
			t.Fatalf("%s: rejects differ:\nwarm %v\ncold %v", step.name, bw.Rejects, bc.Rejects)
		}
		wantRejects := len(labels) // the series without a name
		switch step.name {
		case "bad text in place":
			wantRejects += len(names) - 1
		case "shorter at the same address: no identity":
			wantRejects += len(names) - 1
		}
		if len(bw.Rejects) != wantRejects {
			t.Fatalf("%s: %d rejects, want %d: %v", step.name, len(bw.Rejects), wantRejects, bw.Rejects)
		}
	}
}

// TestRowTable: the row index finds every key it was given, adds each new
// key once, and keeps that through growing and resetting, whatever the
// keys (equal times, equal GPUs, negative and extreme times).
func TestRowTable(t *testing.T) {
	cases := []struct {
		name string
		keys func(i int) rowKey
		n    int
	}{
		{"one time, many GPUs", func(i int) rowKey { return rowKey{int32(i + 1), 1_752_846_153_000_000} }, 5000},
		{"one GPU, many times", func(i int) rowKey { return rowKey{7, int64(i) * 1_000_000} }, 5000},
		{"grid", func(i int) rowKey { return rowKey{int32(i%37 + 1), int64(i/37) * 1000} }, 3000},
		{"negative and extreme times", func(i int) rowKey {
			ts := []int64{-1, 0, 1, math.MinInt64, math.MaxInt64, -1_000_000}
			return rowKey{int32(i/len(ts) + 1), ts[i%len(ts)]}
		}, 600},
		{"large GPU ids", func(i int) rowKey { return rowKey{math.MaxInt32 - int32(i), int64(i % 3)} }, 2000},
	}
	var rt rowTable
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for round := 0; round < 2; round++ {
				rt.reset()
				want := map[rowKey]int32{}
				for pass := 0; pass < 2; pass++ {
					for i := 0; i < tc.n; i++ {
						k := tc.keys(i)
						r, ok := want[k]
						if !ok {
							r = int32(len(want))
							want[k] = r
						}
						got, added := rt.find(k, int32(len(want)-1))
						if added != !ok || got != r {
							t.Fatalf("round %d pass %d key %+v: row %d added %v, want %d added %v", round, pass, k, got, added, r, !ok)
						}
					}
				}
				if rt.n != len(want) {
					t.Fatalf("%d keys held, want %d", rt.n, len(want))
				}
			}
		})
	}
}

// TestResolveNameHints: resolve finds a series' column from the previous
// series' name, from the name that followed it last time (a hint kept in
// the name table), or from the table; whatever the hints say, every series
// gets its own name's column: orders that change from batch to batch,
// names at other addresses, names of one length that share a set of the
// table (evicting each other's slots), and unnamed series.
func TestResolveNameHints(t *testing.T) {
	o := newOutput(t, newDB(t))
	ctx := context.Background()
	canon := func(i int) string { return gpumetrics.Canonical[i].Name }
	var sameLen []string
	for i, a := range gpumetrics.Canonical {
		for _, b := range gpumetrics.Canonical[i+1:] {
			if len(a.Name) == len(b.Name) && sameLen == nil {
				sameLen = sameLenCollision(a.Name, b.Name)
			}
		}
	}
	third := sameLenCollision(sameLen[0], strings.Repeat("y", len(sameLen[0])))[1]
	orders := []struct {
		name  string
		names []string
	}{
		{"canonical", []string{canon(0), canon(1), canon(2), canon(3)}},
		{"same again", []string{canon(0), canon(1), canon(2), canon(3)}},
		{"reversed", []string{canon(3), canon(2), canon(1), canon(0)}},
		{"repeats", []string{canon(1), canon(1), canon(2), canon(2), canon(1)}},
		{"other addresses", []string{strings.Clone(canon(0)), canon(1), strings.Clone(canon(1)), canon(0)}},
		{"one set", []string{sameLen[0], sameLen[1], third, sameLen[0], third, sameLen[1]}},
		{"one set, other order", []string{third, sameLen[1], sameLen[0], sameLen[1]}},
		{"extra and unnamed", []string{canon(0), "vendor_specific_thing", "", canon(1), "", "vendor_specific_thing"}},
		{"canonical again", []string{canon(0), canon(1), canon(2), canon(3)}},
	}
	sc := o.getScratch()
	defer o.putScratch(sc)
	for st, ord := range orders {
		b := &sdk.Batch{}
		for g := 0; g < 3; g++ {
			ls := gpuLabels("node1", g)
			for _, n := range ord.names {
				b.Add(b.AddSeries(n, ls), t0.Add(time.Duration(st)*time.Second).UnixNano(), 1)
			}
		}
		sc.reset()
		if err := o.build(ctx, b, sc); err != nil {
			t.Fatalf("%s: %v", ord.name, err)
		}
		for i, s := range b.Series {
			si := sc.info[i]
			if s.Name == "" {
				if si.gpu != -1 {
					t.Fatalf("%s: series %d without a name not rejected: %+v", ord.name, i, si)
				}
				continue
			}
			want, ok := o.cache.canon[s.Name]
			if !ok {
				want = -1
			}
			if si.col != want {
				t.Fatalf("%s: series %d (%s): column %d, want %d", ord.name, i, s.Name, si.col, want)
			}
		}
	}
}
