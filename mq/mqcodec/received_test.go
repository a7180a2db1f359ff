package mqcodec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// frames returns the encoded m in pieces of size bytes, as gRPC hands
// them to a codec.
func frames(t *testing.T, m proto.Message, size int) mem.BufferSlice {
	t.Helper()
	raw, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var bs mem.BufferSlice
	for k := 0; k < len(raw); k += size {
		bs = append(bs, mem.SliceBuffer(bytes.Clone(raw[k:min(k+size, len(raw))])))
	}
	return bs
}

func response(payloads ...string) *mqpb.SubscribeResponse {
	r := &mqpb.SubscribeResponse{}
	for k, p := range payloads {
		r.Messages = append(r.Messages, &mqpb.Message{Id: string(rune('a' + k)), Payload: []byte(p)})
	}
	return r
}

// base returns the address of the first payload's first byte.
func base(r *Received) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(r.Response.Messages[0].Payload))
}

// TestReceived: a Received decodes like proto.Unmarshal whatever the
// frames, does not refer to the frames, and after Release its buffer
// serves the next response that fits; a larger one gets a new buffer.
func TestReceived(t *testing.T) {
	bufs := &Buffers{}
	c := NewCodecBuffers(grpcbuf.NewBufferPool(), bufs)
	first := response(string(bytes.Repeat([]byte("a"), 5000)), "b")
	var r1 Received
	in := frames(t, first, 1000)
	if err := c.Unmarshal(in, &r1); err != nil {
		t.Fatal(err)
	}
	for _, b := range in {
		clear(b.ReadOnlyData()) // gRPC reuses its frames
	}
	if !proto.Equal(r1.Response, first) {
		t.Fatal("decoded response differs")
	}
	addr := base(&r1)
	r1.Release()
	if r1.Response != nil {
		t.Fatal("Release left the response in place")
	}

	// Smaller: reuses the buffer.
	second := response(string(bytes.Repeat([]byte("c"), 3000)))
	var r2 Received
	if err := c.Unmarshal(frames(t, second, 700), &r2); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r2.Response, second) {
		t.Fatal("second response differs")
	}
	if base(&r2) != addr {
		t.Error("a released buffer large enough was not reused")
	}
	// While r2 holds it, a third response gets a buffer of its own.
	var r3 Received
	if err := c.Unmarshal(frames(t, first, 4096), &r3); err != nil {
		t.Fatal(err)
	}
	if base(&r3) == addr {
		t.Fatal("a buffer in use was handed out again")
	}
	if !proto.Equal(r2.Response, second) || !proto.Equal(r3.Response, first) {
		t.Fatal("responses sharing memory")
	}
	r2.Release()
	r3.Release()

	// Larger than every free buffer: a new one.
	big := response(string(bytes.Repeat([]byte("d"), 50_000)))
	var r4 Received
	if err := c.Unmarshal(frames(t, big, 16384), &r4); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r4.Response, big) {
		t.Fatal("big response differs")
	}
	r4.Release()

	// Malformed input: an error, and the buffer is not lost.
	var bad Received
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 0x01})}, &bad); err == nil {
		t.Fatal("malformed response: no error")
	}
	if bad.Response != nil {
		t.Fatal("malformed response: a response")
	}
	bad.Release() // harmless
}

// TestReceivedWithoutBuffers: the plain codec decodes a Received into a
// fresh buffer, and Release only forgets it.
func TestReceivedWithoutBuffers(t *testing.T) {
	c := NewCodec(grpcbuf.NewBufferPool())
	want := response("x", "yy")
	var r Received
	if err := c.Unmarshal(frames(t, want, 3), &r); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Response, want) {
		t.Fatal("decoded response differs")
	}
	r.Release()
}

// TestBuffersBounded: Buffers keeps at most maxFree buffers, the largest
// ones, and none over maxKeep.
func TestBuffersBounded(t *testing.T) {
	b := &Buffers{}
	for _, n := range []int{10, 30, 20, maxKeep + 1, 0} {
		b.put(make([]byte, n))
	}
	if len(b.free) != maxFree {
		t.Fatalf("%d free buffers, want %d", len(b.free), maxFree)
	}
	for _, f := range b.free {
		if c := cap(f); c != 30 && c != 20 {
			t.Errorf("kept a buffer of %d bytes; want the largest ones under the limit (30, 20)", c)
		}
	}
	// get takes one that fits, and copies the data in.
	data := mem.BufferSlice{mem.SliceBuffer([]byte("0123456789")), mem.SliceBuffer([]byte("abcdefghij"))}
	got := b.get(data)
	if string(got) != "0123456789abcdefghij" || cap(got) < 20 {
		t.Fatalf("get = %q (cap %d)", got, cap(got))
	}
	if len(b.free) != maxFree-1 {
		t.Fatalf("%d free buffers after get, want %d", len(b.free), maxFree-1)
	}
}

// countingPool is a mem.BufferPool that counts the buffers put back.
type countingPool struct {
	mem.BufferPool
	puts int
}

func (p *countingPool) Put(b *[]byte) { p.puts++; p.BufferPool.Put(b) }

// poolFrames is frames, each frame a buffer of pool (refcounted, as
// gRPC's are), and how many of them go back to pool when freed (grpc's
// mem package does not pool buffers of 1 KiB or less).
func poolFrames(t *testing.T, m proto.Message, size int, pool mem.BufferPool) (_ mem.BufferSlice, pooled int) {
	t.Helper()
	var bs mem.BufferSlice
	for _, f := range frames(t, m, size) {
		b := pool.Get(f.Len())
		copy(*b, f.ReadOnlyData())
		if !mem.IsBelowBufferPoolingThreshold(cap(*b)) {
			pooled++
		}
		bs = append(bs, mem.NewBuffer(b, pool))
	}
	return bs, pooled
}

// TestFrames: a response received as Frames keeps gRPC's frames (none goes
// back to the pool when gRPC frees its reference after Unmarshal), Decode
// decodes it like a Received, into the Buffers' buffer, and gives every
// frame back; Release gives them back undecoded; malformed input is an
// error from Decode, its frames given back all the same.
func TestFrames(t *testing.T) {
	pool := &countingPool{BufferPool: grpcbuf.NewBufferPool()}
	bufs := &Buffers{}
	c := NewCodecBuffers(pool, bufs)
	want := response(string(bytes.Repeat([]byte("a"), 5000)), "b")

	in, pooled := poolFrames(t, want, 2000, pool)
	var f Frames
	if err := c.Unmarshal(in, &f); err != nil {
		t.Fatal(err)
	}
	in.Free() // as gRPC does after Unmarshal
	if pool.puts != 0 {
		t.Fatalf("%d frames back in the pool before Decode", pool.puts)
	}
	if f.Len() != proto.Size(want) {
		t.Fatalf("Len = %d, want %d", f.Len(), proto.Size(want))
	}
	var r Received
	if err := f.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if pool.puts != pooled {
		t.Fatalf("%d of %d frames back in the pool after Decode", pool.puts, pooled)
	}
	if f.Len() != 0 {
		t.Fatal("Decode left the frames in place")
	}
	if !proto.Equal(r.Response, want) {
		t.Fatal("decoded response differs")
	}
	addr := base(&r)
	r.Release()

	// The next one is decoded into the buffer the first was released to.
	in, pooled = poolFrames(t, want, 1800, pool)
	pool.puts = 0
	f = Frames{}
	if err := c.Unmarshal(in, &f); err != nil {
		t.Fatal(err)
	}
	in.Free()
	if err := f.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if base(&r) != addr || !proto.Equal(r.Response, want) {
		t.Error("second response: not decoded into the released buffer, or differs")
	}
	r.Release()

	// Release without decoding.
	in, pooled = poolFrames(t, want, 2000, pool)
	pool.puts = 0
	f = Frames{}
	if err := c.Unmarshal(in, &f); err != nil {
		t.Fatal(err)
	}
	in.Free()
	f.Release()
	f.Release() // harmless
	if pool.puts != pooled {
		t.Fatalf("%d of %d frames back in the pool after Release", pool.puts, pooled)
	}

	// Malformed: Decode fails, r untouched, frames back.
	// (a messages field of 2047 bytes, 2000 of them there)
	badBuf := pool.Get(2003)
	copy(*badBuf, []byte{0x0a, 0xff, 0x0f})
	bad := mem.BufferSlice{mem.NewBuffer(badBuf, pool)}
	pool.puts = 0
	f = Frames{}
	if err := c.Unmarshal(bad, &f); err != nil {
		t.Fatal(err)
	}
	bad.Free()
	r = Received{}
	if err := f.Decode(&r); err == nil {
		t.Fatal("malformed response: no error")
	}
	if r.Response != nil || pool.puts != 1 {
		t.Fatalf("malformed response: response %v, %d frames back", r.Response, pool.puts)
	}

	// Without Buffers: a fresh buffer.
	in, pooled = poolFrames(t, want, 2000, pool)
	f = Frames{}
	if err := NewCodec(pool).Unmarshal(in, &f); err != nil {
		t.Fatal(err)
	}
	in.Free()
	if err := f.Decode(&r); err != nil || !proto.Equal(r.Response, want) {
		t.Fatalf("plain codec: %v", err)
	}
	r.Release()
}

// TestBuffersDropSmaller: when no free buffer fits, get drops the smaller
// ones instead of holding them next to the new one, and makes the new one
// with room for a slightly larger response, which then reuses it.
func TestBuffersDropSmaller(t *testing.T) {
	b := &Buffers{}
	b.put(make([]byte, 10))
	const n = 1600
	got := b.get(mem.BufferSlice{mem.SliceBuffer(bytes.Repeat([]byte("x"), n))})
	if len(got) != n || string(got) != strings.Repeat("x", n) || len(b.free) != 0 {
		t.Fatalf("get: %d bytes, %d free buffers left (want %d, 0)", len(got), len(b.free), n)
	}
	addr := unsafe.SliceData(got)
	b.put(got)
	next := b.get(mem.BufferSlice{mem.SliceBuffer(bytes.Repeat([]byte("y"), n+n/20))})
	if unsafe.SliceData(next) != addr || string(next) != strings.Repeat("y", n+n/20) {
		t.Fatal("a response 5% larger did not reuse the buffer")
	}
}

// BenchmarkReceive: a response arriving in 16 KiB frames of the
// connection's pool (as gRPC reads them), decoded into a Received at once
// or held as Frames and decoded later, then released; for 100 one-sample
// gpu-tel-json messages (540 bytes) and 100 scrape-sized ones (56 KiB),
// batch_size 100 as the bench. ns/op includes filling the frames.
func BenchmarkReceive(b *testing.B) {
	for _, size := range []int{540, 56 << 10} {
		r := &mqpb.SubscribeResponse{}
		for i := 0; i < 100; i++ {
			r.Messages = append(r.Messages, &mqpb.Message{Id: "0123456789abcdef", Topic: "gpu-telemetry",
				Payload:  bytes.Repeat([]byte("x"), size),
				Metadata: map[string]string{"content-type": "gpu-tel-json"}})
		}
		raw, err := proto.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		pool := grpcbuf.NewBufferPool()
		c := NewCodecBuffers(pool, &Buffers{})
		in := func() mem.BufferSlice {
			var bs mem.BufferSlice
			for k := 0; k < len(raw); k += 16 << 10 {
				part := raw[k:min(k+16<<10, len(raw))]
				buf := pool.Get(len(part))
				copy(*buf, part)
				bs = append(bs, mem.NewBuffer(buf, pool))
			}
			return bs
		}
		b.Run(fmt.Sprintf("payload=%d/Received", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				data := in()
				var got Received
				if err := c.Unmarshal(data, &got); err != nil {
					b.Fatal(err)
				}
				data.Free()
				got.Release()
			}
		})
		b.Run(fmt.Sprintf("payload=%d/Frames", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				data := in()
				var f Frames
				if err := c.Unmarshal(data, &f); err != nil {
					b.Fatal(err)
				}
				data.Free()
				var got Received
				if err := f.Decode(&got); err != nil {
					b.Fatal(err)
				}
				got.Release()
			}
		})
	}
}
