package mq_service

import (
	"bytes"
	"hash/maphash"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

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
			if err := (recvCodec{}).Unmarshal(tt.in, &got); err != nil {
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
	out, err := (recvCodec{}).Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Materialize(), raw) {
		t.Error("Marshal differs from proto.Marshal")
	}
	if _, err := (recvCodec{}).Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	if err := (recvCodec{}).Unmarshal(split(len(raw)), new(string)); err == nil {
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
