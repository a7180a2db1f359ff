package mq_service

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// recvCodec is the protobuf codec of the connection to the broker. It
// differs from grpc's default in two ways: a received Subscribe response is
// joined into a fresh slice, not into one taken from grpc's global buffer
// pool, and its payloads are slices of that copy (mqcodec), not copies of
// their own. A response holds batch_size payloads (10 MiB for 100 DCGM
// exports of one host); the pool kept the largest of them alive between
// garbage collections (20 MiB of the input's heap under `make bench`),
// while the fresh slice is garbage once its payloads are parsed (runner
// drops each payload after parsing it). Stateless; safe for concurrent use.
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
		return mqcodec.UnmarshalSubscribeResponse(data.Materialize(), r)
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
