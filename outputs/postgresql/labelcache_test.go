package postgresql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

func TestLabelCacheVerifiesIdentity(t *testing.T) {
	var c labelCache
	ls := gpuLabels("node1", 0)
	c.next()
	a := c.get(ls)
	if a.why != "" || a.attrs.key != "GPU-node1-0000" {
		t.Fatalf("parsed %+v", a)
	}
	if c.get(ls) != a {
		t.Fatal("same slice, same batch: parsed again")
	}
	c.next()
	if c.get(ls) != a {
		t.Fatal("same slice, unchanged, next batch: parsed again")
	}
	// Changed in place (a caller that is not the plugin protocol): the
	// next batch must see the new contents.
	ls[2].Value = "GPU-changed"
	c.next()
	b := c.get(ls)
	if b == a || b.attrs.key != "GPU-changed" || b.attrs.uuid != "GPU-changed" {
		t.Fatalf("after an in-place change: %+v", b.attrs)
	}
	// A shorter slice at the same address.
	c.next()
	if s := c.get(ls[:1]); s.why == "" {
		t.Fatalf("gpu_index alone has no identity: %+v", s.attrs)
	}
	if s := c.get(ls); s.attrs.key != "GPU-changed" {
		t.Fatalf("full slice again: %+v", s.attrs)
	}
	// Equal contents in a fresh slice resolve alike (to the same set).
	if s := c.get(append(sdk.Labels(nil), ls...)); s != b {
		t.Fatalf("fresh copy: %+v", s.attrs)
	}
	// Changed back in place: the contents are found again.
	ls[2].Value = "GPU-node1-0000"
	c.next()
	if s := c.get(ls); s != a {
		t.Fatalf("changed back: %+v", s.attrs)
	}
	// Contents that only a careless encoding would confuse.
	x := c.get(sdk.Labels{{Key: "gpu_uuid", Value: "a\x00b"}, {Key: "host", Value: "c"}})
	y := c.get(sdk.Labels{{Key: "gpu_uuid", Value: "a"}, {Key: "\x00bhost", Value: "c"}})
	if x == y || x.attrs.uuid != "a\x00b" || y.attrs.uuid != "a" {
		t.Fatalf("distinct contents share a set: %+v %+v", x.attrs, y.attrs)
	}
	if s := c.get(nil); s.why != whyNoIdentity {
		t.Fatalf("no labels: %q", s.why)
	}
}

func TestLabelCacheBounded(t *testing.T) {
	var c labelCache
	c.next()
	sets := make([]sdk.Labels, 3*labelCacheGen)
	for i := range sets {
		sets[i] = gpuLabels("node1", i)
		if got := c.get(sets[i]).attrs.index; got != fmt.Sprint(i) {
			t.Fatalf("set %d: index %s", i, got)
		}
	}
	if n := len(c.cur) + len(c.old); n > 2*labelCacheGen {
		t.Fatalf("%d label slices cached", n)
	}
	if n := len(c.ccur) + len(c.cold); n > 2*labelCacheGen {
		t.Fatalf("%d label sets cached", n)
	}
	for i := range sets {
		if got := c.get(sets[i]).attrs.index; got != fmt.Sprint(i) {
			t.Fatalf("set %d again: index %s", i, got)
		}
	}
}

func TestLabelColumnsInAnyOrder(t *testing.T) {
	var d dictCache
	d.init()
	var c labelCache
	c.next()
	ls := c.get(gpuLabels("node1", 0))
	for _, order := range [][]int{{0, 1, 2, 3}, {2, 3, 0, 1}, {3, 2, 1, 0}, {1, 1, 0}, {0, 1, 2, 3}} {
		for _, m := range order {
			if got := ls.column(&d, gpumetrics.Canonical[m].Name); got != int16(m) {
				t.Fatalf("order %v: %s -> column %d", order, gpumetrics.Canonical[m].Name, got)
			}
		}
		if got := ls.column(&d, "vendor_specific_thing"); got != -1 {
			t.Fatalf("extra metric -> column %d", got)
		}
	}
}

// TestLabelCacheRecentSlots: many slices in one batch, in an order that
// makes them collide in the recent table, each still gets its own set.
func TestLabelCacheRecentSlots(t *testing.T) {
	var c labelCache
	sets := make([]sdk.Labels, 4*recentSlots)
	want := make([]string, len(sets)) // gpu_index
	for i := range sets {
		sets[i] = gpuLabels("node1", i)
		want[i] = fmt.Sprint(i)
	}
	for batch := 0; batch < 3; batch++ {
		c.next()
		for round := 0; round < 3; round++ {
			for i := range sets {
				j := (i * 7) % len(sets)
				if got := c.get(sets[j]).attrs.index; got != want[j] {
					t.Fatalf("batch %d set %d: index %s, want %s", batch, j, got, want[j])
				}
			}
		}
		// A changed slice is seen in the next batch, not through a stale slot.
		want[5] = fmt.Sprint(1000 + batch)
		sets[5][0].Value = want[5]
	}
}

// TestSharedLabelSlices writes batches whose series share label slices from
// batch to batch (as the plugin protocol hands them to a LabelReader), with
// in-place changes between Writes, and reads back what the view says.
func TestSharedLabelSlices(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	c := connect(t, url)
	ctx := context.Background()
	labels := []sdk.Labels{gpuLabels("node1", 0), gpuLabels("node1", 1)}
	labels[1] = append(labels[1], sdk.Label{Key: sdk.LabelPod, Value: "trainer-0"})
	names := []string{gpumetrics.Canonical[0].Name, gpumetrics.Canonical[1].Name, "vendor_specific_thing"}
	batch := func(ts time.Time) *sdk.Batch {
		b := &sdk.Batch{}
		for g, ls := range labels {
			for m, n := range names {
				b.Add(b.AddSeries(n, ls), ts.UnixNano(), float64(g*10+m))
			}
		}
		return b
	}
	write := func(ts time.Time) {
		t.Helper()
		b := batch(ts)
		if err := o.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		if len(b.Rejects) != 0 {
			t.Fatalf("rejects: %v", b.Rejects)
		}
	}
	write(t0)
	write(t0.Add(time.Second))
	labels[0][2].Value = "GPU-renamed" // gpu_uuid, changed in place
	labels[1][len(labels[1])-1].Value = "trainer-1"
	write(t0.Add(2 * time.Second))
	// Bad text in place: the series of that GPU are rejected.
	labels[0][3].Value = "bad\x00host"
	b := batch(t0.Add(3 * time.Second))
	if err := o.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Rejects) != len(names) {
		t.Fatalf("%d rejects, want %d: %v", len(b.Rejects), len(names), b.Rejects)
	}

	got := readView(t, c)
	want := map[string]float64{}
	for s := 0; s < 4; s++ {
		ts := t0.Add(time.Duration(s) * time.Second).UnixMicro()
		for g := range labels {
			uuid := fmt.Sprintf("GPU-node1-%04d", g)
			if g == 0 && s >= 2 {
				if s == 3 {
					continue // rejected
				}
				uuid = "GPU-renamed"
			}
			for m, n := range names {
				want[fmt.Sprintf("%s|%s|%d", uuid, n, ts)] = float64(g*10 + m)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d samples in the view, want %d", len(got), len(want))
	}
	for k, v := range want {
		if r, ok := got[k]; !ok || r.value != v {
			t.Errorf("%s: got %+v (present %v), want %v", k, r, ok, v)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_samples WHERE workload_id = (SELECT workload_id FROM workloads WHERE pod = 'trainer-1')"); n != 2 {
		t.Errorf("%d rows with the changed workload, want 2", n)
	}
}

// TestInterleavedSharedLabels writes scrape data in a Prometheus host's
// order (metric by metric, each for 8 GPUs), label slices shared between
// batches, in batches that split rows, and reads every sample back.
func TestInterleavedSharedLabels(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	c := connect(t, url)
	ctx := context.Background()
	const hosts, gpus, metrics, steps, batchSize = 2, 8, 5, 3, 37
	labels := make([]sdk.Labels, hosts*gpus)
	for g := range labels {
		labels[g] = gpuLabels(fmt.Sprintf("node%d", g/gpus), g%gpus)
	}
	want := map[string]float64{}
	var b *sdk.Batch
	flush := func() {
		if b == nil {
			return
		}
		if err := o.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		if len(b.Rejects) != 0 {
			t.Fatalf("rejects: %v", b.Rejects)
		}
		b = nil
	}
	for st := 0; st < steps; st++ {
		ts := t0.Add(time.Duration(st) * time.Second)
		for h := 0; h < hosts; h++ {
			for m := 0; m < metrics; m++ {
				for g := h * gpus; g < (h+1)*gpus; g++ {
					if b == nil {
						b = &sdk.Batch{}
					}
					v := float64(st*1000+g*10+m) + 0.5
					b.Add(b.AddSeries(gpumetrics.Canonical[m].Name, labels[g]), ts.UnixNano(), v)
					want[fmt.Sprintf("GPU-node%d-%04d|%s|%d", h, g%gpus, gpumetrics.Canonical[m].Name, ts.UnixMicro())] = v
					if len(b.Points) == batchSize {
						flush()
					}
				}
			}
		}
	}
	flush()
	got := readView(t, c)
	if len(got) != len(want) {
		t.Errorf("%d samples in the view, want %d", len(got), len(want))
	}
	for k, v := range want {
		if r, ok := got[k]; !ok || r.value != v {
			t.Errorf("%s: got %+v (present %v), want %v", k, r, ok, v)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_samples"); n != hosts*gpus*steps {
		t.Errorf("%d rows, want %d", n, hosts*gpus*steps)
	}
}
