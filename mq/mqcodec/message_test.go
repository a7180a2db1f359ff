package mqcodec

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// fastCase is an encoded Message and whether fastMessage must take it.
type fastCase struct {
	name string
	raw  []byte
	fast bool
}

// fastMessageCases are Messages as publishers write them (fastMessage
// takes them) and every kind of input it must decline.
func fastMessageCases(tb testing.TB) []fastCase {
	str, varint := wireString, wireVarint
	msg := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	entry := func(fields ...[]byte) []byte { return wireBytes(fieldMessageMetadata, bytes.Join(fields, nil)) }
	ts := func(fields ...[]byte) []byte { return wireBytes(fieldMessageTimestamp, bytes.Join(fields, nil)) }
	full, err := proto.Marshal(&mqpb.Message{Id: "42", Topic: "gpu-telemetry", Payload: []byte(`{"v":1}`),
		Metadata:  map[string]string{"content-type": "gpu-tel-json", "host": "dgx-01", "": "empty key", "e": ""},
		Timestamp: timestamppb.New(time.Date(2026, 11, 27, 2, 0, 0, 123, time.UTC)), Priority: -5, Sequence: 1 << 50})
	if err != nil {
		tb.Fatal(err)
	}
	return []fastCase{
		{"as proto.Marshal writes it", full, true},
		{"empty", nil, true},
		{"fields in another order", msg(varint(7, 9), str(3, "p"), entry(str(2, "v"), str(1, "k")), str(1, "id")), true},
		{"a field twice: the last wins", msg(str(1, "a"), str(1, "b"), varint(6, 1), varint(6, 2), str(3, "x"), str(3, "")), true},
		{"a key twice: the last wins", msg(entry(str(1, "k"), str(2, "1")), entry(str(1, "k"), str(2, "2"))), true},
		{"entry without key or value", msg(entry(str(2, "v")), entry(str(1, "k")), entry()), true},
		{"empty timestamp", msg(ts()), true},
		{"negative seconds", msg(ts(varint(1, uint64(1<<64-5)), varint(2, 7))), true},
		{"int32 priority from a 64-bit varint", msg(varint(6, 1<<40|3)), true},
		{"invalid UTF-8 in the id", msg(str(1, "\xff")), false},
		{"invalid UTF-8 in a value", msg(entry(str(1, "k"), str(2, "\xfe"))), false},
		{"unknown field", msg(str(1, "a"), varint(99, 1)), false},
		{"unknown field in an entry", msg(entry(str(1, "k"), varint(3, 1))), false},
		{"key twice in an entry", msg(entry(str(1, "a"), str(1, "b"))), false},
		{"timestamp twice (merged)", msg(ts(varint(1, 5)), ts(varint(2, 6))), false},
		{"unknown field in the timestamp", msg(ts(varint(1, 5), varint(3, 1))), false},
		{"id of another wire type", msg(varint(1, 5)), false},
		{"priority of another wire type", msg(str(6, "x")), false},
		{"truncated", full[:len(full)-3], false},
		{"bad tag", []byte{0xff}, false},
		{"field number zero", protowire.AppendVarint(protowire.AppendTag(nil, 0, protowire.VarintType), 1), false},
	}
}

// TestFastMessage: fastMessage decodes what publishers write exactly as
// proto.Unmarshal does (and takes those), and declines everything it does
// not handle, which then goes to proto.Unmarshal.
func TestFastMessage(t *testing.T) {
	tests := fastMessageCases(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want mqpb.Message
			errWant := proto.Unmarshal(tt.raw, &want)
			got, ok := fastMessage(bytes.Clone(tt.raw), &interner{})
			if ok != tt.fast {
				t.Fatalf("fastMessage took it: %v, want %v", ok, tt.fast)
			}
			if !ok {
				return
			}
			if errWant != nil {
				t.Fatalf("fastMessage decoded what proto.Unmarshal refuses: %v", errWant)
			}
			if !proto.Equal(got, &want) {
				t.Fatalf("got %v, proto.Unmarshal %v", got, &want)
			}
			if p := got.GetPayload(); len(p) != cap(p) {
				t.Fatalf("payload not clipped (len %d, cap %d)", len(p), cap(p))
			}
		})
	}
}

// FuzzFastMessage: whatever fastMessage takes, proto.Unmarshal decodes to
// the same message.
func FuzzFastMessage(f *testing.F) {
	for _, raw := range subscribeResponses(f) {
		f.Add(raw)
	}
	for _, raw := range publishRequests(f) {
		f.Add(raw)
	}
	for _, c := range fastMessageCases(f) {
		f.Add(c.raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := fastMessage(bytes.Clone(raw), &interner{})
		if !ok {
			return
		}
		var want mqpb.Message
		if err := proto.Unmarshal(raw, &want); err != nil {
			t.Fatalf("fastMessage decoded what proto.Unmarshal refuses: %v", err)
		}
		if !proto.Equal(got, &want) {
			t.Fatalf("got %v, proto.Unmarshal %v", got, &want)
		}
	})
}

// BenchmarkUnmarshalSubscribeResponse: a response of 1,000 one-sample
// gpu-tel-json messages (metadata and timestamp set), as the bench's
// gpu-tel-json workload delivers them, decoded by proto.Unmarshal and by
// this package (fastMessage).
func BenchmarkUnmarshalSubscribeResponse(b *testing.B) {
	r := &mqpb.SubscribeResponse{}
	for i := 0; i < 1000; i++ {
		r.Messages = append(r.Messages, &mqpb.Message{Id: "0123456789abcdef", Topic: "gpu-telemetry",
			Payload:   bytes.Repeat([]byte("x"), 540),
			Metadata:  map[string]string{"content-type": "gpu-tel-json"},
			Timestamp: timestamppb.New(time.Unix(1_800_000_000, 5)), Sequence: int64(i)})
	}
	raw, err := proto.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var got mqpb.SubscribeResponse
			if err := proto.Unmarshal(raw, &got); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(r.Messages)), "ns/message")
	})
	b.Run("mqcodec", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var got mqpb.SubscribeResponse
			if err := UnmarshalSubscribeResponse(raw, &got); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(r.Messages)), "ns/message")
	})
}
