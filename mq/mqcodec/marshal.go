package mqcodec

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

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
)

// splicer builds an encoded message as pieces: the bytes the encoder
// writes (in buf) and payloads it does not copy. Pieces of buf are kept as
// offsets until the end, since buf moves as it grows.
type splicer struct {
	min    int // the smallest payload spliced in (>= 1)
	buf    []byte
	pieces []piece
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
// field num, splicing its payload in when it is at least s.min long.
func (s *splicer) appendMessage(num protowire.Number, m *mqpb.Message) error {
	s.buf = protowire.AppendTag(s.buf, num, protowire.BytesType)
	if len(m.GetPayload()) < s.min {
		s.buf = protowire.AppendVarint(s.buf, uint64(proto.Size(m)))
		var err error
		s.buf, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(s.buf, m)
		return err
	}
	// The payload field goes after the others: protobuf accepts fields
	// in any order.
	c := withoutPayload(m)
	p := m.Payload
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

// hasLargePayload reports whether one of ms has a payload worth splicing.
func hasLargePayload(ms ...*mqpb.Message) bool {
	for _, m := range ms {
		if len(m.GetPayload()) >= SpliceMin {
			return true
		}
	}
	return false
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
	s := splicer{min: min}
	for _, m := range r.Messages {
		if err := s.appendMessage(fieldResponseMessages, m); err != nil {
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
	s := splicer{min: min}
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
