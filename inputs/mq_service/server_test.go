package mq_service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// origServer is an mq.v1 SubscriberService with the ORIGINAL service's
// semantics: every subscriber of a topic gets every message (broadcast), one
// message per response, no redelivery, a bounded per-subscriber queue that
// drops when full; it records subscribe requests and acknowledgements.
type origServer struct {
	mqpb.UnimplementedSubscriberServiceServer

	addr string
	srv  *grpc.Server

	// errorOnExtra, when set, is what the server fails a stream with on a
	// second SubscribeRequest (a strict original).
	errorOnExtra error
	// heartbeatEvery sends heartbeats while set (0: none).
	heartbeatEvery atomic.Int64
	queueSize      int

	sent       atomic.Int64
	dropped    atomic.Int64
	halfClosed atomic.Int64

	mu          sync.Mutex
	subs        map[*origSub]struct{}
	subReqs     []*mqpb.SubscribeRequest
	acks        []*mqpb.AcknowledgeRequest
	ackStreams  int
	ackFinished int
}

// errEndStream as errorOnExtra makes the server end the stream cleanly.
var errEndStream = errors.New("end the stream without an error")

type origSub struct {
	topic string
	ch    chan *mqpb.Message
	reqs  atomic.Int64
}

// startOrig starts a server on addr ("127.0.0.1:0" for a fresh port).
func startOrig(t *testing.T, addr string, opts ...func(*origServer)) *origServer {
	t.Helper()
	var lis net.Listener
	var err error
	for k := 0; k < 50; k++ { // the old port may take a moment to free
		lis, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &origServer{addr: lis.Addr().String(), subs: make(map[*origSub]struct{}), queueSize: 10000}
	for _, o := range opts {
		o(s)
	}
	s.srv = grpc.NewServer()
	mqpb.RegisterSubscriberServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	t.Cleanup(s.srv.Stop)
	return s
}

func (s *origServer) stop() { s.srv.Stop() }

func (s *origServer) Subscribe(stream grpc.BidiStreamingServer[mqpb.SubscribeRequest, mqpb.SubscribeResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	sub := &origSub{topic: first.GetTopic(), ch: make(chan *mqpb.Message, s.queueSize)}
	sub.reqs.Add(1)
	s.mu.Lock()
	s.subReqs = append(s.subReqs, first)
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()

	readErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err == io.EOF {
				s.halfClosed.Add(1)
				readErr <- nil
				return
			}
			if err != nil {
				readErr <- err
				return
			}
			sub.reqs.Add(1)
			s.mu.Lock()
			s.subReqs = append(s.subReqs, req)
			s.mu.Unlock()
			if s.errorOnExtra != nil {
				readErr <- s.errorOnExtra
				return
			}
		}
	}()
	hb := time.NewTicker(time.Hour)
	defer hb.Stop()
	var hbEvery time.Duration
	for {
		if d := time.Duration(s.heartbeatEvery.Load()); d != hbEvery {
			hbEvery = d
			if d > 0 {
				hb.Reset(d)
			} else {
				hb.Reset(time.Hour)
			}
		}
		select {
		case err := <-readErr:
			if errors.Is(err, errEndStream) {
				return nil
			}
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		case m := <-sub.ch:
			if err := stream.Send(&mqpb.SubscribeResponse{Messages: []*mqpb.Message{m}}); err != nil {
				return err
			}
			s.sent.Add(1)
		case <-hb.C:
			if s.heartbeatEvery.Load() > 0 {
				if err := stream.Send(&mqpb.SubscribeResponse{Heartbeat: true}); err != nil {
					return err
				}
			}
		}
	}
}

func (s *origServer) Acknowledge(stream grpc.ClientStreamingServer[mqpb.AcknowledgeRequest, emptypb.Empty]) error {
	s.mu.Lock()
	s.ackStreams++
	s.mu.Unlock()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			s.mu.Lock()
			s.ackFinished++
			s.mu.Unlock()
			return stream.SendAndClose(&emptypb.Empty{})
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.acks = append(s.acks, req)
		s.mu.Unlock()
	}
}

// publish broadcasts to the topic's subscribers (dropping when a queue is
// full, like the original) and returns how many got it.
func (s *origServer) publish(m *mqpb.Message) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sub := range s.subs {
		if sub.topic != m.GetTopic() {
			continue
		}
		select {
		case sub.ch <- m:
			n++
		default:
			s.dropped.Add(1)
		}
	}
	return n
}

func (s *origServer) numSubs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

func (s *origServer) ackList() []*mqpb.AcknowledgeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mqpb.AcknowledgeRequest(nil), s.acks...)
}

func (s *origServer) requests() []*mqpb.SubscribeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mqpb.SubscribeRequest(nil), s.subReqs...)
}

func (s *origServer) ackCounts() (streams, finished int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackStreams, s.ackFinished
}

// ackFor returns the acknowledgements of message id.
func (s *origServer) ackFor(id string) []*mqpb.AcknowledgeRequest {
	var out []*mqpb.AcknowledgeRequest
	for _, a := range s.ackList() {
		if a.GetMessageId() == id {
			out = append(out, a)
		}
	}
	return out
}

// msg builds a message of the test topic.
func msg(id, payload string, md map[string]string) *mqpb.Message {
	return &mqpb.Message{Id: id, Topic: "gpu-telemetry", Payload: []byte(payload), Metadata: md,
		Timestamp: timestamppb.New(time.Unix(1700000000, 0))}
}

// fakeParser parses "name value" lines; a line starting with "bad" is a row
// reject; a payload starting with "garbage" fails whole; "panic" panics.
type fakeParser struct{}

func (fakeParser) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	s := string(payload)
	switch {
	case strings.HasPrefix(s, "garbage"):
		return errors.New("no valid header")
	case strings.HasPrefix(s, "panic"):
		panic("boom")
	}
	idx := sdk.NewSeriesIndex(b)
	for n, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "bad") {
			b.Reject("bad row", fmt.Sprintf("%s line %d", pos, n+1), []byte(line))
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			if f[1] == "[N/A]" {
				continue
			}
			b.Reject("bad value", fmt.Sprintf("%s line %d", pos, n+1), []byte(line))
			continue
		}
		b.Add(idx.ID(f[0], sdk.Labels{{Key: "host", Value: "h1"}}), msgTime.UnixNano(), v)
	}
	return nil
}

// fakeParsers accepts "fake" and the real format names, nothing else.
func fakeParsers(format string, _ parsers.Options) (parsers.Parser, error) {
	switch format {
	case "fake", parsers.FormatGPUTelJSON, parsers.FormatDCGMCSV, parsers.FormatNvidiaSMICSV, parsers.FormatPrometheus:
		return fakeParser{}, nil
	}
	return nil, fmt.Errorf("unknown data format %q", format)
}

// emitted is one batch the fake accumulator took.
type emitted struct {
	b    *sdk.Batch
	done func(sdk.Delivery)
}

// fakeAcc records batches. With gate set, Emit blocks until the gate is
// closed (or ctx ends). With auto set, done is called asynchronously.
type fakeAcc struct {
	gate    chan struct{}
	auto    *sdk.Delivery
	entered atomic.Int64

	mu      sync.Mutex
	batches []emitted
}

func (a *fakeAcc) Emit(ctx context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	a.entered.Add(1)
	if a.gate != nil {
		select {
		case <-a.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	a.batches = append(a.batches, emitted{b: b, done: done})
	a.mu.Unlock()
	if a.auto != nil {
		d := *a.auto
		go done(d)
	}
	return nil
}

func (a *fakeAcc) list() []emitted {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]emitted(nil), a.batches...)
}

func (a *fakeAcc) points() int {
	n := 0
	for _, e := range a.list() {
		n += e.b.Len()
	}
	return n
}

// doneAll calls done of every recorded batch not yet done.
func (a *fakeAcc) doneAll(d sdk.Delivery, from int) int {
	l := a.list()
	for _, e := range l[from:] {
		e.done(d)
	}
	return len(l)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
