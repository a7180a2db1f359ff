package broker

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// TestRecvLoopHoldsBigRequests: the read ahead takes small requests up to
// its buffer, and reads nothing past a big one until the handler took it.
func TestRecvLoopHoldsBigRequests(t *testing.T) {
	sizes := []int{1, 2, 3, bigRequest, 4, bigRequest + 1, 5}
	var calls atomic.Int32
	recv := func() (*int, error) {
		i := int(calls.Add(1)) - 1
		if i >= len(sizes) {
			return nil, io.EOF
		}
		return &sizes[i], nil
	}
	done := make(chan struct{})
	defer close(done)
	var recvErr error
	r := startRecvLoop(done, recv, &recvErr, 16, func(n *int) int { return *n })
	waitCalls := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for calls.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // would it read on?
		if got := calls.Load(); got != want {
			t.Fatalf("recv called %d times, want %d", got, want)
		}
	}
	waitCalls(4) // 1, 2, 3 and the big one; then it waits
	for _, want := range []int{1, 2, 3, bigRequest} {
		if got := <-r.C; *got != want {
			t.Fatalf("got %d, want %d", *got, want)
		}
	}
	waitCalls(4) // not taken yet (took not called)
	r.took(&sizes[3])
	waitCalls(6) // 4 and the next big one
	if got := <-r.C; *got != 4 {
		t.Fatalf("got %d, want 4", *got)
	}
	if got := <-r.C; *got != bigRequest+1 {
		t.Fatalf("got %d", *got)
	}
	r.took(&sizes[5])
	if got := <-r.C; *got != 5 {
		t.Fatalf("got %d, want 5", *got)
	}
	if _, ok := <-r.C; ok || !errors.Is(recvErr, io.EOF) {
		t.Fatalf("after the last: ok=%v err=%v", ok, recvErr)
	}
}
