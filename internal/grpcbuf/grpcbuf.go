// Package grpcbuf holds the gRPC buffer pool and codec of the project's
// connections (the plugin protocol, mq.v1 between the broker, the input
// and publishers): grpc's own zero every buffer they hand out, which cost
// each side of a plugin hop ~5% of its CPU under `make bench`.
package grpcbuf

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Buffer size classes of the pool: powers of two from 512 bytes to 64 MiB
// (the largest message the project's connections accept).
const (
	minBufClass = 9
	maxBufClass = 26 // 64 MiB
)

// bufferPool is a grpc mem.BufferPool that hands out buffers without
// clearing them. grpc's default pool zeroes every buffer it hands out
// (so that stale bytes never show through), which under `make bench` cost
// each side of a plugin hop ~5% of its CPU; grpc only ever reads the
// length it asked for, and writes it before reading. Buffers are pooled per power-of-two size
// class; sizes outside the classes are allocated and dropped. Safe for
// concurrent use.
type bufferPool struct {
	classes [maxBufClass + 1]sync.Pool
}

// NewBufferPool returns a pool for grpc's experimental.WithBufferPool /
// BufferPool options, and for NewCodec.
func NewBufferPool() mem.BufferPool { return &bufferPool{} }

// class returns the size class holding n bytes, or -1.
func bufClass(n int) int {
	c := max(bits.Len(uint(n-1)), minBufClass)
	if n <= 0 || c > maxBufClass {
		return -1
	}
	return c
}

func (p *bufferPool) Get(length int) *[]byte {
	c := bufClass(length)
	if c < 0 {
		b := make([]byte, length)
		return &b
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:length]
		return v
	}
	b := make([]byte, length, 1<<c)
	return &b
}

func (p *bufferPool) Put(b *[]byte) {
	n := cap(*b)
	c := bufClass(n)
	if c < 0 || 1<<c != n {
		return // not one of ours
	}
	p.classes[c].Put(b)
}

// codec is a gRPC codec: protobuf, as grpc's own
// "proto" codec (the same name, so a peer with grpc's codec interoperates),
// with its marshal and unmarshal buffers from a bufferPool instead of
// grpc's default (zeroing) pool, which grpc's codec uses whatever pool the
// connection was given. Safe for concurrent use.
type codec struct{ pool mem.BufferPool }

// NewCodec returns the codec (for grpc.ForceCodecV2 /
// grpc.ForceServerCodecV2), with buffers from pool.
func NewCodec(pool mem.BufferPool) encoding.CodecV2 { return codec{pool: pool} }

func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("grpcbuf: cannot marshal %T: not a proto message", v)
	}
	// UseCachedSize is safe: Size just computed it, and a message being
	// sent is not changed meanwhile.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("grpcbuf: cannot unmarshal into %T: not a proto message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	// proto.Unmarshal copies what it keeps (strings, bytes, columns): the
	// buffer can go back to the pool.
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
