package mq_service

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
)

// brokerCodec returns the protobuf codec of the connection to the broker
// (mq/mqcodec's), marshalling into buffers from pool. A Subscribe response
// received as an mqcodec.Received is copied out of gRPC's frames into a
// buffer from bufs, and its payloads are slices of that buffer, not copies
// of their own; the runner releases the buffer once it has parsed the
// response (parsers and the batch builder copy what they keep), so the
// input reuses the same few buffers (bufs keeps one, up to 16 MiB)
// instead of allocating one per response (5-10 MB for 100 scrapes or DCGM
// exports): fresh memory every time made the copy ~15% of the input's CPU
// under `make bench`, and all of it garbage. Safe for concurrent use.
func brokerCodec(pool mem.BufferPool, bufs *mqcodec.Buffers) encoding.CodecV2 {
	return mqcodec.NewCodecBuffers(pool, bufs)
}
