package bench

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
)

// Field numbers of mq.v1 (mq/mqpb/mq.proto).
const (
	fieldRequestMessage   = 1 // PublishRequest.message
	fieldMessageID        = 1
	fieldMessageTopic     = 2
	fieldMessagePayload   = 3
	fieldMessageTimestamp = 5
	fieldResponseID       = 1 // PublishResponse.message_id
	fieldResponseSuccess  = 2 // PublishResponse.success
	fieldResponseError    = 3 // PublishResponse.error
)

// wire is what every encoded message of a Messages shares, encoded once by
// Build: the topic field, the metadata entries, and each round's timestamp
// field. Read-only once built.
type wire struct {
	topic  []byte   // the topic field ("" : none, as proto3 has it)
	meta   []byte   // the metadata entries, keys in sorted order
	stamps [][]byte // per round: the timestamp field
}

// buildWire encodes m's shared fields. It fails for strings that are not
// valid UTF-8 (which proto refuses to encode).
func (m *Messages) buildWire() error {
	str := func(b []byte, num protowire.Number, v string) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	for _, s := range []string{m.topic, m.idPrefix} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("bench: %q is not valid UTF-8", s)
		}
	}
	var w wire
	if m.topic != "" {
		w.topic = str(nil, fieldMessageTopic, m.topic)
	}
	keys := make([]string, 0, len(m.meta))
	for k := range m.meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m.meta[k]
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("bench: metadata %q=%q is not valid UTF-8", k, v)
		}
		w.meta = mqcodec.AppendMetadataEntry(w.meta, k, v)
	}
	for _, ts := range m.stamps {
		w.stamps = append(w.stamps, mqcodec.AppendTimestamp(nil, fieldMessageTimestamp, ts))
	}
	m.wire = w
	return nil
}

// encodeRequest returns message i as an encoded PublishRequest
// (wait_for_ack false), laid out as mq/mqcodec's encoder lays out the
// same message (Fill's): id, topic, payload, metadata, timestamp, or, for a
// payload of at least mqcodec.SpliceMin bytes, the payload last and not
// copied (a piece of the result of its own, as the arena has it).
// proto.Unmarshal of the joined pieces equals Fill's message.
func (m *Messages) encodeRequest(i int) mem.BufferSlice {
	p := m.payloads.get(i)
	stamp := m.wire.stamps[sort.SearchInts(m.roundEnd, i+1)]
	var idb [64]byte
	id := strconv.AppendInt(append(idb[:0], m.idPrefix...), int64(i), 10)
	n := 1 + protowire.SizeBytes(len(id)) + len(m.wire.topic) + len(m.wire.meta) + len(stamp)
	if len(p) > 0 {
		n += 1 + protowire.SizeBytes(len(p))
	}
	splice := len(p) >= mqcodec.SpliceMin
	head := 1 + protowire.SizeVarint(uint64(n)) + n
	if splice {
		head -= len(p)
	}
	b := make([]byte, 0, head)
	b = protowire.AppendTag(b, fieldRequestMessage, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, fieldMessageID, protowire.BytesType)
	b = protowire.AppendBytes(b, id)
	b = append(b, m.wire.topic...)
	if splice {
		b = append(b, m.wire.meta...)
		b = append(b, stamp...)
		b = protowire.AppendTag(b, fieldMessagePayload, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(p)))
		return mem.BufferSlice{mem.SliceBuffer(b), mem.SliceBuffer(p)}
	}
	if len(p) > 0 {
		b = protowire.AppendTag(b, fieldMessagePayload, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
	}
	b = append(b, m.wire.meta...)
	b = append(b, stamp...)
	return mem.BufferSlice{mem.SliceBuffer(b)}
}

// outgoing is message i of msgs, for a stream whose codec is
// publishCodec (SendMsg): encoded by msgs.encodeRequest when sent.
type outgoing struct {
	msgs *Messages
	i    int
}

// ack is what the publisher needs of a PublishResponse, decoded by
// publishCodec (RecvMsg): success, and the message id and error text only
// when it is false. Owned by its receiver; not safe for concurrent use.
type ack struct {
	success bool
	id, err string
}

// decode decodes an encoded PublishResponse into a, as proto.Unmarshal
// would (the last occurrence of a field wins, unknown fields and known
// ones of another wire type are skipped, strings must be valid UTF-8).
// Malformed input is an error.
func (a *ack) decode(b []byte) error {
	*a = ack{}
	var id, msg []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bench: PublishResponse: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldResponseSuccess && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("bench: PublishResponse.success: %w", protowire.ParseError(n))
			}
			a.success = protowire.DecodeBool(v)
			b = b[n:]
		case (num == fieldResponseID || num == fieldResponseError) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("bench: PublishResponse field %d: %w", num, protowire.ParseError(n))
			}
			if !utf8.Valid(v) {
				return fmt.Errorf("bench: PublishResponse field %d: invalid UTF-8", num)
			}
			if num == fieldResponseID {
				id = v
			} else {
				msg = v
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("bench: PublishResponse field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if !a.success {
		a.id, a.err = string(id), string(msg)
	}
	return nil
}

// publishCodec is the codec of the benchmark's publish streams (a
// grpc.ForceCodecV2 call option): mq/mqcodec's (the codec of client.Dial,
// the same name), except that it encodes an *outgoing with
// Messages.encodeRequest and decodes into an *ack. Safe for concurrent
// use.
type publishCodec struct{ base encoding.CodecV2 }

// newPublishCodec returns a publishCodec over mq/mqcodec's codec.
func newPublishCodec() publishCodec {
	return publishCodec{base: mqcodec.NewCodec(grpcbuf.NewBufferPool())}
}

func (c publishCodec) Name() string { return c.base.Name() }

func (c publishCodec) Marshal(v any) (mem.BufferSlice, error) {
	if o, ok := v.(*outgoing); ok {
		if o.msgs == nil {
			return nil, errors.New("bench: outgoing message without Messages")
		}
		return o.msgs.encodeRequest(o.i), nil
	}
	return c.base.Marshal(v)
}

func (c publishCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if a, ok := v.(*ack); ok {
		if len(data) == 1 {
			return a.decode(data[0].ReadOnlyData())
		}
		return a.decode(data.Materialize())
	}
	return c.base.Unmarshal(data, v)
}
