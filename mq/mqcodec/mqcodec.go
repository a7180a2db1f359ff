// Package mqcodec decodes the mq.v1 messages that carry payloads
// (SubscribeResponse on the consumer side, PublishRequest on the broker's)
// with every payload a slice of the received bytes instead of a copy:
// proto.Unmarshal copies each payload, and that second copy of everything
// received cost the input ~10% and the broker ~20% of their CPU under
// `make bench`, in copying and garbage collection. The other fields are
// decoded by proto.Unmarshal (from the message's bytes minus its payload),
// so strings are validated and maps, timestamps and unknown fields handled
// exactly as before.
//
// Its gRPC codec (NewCodec) also sends large payloads without copying them
// into the encoded message (MarshalSubscribeResponse), and can decode
// responses into reused buffers (NewCodecBuffers, Received). The codec and
// the functions are safe for concurrent use; Buffers documents its own
// rules.
package mqcodec

import (
	"bytes"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// Field numbers of mq.v1 (mq/mqpb/mq.proto) that the decoders handle
// themselves.
const (
	fieldResponseMessages  = 1 // SubscribeResponse.messages
	fieldResponseHeartbeat = 2 // SubscribeResponse.heartbeat
	fieldRequestMessage    = 1 // PublishRequest.message
	fieldMessagePayload    = 3 // Message.payload
)

// UnmarshalSubscribeResponse decodes b, which it owns from then on (the
// payloads are slices of it), into r like proto.Unmarshal, except that
// unknown fields of the response itself are dropped. Malformed input is an
// error, as with proto.Unmarshal.
func UnmarshalSubscribeResponse(b []byte, r *mqpb.SubscribeResponse) error {
	proto.Reset(r)
	var rest []byte // scratch: a message without its payload field
	var in interner
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("mqcodec: SubscribeResponse: %w", protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("mqcodec: SubscribeResponse: field number %d out of range", num)
		}
		b = b[n:]
		switch {
		case num == fieldResponseMessages && typ == protowire.BytesType:
			mb, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("mqcodec: SubscribeResponse.messages: %w", protowire.ParseError(n))
			}
			b = b[n:]
			if m, ok := fastMessage(mb, &in); ok {
				r.Messages = append(r.Messages, m)
				continue
			}
			m := &mqpb.Message{}
			var payload []byte
			var err error
			if rest, payload, err = splitPayload(mb, rest[:0]); err != nil {
				return err
			}
			if err := proto.Unmarshal(rest, m); err != nil {
				return fmt.Errorf("mqcodec: SubscribeResponse.messages: %w", err)
			}
			m.Payload = payload
			r.Messages = append(r.Messages, m)
		case num == fieldResponseHeartbeat && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("mqcodec: SubscribeResponse.heartbeat: %w", protowire.ParseError(n))
			}
			b = b[n:]
			r.Heartbeat = protowire.DecodeBool(v)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("mqcodec: SubscribeResponse field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

// splitPayload returns the encoded Message mb without its payload fields
// (appended to rest) and the payload: a slice of mb, the last occurrence
// as protobuf has it, or nil when there is none or it is empty.
func splitPayload(mb, rest []byte) (_, payload []byte, err error) {
	for len(mb) > 0 {
		num, typ, n := protowire.ConsumeTag(mb)
		if n < 0 {
			return nil, nil, fmt.Errorf("mqcodec: Message: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, mb[n:])
		if m < 0 {
			return nil, nil, fmt.Errorf("mqcodec: Message field %d: %w", num, protowire.ParseError(m))
		}
		if num == fieldMessagePayload && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(mb[n:])
			// Clipped: an append to one payload must not write into the
			// next message.
			payload = v[:len(v):len(v)]
			if len(v) == 0 {
				payload = nil
			}
		} else {
			rest = append(rest, mb[:n+m]...)
		}
		mb = mb[n+m:]
	}
	return rest, payload, nil
}

// UnmarshalPublishRequest decodes b, which it owns from then on (the
// payload is a slice of it), into r like proto.Unmarshal. A request whose
// message field comes more than once (protobuf merges them) is decoded by
// proto.Unmarshal itself, copying.
func UnmarshalPublishRequest(b []byte, r *mqpb.PublishRequest) error {
	var outer []byte // the request without its message field
	var msg []byte
	seen := 0
	plain := true // outer holds nothing but wait_for_ack and ack_timeout_seconds varints
	for rest := b; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return fmt.Errorf("mqcodec: PublishRequest: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return fmt.Errorf("mqcodec: PublishRequest field %d: %w", num, protowire.ParseError(m))
		}
		if num == fieldRequestMessage && typ == protowire.BytesType {
			msg, _ = protowire.ConsumeBytes(rest[n:])
			seen++
		} else {
			outer = append(outer, rest[:n+m]...)
			if typ != protowire.VarintType || (num != fieldRequestWaitForAck && num != fieldRequestAckTimeout) {
				plain = false
			}
		}
		rest = rest[n+m:]
	}
	if seen > 1 {
		err := proto.Unmarshal(b, r)
		if p := r.GetMessage().GetPayload(); len(p) > 0 {
			r.Message.Payload = p[:len(p):len(p)] // clipped, as always
		}
		return err
	}
	if plain {
		// What publishers send: decoded here, as proto.Unmarshal would
		// (the last occurrence wins).
		proto.Reset(r)
		for len(outer) > 0 {
			num, _, n := protowire.ConsumeTag(outer)
			v, m := protowire.ConsumeVarint(outer[n:])
			outer = outer[n+m:]
			if num == fieldRequestWaitForAck {
				r.WaitForAck = protowire.DecodeBool(v)
			} else {
				r.AckTimeoutSeconds = int32(v)
			}
		}
	} else if err := proto.Unmarshal(outer, r); err != nil {
		return fmt.Errorf("mqcodec: PublishRequest: %w", err)
	}
	if seen == 0 {
		return nil
	}
	if m, ok := fastMessage(msg, nil); ok {
		r.Message = m
		return nil
	}
	rest, payload, err := splitPayload(msg, nil)
	if err != nil {
		return err
	}
	m := &mqpb.Message{}
	if err := proto.Unmarshal(rest, m); err != nil {
		return fmt.Errorf("mqcodec: PublishRequest.message: %w", err)
	}
	m.Payload = payload
	r.Message = m
	return nil
}

// codec is the gRPC codec of mq.v1 connections: protobuf as grpc's own
// (internal/grpcbuf's buffers), except that a received PublishRequest or
// SubscribeResponse is joined into a fresh slice that its payloads then
// share (see the package doc), and one being sent hands its large payloads
// to gRPC without copying them (MarshalSubscribeResponse): the broker
// copied every payload it delivered into the encoded response, ~12% of its
// CPU under `make bench`.
type codec struct {
	base encoding.CodecV2
	pool mem.BufferPool
	bufs *Buffers // for Received; nil: fresh buffers
}

// NewCodec returns the codec (grpc.ForceServerCodecV2 / ForceCodecV2),
// with marshalling buffers from pool.
func NewCodec(pool mem.BufferPool) encoding.CodecV2 {
	return codec{base: grpcbuf.NewCodec(pool), pool: pool}
}

func (c codec) Name() string { return c.base.Name() }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *mqpb.SubscribeResponse:
		return marshalSubscribeResponseTo(m, SpliceMin, c.pool)
	case *mqpb.PublishRequest:
		return marshalPublishRequestTo(m, SpliceMin, c.pool)
	case *mqpb.PublishResponse:
		if bs, ok := marshalPublishResponse(m); ok {
			return bs, nil
		}
	}
	return c.base.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *mqpb.PublishRequest:
		return UnmarshalPublishRequest(join(data), m)
	case *mqpb.SubscribeResponse:
		return UnmarshalSubscribeResponse(join(data), m)
	case *Received:
		return decodeReceived(data, c.bufs, m)
	case *Frames:
		// grpc frees data after Unmarshal: keep a reference of our own
		// (its slice of buffers is made for this message alone).
		m.Release()
		data.Ref()
		*m = Frames{data: data, bufs: c.bufs}
		return nil
	}
	return c.base.Unmarshal(data, v)
}

// join copies data into one fresh slice, as data.Materialize does, but
// without zeroing it first (bytes.Join allocates its result uninitialised
// and then fills it): for the megabytes of payload a SubscribeResponse
// carries, Materialize's zeroing was ~10% of the input's CPU under
// `make bench`. The result is the caller's; data is not retained.
func join(data mem.BufferSlice) []byte {
	switch len(data) {
	case 0:
		return nil
	case 1:
		// append to nil does not zero what it copies over either.
		return append([]byte(nil), data[0].ReadOnlyData()...)
	}
	var small [16][]byte
	parts := small[:0]
	for _, b := range data {
		parts = append(parts, b.ReadOnlyData())
	}
	return bytes.Join(parts, nil)
}
