package mqcodec

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// Field numbers of mq.v1's Message and of google.protobuf.Timestamp.
const (
	fieldMessageID        = 1
	fieldMessageTopic     = 2
	fieldMessageMetadata  = 4
	fieldMessageTimestamp = 5
	fieldMessagePriority  = 6
	fieldMessageSequence  = 7
	fieldMapKey           = 1
	fieldMapValue         = 2
	fieldTimestampSeconds = 1
	fieldTimestampNanos   = 2
)

// fastMessage decodes the Message encoded in mb the way proto.Unmarshal
// does, with its payload a (clipped) slice of mb, for messages as
// publishers write them: every field of its known type, valid UTF-8, the
// timestamp at most once, no unknown fields anywhere. For anything else
// it returns false and the caller decodes mb with proto.Unmarshal, which
// stays the decoder of record (errors included). protobuf-go's
// table-driven decoding of the metadata map cost the input ~20% of its CPU
// under the bench's one-sample-per-message workload, and the broker as
// much. The decoders' differential tests and fuzz targets compare both
// paths with proto.Unmarshal.
//
// Topics and metadata keys and values are interned through in (nil: not
// interned): messages of one response or stream repeat them.
func fastMessage(mb []byte, in *interner) (*mqpb.Message, bool) {
	m := &mqpb.Message{}
	seenTimestamp := false
	for len(mb) > 0 {
		num, typ, n := protowire.ConsumeTag(mb)
		if n < 0 {
			return nil, false
		}
		mb = mb[n:]
		switch {
		case typ == protowire.BytesType && num <= fieldMessageTimestamp:
			v, n := protowire.ConsumeBytes(mb)
			if n < 0 {
				return nil, false
			}
			mb = mb[n:]
			switch num {
			case fieldMessageID, fieldMessageTopic:
				if !utf8.Valid(v) {
					return nil, false
				}
				if num == fieldMessageID {
					m.Id = string(v)
				} else {
					m.Topic = in.str(v)
				}
			case fieldMessagePayload:
				m.Payload = nil
				if len(v) > 0 {
					m.Payload = v[:len(v):len(v)]
				}
			case fieldMessageMetadata:
				k, val, ok := mapEntry(v, in)
				if !ok {
					return nil, false
				}
				if m.Metadata == nil {
					m.Metadata = make(map[string]string, 1)
				}
				m.Metadata[k] = val
			case fieldMessageTimestamp:
				if seenTimestamp {
					return nil, false // merged by protobuf
				}
				seenTimestamp = true
				ts, ok := timestamp(v)
				if !ok {
					return nil, false
				}
				m.Timestamp = ts
			default:
				return nil, false
			}
		case typ == protowire.VarintType && (num == fieldMessagePriority || num == fieldMessageSequence):
			v, n := protowire.ConsumeVarint(mb)
			if n < 0 {
				return nil, false
			}
			mb = mb[n:]
			if num == fieldMessagePriority {
				m.Priority = int32(v)
			} else {
				m.Sequence = int64(v)
			}
		default:
			return nil, false
		}
	}
	return m, true
}

// mapEntry decodes a map<string, string> entry whose fields are the key
// and the value, each at most once.
func mapEntry(b []byte, in *interner) (key, value string, ok bool) {
	seen := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != fieldMapKey && num != fieldMapValue) {
			return "", "", false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 || !utf8.Valid(v) {
			return "", "", false
		}
		b = b[n:]
		bit := 1 << num
		if seen&bit != 0 {
			return "", "", false
		}
		seen |= bit
		if num == fieldMapKey {
			key = in.str(v)
		} else {
			value = in.str(v)
		}
	}
	return key, value, true
}

// timestamp decodes a google.protobuf.Timestamp whose fields are seconds
// and nanos, each at most once.
func timestamp(b []byte) (*timestamppb.Timestamp, bool) {
	ts := &timestamppb.Timestamp{}
	seen := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType || (num != fieldTimestampSeconds && num != fieldTimestampNanos) {
			return nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		bit := 1 << num
		if seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		if num == fieldTimestampSeconds {
			ts.Seconds = int64(v)
		} else {
			ts.Nanos = int32(v)
		}
	}
	return ts, true
}

// interner hands out the same string for the same bytes among the last
// few it made, so repeated topics and metadata are not allocated again.
// Owned by one decoding call; the zero value is ready.
type interner struct {
	slots [8]string
	next  int
}

// str returns b as a string, one of the recent ones when equal.
func (in *interner) str(b []byte) string {
	if in == nil {
		return string(b)
	}
	for _, s := range in.slots {
		if s == string(b) {
			return s
		}
	}
	s := string(b)
	in.slots[in.next] = s
	in.next = (in.next + 1) % len(in.slots)
	return s
}
