package wire

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// send marshals and unmarshals msg, as a stream would.
func send(t testing.TB, msg *pluginpb.Batch) *pluginpb.Batch {
	t.Helper()
	raw, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var got pluginpb.Batch
	if err := proto.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// hostBatch is one scrape of one host: 8 GPUs x metrics series, one point each.
func hostBatch(host, metrics int, t int64) *metric.Batch {
	b := &metric.Batch{}
	for g := 0; g < 8; g++ {
		ls := metric.Labels{
			{Key: metric.LabelGPUIndex, Value: fmt.Sprint(g)},
			{Key: metric.LabelGPUUUID, Value: fmt.Sprintf("GPU-%04d-%d", host, g)},
			{Key: metric.LabelHost, Value: fmt.Sprintf("node-%04d", host)},
		}
		for m := 0; m < metrics; m++ {
			b.Add(b.AddSeries(fmt.Sprintf("gpu_metric_%d", m), ls), t, float64(host*1000+g*100+m))
		}
	}
	return b
}

func TestStreamRoundTrip(t *testing.T) {
	withRejects := hostBatch(1, 3, 7)
	withRejects.Reject("bad line", "msg 3 line 7", []byte("x y z"))
	cases := []struct {
		name      string
		batches   []*metric.Batch
		maxSeries int
		// per batch: how many series it must define; -1: don't check
		defines []int
		resets  int
	}{
		{name: "first defines, repeat references",
			batches: []*metric.Batch{hostBatch(1, 30, 1), hostBatch(1, 30, 2), hostBatch(1, 30, 3)},
			defines: []int{240, 0, 0}},
		{name: "interleaved hosts",
			batches: []*metric.Batch{hostBatch(1, 30, 1), hostBatch(2, 30, 1), hostBatch(1, 30, 2), hostBatch(2, 30, 2)},
			defines: []int{240, 240, 0, 0}},
		{name: "empty and rejects",
			batches: []*metric.Batch{{}, withRejects, hostBatch(1, 3, 8)},
			defines: []int{0, 24, 0}},
		{name: "reset when full",
			batches:   []*metric.Batch{hostBatch(1, 30, 1), hostBatch(2, 30, 1), hostBatch(1, 30, 2), hostBatch(1, 30, 3)},
			maxSeries: 300, defines: []int{240, 240, 240, 0}, resets: 2},
		{name: "one batch over the limit",
			batches:   []*metric.Batch{hostBatch(1, 30, 1), hostBatch(1, 30, 2)},
			maxSeries: 100, defines: []int{240, 0}, resets: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc := NewStreamEncoder()
			enc.MaxSeries = tc.maxSeries
			var agent, plugin StreamDecoder // the same messages through both modes
			agent.ShareLabels = true
			for i, b := range tc.batches {
				msg := send(t, enc.Encode(nil, uint64(i+1), b))
				if msg.Id != uint64(i+1) {
					t.Fatalf("id %d", msg.Id)
				}
				if tc.defines != nil && tc.defines[i] >= 0 {
					if got := len(msg.SeriesIds); got != len(b.Series) {
						t.Fatalf("batch %d: %d series ids for %d series", i, got, len(b.Series))
					}
					nd := 0
					for j := 0; j < len(msg.Series); j += 2 + 2*int(msg.Series[j+1]) {
						nd++
					}
					if nd != tc.defines[i] {
						t.Fatalf("batch %d defines %d series, want %d", i, nd, tc.defines[i])
					}
					if tc.defines[i] == 0 && len(msg.Strings) != 0 {
						t.Fatalf("batch %d re-sends %d strings", i, len(msg.Strings))
					}
				}
				for _, d := range []*StreamDecoder{&agent, &plugin} {
					out := &metric.Batch{}
					if err := d.Decode(msg, out); err != nil {
						t.Fatalf("batch %d: %v", i, err)
					}
					if !reflect.DeepEqual(normalize(out), normalize(b)) {
						t.Fatalf("batch %d (share %v) differs:\n got %+v\nwant %+v", i, d.ShareLabels, out.Series[:1], b.Series[:1])
					}
				}
			}
			if enc.Resets() != tc.resets {
				t.Fatalf("resets = %d, want %d", enc.Resets(), tc.resets)
			}
			if agent.Len() != enc.Len() || plugin.Len() != enc.Len() {
				t.Fatalf("dictionaries differ: encoder %d, decoders %d/%d", enc.Len(), agent.Len(), plugin.Len())
			}
		})
	}
}

// Without ShareLabels each decoded batch owns its labels: changing them
// changes neither later batches nor other series.
func TestStreamDecodeOwnLabels(t *testing.T) {
	enc := NewStreamEncoder()
	var dec StreamDecoder
	src := hostBatch(1, 2, 1)
	first := &metric.Batch{}
	if err := dec.Decode(send(t, enc.Encode(nil, 1, src)), first); err != nil {
		t.Fatal(err)
	}
	for i := range first.Series {
		first.Series[i].Labels[0].Value = "changed"
	}
	second := &metric.Batch{}
	if err := dec.Decode(send(t, enc.Encode(nil, 2, src)), second); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(second), normalize(src)) {
		t.Fatalf("an in-place label change leaked into a later batch: %+v", second.Series[0])
	}
	// The sender's dictionary holds copies: changing the source batch's
	// labels makes a new series, not a mislabelled one.
	src.Series[0].Labels[2].Value = "node-9999"
	third := &metric.Batch{}
	if err := dec.Decode(send(t, enc.Encode(nil, 3, src)), third); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(third), normalize(src)) {
		t.Fatalf("changed source labels: got %+v", third.Series[0])
	}
}

func TestStreamDecodeOutOfSync(t *testing.T) {
	src := hostBatch(1, 2, 1)
	defined := func() *pluginpb.Batch { return send(t, NewStreamEncoder().Encode(nil, 1, src)) }
	cases := []struct {
		name    string
		prime   bool // decode a valid first batch before
		mangle  func(m *pluginpb.Batch)
		wantErr string
	}{
		{name: "unknown series id", mangle: func(m *pluginpb.Batch) { m.Strings, m.Series = nil, nil }, wantErr: "not defined on this stream"},
		{name: "id past the table", prime: true, mangle: func(m *pluginpb.Batch) { m.Strings, m.Series = nil, nil; m.SeriesIds[0] = 1000 }, wantErr: "not defined"},
		{name: "replayed definitions", prime: true, mangle: func(*pluginpb.Batch) {}, wantErr: "out of sync"},
		{name: "series base", mangle: func(m *pluginpb.Batch) { m.SeriesBase = 5 }, wantErr: "out of sync"},
		{name: "string ref", mangle: func(m *pluginpb.Batch) { m.Series[2] = 999 }, wantErr: "out of range"},
		{name: "truncated definitions", mangle: func(m *pluginpb.Batch) { m.Series = m.Series[:len(m.Series)-1] }, wantErr: "overrun"},
		{name: "point series", mangle: func(m *pluginpb.Batch) { m.PointSeries[0] = 999 }, wantErr: "out of range"},
		{name: "point columns", mangle: func(m *pluginpb.Batch) { m.PointTime = m.PointTime[1:] }, wantErr: "differ in length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dec StreamDecoder
			if tc.prime {
				if err := dec.Decode(defined(), &metric.Batch{}); err != nil {
					t.Fatal(err)
				}
			}
			before := dec.Len()
			m := defined()
			tc.mangle(m)
			err := dec.Decode(m, &metric.Batch{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(tc.wantErr, "out of") && tc.wantErr != "out of range" || tc.name == "string ref" || tc.name == "truncated definitions" {
				if dec.Len() != before {
					t.Fatalf("invalid definitions changed the dictionary: %d -> %d", before, dec.Len())
				}
			}
		})
	}
}

// Concurrent senders serialise encode+send on one stream: the receiver,
// decoding in order, sees every batch intact.
func TestStreamConcurrentSenders(t *testing.T) {
	enc := NewStreamEncoder()
	enc.MaxSeries = 1000 // resets along the way
	var mu sync.Mutex
	ch := make(chan *pluginpb.Batch, 1024)
	want := map[uint64]*metric.Batch{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				b := hostBatch(w*7+i%5, 10, int64(i))
				mu.Lock()
				id := uint64(len(want) + 1)
				want[id] = b
				ch <- send(t, enc.Encode(nil, id, b))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(ch)
	dec := StreamDecoder{ShareLabels: true}
	n := 0
	for m := range ch {
		out := &metric.Batch{}
		if err := dec.Decode(m, out); err != nil {
			t.Fatalf("batch %d: %v", m.Id, err)
		}
		if !reflect.DeepEqual(normalize(out), normalize(want[m.Id])) {
			t.Fatalf("batch %d differs", m.Id)
		}
		n++
	}
	if n != 80 || enc.Resets() == 0 {
		t.Fatalf("%d batches, %d resets", n, enc.Resets())
	}
}

// Corrupt messages never panic the decoder.
func TestStreamDecodeNeverPanics(t *testing.T) {
	enc := NewStreamEncoder()
	raw, err := proto.Marshal(enc.Encode(nil, 1, hostBatch(1, 3, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for _, x := range []byte{0, 1, 0x7f, 0xff} {
			c := append([]byte(nil), raw...)
			c[i] ^= x
			var m pluginpb.Batch
			if proto.Unmarshal(c, &m) != nil {
				continue
			}
			var dec StreamDecoder
			_ = dec.Decode(&m, &metric.Batch{})
			_ = dec.Decode(&m, &metric.Batch{})
		}
	}
}

// Equal series made of other strings (a parser's fresh strings per
// message) are found by content, not defined again.
func TestStreamEncodeFindsByContent(t *testing.T) {
	enc := NewStreamEncoder()
	var dec StreamDecoder
	src := hostBatch(1, 4, 1)
	if err := dec.Decode(send(t, enc.Encode(nil, 1, src)), &metric.Batch{}); err != nil {
		t.Fatal(err)
	}
	fresh := &metric.Batch{}
	for _, s := range src.Series {
		ls := make(metric.Labels, len(s.Labels))
		for i, l := range s.Labels {
			ls[i] = metric.Label{Key: strings.Clone(l.Key), Value: strings.Clone(l.Value)}
		}
		fresh.AddSeries(strings.Clone(s.Name), ls)
	}
	fresh.Points = append(fresh.Points, src.Points...)
	msg := send(t, enc.Encode(nil, 2, fresh))
	if len(msg.Series) != 0 || len(msg.Strings) != 0 {
		t.Fatalf("equal series defined again: %d definition words, %d strings", len(msg.Series), len(msg.Strings))
	}
	out := &metric.Batch{}
	if err := dec.Decode(msg, out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(out), normalize(src)) {
		t.Fatal("decoded batch differs")
	}
	// The entries now refer to fresh's strings: found by identity. Batches
	// alternating between the two sets of strings keep the indexes bounded.
	for i := range fresh.Series {
		if d := &enc.ser[msg.SeriesIds[i]]; !sameStrings(d.name, d.labels, &fresh.Series[i]) {
			t.Fatalf("series %d not re-aliased to the latest strings", i)
		}
	}
	for i := 0; i < 500; i++ {
		b := src
		if i%2 == 1 {
			b = fresh
		}
		if m := enc.Encode(nil, uint64(3+i), b); len(m.Series) != 0 {
			t.Fatalf("round %d defined series again", i)
		}
	}
	if n := len(enc.iindex.slots); n > 8*enc.Len()+64 {
		t.Fatalf("identity index grew to %d slots for %d series", n, enc.Len())
	}
}

// Series defined together with the same labels (a GPU's fields) share one
// label slice in both dictionaries: what each side keeps per stream grows
// with the distinct label sets, not with series x labels.
func TestStreamDictionariesShareLabels(t *testing.T) {
	enc := NewStreamEncoder()
	dec := StreamDecoder{ShareLabels: true}
	src := hostBatch(1, 30, 1) // 8 GPUs x 30 series, one label slice per GPU
	out := &metric.Batch{}
	if err := dec.Decode(send(t, enc.Encode(nil, 1, src)), out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(out), normalize(src)) {
		t.Fatal("decoded batch differs")
	}
	distinct := func(n int, labels func(i int) []metric.Label) int {
		seen := map[*metric.Label]bool{}
		for i := 0; i < n; i++ {
			seen[&labels(i)[0]] = true
		}
		return len(seen)
	}
	if n := distinct(len(dec.ser), func(i int) []metric.Label { return dec.ser[i].Labels }); n != 8 {
		t.Errorf("decoder dictionary: %d label slices for 8 label sets", n)
	}
	if n := distinct(len(enc.ser), func(i int) []metric.Label { return enc.ser[i].labels }); n != 8 {
		t.Errorf("encoder dictionary: %d label slices for 8 label sets", n)
	}
	// A later batch of equal series made of other strings, one label slice
	// per series, re-aliases the entries without changing shared copies in
	// place: the series not in it still find themselves by identity.
	fresh := &metric.Batch{}
	for _, s := range src.Series[:1] {
		ls := make(metric.Labels, len(s.Labels))
		for i, l := range s.Labels {
			ls[i] = metric.Label{Key: strings.Clone(l.Key), Value: strings.Clone(l.Value)}
		}
		fresh.Add(fresh.AddSeries(strings.Clone(s.Name), ls), 2, 1)
	}
	if m := enc.Encode(nil, 2, fresh); len(m.Series) != 0 {
		t.Fatal("equal series defined again")
	}
	if !sameStrings(enc.ser[0].name, enc.ser[0].labels, &fresh.Series[0]) {
		t.Fatal("series 0 not re-aliased")
	}
	for i := 1; i < len(src.Series); i++ {
		if d := &enc.ser[i]; !sameStrings(d.name, d.labels, &src.Series[i]) {
			t.Fatalf("series %d: its shared labels were changed by another series' re-aliasing", i)
		}
	}
	if m := enc.Encode(nil, 3, src); len(m.Series) != 0 {
		t.Fatal("series defined again")
	}
}

// Series whose labels are separate slices of the very same strings (a
// processor's output), defined over several batches, share one copy; in
// the decoder, series with the same label refs share one slice.
func TestStreamEncoderSharesLabelSetsAcrossBatches(t *testing.T) {
	src := hostBatch(1, 4, 1) // 8 GPUs x 4 series
	perSeries := func(from, to int) *metric.Batch {
		b := &metric.Batch{}
		for _, s := range src.Series[from:to] {
			b.Add(b.AddSeries(s.Name, append(metric.Labels(nil), s.Labels...)), 1, 1)
		}
		return b
	}
	enc := NewStreamEncoder()
	var dec StreamDecoder
	for i, b := range []*metric.Batch{perSeries(0, 10), perSeries(10, 32), perSeries(0, 32)} {
		out := &metric.Batch{}
		if err := dec.Decode(send(t, enc.Encode(nil, uint64(i), b)), out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(out), normalize(b)) {
			t.Fatalf("batch %d: decoded batch differs", i)
		}
	}
	if enc.Len() != 32 {
		t.Fatalf("%d series in the dictionary, want 32", enc.Len())
	}
	seen := map[*metric.Label]bool{}
	for i := range enc.ser {
		seen[&enc.ser[i].labels[0]] = true
	}
	if len(seen) != 8 {
		t.Fatalf("%d label copies for 8 label sets", len(seen))
	}
	// So do the decoder's series with the same label refs.
	clear(seen)
	for i := range dec.ser {
		seen[&dec.ser[i].Labels[0]] = true
	}
	if len(seen) != 8 {
		t.Fatalf("decoder: %d label slices for 8 label sets", len(seen))
	}
}

// TestStreamEncodeSharedSliceMutated: series sharing one label slice are
// checked once per run of that slice within one Encode; an owner that
// changes the slice between batches (in place, same address) must get the
// new series, never the old ones by address.
func TestStreamEncodeSharedSliceMutated(t *testing.T) {
	enc, dec := NewStreamEncoder(), &StreamDecoder{}
	ls := metric.Labels{{Key: "gpu", Value: "0"}, {Key: "host", Value: "a"}}
	other := metric.Labels{{Key: "gpu", Value: "1"}, {Key: "host", Value: "a"}}
	names := []string{"m0", "m1", "m2", "m3", "m4"}
	build := func() *metric.Batch {
		b := &metric.Batch{}
		for m, name := range names {
			b.Add(b.AddSeries(name, ls), 1, float64(m))
		}
		for m, name := range names {
			b.Add(b.AddSeries(name, other), 1, float64(m))
		}
		return b
	}
	for round, v := range []string{"0", "0", "x", "y", "0", "1"} {
		ls[1].Value = strings.Clone(v)
		if round%2 == 1 {
			ls[0] = metric.Label{Key: "gpu", Value: strings.Clone(ls[0].Value)}
		}
		src := build()
		got := &metric.Batch{}
		if err := dec.Decode(send(t, enc.Encode(nil, uint64(round), src)), got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(src)) {
			t.Fatalf("round %d: got %v, want %v", round, got.Series, src.Series)
		}
	}
}

// TestStreamDecodeRuns: batches whose series are runs of consecutive
// stream ids, broken runs, repeats and reversals decode the same in both
// label modes.
func TestStreamDecodeRuns(t *testing.T) {
	all := hostBatch(1, 4, 1) // 32 series, defined in order
	enc := NewStreamEncoder()
	decs := []*StreamDecoder{{}, {ShareLabels: true}}
	first := send(t, enc.Encode(nil, 1, all))
	for _, d := range decs {
		if err := d.Decode(first, &metric.Batch{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, order := range [][]int{
		{3, 4, 5, 0, 1, 31, 31, 2},
		{31, 30, 29, 28},
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31},
		{7, 8, 9, 20, 21, 22, 23, 0},
	} {
		b := &metric.Batch{}
		for j, k := range order {
			s := all.Series[k]
			b.Add(b.AddSeries(s.Name, s.Labels), int64(j), float64(k))
		}
		msg := send(t, enc.Encode(nil, 2, b))
		for _, d := range decs {
			got := &metric.Batch{}
			if err := d.Decode(msg, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(b)) {
				t.Fatalf("order %v, share %v: got %v, want %v", order, d.ShareLabels, got.Series, b.Series)
			}
		}
	}
}
