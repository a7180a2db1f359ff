package mqcodec

import (
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// SpliceMin is the smallest payload that MarshalSubscribeResponse and
// MarshalPublishRequest hand to gRPC as a piece of its own instead of
// copying it into the encoded message: below it, a piece costs more than
// the copy it saves.
const SpliceMin = 4 << 10

// Field numbers of the fields the encoders write themselves.
const (
	fieldRequestWaitForAck = 2 // PublishRequest.wait_for_ack
	fieldRequestAckTimeout = 3 // PublishRequest.ack_timeout_seconds

	fieldPubRespID        = 1 // PublishResponse.message_id
	fieldPubRespSuccess   = 2 // PublishResponse.success
	fieldPubRespError     = 3 // PublishResponse.error
	fieldPubRespTimestamp = 4 // PublishResponse.timestamp
)

// splicer builds an encoded message as pieces: the bytes the encoder
// writes (in buf) and payloads it does not copy. Pieces of buf are kept as
// offsets until the end, since buf moves as it grows.
type splicer struct {
	min    int // the smallest payload spliced in (>= 1)
	buf    []byte
	pieces []piece
	// pool and pooled: buf came from pool (nothing is spliced then), and
	// the result hands it back once gRPC has written it.
	pool   mem.BufferPool
	pooled *[]byte
}

// reserve sizes buf for n bytes: from pool (when not nil) if nothing is
// to be spliced, else allocated.
func (s *splicer) reserve(n int, pool mem.BufferPool, splices bool) {
	if pool != nil && !splices && !mem.IsBelowBufferPoolingThreshold(n) {
		s.pool, s.pooled = pool, pool.Get(n)
		s.buf = (*s.pooled)[:0]
		return
	}
	s.buf = make([]byte, 0, n)
}

// piece is a range of buf (payload == nil) or a payload.
type piece struct {
	from, to int
	payload  []byte
}

// splice ends the current range of buf and adds p after it.
func (s *splicer) splice(p []byte) {
	from := 0
	if n := len(s.pieces); n > 0 {
		from = s.pieces[n-1].to
	}
	s.pieces = append(s.pieces, piece{from: from, to: len(s.buf)}, piece{from: len(s.buf), to: len(s.buf), payload: p})
}

// slice returns the pieces in order, the payloads as themselves.
func (s *splicer) slice() mem.BufferSlice {
	if s.pooled != nil {
		if len(s.pieces) == 0 && cap(s.buf) == cap(*s.pooled) {
			*s.pooled = s.buf
			return mem.BufferSlice{mem.NewBuffer(s.pooled, s.pool)}
		}
		s.pool.Put(s.pooled) // outgrown (a size estimate was short)
	}
	out := make(mem.BufferSlice, 0, len(s.pieces)+1)
	last := 0
	for _, p := range s.pieces {
		switch {
		case p.payload != nil:
			out = append(out, mem.SliceBuffer(p.payload))
		case p.to > p.from:
			out = append(out, mem.SliceBuffer(s.buf[p.from:p.to:p.to]))
		}
		last = p.to
	}
	if last < len(s.buf) {
		out = append(out, mem.SliceBuffer(s.buf[last:]))
	}
	return out
}

// withoutPayload returns a shallow copy of m without its payload: every
// other field (TestMessageFields checks the list is complete) and m's
// unknown fields.
func withoutPayload(m *mqpb.Message) *mqpb.Message {
	c := &mqpb.Message{Id: m.Id, Topic: m.Topic, Metadata: m.Metadata, Timestamp: m.Timestamp,
		Priority: m.Priority, Sequence: m.Sequence}
	if u := m.ProtoReflect().GetUnknown(); len(u) > 0 {
		c.ProtoReflect().SetUnknown(u)
	}
	return c
}

// appendMessage appends the encoded m to s.buf, as a length-delimited
// field num, splicing its payload in when it is at least s.min long. A
// message with unknown fields (in it or its timestamp) is encoded by
// proto; the others by hand (plainSize, appendPlain), which protobuf-go's
// table-driven encoding of the metadata map made worth it: it was most of
// the broker's cost of delivering one-sample messages.
func (s *splicer) appendMessage(num protowire.Number, m *mqpb.Message) error {
	return s.appendMessageSized(num, m, plainSizeOf(m))
}

// appendMessageSized is appendMessage given plainSizeOf(m).
func (s *splicer) appendMessageSized(num protowire.Number, m *mqpb.Message, plain int) error {
	s.buf = protowire.AppendTag(s.buf, num, protowire.BytesType)
	p := m.GetPayload()
	splice := len(p) >= s.min
	if plain >= 0 {
		s.buf = protowire.AppendVarint(s.buf, uint64(plain))
		s.buf = appendPlain(s.buf, m, !splice)
		if splice {
			s.buf = protowire.AppendTag(s.buf, fieldMessagePayload, protowire.BytesType)
			s.buf = protowire.AppendVarint(s.buf, uint64(len(p)))
			s.splice(p)
		}
		return nil
	}
	if !splice {
		s.buf = protowire.AppendVarint(s.buf, uint64(proto.Size(m)))
		var err error
		s.buf, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(s.buf, m)
		return err
	}
	// The payload field goes after the others: protobuf accepts fields
	// in any order.
	c := withoutPayload(m)
	size := proto.Size(c) + protowire.SizeTag(fieldMessagePayload) + protowire.SizeBytes(len(p))
	s.buf = protowire.AppendVarint(s.buf, uint64(size))
	var err error
	if s.buf, err = (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend(s.buf, c); err != nil {
		return err
	}
	s.buf = protowire.AppendTag(s.buf, fieldMessagePayload, protowire.BytesType)
	s.buf = protowire.AppendVarint(s.buf, uint64(len(p)))
	s.splice(p)
	return nil
}

// isPlain reports whether m and its timestamp have no unknown fields and
// its strings are valid UTF-8: the hand encoder writes every known field
// (TestMessageFields), and proto.Marshal refuses invalid UTF-8 (left to it,
// with its error).
func isPlain(m *mqpb.Message) bool {
	if len(m.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(m.Id) || !utf8.ValidString(m.Topic) {
		return false
	}
	for k, v := range m.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return m.Timestamp == nil || len(m.Timestamp.ProtoReflect().GetUnknown()) == 0
}

// plainSizeOf is plainSize(m) for a plain m (isPlain), -1 otherwise, in
// one pass over the metadata.
func plainSizeOf(m *mqpb.Message) int {
	if len(m.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(m.Id) || !utf8.ValidString(m.Topic) {
		return -1
	}
	if m.Timestamp != nil && len(m.Timestamp.ProtoReflect().GetUnknown()) > 0 {
		return -1
	}
	n := 0
	for k, v := range m.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return -1
		}
		n += sizeBytesField(sizeBytesField(len(k)) + sizeBytesField(len(v)))
	}
	return n + plainSizeNoMetadata(m)
}

// sizeBytesField is the encoded size of a length-delimited field of n
// bytes with a field number below 16.
func sizeBytesField(n int) int { return 1 + protowire.SizeBytes(n) }

// sizeVarintField is the encoded size of a varint field with a field
// number below 16.
func sizeVarintField(v uint64) int { return 1 + protowire.SizeVarint(v) }

// plainSize is the encoded size of a plain m (isPlain), payload included.
// Fields with their zero value are not written, as in proto3; map entries
// always carry their key and value.
func plainSize(m *mqpb.Message) int {
	n := plainSizeNoMetadata(m)
	for k, v := range m.Metadata {
		n += sizeBytesField(sizeBytesField(len(k)) + sizeBytesField(len(v)))
	}
	return n
}

// plainSizeNoMetadata is plainSize less the metadata entries.
func plainSizeNoMetadata(m *mqpb.Message) int {
	n := 0
	if m.Id != "" {
		n += sizeBytesField(len(m.Id))
	}
	if m.Topic != "" {
		n += sizeBytesField(len(m.Topic))
	}
	if len(m.Payload) > 0 {
		n += sizeBytesField(len(m.Payload))
	}
	if m.Timestamp != nil {
		n += sizeBytesField(timestampSize(m.Timestamp))
	}
	if m.Priority != 0 {
		n += sizeVarintField(uint64(int64(m.Priority)))
	}
	if m.Sequence != 0 {
		n += sizeVarintField(uint64(m.Sequence))
	}
	return n
}

func timestampSize(ts *timestamppb.Timestamp) int {
	n := 0
	if ts.Seconds != 0 {
		n += sizeVarintField(uint64(ts.Seconds))
	}
	if ts.Nanos != 0 {
		n += sizeVarintField(uint64(int64(ts.Nanos)))
	}
	return n
}

// AppendTimestamp appends ts as field num (a google.protobuf.Timestamp),
// as proto.Marshal encodes it: zero seconds and nanos are left out, the
// field itself is not.
func AppendTimestamp(b []byte, num protowire.Number, ts *timestamppb.Timestamp) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampSize(ts)))
	if ts.Seconds != 0 {
		b = protowire.AppendTag(b, fieldTimestampSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ts.Seconds))
	}
	if ts.Nanos != 0 {
		b = protowire.AppendTag(b, fieldTimestampNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(ts.Nanos)))
	}
	return b
}

// AppendMetadataEntry appends one entry (k, v) of mq.v1 Message.metadata,
// as proto.Marshal encodes a map entry (key and value always present). k
// and v must be valid UTF-8, which proto.Marshal checks and this does not.
func AppendMetadataEntry(b []byte, k, v string) []byte {
	b = protowire.AppendTag(b, fieldMessageMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeBytesField(len(k))+sizeBytesField(len(v))))
	b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendPlain appends the fields of a plain m (isPlain) in field-number
// order; the payload too when withPayload is set.
func appendPlain(b []byte, m *mqpb.Message, withPayload bool) []byte {
	str := func(b []byte, num protowire.Number, v string) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	if m.Id != "" {
		b = str(b, fieldMessageID, m.Id)
	}
	if m.Topic != "" {
		b = str(b, fieldMessageTopic, m.Topic)
	}
	if withPayload && len(m.Payload) > 0 {
		b = protowire.AppendTag(b, fieldMessagePayload, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Payload)
	}
	for k, v := range m.Metadata {
		b = AppendMetadataEntry(b, k, v)
	}
	if ts := m.Timestamp; ts != nil {
		b = AppendTimestamp(b, fieldMessageTimestamp, ts)
	}
	if m.Priority != 0 {
		b = protowire.AppendTag(b, fieldMessagePriority, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.Priority)))
	}
	if m.Sequence != 0 {
		b = protowire.AppendTag(b, fieldMessageSequence, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.Sequence))
	}
	return b
}

// AppendMessage appends m encoded as a protobuf mq.v1.Message to b (the
// broker's topic log): by hand for a plain message (isPlain), by
// proto.MarshalOptions{}.MarshalAppend otherwise. proto.Unmarshal of the
// appended bytes equals m. Safe for concurrent use; m must not change
// during the call.
func AppendMessage(b []byte, m *mqpb.Message) ([]byte, error) {
	if plainSizeOf(m) >= 0 {
		return appendPlain(b, m, true), nil
	}
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

// messageSize is an upper bound of the bytes appendMessage writes into
// s.buf for m as field num: what it encodes, less a payload it splices.
func messageSize(m *mqpb.Message, min int) int {
	return messageSizeOf(m, min, plainSizeOf(m))
}

// messageSizeOf is messageSize given plainSizeOf(m).
func messageSizeOf(m *mqpb.Message, min, plain int) int {
	var n int
	if plain >= 0 {
		n = plain
	} else {
		n = proto.Size(m) + 16
	}
	if p := len(m.GetPayload()); p >= min {
		n -= p
	}
	return n + 1 + protowire.SizeVarint(uint64(n)) + 16
}

// MarshalSubscribeResponse encodes r as proto.Marshal does, except that
// payloads of at least SpliceMin bytes are not copied: they are pieces of
// the result of their own, between the encoded bytes around them, and the
// payload field is the last field of its message (protobuf parsers accept
// fields in any order; proto.Unmarshal of the joined pieces equals r). The
// result refers to the payloads, which must not change until it has been
// written (gRPC's rule for a message given to SendMsg anyway).
func MarshalSubscribeResponse(r *mqpb.SubscribeResponse) (mem.BufferSlice, error) {
	return marshalSubscribeResponse(r, SpliceMin)
}

// marshalSubscribeResponse splices payloads of at least min (>= 1) bytes.
func marshalSubscribeResponse(r *mqpb.SubscribeResponse, min int) (mem.BufferSlice, error) {
	return marshalSubscribeResponseTo(r, min, nil)
}

// marshalSubscribeResponseTo is marshalSubscribeResponse, with the encoded
// bytes in a buffer from pool (when not nil) if no payload is spliced.
func marshalSubscribeResponseTo(r *mqpb.SubscribeResponse, min int, pool mem.BufferPool) (mem.BufferSlice, error) {
	s := splicer{min: min}
	n := 4 + len(r.ProtoReflect().GetUnknown())
	splices := false
	// Each message's plain size (or -1), computed once: isPlain and
	// plainSize walk its metadata map.
	plain := make([]int, len(r.Messages))
	for i, m := range r.Messages {
		plain[i] = plainSizeOf(m)
		n += messageSizeOf(m, min, plain[i])
		splices = splices || len(m.GetPayload()) >= min
	}
	s.reserve(n, pool, splices)
	for i, m := range r.Messages {
		if err := s.appendMessageSized(fieldResponseMessages, m, plain[i]); err != nil {
			return nil, err
		}
	}
	if r.Heartbeat {
		s.buf = protowire.AppendTag(s.buf, fieldResponseHeartbeat, protowire.VarintType)
		s.buf = protowire.AppendVarint(s.buf, 1)
	}
	s.buf = append(s.buf, r.ProtoReflect().GetUnknown()...)
	return s.slice(), nil
}

// MarshalPublishRequest is MarshalSubscribeResponse for a PublishRequest.
func MarshalPublishRequest(r *mqpb.PublishRequest) (mem.BufferSlice, error) {
	return marshalPublishRequest(r, SpliceMin)
}

// marshalPublishRequest splices a payload of at least min (>= 1) bytes.
func marshalPublishRequest(r *mqpb.PublishRequest, min int) (mem.BufferSlice, error) {
	return marshalPublishRequestTo(r, min, nil)
}

// marshalPublishRequestTo is marshalPublishRequest, with the encoded bytes
// in a buffer from pool (when not nil) if the payload is not spliced.
func marshalPublishRequestTo(r *mqpb.PublishRequest, min int, pool mem.BufferPool) (mem.BufferSlice, error) {
	s := splicer{min: min}
	n := 24 + len(r.ProtoReflect().GetUnknown())
	if r.Message != nil {
		n += messageSize(r.Message, min)
	}
	s.reserve(n, pool, len(r.GetMessage().GetPayload()) >= min)
	if r.Message != nil {
		if err := s.appendMessage(fieldRequestMessage, r.Message); err != nil {
			return nil, err
		}
	}
	if r.WaitForAck {
		s.buf = protowire.AppendTag(s.buf, fieldRequestWaitForAck, protowire.VarintType)
		s.buf = protowire.AppendVarint(s.buf, 1)
	}
	if r.AckTimeoutSeconds != 0 {
		s.buf = protowire.AppendTag(s.buf, fieldRequestAckTimeout, protowire.VarintType)
		s.buf = protowire.AppendVarint(s.buf, uint64(int64(r.AckTimeoutSeconds)))
	}
	s.buf = append(s.buf, r.ProtoReflect().GetUnknown()...)
	return s.slice(), nil
}

// smallEncoded is an encoded message and the BufferSlice gRPC gets for it,
// in one allocation (the slice's one Buffer is a *SliceBuffer pointing at
// sb, which holds data or, for a larger message, a slice of its own). It
// is written once by its encoder and only read afterwards.
type smallEncoded struct {
	bs   [1]mem.Buffer
	sb   mem.SliceBuffer
	data [96]byte
}

// marshalPublishResponse encodes r as proto.Marshal does (the same bytes),
// by hand: the broker sends one per message published, and proto's
// encoding and gRPC's three allocations for it were a visible part of its
// cost. It reports false, encoding nothing, for a response with unknown
// fields or invalid UTF-8 (left to proto).
func marshalPublishResponse(r *mqpb.PublishResponse) (mem.BufferSlice, bool) {
	ts := r.Timestamp
	if len(r.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(r.MessageId) || !utf8.ValidString(r.Error) ||
		(ts != nil && len(ts.ProtoReflect().GetUnknown()) > 0) {
		return nil, false
	}
	n := 0
	if r.MessageId != "" {
		n += sizeBytesField(len(r.MessageId))
	}
	if r.Success {
		n += 2
	}
	if r.Error != "" {
		n += sizeBytesField(len(r.Error))
	}
	if ts != nil {
		n += sizeBytesField(timestampSize(ts))
	}
	x := &smallEncoded{}
	b := x.data[:0]
	if n > len(x.data) {
		b = make([]byte, 0, n)
	}
	if r.MessageId != "" {
		b = protowire.AppendTag(b, fieldPubRespID, protowire.BytesType)
		b = protowire.AppendString(b, r.MessageId)
	}
	if r.Success {
		b = protowire.AppendTag(b, fieldPubRespSuccess, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if r.Error != "" {
		b = protowire.AppendTag(b, fieldPubRespError, protowire.BytesType)
		b = protowire.AppendString(b, r.Error)
	}
	if ts != nil {
		b = AppendTimestamp(b, fieldPubRespTimestamp, ts)
	}
	x.sb = b
	x.bs[0] = &x.sb
	return x.bs[:], true
}
