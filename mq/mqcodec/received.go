package mqcodec

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// Buffers recycles the buffers that received SubscribeResponses are
// decoded into (see Received). Without it every response is joined into a
// fresh slice: under `make bench` that fresh memory (5-10 MB a response,
// returned to the OS by the scavenger between uses under a memory limit)
// made the copy itself ~15% of the input's CPU, and all of it garbage.
//
// It keeps at most maxFree buffers, none larger than maxKeep, so what it
// holds between responses is bounded. Safe for concurrent use.
type Buffers struct {
	mu   sync.Mutex
	free [][]byte
}

const (
	// maxFree buffers are kept for reuse: one is enough in steady state
	// (one response being parsed, the next being received).
	maxFree = 1
	maxKeep = 16 << 20 // larger buffers are left to the garbage collector
	// slackDiv: a new buffer has 1/slackDiv more room than the response
	// it is made for.
	slackDiv = 16
)

// get returns a buffer of length n: a free one large enough, else a new one
// (not zeroed: the caller overwrites all of it).
func (b *Buffers) get(data mem.BufferSlice) []byte {
	n := data.Len()
	b.mu.Lock()
	for k := len(b.free) - 1; k >= 0; k-- {
		if buf := b.free[k]; cap(buf) >= n {
			b.free = append(b.free[:k], b.free[k+1:]...)
			b.mu.Unlock()
			buf = buf[:n]
			data.CopyTo(buf)
			return buf
		}
	}
	// None fits: drop the smaller ones now (put would keep the new, larger
	// buffer instead of them anyway), so they are not held while the new
	// one is filled and parsed.
	clear(b.free)
	b.free = b.free[:0]
	b.mu.Unlock()
	// With room to spare: responses of one stream differ by a few bytes,
	// and an exact fit made each slightly larger one allocate a buffer of
	// its own (10 MB for 100 DCGM CSV exports; under `make bench` the
	// input held two of them). make zeroes it, which costs little now that
	// a new buffer is rare.
	buf := make([]byte, n, n+n/slackDiv)
	data.CopyTo(buf)
	return buf
}

// put makes buf available to get again. The caller must not use it, or any
// slice of it, afterwards.
func (b *Buffers) put(buf []byte) {
	if cap(buf) == 0 || cap(buf) > maxKeep {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.free) < maxFree {
		b.free = append(b.free, buf[:0])
		return
	}
	// Full: keep the larger buffers, which fit more responses.
	small := 0
	for k := range b.free {
		if cap(b.free[k]) < cap(b.free[small]) {
			small = k
		}
	}
	if cap(buf) > cap(b.free[small]) {
		b.free[small] = buf[:0]
	}
}

// Received is a SubscribeResponse whose payloads share a buffer that goes
// back to its Buffers on Release. Receive into it with a client stream's
// RecvMsg on a connection whose codec is NewCodecBuffers; with another
// codec or no Buffers, it is decoded into a fresh buffer that Release
// leaves to the garbage collector.
//
// Ownership: the receiver owns it. Release must come only when nothing
// refers to the payloads any more (parsers copy what they keep); a
// Received that is dropped without Release is simply collected.
type Received struct {
	Response *mqpb.SubscribeResponse
	buf      []byte
	bufs     *Buffers
}

// Release gives the payloads' buffer back for reuse and clears r.
func (r *Received) Release() {
	if r.bufs != nil && r.buf != nil {
		r.bufs.put(r.buf)
	}
	*r = Received{}
}

// decodeReceived decodes the response in data into r: copied into a buffer
// from bufs (a fresh one when bufs is nil), with its payloads slices of
// that buffer. data is not retained. On error r is left as it was and the
// buffer goes back to bufs.
func decodeReceived(data mem.BufferSlice, bufs *Buffers, r *Received) error {
	var buf []byte
	if bufs != nil {
		buf = bufs.get(data)
	} else {
		buf = join(data)
	}
	resp := &mqpb.SubscribeResponse{}
	if err := UnmarshalSubscribeResponse(buf, resp); err != nil {
		if bufs != nil {
			bufs.put(buf)
		}
		return err
	}
	*r = Received{Response: resp, buf: buf, bufs: bufs}
	return nil
}

// Frames is a SubscribeResponse as gRPC received it, not decoded yet: the
// frames gRPC read it into (buffers of the connection's pool), held until
// Decode copies them into a buffer of the codec's Buffers, or Release. A
// receiver that reads one response ahead of the one it parses holds that
// one once, as frames, instead of twice (its frames while they are copied,
// then the decoded copy, next to the buffer of the response being parsed):
// decoding it only when it is about to be parsed keeps a single decoded
// buffer in use (~5.7 MB for 100 Prometheus scrapes, ~10 MB for 100 DCGM
// CSV exports). Receive into it with a client stream's RecvMsg on a
// connection whose codec is NewCodec or NewCodecBuffers.
//
// Ownership: the receiver owns it; it is not safe for concurrent use.
// Decode or Release gives the frames back (to gRPC's buffer pool); a Frames
// dropped without either is simply collected, its frames not reused.
type Frames struct {
	data mem.BufferSlice
	bufs *Buffers
}

// Len is the encoded response's size in bytes (0 once decoded or released).
func (f *Frames) Len() int { return f.data.Len() }

// Decode decodes the response into r, as the codec decodes a Received
// (an error for malformed input, r then unchanged), and gives the frames
// back: f is empty afterwards, whatever the outcome.
func (f *Frames) Decode(r *Received) error {
	data := f.data
	f.data = nil
	defer data.Free()
	return decodeReceived(data, f.bufs, r)
}

// Release gives the frames back without decoding them and empties f.
func (f *Frames) Release() {
	f.data.Free()
	f.data = nil
}

// NewCodecBuffers is NewCodec, with a Received decoded into a buffer from
// bufs.
func NewCodecBuffers(pool mem.BufferPool, bufs *Buffers) encoding.CodecV2 {
	return codec{base: grpcbuf.NewCodec(pool), pool: pool, bufs: bufs}
}
