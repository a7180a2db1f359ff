package broker

import (
	"context"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// TestPendingSameIDChain: pending messages sharing an id form a chain in
// publish order; removing the first, a middle one or the last keeps it.
func TestPendingSameIDChain(t *testing.T) {
	g := newGroup("c", 1)
	ps := []*pend{{seq: 1, id: "x"}, {seq: 2, id: "x"}, {seq: 3, id: "y"}, {seq: 4, id: "x"}}
	for _, p := range ps {
		g.addPending(p)
	}
	chain := func(id string) []int64 {
		var out []int64
		for p := g.byID[id]; p != nil; p = p.sameID {
			out = append(out, p.seq)
		}
		return out
	}
	check := func(id string, want ...int64) {
		t.Helper()
		got := chain(id)
		if len(got) != len(want) {
			t.Fatalf("chain %q = %v, want %v", id, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("chain %q = %v, want %v", id, got, want)
			}
		}
	}
	check("x", 1, 2, 4)
	check("y", 3)
	g.removePending(ps[1]) // middle
	check("x", 1, 4)
	g.removePending(ps[0]) // first
	check("x", 4)
	g.addPending(&pend{seq: 5, id: "x"})
	check("x", 4, 5)
	g.removePending(g.pending[5]) // last
	check("x", 4)
	g.removePending(ps[3])
	g.removePending(ps[2])
	if len(g.byID) != 0 || len(g.pending) != 0 {
		t.Fatalf("after removing all: byID %v, pending %v", g.byID, g.pending)
	}
}

// TestDuplicateIDsAckInOrder: acks of an id that several pending messages
// carry acknowledge them oldest first; one more is unknown.
func TestDuplicateIDsAckInOrder(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 3; i++ {
		if _, _, _, err := b.publish(context.Background(), &mqpb.Message{Topic: "d", Id: "dup", Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	tp, _, ms := takeAll(t, b, "d", "c")
	if len(ms) != 3 {
		t.Fatalf("took %d", len(ms))
	}
	req := &mqpb.AcknowledgeRequest{MessageId: "dup", ConsumerId: "c", Success: true}
	for i := 0; i < 3; i++ {
		b.acknowledgeBatch(tp, []*mqpb.AcknowledgeRequest{req})
		tp.mu.Lock()
		head := tp.head
		tp.mu.Unlock()
		if head != int64(i+2) {
			t.Fatalf("after ack %d: head %d, want %d (oldest acknowledged first)", i+1, head, i+2)
		}
	}
	b.acknowledgeBatch(tp, []*mqpb.AcknowledgeRequest{req})
	if got := counterValue(t, b.m.unknownAcks); got != 1 {
		t.Fatalf("unknown acks = %v, want 1", got)
	}
}

// TestExpireAfterShorterRenewal: the reaper's lower bound of the deadlines
// follows a renewal that moves them earlier (a shorter ack timeout), and
// nothing is expired before its deadline.
func TestExpireAfterShorterRenewal(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 2; i++ {
		if _, _, _, err := b.publish(context.Background(), &mqpb.Message{Topic: "e", Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	tp, err := b.topic("e")
	if err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(b.subSeq.Add(1))
	sub.batch, sub.maxInFlight, sub.ackTimeout = 1, 10, time.Minute
	now := time.Now()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	sub.group = tp.getGroup("c")
	tp.subs[sub.id] = sub
	if ms := tp.take(sub, now); len(ms) != 1 {
		t.Fatalf("took %d", len(ms))
	}
	tp.expire(now.Add(30 * time.Second))
	if sub.inflight != 1 {
		t.Fatalf("expired before its deadline")
	}
	sub.ackTimeout = time.Second
	tp.renew(sub, now.Add(30*time.Second)) // deadline now+31s
	tp.expire(now.Add(30*time.Second + 500*time.Millisecond))
	if sub.inflight != 1 {
		t.Fatalf("expired before the renewed deadline")
	}
	tp.expire(now.Add(32 * time.Second))
	if sub.inflight != 0 || len(sub.group.redeliver) != 1 {
		t.Fatalf("after the renewed deadline: %d in flight, %d queued; want 0, 1", sub.inflight, len(sub.group.redeliver))
	}
	if ms := tp.take(sub, now.Add(32*time.Second)); len(ms) != 1 || ms[0].Sequence != 1 {
		t.Fatalf("redelivery: took %v", ms)
	}
}
