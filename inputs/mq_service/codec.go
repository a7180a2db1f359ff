package mq_service

import (
	"google.golang.org/grpc/encoding"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
)

// brokerCodec returns the protobuf codec of the connection to the broker
// (mq/mqcodec's): a received Subscribe response is joined into a fresh
// slice, not into one taken from grpc's global buffer pool, and its
// payloads are slices of that copy, not copies of their own. A response
// holds batch_size payloads (10 MiB for 100 DCGM exports of one host); the
// pool kept the largest of them alive between garbage collections (20 MiB
// of the input's heap under `make bench`), while the fresh slice is
// garbage once its payloads are parsed (runner drops each payload after
// parsing it). Safe for concurrent use.
func brokerCodec() encoding.CodecV2 { return mqcodec.NewCodec(grpcbuf.NewBufferPool()) }
