package mqcodec

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// TestMessageFields: the encoders write every field of these messages by
// name (withoutPayload, MarshalSubscribeResponse, MarshalPublishRequest).
// A field added to mq.proto fails this test until they write it too.
func TestMessageFields(t *testing.T) {
	for _, tc := range []struct {
		m    proto.Message
		want []protoreflect.FieldNumber
	}{
		{&mqpb.Message{}, []protoreflect.FieldNumber{1, 2, 3, 4, 5, 6, 7}},
		{&mqpb.SubscribeResponse{}, []protoreflect.FieldNumber{fieldResponseMessages, fieldResponseHeartbeat}},
		{&mqpb.PublishRequest{}, []protoreflect.FieldNumber{fieldRequestMessage, fieldRequestWaitForAck, fieldRequestAckTimeout}},
	} {
		fs := tc.m.ProtoReflect().Descriptor().Fields()
		var got []protoreflect.FieldNumber
		for i := 0; i < fs.Len(); i++ {
			got = append(got, fs.Get(i).Number())
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%T has fields %v; the encoders write %v: teach them the new field", tc.m, got, tc.want)
		}
	}
}

// joined returns the bytes of bs in one slice.
func joined(bs mem.BufferSlice) []byte { return bs.Materialize() }

// aliases reports whether one of the pieces of bs is p itself (not a copy).
func aliases(bs mem.BufferSlice, p []byte) bool {
	for _, b := range bs {
		d := b.ReadOnlyData()
		if len(d) == len(p) && len(p) > 0 && unsafe.SliceData(d) == unsafe.SliceData(p) {
			return true
		}
	}
	return false
}

// TestMarshalSplice: the codec's encoding of responses and requests with
// large payloads decodes (proto.Unmarshal, and this package's decoders) to
// the message encoded, and its large payloads are pieces of their own,
// not copies.
func TestMarshalSplice(t *testing.T) {
	big := bytes.Repeat([]byte("DCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} 33\n"), 300)
	big2 := bytes.Repeat([]byte("y"), SpliceMin)
	small := []byte("a,b,c\n")
	ts := timestamppb.New(time.Date(2026, 11, 27, 1, 2, 3, 4, time.UTC))
	full := func(id string, p []byte) *mqpb.Message {
		return &mqpb.Message{Id: id, Topic: "t", Payload: p, Metadata: map[string]string{"content-type": "prometheus", "k": ""},
			Timestamp: ts, Priority: -2, Sequence: 1 << 41}
	}
	unknown := func(m *mqpb.Message) *mqpb.Message {
		m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5))
		return m
	}
	respUnknown := &mqpb.SubscribeResponse{Messages: []*mqpb.Message{full("u", big)}}
	respUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 50, protowire.VarintType), 1))
	c := NewCodec(grpcbuf.NewBufferPool())
	for _, tc := range []struct {
		name    string
		m       proto.Message
		spliced [][]byte
	}{
		{"response, one large payload", &mqpb.SubscribeResponse{Messages: []*mqpb.Message{full("1", big)}}, [][]byte{big}},
		{"response, large and small mixed", &mqpb.SubscribeResponse{Heartbeat: true, Messages: []*mqpb.Message{
			{Id: "a", Payload: small}, full("b", big), {}, {Id: "c", Payload: big2}, unknown(full("d", big)), {Id: "e"},
		}}, [][]byte{big, big2, big}},
		{"response, unknown fields", respUnknown, [][]byte{big}},
		{"request", &mqpb.PublishRequest{Message: full("1", big), WaitForAck: true, AckTimeoutSeconds: 30}, [][]byte{big}},
		{"request, negative timeout", &mqpb.PublishRequest{Message: unknown(&mqpb.Message{Payload: big2}), AckTimeoutSeconds: -1}, [][]byte{big2}},
		{"request, small payload", &mqpb.PublishRequest{Message: full("1", small)}, nil},
		{"response, small payloads", &mqpb.SubscribeResponse{Messages: []*mqpb.Message{{Id: "1", Payload: small}}}, nil},
		{"request, no message", &mqpb.PublishRequest{WaitForAck: true}, nil},
		{"response, 300 small messages", smallMessages(300), nil},
		{"request, unknown fields, small payload", &mqpb.PublishRequest{Message: unknown(full("u", small))}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := c.Marshal(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			raw := joined(bs)
			got := tc.m.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.m) {
				t.Fatalf("proto.Unmarshal: got %.300v, want %.300v", got, tc.m)
			}
			mine := tc.m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, mine); err != nil {
				t.Fatal(err)
			}
			want := tc.m
			if _, ok := want.(*mqpb.SubscribeResponse); ok {
				// UnmarshalSubscribeResponse drops the response's own
				// unknown fields.
				want = proto.Clone(want)
				want.ProtoReflect().SetUnknown(nil)
			}
			if !proto.Equal(mine, want) {
				t.Fatalf("codec.Unmarshal: got %.300v, want %.300v", mine, want)
			}
			if want := proto.Size(tc.m); len(raw) != want {
				t.Errorf("%d bytes, proto.Size says %d", len(raw), want)
			}
			for _, p := range tc.spliced {
				if !aliases(bs, p) {
					t.Errorf("a %d-byte payload was copied, not spliced", len(p))
				}
			}
			if tc.spliced == nil && len(bs) > 1 {
				t.Errorf("%d pieces without a payload to splice", len(bs))
			}
			bs.Free()
		})
	}
}

// smallMessages is a response of n one-sample messages, as the
// gpu-tel-json workload's.
func smallMessages(n int) *mqpb.SubscribeResponse {
	r := &mqpb.SubscribeResponse{}
	for i := 0; i < n; i++ {
		r.Messages = append(r.Messages, &mqpb.Message{Id: fmt.Sprint("msg-", i), Topic: "gpu-telemetry",
			Payload: []byte(`{"metric_name":"DCGM_FI_DEV_GPU_TEMP","value":41}`), Metadata: map[string]string{"content-type": "gpu-tel-json", "n": fmt.Sprint(i)},
			Timestamp: timestamppb.New(time.Unix(1_800_000_000+int64(i), int64(i))), Priority: int32(i % 3), Sequence: int64(i)})
	}
	return r
}

// TestMarshalInvalidUTF8: a message whose strings are not valid UTF-8 is
// refused when sent, as proto.Marshal refuses it.
func TestMarshalInvalidUTF8(t *testing.T) {
	c := NewCodec(grpcbuf.NewBufferPool())
	for _, m := range []*mqpb.Message{{Id: "\xff"}, {Topic: "\xfe"}, {Metadata: map[string]string{"k": "\xc0"}}, {Metadata: map[string]string{"\xc0": "v"}}} {
		if _, err := c.Marshal(&mqpb.SubscribeResponse{Messages: []*mqpb.Message{m}}); err == nil {
			t.Errorf("%v: no error", m)
		}
		if _, err := c.Marshal(&mqpb.PublishRequest{Message: m}); err == nil {
			t.Errorf("%v: no error", m)
		}
	}
}

// TestMarshalPooled: a response without payloads to splice is encoded into
// one pooled buffer, sized right the first time.
func TestMarshalPooled(t *testing.T) {
	r := smallMessages(1000)
	bs, err := NewCodec(grpcbuf.NewBufferPool()).Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 {
		t.Fatalf("%d pieces, want one buffer", len(bs))
	}
	if _, fresh := bs[0].(mem.SliceBuffer); fresh {
		t.Fatal("not the pooled buffer: the size estimate was short")
	}
	var got mqpb.SubscribeResponse
	if err := proto.Unmarshal(bs.Materialize(), &got); err != nil || !proto.Equal(&got, r) {
		t.Fatalf("round trip: %v", err)
	}
	bs.Free()
}

// FuzzMarshalSplice: every response or request proto.Unmarshal accepts
// round-trips through the splicing encoders, whatever the payload sizes
// spliced (the seeds are this package's decoder corpus).
func FuzzMarshalSplice(f *testing.F) {
	for _, raw := range subscribeResponses(f) {
		f.Add(raw, uint8(1))
	}
	for _, raw := range publishRequests(f) {
		f.Add(raw, uint8(3))
	}
	f.Fuzz(func(t *testing.T, raw []byte, min uint8) {
		splice := int(min%8) + 1
		var resp mqpb.SubscribeResponse
		if proto.Unmarshal(raw, &resp) == nil {
			for _, pool := range []mem.BufferPool{nil, grpcbuf.NewBufferPool()} {
				bs, err := marshalSubscribeResponseTo(&resp, splice, pool)
				if err != nil {
					t.Fatal(err)
				}
				var got mqpb.SubscribeResponse
				if err := proto.Unmarshal(joined(bs), &got); err != nil || !proto.Equal(&got, &resp) {
					t.Fatalf("response: got %.300v (%v), want %.300v", &got, err, &resp)
				}
				bs.Free()
			}
		}
		var req mqpb.PublishRequest
		if proto.Unmarshal(raw, &req) == nil {
			for _, pool := range []mem.BufferPool{nil, grpcbuf.NewBufferPool()} {
				bs, err := marshalPublishRequestTo(&req, splice, pool)
				if err != nil {
					t.Fatal(err)
				}
				var got mqpb.PublishRequest
				if err := proto.Unmarshal(joined(bs), &got); err != nil || !proto.Equal(&got, &req) {
					t.Fatalf("request: got %.300v (%v), want %.300v", &got, err, &req)
				}
				bs.Free()
			}
		}
	})
}

// BenchmarkMarshalSubscribeResponse: responses encoded by grpc's protobuf
// codec and by this package's: 100 scrape-sized payloads (56 KiB; copied
// by proto, spliced here), and 1,000 one-sample gpu-tel-json messages
// (encoded by hand here).
func BenchmarkMarshalSubscribeResponse(b *testing.B) {
	large := &mqpb.SubscribeResponse{}
	for i := 0; i < 100; i++ {
		large.Messages = append(large.Messages, &mqpb.Message{Id: "m", Topic: "gpu", Payload: bytes.Repeat([]byte{'x'}, 56<<10),
			Metadata: map[string]string{"content-type": "prometheus"}})
	}
	pool := grpcbuf.NewBufferPool()
	for _, r := range []struct {
		name string
		r    *mqpb.SubscribeResponse
	}{{"large", large}, {"small", smallMessages(1000)}} {
		size := int64(proto.Size(r.r))
		for _, c := range []struct {
			name string
			c    interface {
				Marshal(any) (mem.BufferSlice, error)
			}
		}{{"proto", grpcbuf.NewCodec(pool)}, {"mqcodec", NewCodec(pool)}} {
			b.Run(r.name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					bs, err := c.c.Marshal(r.r)
					if err != nil {
						b.Fatal(err)
					}
					bs.Free()
				}
			})
		}
	}
}

// TestAppendMessage: the broker's log encoding decodes to the message, by
// hand or (unknown fields, invalid UTF-8) by proto, after existing bytes.
func TestAppendMessage(t *testing.T) {
	ts := timestamppb.New(time.Unix(1700000000, 123456789))
	withUnknown := &mqpb.Message{Id: "u", Payload: []byte("p")}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5))
	for i, m := range []*mqpb.Message{
		{},
		{Id: "a", Topic: "t", Payload: bytes.Repeat([]byte("x"), 600), Metadata: map[string]string{"content-type": "gpu-tel-json", "records": "1", "": ""},
			Timestamp: ts, Priority: -3, Sequence: 1 << 40},
		{Id: "b", Timestamp: &timestamppb.Timestamp{}},
		withUnknown,
	} {
		b, err := AppendMessage([]byte("head"), m)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if string(b[:4]) != "head" {
			t.Fatalf("%d: prefix overwritten", i)
		}
		var got mqpb.Message
		if err := proto.Unmarshal(b[4:], &got); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !proto.Equal(&got, m) {
			t.Errorf("%d: decoded %v, want %v", i, &got, m)
		}
	}
	if _, err := AppendMessage(nil, &mqpb.Message{Id: "\xff"}); err == nil {
		t.Error("invalid UTF-8 id encoded without error (proto.Marshal refuses it)")
	}
}

// TestMarshalPublishResponse: the hand encoder writes proto.Marshal's
// bytes, leaves unknown fields and invalid UTF-8 to proto, and the codec
// uses it.
func TestMarshalPublishResponse(t *testing.T) {
	fs := (&mqpb.PublishResponse{}).ProtoReflect().Descriptor().Fields()
	if fs.Len() != 4 || fs.ByNumber(fieldPubRespID) == nil || fs.ByNumber(fieldPubRespSuccess) == nil ||
		fs.ByNumber(fieldPubRespError) == nil || fs.ByNumber(fieldPubRespTimestamp) == nil {
		t.Fatal("PublishResponse has other fields than the encoder writes: teach it the new field")
	}
	long := string(bytes.Repeat([]byte("e"), 300))
	for i, r := range []*mqpb.PublishResponse{
		{},
		{MessageId: "0123456789ab-42", Success: true, Timestamp: timestamppb.New(time.Unix(1764200000, 123456789))},
		{MessageId: "x", Error: "topic is required", Timestamp: &timestamppb.Timestamp{}},
		{MessageId: long, Error: long, Timestamp: &timestamppb.Timestamp{Seconds: -5, Nanos: -1}},
		{Success: true},
	} {
		bs, ok := marshalPublishResponse(r)
		if !ok {
			t.Fatalf("%d: not encoded", i)
		}
		want, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := joined(bs); !bytes.Equal(got, want) {
			t.Errorf("%d: encoded %x, proto.Marshal %x", i, got, want)
		}
		cbs, err := NewCodec(mem.DefaultBufferPool()).Marshal(r)
		if err != nil || !bytes.Equal(joined(cbs), want) {
			t.Errorf("%d: codec encoded %x (%v), want %x", i, joined(cbs), err, want)
		}
	}
	unknown := &mqpb.PublishResponse{MessageId: "u"}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5))
	tsUnknown := &mqpb.PublishResponse{MessageId: "v", Timestamp: &timestamppb.Timestamp{Seconds: 1}}
	tsUnknown.Timestamp.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
	for _, r := range []*mqpb.PublishResponse{unknown, tsUnknown, {MessageId: "\xff"}, {Error: "\xfe"}} {
		if _, ok := marshalPublishResponse(r); ok {
			t.Errorf("%v: encoded by hand", r)
		}
	}
	cbs, err := NewCodec(mem.DefaultBufferPool()).Marshal(unknown)
	if err != nil {
		t.Fatal(err)
	}
	var got mqpb.PublishResponse
	if err := proto.Unmarshal(joined(cbs), &got); err != nil || !proto.Equal(&got, unknown) {
		t.Errorf("codec with unknown fields: %v, %v", &got, err)
	}
}

// TestPlainSizeOf: the one-pass check and size agree with isPlain and
// plainSize.
func TestPlainSizeOf(t *testing.T) {
	withUnknown := &mqpb.Message{Id: "u"}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5))
	tsUnknown := &mqpb.Message{Id: "v", Timestamp: &timestamppb.Timestamp{Seconds: 1}}
	tsUnknown.Timestamp.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
	for i, m := range []*mqpb.Message{
		{}, {Id: "a", Topic: "t", Payload: []byte("p"), Metadata: map[string]string{"k": "v", "": ""}, Timestamp: timestamppb.Now(), Priority: 2, Sequence: 9},
		{Metadata: map[string]string{"k": "\xff"}}, {Metadata: map[string]string{"\xfe": "v"}}, {Id: "\xff"}, {Topic: "\xff"},
		withUnknown, tsUnknown,
	} {
		want := -1
		if isPlain(m) {
			want = plainSize(m)
		}
		if got := plainSizeOf(m); got != want {
			t.Errorf("%d: plainSizeOf = %d, want %d", i, got, want)
		}
	}
}
