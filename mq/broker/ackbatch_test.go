package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// takeAll subscribes consumer to topic (in-process, no stream) and takes
// every available message.
func takeAll(t *testing.T, b *Broker, topic, consumer string) (*topic, *subscriber, []*mqpb.Message) {
	t.Helper()
	tp, err := b.topic(topic)
	if err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(b.subSeq.Add(1))
	sub.batch, sub.maxInFlight, sub.ackTimeout = 100, 100, time.Minute
	tp.mu.Lock()
	defer tp.mu.Unlock()
	sub.group = tp.getGroup(consumer)
	sub.group.members++
	tp.subs[sub.id] = sub
	return tp, sub, tp.take(sub, time.Now())
}

// TestAcknowledgeBatchOrderAndTopics: one batch of acks applied in order
// across topics (the hint's lock held across its run, other topics found by
// search), a nack then an ack of the same id, a repeated ack and an unknown
// id counted as unknown.
func TestAcknowledgeBatchOrderAndTopics(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, name := range []string{"ta", "tb"} {
		for i := 0; i < 3; i++ {
			if _, _, _, err := b.publish(context.Background(), &mqpb.Message{Topic: name, Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ta, _, ma := takeAll(t, b, "ta", "c")
	tb, _, mb := takeAll(t, b, "tb", "c")
	if len(ma) != 3 || len(mb) != 3 {
		t.Fatalf("took %d, %d messages", len(ma), len(mb))
	}
	ack := func(id string, ok bool) *mqpb.AcknowledgeRequest {
		return &mqpb.AcknowledgeRequest{MessageId: id, ConsumerId: "c", Success: ok, Error: "bad"}
	}
	reqs := []*mqpb.AcknowledgeRequest{
		ack(ma[0].Id, true),
		ack(mb[0].Id, true),  // another topic: found by search
		ack(ma[1].Id, false), // nack: queued for redelivery
		ack(ma[1].Id, true),  // then acknowledged
		ack(ma[0].Id, true),  // already acknowledged: unknown
		ack("nope", true),    // unknown
		ack(mb[1].Id, true),
		{MessageId: mb[2].Id, ConsumerId: "other", Success: true}, // no such group: unknown
	}
	hint := b.acknowledgeBatch(nil, reqs)
	if hint != tb {
		t.Errorf("hint after batch = %v, want tb", hint)
	}
	if got := counterValue(t, b.m.unknownAcks); got != 3 {
		t.Errorf("unknown acks = %v, want 3", got)
	}
	if got := counterValue(t, b.m.nacked.WithLabelValues("ta")); got != 1 {
		t.Errorf("ta nacks = %v, want 1", got)
	}
	if got := counterValue(t, b.m.acked.WithLabelValues("ta")) + counterValue(t, b.m.acked.WithLabelValues("tb")); got != 4 {
		t.Errorf("acks = %v, want 4", got)
	}
	for _, c := range []struct {
		t        *topic
		head     int64
		inflight int
	}{{ta, 3, 1}, {tb, 3, 1}} {
		c.t.mu.Lock()
		g := c.t.groups["c"]
		if c.t.head != c.head || len(g.pending) != c.inflight {
			t.Errorf("topic %s: head %d, %d pending; want %d, %d", c.t.name, c.t.head, len(g.pending), c.head, c.inflight)
		}
		c.t.mu.Unlock()
	}
	// The last of each topic is still acknowledgeable through the hint.
	b.acknowledgeBatch(hint, []*mqpb.AcknowledgeRequest{ack(mb[2].Id, true), ack(ma[2].Id, true)})
	for _, tp := range []*topic{ta, tb} {
		tp.mu.Lock()
		if len(tp.entries) != 0 || len(tp.groups["c"].pending) != 0 {
			t.Errorf("topic %s: %d retained, %d pending after every ack", tp.name, len(tp.entries), len(tp.groups["c"].pending))
		}
		tp.mu.Unlock()
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
