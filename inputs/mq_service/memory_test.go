package mq_service

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestRecvCodec: the codec round-trips messages whatever the buffers they
// arrive in, and the payloads it returns do not alias those buffers (grpc
// reuses them after Unmarshal).
func TestRecvCodec(t *testing.T) {
	want := &mqpb.SubscribeResponse{Messages: []*mqpb.Message{
		{Id: "1", Payload: bytes.Repeat([]byte("a,b,c\n"), 1000)},
		{Id: "2", Payload: []byte("x")},
	}}
	raw, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	split := func(n int) mem.BufferSlice {
		var bs mem.BufferSlice
		for k := 0; k < len(raw); k += n {
			bs = append(bs, mem.SliceBuffer(bytes.Clone(raw[k:min(k+n, len(raw))])))
		}
		return bs
	}
	tests := []struct {
		name string
		in   mem.BufferSlice
	}{
		{"one buffer", split(len(raw))},
		{"many buffers", split(1000)},
		{"tiny buffers", split(7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got mqpb.SubscribeResponse
			if err := brokerCodec(grpcbuf.NewBufferPool(), &mqcodec.Buffers{}).Unmarshal(tt.in, &got); err != nil {
				t.Fatal(err)
			}
			for _, b := range tt.in {
				clear(b.ReadOnlyData()) // grpc reuses its buffers
			}
			if !proto.Equal(&got, want) {
				t.Fatal("unmarshalled message differs")
			}
		})
	}
	out, err := brokerCodec(grpcbuf.NewBufferPool(), &mqcodec.Buffers{}).Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Materialize(), raw) {
		t.Error("Marshal differs from proto.Marshal")
	}
	if _, err := brokerCodec(grpcbuf.NewBufferPool(), &mqcodec.Buffers{}).Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	if err := brokerCodec(grpcbuf.NewBufferPool(), &mqcodec.Buffers{}).Unmarshal(split(len(raw)), new(string)); err == nil {
		t.Error("Unmarshal into a string: no error")
	}
}

// TestBuilderInternsSeries: equal series of different messages share one
// entry of the batch; a hash that points at another series (a collision)
// never merges the two.
func TestBuilderInternsSeries(t *testing.T) {
	bl := newBuilder(100)
	msg := func(host string) *sdk.Batch {
		b := &sdk.Batch{}
		b.Add(b.AddSeries("m", sdk.Labels{{Key: "host", Value: host}}), 1, 1)
		return b
	}
	bl.add(&msgTrack{id: "1"}, msg("a"))
	bl.add(&msgTrack{id: "2"}, msg("a"))
	bl.add(&msgTrack{id: "3"}, msg("b"))
	if n := len(bl.cur.b.Series); n != 2 {
		t.Fatalf("%d series, want 2 (a shared)", n)
	}
	// Point every hash at series 0 ("a"): "c" must get a series of its own.
	for h := range bl.ids {
		bl.ids[h] = 0
	}
	k := []byte("m\x00host\x01c")
	bl.ids[maphash.Bytes(bl.seed, k)] = 0
	bl.add(&msgTrack{id: "4"}, msg("c"))
	b := bl.cur.b
	last := b.Sample(len(b.Points) - 1)
	if v, _ := last.Labels.Get("host"); v != "c" {
		t.Fatalf("point of host c landed on series %v", last.Labels)
	}
}

// TestSharedBuilderKeepsMessageSeries: for shared-label parsers the
// builder adds each message's series as they are (no interning across
// messages: the same series from two messages is listed twice, which is
// valid), and every point keeps its own series, across a rotation too.
func TestSharedBuilderKeepsMessageSeries(t *testing.T) {
	bl := newBuilder(100)
	a := sdk.Labels{{Key: "host", Value: "a"}}
	b := sdk.Labels{{Key: "host", Value: "b"}}
	msg := func(ls sdk.Labels, v float64) *sdk.Batch {
		m := &sdk.Batch{}
		s := m.AddSeries("m", ls)
		m.Add(s, 1, v)
		m.Add(s, 2, v+0.5) // a series used twice in one message: one entry
		return m
	}
	bl.merge(&msgTrack{id: "1"}, msg(a, 1), true)
	bl.merge(&msgTrack{id: "2"}, msg(a, 2), true)
	bl.merge(&msgTrack{id: "3"}, msg(b, 3), true)
	got := bl.cur.b
	if n := len(got.Series); n != 3 {
		t.Fatalf("%d series, want 3 (one per message)", n)
	}
	want := []string{`m{host="a"} 1`, `m{host="a"} 1.5`, `m{host="a"} 2`, `m{host="a"} 2.5`, `m{host="b"} 3`, `m{host="b"} 3.5`}
	for i, w := range want {
		s := got.Sample(i)
		if g := fmt.Sprintf("%s%s %g", s.Name, s.Labels, s.Value); g != w {
			t.Errorf("point %d = %s, want %s", i, g, w)
		}
	}
	bl.rotate()
	bl.merge(&msgTrack{id: "4"}, msg(a, 4), true)
	if n := len(bl.cur.b.Series); n != 1 || bl.cur.b.Points[1].Series != 0 {
		t.Fatalf("after rotate: %d series, point series %d", n, bl.cur.b.Points[1].Series)
	}
}

// TestBuilderSizesLikeLastBatch: a new batch starts with room for as many
// points and series as the previous one had (no regrowth per batch).
func TestBuilderSizesLikeLastBatch(t *testing.T) {
	bl := newBuilder(1000)
	src := &sdk.Batch{}
	for i := 0; i < 700; i++ {
		src.Add(src.AddSeries("m", sdk.Labels{{Key: "i", Value: fmt.Sprint(i)}}), 1, 1)
	}
	bl.add(&msgTrack{id: "1"}, src)
	if got := bl.take(true); len(got) != 1 || got[0].b.Len() != 700 {
		t.Fatalf("took %d batches", len(got))
	}
	bl.newCur() // what the next add does first
	b := bl.cur.b
	if len(b.Points) != 0 || cap(b.Points) < 700 || cap(b.Series) < 700 || cap(b.Points) > 1000 {
		t.Fatalf("second batch: cap(points) %d, cap(series) %d, want 700..1000", cap(b.Points), cap(b.Series))
	}
}

// BenchmarkBuilderMerge: merging scrape-shaped messages (one host: 8 GPUs
// x 30 metrics, one point each, shared labels) into 10,000-point batches
// whose memory is reused (spare), as in the plugin; one-pass=false is the
// point-by-point merge (appendWhole off).
func BenchmarkBuilderMerge(b *testing.B) {
	msg := &sdk.Batch{}
	for g := 0; g < 8; g++ {
		ls := sdk.Labels{{Key: "gpu", Value: fmt.Sprint(g)}, {Key: "Hostname", Value: "host-1"}}
		for m := 0; m < 30; m++ {
			msg.Add(msg.AddSeries(fmt.Sprintf("DCGM_FI_%d", m), ls), 1, float64(m))
		}
	}
	for _, whole := range []bool{true, false} {
		b.Run(fmt.Sprintf("one-pass=%v", whole), func(b *testing.B) {
			bl := newBuilder(10_000)
			bl.noWhole = !whole
			tr := &msgTrack{id: "m"}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				bl.merge(tr, msg, true)
				// As behind the plugin's accumulator, which copies on
				// Emit: the emitted batch's memory serves the next one.
				for _, p := range bl.full {
					bl.spare(p.b)
				}
				bl.full = bl.full[:0]
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*msg.Len()), "ns/sample")
		})
	}
}

// noCopyAcc says it does not copy on Emit.
type noCopyAcc struct{ countingAcc }

func (*noCopyAcc) EmitCopies() bool { return false }

// TestBuilderReusesSpare: emitted batches are reused only behind an
// accumulator that copies on Emit, and a reused batch starts empty.
func TestBuilderReusesSpare(t *testing.T) {
	for _, tc := range []struct {
		name string
		acc  sdk.Accumulator
		want bool
	}{
		{"copying accumulator", &copyingAcc{}, true},
		{"says it does not copy", &noCopyAcc{}, false},
		{"plain accumulator (the pipeline keeps batches)", &countingAcc{}, false},
	} {
		if got := copiesOnEmit(tc.acc); got != tc.want {
			t.Errorf("%s: copiesOnEmit = %v, want %v", tc.name, got, tc.want)
		}
	}
	bl := newBuilder(100)
	msg := &sdk.Batch{}
	msg.Add(msg.AddSeries("m", sdk.Labels{{Key: "host", Value: "a"}}), 1, 1)
	bl.merge(&msgTrack{id: "1"}, msg, true)
	first := bl.take(true)[0].b
	bl.spare(first)
	bl.merge(&msgTrack{id: "2"}, msg, true)
	second := bl.cur.b
	if second != first || &second.Points[0] != &first.Points[0] {
		t.Fatal("the spare batch was not reused")
	}
	if second.Len() != 1 || len(second.Series) != 1 {
		t.Fatalf("reused batch holds %d points, %d series; want only the new message's", second.Len(), len(second.Series))
	}
	// Without a spare, a new batch.
	third := bl.take(true)[0].b
	bl.merge(&msgTrack{id: "3"}, msg, true)
	if bl.cur.b == third {
		t.Fatal("a batch not offered as spare was reused")
	}
}

// TestAppendWhole: merge's one-pass case (appendWhole) gives the batches,
// series, points, rejects and message attachments that the point-by-point
// merge gives, for messages of every shape: series in order of first use
// or not, a series unused or used twice, invalid series numbers, rejects,
// messages that do not fit the current batch or exactly fill it.
func TestAppendWhole(t *testing.T) {
	ls := func(h string) sdk.Labels { return sdk.Labels{{Key: "host", Value: h}} }
	// msg builds a message batch with series names[i] and points on the
	// series numbers given.
	msg := func(nseries int, points ...uint32) *sdk.Batch {
		m := &sdk.Batch{}
		for i := range nseries {
			m.AddSeries(fmt.Sprintf("m%d", i), ls(fmt.Sprint(i)))
		}
		for k, s := range points {
			m.Points = append(m.Points, sdk.Point{Series: s, Time: int64(k), Value: float64(k) + 0.5})
		}
		return m
	}
	withReject := func(b *sdk.Batch) *sdk.Batch { b.Reject("bad", "line 3", []byte("x")); return b }
	cases := []struct {
		name string
		msgs []*sdk.Batch
	}{
		{"in order", []*sdk.Batch{msg(3, 0, 1, 2), msg(2, 0, 1)}},
		{"series used twice", []*sdk.Batch{msg(2, 0, 0, 1, 0, 1)}},
		{"first use out of order", []*sdk.Batch{msg(2, 1, 0), msg(3, 0, 2, 1)}},
		{"unused series", []*sdk.Batch{msg(3, 0, 1), msg(3, 0, 2), msg(3, 0, 0, 1), msg(2, 0, 0)}},
		{"series number out of range", []*sdk.Batch{msg(1, 0, 4)}},
		{"rejects", []*sdk.Batch{withReject(msg(2, 0, 1)), withReject(&sdk.Batch{})}},
		{"fills the batch exactly", []*sdk.Batch{msg(4, 0, 1, 2, 3), msg(6, 0, 1, 2, 3, 4, 5)}},
		{"does not fit", []*sdk.Batch{msg(6, 0, 1, 2, 3, 4, 5), msg(6, 0, 1, 2, 3, 4, 5)}},
		{"larger than a batch", []*sdk.Batch{msg(12, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), msg(1, 0)}},
		{"empty", []*sdk.Batch{{}, msg(1, 0)}},
	}
	dump := func(bl *builder) string {
		var sb strings.Builder
		for _, p := range append(bl.full, bl.cur) {
			if p == nil {
				continue
			}
			fmt.Fprintf(&sb, "batch:")
			for _, m := range p.msgs {
				fmt.Fprintf(&sb, " msg %s (pending %d)", m.id, m.pending)
			}
			fmt.Fprintf(&sb, "\n series %d:", len(p.b.Series))
			for _, s := range p.b.Series {
				fmt.Fprintf(&sb, " %s%s", s.Name, s.Labels)
			}
			for i := range p.b.Points {
				s := p.b.Sample(i)
				fmt.Fprintf(&sb, "\n %d %s%s %g", p.b.Points[i].Series, s.Name, s.Labels, s.Value)
			}
			for _, r := range p.b.Rejects {
				fmt.Fprintf(&sb, "\n reject %s %s %q", r.Reason, r.Position, r.Raw)
			}
			sb.WriteString("\n")
		}
		return sb.String()
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := func(noWhole bool) string {
				bl := newBuilder(10)
				bl.noWhole = noWhole
				for i, m := range c.msgs {
					bl.merge(&msgTrack{id: fmt.Sprint(i)}, m, true)
				}
				return dump(bl)
			}
			if got, want := run(false), run(true); got != want {
				t.Fatalf("one-pass merge:\n%s\npoint-by-point merge:\n%s", got, want)
			}
		})
	}
}

// TestBuilderKeepsMessagesWhole: a message that fits in a batch lands in
// one batch (the batch before it goes out short), on the shared-labels
// path and the interning one; a message larger than a batch is still cut
// into full batches. Each case lists the message sizes and the batch
// sizes expected, for batches of at most 10 points.
func TestBuilderKeepsMessagesWhole(t *testing.T) {
	cases := []struct {
		name  string
		msgs  []int
		sizes []int
	}{
		{"fills exactly", []int{4, 6, 10}, []int{10, 10}},
		{"does not fit: next batch", []int{4, 4, 4}, []int{8, 4}},
		{"scrape-like", []int{3, 3, 3, 3, 3, 3, 3}, []int{9, 9, 3}},
		{"a full-size message after a partial batch", []int{1, 10, 1}, []int{1, 10, 1}},
		{"larger than a batch: cut", []int{3, 25, 2}, []int{10, 10, 10}},
		{"larger than a batch first", []int{12, 9}, []int{10, 2, 9}},
	}
	for _, c := range cases {
		for _, shared := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/shared=%v", c.name, shared), func(t *testing.T) {
				bl := newBuilder(10)
				var tracks []*msgTrack
				for i, n := range c.msgs {
					src := &sdk.Batch{}
					for k := range n {
						s := src.AddSeries(fmt.Sprintf("m%d", k), sdk.Labels{{Key: "host", Value: fmt.Sprint(i)}})
						src.Add(s, int64(i), float64(k))
					}
					m := &msgTrack{id: fmt.Sprint(i)}
					tracks = append(tracks, m)
					bl.merge(m, src, shared)
				}
				var sizes []int
				batchOf := map[*msgTrack][]int{}
				for bi, p := range bl.take(true) {
					sizes = append(sizes, p.b.Len())
					for _, m := range p.msgs {
						batchOf[m] = append(batchOf[m], bi)
					}
				}
				if !slices.Equal(sizes, c.sizes) {
					t.Errorf("batch sizes %v, want %v", sizes, c.sizes)
				}
				for i, m := range tracks {
					if n := c.msgs[i]; n <= 10 && (len(batchOf[m]) != 1 || m.pending != 1) {
						t.Errorf("message %d (%d points) is in batches %v (pending %d), want one", i, n, batchOf[m], m.pending)
					}
				}
			})
		}
	}
}
