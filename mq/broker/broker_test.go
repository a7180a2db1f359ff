package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/grpc"
)

// harness runs a Broker behind a real gRPC server on 127.0.0.1:0.
type harness struct {
	t    *testing.T
	b    *Broker
	srv  *grpc.Server
	conn *grpc.ClientConn
	pub  mqpb.PublisherServiceClient
	sub  mqpb.SubscriberServiceClient
	done bool
}

func start(t *testing.T, opts Options) *harness {
	t.Helper()
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 200 * time.Millisecond
	}
	if opts.ReapInterval == 0 {
		opts.ReapInterval = 50 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})
	}
	b, srv, lis := serveLocal(t, opts)
	conn, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, b: b, srv: srv, conn: conn,
		pub: mqpb.NewPublisherServiceClient(conn), sub: mqpb.NewSubscriberServiceClient(conn)}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.done {
		return
	}
	h.done = true
	h.b.Shutdown()
	h.srv.Stop()
	_ = h.conn.Close()
	if err := h.b.Close(); err != nil {
		h.t.Errorf("close broker: %v", err)
	}
}

func (h *harness) publish(topic string, n int, wait bool) []string {
	h.t.Helper()
	msgs := make([]*mqpb.Message, n)
	for i := range msgs {
		msgs[i] = &mqpb.Message{Topic: topic, Payload: []byte(fmt.Sprintf("m%d", i)), Metadata: map[string]string{"i": fmt.Sprint(i)}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resps, err := client.NewPublisher(h.conn, client.PublisherOptions{WaitForAck: wait}).Publish(ctx, msgs)
	if err != nil {
		h.t.Fatalf("publish: %v", err)
	}
	ids := make([]string, len(resps))
	for i, r := range resps {
		ids[i] = r.GetMessageId()
	}
	return ids
}

// subscription collects the messages of one Subscribe stream.
type subscription struct {
	stream  grpc.BidiStreamingClient[mqpb.SubscribeRequest, mqpb.SubscribeResponse]
	cancel  context.CancelFunc
	batches chan []*mqpb.Message
	beats   chan struct{}
}

func (h *harness) subscribe(req *mqpb.SubscribeRequest) *subscription {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := h.sub.Subscribe(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := st.Send(req); err != nil {
		h.t.Fatal(err)
	}
	s := &subscription{stream: st, cancel: cancel, batches: make(chan []*mqpb.Message, 1000), beats: make(chan struct{}, 1000)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(s.batches)
				return
			}
			if r.GetHeartbeat() {
				select {
				case s.beats <- struct{}{}:
				default:
				}
				continue
			}
			s.batches <- r.GetMessages()
		}
	}()
	h.t.Cleanup(cancel)
	return s
}

// collect gathers messages until n arrived (fatal after timeout) or, with
// n < 0, until quiet passes with nothing new.
func (s *subscription) collect(t *testing.T, n int, quiet time.Duration) []*mqpb.Message {
	t.Helper()
	var out []*mqpb.Message
	deadline := time.After(5 * time.Second)
	for n < 0 || len(out) < n {
		select {
		case b, ok := <-s.batches:
			if !ok {
				t.Fatalf("stream closed after %d messages", len(out))
			}
			out = append(out, b...)
		case <-time.After(quiet):
			if n < 0 {
				return out
			}
		case <-deadline:
			t.Fatalf("got %d messages, want %d", len(out), n)
		}
	}
	return out
}

func (s *subscription) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case b := <-s.batches:
		t.Fatalf("unexpected delivery of %d messages (first %s)", len(b), b[0].GetId())
	case <-time.After(d):
	}
}

func (h *harness) ack(consumer string, success bool, ids ...string) {
	h.t.Helper()
	st, err := h.sub.Acknowledge(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, id := range ids {
		if err := st.Send(&mqpb.AcknowledgeRequest{MessageId: id, ConsumerId: consumer, Success: success, Error: "boom"}); err != nil {
			h.t.Fatal(err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		h.t.Fatal(err)
	}
}

func ids(ms []*mqpb.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.GetId()
	}
	sort.Strings(out)
	return out
}

func TestConsumerGroups(t *testing.T) {
	h := start(t, Options{})
	a := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", MaxInFlight: 5, BatchSize: 10})
	b := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", MaxInFlight: 5, BatchSize: 10})
	c := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "other", BatchSize: 100})
	time.Sleep(100 * time.Millisecond)
	pub := h.publish("t", 10, false)
	ga := a.collect(t, 5, time.Second)
	gb := b.collect(t, 5, time.Second)
	seen := map[string]bool{}
	for _, m := range append(ga, gb...) {
		if seen[m.GetId()] {
			t.Fatalf("message %s delivered to both members", m.GetId())
		}
		seen[m.GetId()] = true
		if m.GetSequence() == 0 || m.GetTopic() != "t" {
			t.Fatalf("message lacks sequence/topic: %v", m)
		}
	}
	gc := c.collect(t, 10, time.Second)
	if got, want := strings.Join(ids(gc), ","), strings.Join(sortedCopy(pub), ","); got != want {
		t.Fatalf("other group got %s, want %s", got, want)
	}
	a.expectNone(t, 200*time.Millisecond)
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func TestBatchSizeAndMaxInFlight(t *testing.T) {
	h := start(t, Options{})
	h.publish("t", 20, false)
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", BatchSize: 3, MaxInFlight: 7})
	var got []*mqpb.Message
	for len(got) < 7 {
		select {
		case b := <-s.batches:
			if len(b) == 0 || len(b) > 3 {
				t.Fatalf("batch of %d messages, want 1..3", len(b))
			}
			got = append(got, b...)
		case <-time.After(3 * time.Second):
			t.Fatalf("got %d messages, want 7", len(got))
		}
	}
	if len(got) != 7 {
		t.Fatalf("got %d messages, want exactly 7 (max_in_flight)", len(got))
	}
	s.expectNone(t, 300*time.Millisecond)
	h.ack("g", true, got[0].GetId(), got[1].GetId())
	more := s.collect(t, 2, time.Second)
	s.expectNone(t, 200*time.Millisecond)
	if more[0].GetSequence() != 8 {
		t.Fatalf("next message has sequence %d, want 8", more[0].GetSequence())
	}
}

func TestDefaultBatchSizeIsOne(t *testing.T) {
	h := start(t, Options{})
	h.publish("t", 5, false)
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g"})
	for i := 0; i < 5; i++ {
		select {
		case b := <-s.batches:
			if len(b) != 1 {
				t.Fatalf("batch of %d with batch_size 0, want 1", len(b))
			}
		case <-time.After(3 * time.Second):
			t.Fatal("timeout")
		}
	}
}

func TestRedeliveryAfterAckTimeout(t *testing.T) {
	t.Parallel()
	h := start(t, Options{})
	h.publish("t", 1, false)
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", AckTimeoutSeconds: 1})
	first := s.collect(t, 1, time.Second)
	startWait := time.Now()
	again := s.collect(t, 1, 3*time.Second)
	if again[0].GetId() != first[0].GetId() {
		t.Fatalf("redelivered %s, want %s", again[0].GetId(), first[0].GetId())
	}
	if el := time.Since(startWait); el < 800*time.Millisecond {
		t.Fatalf("redelivered after %v, before the 1s ack timeout", el)
	}
	h.ack("g", true, first[0].GetId())
	s.expectNone(t, 1500*time.Millisecond)
}

func TestLeaseRenewalPreventsRedelivery(t *testing.T) {
	t.Parallel()
	h := start(t, Options{})
	h.publish("t", 1, false)
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", AckTimeoutSeconds: 1})
	s.collect(t, 1, time.Second)
	end := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(end) {
		if err := s.stream.Send(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g"}); err != nil {
			t.Fatal(err)
		}
		s.expectNone(t, 400*time.Millisecond)
	}
	// Stop renewing: the message comes back.
	s.collect(t, 1, 3*time.Second)
}

func TestNackDeadLetter(t *testing.T) {
	h := start(t, Options{MaxDeliveries: 3})
	h.publish("t", 1, false)
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g"})
	var id string
	for i := 0; i < 3; i++ {
		m := s.collect(t, 1, time.Second)
		if id != "" && m[0].GetId() != id {
			t.Fatalf("redelivered %s, want %s", m[0].GetId(), id)
		}
		id = m[0].GetId()
		h.ack("g", false, id)
	}
	s.expectNone(t, 300*time.Millisecond)
	d := h.subscribe(&mqpb.SubscribeRequest{Topic: "t.dlq", ConsumerId: "ops"})
	dm := d.collect(t, 1, time.Second)[0]
	md := dm.GetMetadata()
	if dm.GetId() != id || string(dm.GetPayload()) != "m0" || md["dlq-delivery-count"] != "3" || md["dlq-error"] != "boom" || md["dlq-source-topic"] != "t" || md["i"] != "0" {
		t.Fatalf("dead letter = %v", dm)
	}
}

func TestPublisherBackpressure(t *testing.T) {
	h := start(t, Options{MaxTopicMessages: 5})
	// Nobody subscribed yet: a group created later must still see all 8.
	st, err := h.pub.Publish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if err := st.Send(&mqpb.PublishRequest{Message: &mqpb.Message{Topic: "t", Id: fmt.Sprint("id", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	resps := make(chan *mqpb.PublishResponse, 8)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(resps)
				return
			}
			resps <- r
		}
	}()
	var got []*mqpb.PublishResponse
	timeout := time.After(500 * time.Millisecond)
loop:
	for {
		select {
		case r := <-resps:
			got = append(got, r)
		case <-timeout:
			break loop
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d publishes answered while the topic holds at most 5, want 5", len(got))
	}
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", BatchSize: 10})
	ms := s.collect(t, 5, time.Second)
	h.ack("g", true, ids(ms)...)
	for len(got) < 8 {
		select {
		case r := <-resps:
			got = append(got, r)
		case <-time.After(3 * time.Second):
			t.Fatalf("only %d publishes answered after acks", len(got))
		}
	}
	for i, r := range got {
		if !r.GetSuccess() || r.GetMessageId() != fmt.Sprint("id", i) {
			t.Fatalf("response %d = %v", i, r)
		}
	}
	if rest := s.collect(t, 3, time.Second); rest[0].GetId() != "id5" {
		t.Fatalf("after backpressure got %s first, want id5", rest[0].GetId())
	}
	_ = st.CloseSend()
}

func TestRestartWithDataDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		segBytes int64
	}{{"one segment", 0}, {"small segments", 300}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			h := start(t, Options{DataDir: dir, SegmentBytes: tc.segBytes})
			pub := h.publish("gpu/telemetry", 10, true)
			s := h.subscribe(&mqpb.SubscribeRequest{Topic: "gpu/telemetry", ConsumerId: "g", BatchSize: 10, MaxInFlight: 10})
			ms := s.collect(t, 10, time.Second)
			sort.Slice(ms, func(i, j int) bool { return ms[i].GetSequence() < ms[j].GetSequence() })
			var acked []string
			for _, m := range ms[:4] {
				acked = append(acked, m.GetId())
			}
			acked = append(acked, ms[6].GetId())
			h.ack("g", true, acked...)
			h.stop()

			h2 := start(t, Options{DataDir: dir, SegmentBytes: tc.segBytes})
			s2 := h2.subscribe(&mqpb.SubscribeRequest{Topic: "gpu/telemetry", ConsumerId: "g", BatchSize: 10, MaxInFlight: 100})
			got := s2.collect(t, -1, 500*time.Millisecond)
			want := map[string]bool{}
			for _, id := range pub {
				want[id] = true
			}
			for _, id := range acked {
				delete(want, id)
			}
			if len(got) != len(want) {
				t.Fatalf("after restart got %d messages %v, want %d", len(got), ids(got), len(want))
			}
			for _, m := range got {
				if !want[m.GetId()] {
					t.Fatalf("after restart got %s, which was acknowledged or unknown", m.GetId())
				}
			}
			// New publishes continue the sequence.
			h2.publish("gpu/telemetry", 1, true)
			if m := s2.collect(t, 1, time.Second)[0]; m.GetSequence() != 11 {
				t.Fatalf("sequence after restart = %d, want 11", m.GetSequence())
			}
			h2.ack("g", true, append(ids(got), pub[0])...)
			h2.stop()
			if tc.segBytes > 0 {
				segs, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
				if len(segs) > 3 {
					t.Fatalf("%d segments remain after everything was acknowledged: %v", len(segs), segs)
				}
			}
			h3 := start(t, Options{DataDir: dir, SegmentBytes: tc.segBytes})
			s3 := h3.subscribe(&mqpb.SubscribeRequest{Topic: "gpu/telemetry", ConsumerId: "g", BatchSize: 10, MaxInFlight: 100})
			if left := s3.collect(t, -1, 500*time.Millisecond); len(left) != 1 {
				// Only the 11th message was never acknowledged above.
				t.Fatalf("third start delivered %d messages, want 1: %v", len(left), ids(left))
			}
		})
	}
}

func TestDisconnectRedeliversImmediately(t *testing.T) {
	h := start(t, Options{})
	a := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", BatchSize: 10})
	time.Sleep(50 * time.Millisecond)
	h.publish("t", 3, false)
	got := a.collect(t, 3, time.Second)
	b := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", BatchSize: 10})
	b.expectNone(t, 200*time.Millisecond)
	a.cancel()
	again := b.collect(t, 3, 2*time.Second)
	if strings.Join(ids(got), ",") != strings.Join(ids(again), ",") {
		t.Fatalf("redelivered %v, want %v", ids(again), ids(got))
	}
}

func TestFilter(t *testing.T) {
	h := start(t, Options{})
	ctx := context.Background()
	msgs := []*mqpb.Message{
		{Topic: "t", Id: "a1", Metadata: map[string]string{"content-type": "a"}},
		{Topic: "t", Id: "b1", Metadata: map[string]string{"content-type": "b"}},
		{Topic: "t", Id: "a2", Metadata: map[string]string{"content-type": "a"}},
	}
	if _, err := client.NewPublisher(h.conn, client.PublisherOptions{}).Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", BatchSize: 10, Filter: map[string]string{"content-type": "a"}})
	got := s.collect(t, -1, 300*time.Millisecond)
	if strings.Join(ids(got), ",") != "a1,a2" {
		t.Fatalf("filtered delivery = %v, want a1,a2", ids(got))
	}
}

func TestHeartbeatAndHealth(t *testing.T) {
	h := start(t, Options{})
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g"})
	select {
	case <-s.beats:
	case <-time.After(2 * time.Second):
		t.Fatal("no heartbeat on an idle subscription")
	}
	ctx := context.Background()
	for _, check := range []func() (*mqpb.HealthCheckResponse, error){
		func() (*mqpb.HealthCheckResponse, error) { return h.pub.HealthCheck(ctx, &mqpb.HealthCheckRequest{}) },
		func() (*mqpb.HealthCheckResponse, error) { return h.sub.HealthCheck(ctx, &mqpb.HealthCheckRequest{}) },
	} {
		r, err := check()
		if err != nil || r.GetStatus() != mqpb.HealthCheckResponse_SERVING {
			t.Fatalf("health = %v, %v; want SERVING", r, err)
		}
	}
	h.b.Shutdown()
	r, err := h.pub.HealthCheck(ctx, &mqpb.HealthCheckRequest{})
	if err != nil || r.GetStatus() != mqpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while stopping = %v, %v; want NOT_SERVING", r, err)
	}
	// Open streams end.
	select {
	case _, ok := <-s.batches:
		for ok {
			_, ok = <-s.batches
		}
	case <-time.After(2 * time.Second):
		t.Fatal("subscription still open after Shutdown")
	}
}

func TestPublishRejectsMissingTopic(t *testing.T) {
	h := start(t, Options{})
	_, err := client.NewPublisher(h.conn, client.PublisherOptions{}).Publish(context.Background(), []*mqpb.Message{{Payload: []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "topic is required") {
		t.Fatalf("publish without topic: err = %v", err)
	}
}

func TestTornLogTailIsTruncated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := start(t, Options{DataDir: dir})
	h.publish("t", 3, true)
	h.stop()
	segs, _ := filepath.Glob(filepath.Join(dir, "t-t", "*.log"))
	if len(segs) != 1 {
		t.Fatalf("segments = %v", segs)
	}
	f, err := os.OpenFile(segs[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{40, 0, 0, 0, 1, 2, 3, 4, 1, 9}); err != nil { // a torn record
		t.Fatal(err)
	}
	f.Close()
	for round, want := range []int{4, 4} {
		h := start(t, Options{DataDir: dir})
		if round == 0 {
			h.publish("t", 1, true)
		}
		s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", BatchSize: 10})
		if got := s.collect(t, -1, 300*time.Millisecond); len(got) != want {
			t.Fatalf("round %d: %d messages, want %d", round, len(got), want)
		}
		h.stop()
	}
}

func TestAckTimeoutsDeadLetter(t *testing.T) {
	t.Parallel()
	h := start(t, Options{MaxDeliveries: 1})
	h.publish("t", 1, false)
	s := h.subscribe(&mqpb.SubscribeRequest{Topic: "t", ConsumerId: "g", AckTimeoutSeconds: 1})
	s.collect(t, 1, time.Second)
	d := h.subscribe(&mqpb.SubscribeRequest{Topic: "t.dlq", ConsumerId: "ops"})
	if m := d.collect(t, 1, 3*time.Second)[0]; m.GetMetadata()["dlq-error"] != "ack timeout" {
		t.Fatalf("dead letter metadata = %v", m.GetMetadata())
	}
	s.expectNone(t, 300*time.Millisecond)
}
