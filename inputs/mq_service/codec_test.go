package mq_service

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

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
	msg := func(fields ...[]byte) []byte {
		var m []byte
		for _, f := range fields {
			m = append(m, f...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, fieldResponseMessages, protowire.BytesType), m)
	}
	str := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
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
	errGot := unmarshalSubscribeResponse(bytes.Clone(raw), &got)
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
