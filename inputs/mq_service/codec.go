package mq_service

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// recvCodec is the protobuf codec of the connection to the broker. It
// differs from grpc's default in one way: a received message that arrived
// in several buffers is joined into a fresh slice, not into one taken from
// grpc's global buffer pool. A Subscribe response holds batch_size payloads
// (10 MiB for 100 DCGM exports of one host); the pool kept the largest of
// them alive between garbage collections (20 MiB of the input's heap under
// `make bench`), while a fresh slice is garbage once unmarshalled (the
// payloads are copies). Stateless; safe for concurrent use.
type recvCodec struct{}

// Name is the content subtype: the same as grpc's proto codec.
func (recvCodec) Name() string { return "proto" }

func (recvCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("mq_service: cannot marshal %T: not a proto message", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (recvCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*mqpb.SubscribeResponse); ok {
		// One copy of the response, which the payloads then share.
		return unmarshalSubscribeResponse(data.Materialize(), r)
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("mq_service: cannot unmarshal into %T: not a proto message", v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		b = data.Materialize()
	}
	return proto.Unmarshal(b, m)
}

// Field numbers of mq.v1 (mq/mqpb/mq.proto) that unmarshalSubscribeResponse
// handles itself.
const (
	fieldResponseMessages  = 1 // SubscribeResponse.messages
	fieldResponseHeartbeat = 2 // SubscribeResponse.heartbeat
	fieldMessagePayload    = 3 // Message.payload
)

// unmarshalSubscribeResponse decodes b, which it owns from then on, into
// r like proto.Unmarshal, except that every message's payload is a slice
// of b instead of a copy: proto.Unmarshal copies each payload (a response
// holds batch_size payloads: 10 MiB for 100 DCGM exports of one host), and
// that second copy of everything received cost the input ~10% of its CPU
// under `make bench`, in copying and garbage collection. The other fields
// of each message are decoded by proto.Unmarshal (from the message's bytes
// minus its payload), so strings are validated and maps, timestamps and
// unknown fields handled exactly as before. Unknown fields of the response
// itself are dropped. Malformed input is an error, as with proto.Unmarshal.
func unmarshalSubscribeResponse(b []byte, r *mqpb.SubscribeResponse) error {
	proto.Reset(r)
	var rest []byte // scratch: a message without its payload field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("mq_service: SubscribeResponse: %w", protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("mq_service: SubscribeResponse: field number %d out of range", num)
		}
		b = b[n:]
		switch {
		case num == fieldResponseMessages && typ == protowire.BytesType:
			mb, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("mq_service: SubscribeResponse.messages: %w", protowire.ParseError(n))
			}
			b = b[n:]
			m := &mqpb.Message{}
			var payload []byte
			var err error
			if rest, payload, err = splitPayload(mb, rest[:0]); err != nil {
				return err
			}
			if err := proto.Unmarshal(rest, m); err != nil {
				return fmt.Errorf("mq_service: SubscribeResponse.messages: %w", err)
			}
			m.Payload = payload
			r.Messages = append(r.Messages, m)
		case num == fieldResponseHeartbeat && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("mq_service: SubscribeResponse.heartbeat: %w", protowire.ParseError(n))
			}
			b = b[n:]
			r.Heartbeat = protowire.DecodeBool(v)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("mq_service: SubscribeResponse field %d: %w", num, protowire.ParseError(n))
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
			return nil, nil, fmt.Errorf("mq_service: Message: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, mb[n:])
		if m < 0 {
			return nil, nil, fmt.Errorf("mq_service: Message field %d: %w", num, protowire.ParseError(m))
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
