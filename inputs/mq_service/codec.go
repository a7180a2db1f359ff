package mq_service

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
)

// brokerCodec returns the protobuf codec of the connection to the broker
// (mq/mqcodec's), marshalling into buffers from pool: a received Subscribe
// response is joined into a fresh slice (not zeroed first, and not taken
// from a pool), and its payloads are slices of that copy, not copies of
// their own. A response holds batch_size payloads (10 MiB for 100 DCGM
// exports of one host); a pool would keep the largest of them alive
// between garbage collections, while the fresh slice is garbage once its
// payloads are parsed (runner drops each payload after parsing it). Safe
// for concurrent use.
func brokerCodec(pool mem.BufferPool) encoding.CodecV2 { return mqcodec.NewCodec(pool) }
