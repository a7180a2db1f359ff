package mqcodec

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// wireBytes, wireString and wireVarint encode one protobuf field.
func wireBytes(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func wireString(num protowire.Number, v string) []byte { return wireBytes(num, []byte(v)) }

func wireVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// subscribeResponses are encoded responses covering every field of mq.v1's
// SubscribeResponse and Message, repeated and unknown fields, and
// malformed input.
func subscribeResponses(t testing.TB) [][]byte {
	full := &mqpb.SubscribeResponse{Heartbeat: true, Messages: []*mqpb.Message{
		{Id: "1", Topic: "t", Payload: bytes.Repeat([]byte("a,b,c\n"), 100),
			Metadata: map[string]string{"content-type": "dcgm-csv", "x": ""}, Timestamp: timestamppb.New(time.Date(2026, 11, 26, 20, 58, 55, 944_000_000, time.UTC)),
			Priority: -3, Sequence: 1 << 40},
		{Id: "2", Payload: []byte("x")},
		{Id: "3"},
		{},
	}}
	var out [][]byte
	for _, m := range []*mqpb.SubscribeResponse{full, {}, {Heartbeat: true}, {Messages: []*mqpb.Message{{}}}} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	msg := func(fields ...[]byte) []byte { return wireBytes(fieldResponseMessages, bytes.Join(fields, nil)) }
	str, varint := wireString, wireVarint
	out = append(out,
		// The payload twice (the last wins), an empty payload, a payload
		// field of another wire type (unknown), unknown fields.
		msg(str(1, "a"), str(3, "first"), str(3, "second")),
		msg(str(1, "b"), str(3, "")),
		msg(str(1, "c"), varint(3, 5)),
		append(msg(str(1, "d"), varint(99, 1), str(3, "p")), varint(77, 3)...),
		append(varint(fieldResponseHeartbeat, 2), msg(str(1, "e"))...),
		// Malformed: a truncated message, a bad tag, invalid UTF-8 in a
		// string, a truncated payload.
		msg(str(1, "f"))[:5],
		[]byte{0xff},
		msg(str(1, "\xff\xfe")),
		append(msg(str(1, "g"))[:2], protowire.AppendTag(nil, 3, protowire.BytesType)...),
	)
	return out
}

// TestUnmarshalSubscribeResponse: the decoder that shares one buffer among
// the payloads gives what proto.Unmarshal gives, and errors where it does.
func TestUnmarshalSubscribeResponse(t *testing.T) {
	for i, raw := range subscribeResponses(t) {
		checkSubscribeResponse(t, i, raw)
	}
}

func checkSubscribeResponse(t *testing.T, i int, raw []byte) {
	t.Helper()
	var want, got mqpb.SubscribeResponse
	errWant := proto.Unmarshal(raw, &want)
	errGot := UnmarshalSubscribeResponse(bytes.Clone(raw), &got)
	if (errWant == nil) != (errGot == nil) {
		t.Fatalf("response %d: error %v, proto.Unmarshal %v", i, errGot, errWant)
	}
	if errWant != nil {
		return
	}
	// Unknown fields of the response itself are dropped.
	want.ProtoReflect().SetUnknown(nil)
	if !proto.Equal(&got, &want) {
		t.Fatalf("response %d: got %v, want %v", i, &got, &want)
	}
	for k, m := range got.GetMessages() {
		if p := m.GetPayload(); len(p) != cap(p) {
			t.Fatalf("response %d message %d: payload not clipped (len %d, cap %d)", i, k, len(p), cap(p))
		}
	}
}

func FuzzUnmarshalSubscribeResponse(f *testing.F) {
	for _, raw := range subscribeResponses(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkSubscribeResponse(t, 0, raw) })
}

// publishRequests are encoded requests covering every field of
// PublishRequest and its Message, a repeated message field (merged by
// protobuf), unknown fields, and malformed input.
func publishRequests(t testing.TB) [][]byte {
	full := &mqpb.PublishRequest{WaitForAck: true, AckTimeoutSeconds: 7, Message: &mqpb.Message{
		Id: "1", Topic: "t", Payload: bytes.Repeat([]byte("a,b,c\n"), 100),
		Metadata: map[string]string{"content-type": "dcgm-csv"}, Timestamp: timestamppb.New(time.Unix(1700000000, 5)),
		Priority: 2, Sequence: 9,
	}}
	var out [][]byte
	for _, m := range []*mqpb.PublishRequest{full, {}, {Message: &mqpb.Message{}}, {WaitForAck: true}} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	msg := func(parts ...[]byte) []byte { return wireBytes(fieldRequestMessage, bytes.Join(parts, nil)) }
	str, varint := wireString, wireVarint
	out = append(out,
		// The message twice (merged: the second's payload, the first's id),
		// the payload twice, fields around and after the message.
		append(msg(str(1, "a"), str(3, "one")), msg(str(3, "two"))...),
		msg(str(1, "b"), str(3, "first"), str(3, "second")),
		append(append(varint(2, 1), msg(str(1, "c"), str(3, "p"))...), varint(3, 30)...),
		append(msg(str(1, "d"), varint(99, 1), str(3, "p")), varint(77, 3)...),
		msg(str(1, "e"), varint(3, 5)),
		// Malformed: a truncated message, a bad tag, invalid UTF-8, a
		// message field of another wire type.
		msg(str(1, "f"))[:4],
		[]byte{0xff},
		msg(str(1, "\xff\xfe"), str(3, "x")),
		varint(fieldRequestMessage, 4),
	)
	return out
}

// TestUnmarshalPublishRequest: the decoder whose payload is a slice of
// the request gives what proto.Unmarshal gives, and errors where it does.
func TestUnmarshalPublishRequest(t *testing.T) {
	for i, raw := range publishRequests(t) {
		checkPublishRequest(t, i, raw)
	}
}

func checkPublishRequest(t *testing.T, i int, raw []byte) {
	t.Helper()
	var want, got mqpb.PublishRequest
	errWant := proto.Unmarshal(raw, &want)
	errGot := UnmarshalPublishRequest(bytes.Clone(raw), &got)
	if (errWant == nil) != (errGot == nil) {
		t.Fatalf("request %d: error %v, proto.Unmarshal %v", i, errGot, errWant)
	}
	if errWant != nil {
		return
	}
	if !proto.Equal(&got, &want) {
		t.Fatalf("request %d: got %v, want %v", i, &got, &want)
	}
	if p := got.GetMessage().GetPayload(); len(p) != cap(p) {
		t.Fatalf("request %d: payload not clipped (len %d, cap %d)", i, len(p), cap(p))
	}
}

func FuzzUnmarshalPublishRequest(f *testing.F) {
	for _, raw := range publishRequests(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkPublishRequest(t, 0, raw) })
}

// TestCodec: the mq.v1 codec decodes publish requests and subscribe
// responses arriving in pieces (the pieces may be reused afterwards), and
// any other message as protobuf; its name is grpc's codec's.
func TestCodec(t *testing.T) {
	c := NewCodec(grpcbuf.NewBufferPool())
	if c.Name() != "proto" {
		t.Fatalf("Name() = %q", c.Name())
	}
	pieces := func(raw []byte, size int) mem.BufferSlice {
		var bs mem.BufferSlice
		for k := 0; k < len(raw); k += size {
			bs = append(bs, mem.SliceBuffer(bytes.Clone(raw[k:min(k+size, len(raw))])))
		}
		return bs
	}
	for _, want := range []proto.Message{
		&mqpb.PublishRequest{Message: &mqpb.Message{Id: "1", Payload: bytes.Repeat([]byte("x"), 1000)}},
		&mqpb.SubscribeResponse{Messages: []*mqpb.Message{{Id: "1", Payload: bytes.Repeat([]byte("y"), 1000)}, {Id: "2"}}},
		&mqpb.SubscribeResponse{},
		&mqpb.AcknowledgeRequest{MessageId: "7", ConsumerId: "c", Success: true},
	} {
		// One piece, a few, and more than join's stack array holds.
		for _, size := range []int{1 << 20, 100, 7} {
			data, err := c.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			in := pieces(data.Materialize(), size)
			data.Free()
			got := want.ProtoReflect().New().Interface()
			if err := c.Unmarshal(in, got); err != nil {
				t.Fatal(err)
			}
			for _, b := range in {
				clear(b.ReadOnlyData())
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T in %d-byte pieces: got %v, want %v", want, size, got, want)
			}
		}
	}
}

// TestJoin: join returns the pieces' bytes in one slice of its own.
func TestJoin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pieces []string
	}{
		{"none", nil},
		{"one", []string{"abc"}},
		{"several", []string{"a", "", "bcd", "efgh"}},
		{"many", strings.Split(strings.Repeat("xy,", 40), ",")},
	} {
		var bs mem.BufferSlice
		for _, p := range tc.pieces {
			bs = append(bs, mem.SliceBuffer([]byte(p)))
		}
		got := join(bs)
		want := strings.Join(tc.pieces, "")
		if string(got) != want {
			t.Errorf("%s: join = %q, want %q", tc.name, got, want)
		}
		for _, b := range bs {
			if d := b.ReadOnlyData(); len(d) > 0 && len(got) > 0 && &d[0] == &got[0] {
				t.Errorf("%s: result shares a piece's memory", tc.name)
			}
		}
	}
}
