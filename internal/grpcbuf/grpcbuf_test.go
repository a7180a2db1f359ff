package grpcbuf

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
)

// TestBufferPool: buffers have the length asked for and a size class's
// capacity, come back from the pool (uncleared: grpc reads only what it
// asked for), and odd sizes are neither pooled nor refused.
func TestBufferPool(t *testing.T) {
	p := NewBufferPool()
	for _, tc := range []struct{ n, wantCap int }{
		{1, 512}, {512, 512}, {513, 1024}, {70_000, 131072}, {64 << 20, 64 << 20},
		{64<<20 + 1, 64<<20 + 1},
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.n, len(*b), cap(*b), tc.wantCap)
		}
		p.Put(b)
	}
	// A buffer put back is handed out again for its class (sync.Pool may
	// drop it at a GC; retry a few times).
	reused := false
	for try := 0; try < 10 && !reused; try++ {
		b := p.Get(1000)
		(*b)[0] = 42
		p.Put(b)
		c := p.Get(900)
		reused = &(*c)[:1][0] == &(*b)[:1][0] && len(*c) == 900
		p.Put(c)
	}
	if !reused {
		t.Error("a pooled buffer was never handed out again")
	}
	// Foreign buffers (not a class's capacity) are dropped, not pooled.
	odd := make([]byte, 700)
	p.Put(&odd)
	if b := p.Get(700); cap(*b) != 1024 {
		t.Errorf("Get after a foreign Put: cap %d, want 1024", cap(*b))
	}
}

// TestCodec: the codec's bytes are protobuf's (a peer using grpc's own
// codec reads them, and the codec reads a peer's), for messages below
// and above grpc's buffer pooling threshold, whatever buffers the bytes
// arrive in; a buffer reused after Unmarshal does not change the message.
func TestCodec(t *testing.T) {
	pool := NewBufferPool()
	c := NewCodec(pool)
	if c.Name() != "proto" {
		t.Fatalf("Name() = %q: a peer with grpc's codec would not match", c.Name())
	}
	for _, n := range []int{0, 3, 100_000} {
		want := &pluginpb.Batch{SeriesIds: make([]uint32, n), PointTime: make([]int64, n), Strings: []string{"gpu_temp", "host"}}
		for i := range n {
			want.SeriesIds[i], want.PointTime[i] = uint32(i), int64(i)*1e9
		}
		data, err := c.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		raw := data.Materialize()
		var viaProto pluginpb.Batch
		if err := proto.Unmarshal(raw, &viaProto); err != nil || !proto.Equal(&viaProto, want) {
			t.Fatalf("%d points: proto.Unmarshal of the codec's bytes: %v", n, err)
		}
		data.Free()
		std, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		// The bytes in pieces, as the transport hands them over.
		var in mem.BufferSlice
		for k := 0; k < len(std); k += 1000 {
			in = append(in, mem.SliceBuffer(bytes.Clone(std[k:min(k+1000, len(std))])))
		}
		var got pluginpb.Batch
		if err := c.Unmarshal(in, &got); err != nil {
			t.Fatal(err)
		}
		for _, b := range in {
			clear(b.ReadOnlyData())
		}
		// The pool's buffers are reused by the next message.
		for range 4 {
			b := pool.Get(len(std))
			for i := range *b {
				(*b)[i] = 0xff
			}
			pool.Put(b)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("%d points: Unmarshal of protobuf bytes differs", n)
		}
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	if err := c.Unmarshal(nil, new(string)); err == nil {
		t.Error("Unmarshal into a string: no error")
	}
}
