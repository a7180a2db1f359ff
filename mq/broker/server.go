package broker

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Register registers the broker's PublisherService and SubscriberService on
// s. Create s with ServerOptions() to raise the message size limits.
func (b *Broker) Register(s grpc.ServiceRegistrar) {
	mqpb.RegisterPublisherServiceServer(s, &publisherServer{b: b})
	mqpb.RegisterSubscriberServiceServer(s, &subscriberServer{b: b})
}

// ServerOptions are the gRPC server options the broker expects (64 MiB
// message limits), and buffers that are not zeroed before use
// (internal/grpcbuf): the broker marshals every payload it delivers into
// one, and zeroing them cost it a quarter of its CPU under `make bench`.
func ServerOptions() []grpc.ServerOption {
	pool := grpcbuf.NewBufferPool()
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		experimental.BufferPool(pool), grpc.ForceServerCodecV2(mqcodec.NewCodec(pool))}
}

type publisherServer struct {
	mqpb.UnimplementedPublisherServiceServer
	b *Broker
}

type subscriberServer struct {
	mqpb.UnimplementedSubscriberServiceServer
	b *Broker
}

func (b *Broker) health() *mqpb.HealthCheckResponse {
	if b.Serving() {
		return &mqpb.HealthCheckResponse{Status: mqpb.HealthCheckResponse_SERVING, Message: "ok"}
	}
	return &mqpb.HealthCheckResponse{Status: mqpb.HealthCheckResponse_NOT_SERVING, Message: "shutting down"}
}

func (s *publisherServer) HealthCheck(context.Context, *mqpb.HealthCheckRequest) (*mqpb.HealthCheckResponse, error) {
	return s.b.health(), nil
}

func (s *subscriberServer) HealthCheck(context.Context, *mqpb.HealthCheckRequest) (*mqpb.HealthCheckResponse, error) {
	return s.b.health(), nil
}

var errUnavailable = status.Error(codes.Unavailable, "mq broker shutting down")

// bigRequest is the size from which a request read ahead by recvLoop is
// handed over alone (see recvLoop).
const bigRequest = 64 << 10

// recvLoop reads a stream ahead into a channel (of capacity buffer) so
// handlers can also watch for shutdown, and take what has arrived in
// batches. The channel closes when Recv fails; the error is then in *errp.
// The goroutine ends when Recv fails or done closes. A request whose size
// (by size) is at least bigRequest is handed over alone: the goroutine
// waits until the handler took it (took) before reading on, so the read
// ahead holds at most buffer requests under bigRequest and one larger.
// The handler must call took for every request it receives from C.
type recvLoop[T any] struct {
	C     <-chan *T
	taken chan struct{}
	size  func(*T) int
}

func startRecvLoop[T any](done <-chan struct{}, recv func() (*T, error), errp *error, buffer int, size func(*T) int) *recvLoop[T] {
	ch := make(chan *T, buffer)
	r := &recvLoop[T]{C: ch, taken: make(chan struct{}, 1), size: size}
	go func() {
		defer close(ch)
		for {
			m, err := recv()
			if err != nil {
				*errp = err
				return
			}
			big := r.size(m) >= bigRequest // before the handler owns m
			select {
			case ch <- m:
			case <-done:
				return
			}
			if big {
				select {
				case <-r.taken:
				case <-done:
					return
				}
			}
		}
	}()
	return r
}

// took tells the loop that the handler received m from C (call it before
// changing m).
func (r *recvLoop[T]) took(m *T) {
	if r.size(m) >= bigRequest {
		r.taken <- struct{}{}
	}
}

// publishRequestSize and ackRequestSize are the sizes recvLoop bounds
// (the variable-length fields).
func publishRequestSize(r *mqpb.PublishRequest) int {
	m := r.GetMessage()
	n := len(m.GetPayload()) + len(m.GetId()) + len(m.GetTopic())
	for k, v := range m.GetMetadata() {
		n += len(k) + len(v)
	}
	return n
}

func ackRequestSize(r *mqpb.AcknowledgeRequest) int {
	return len(r.GetMessageId()) + len(r.GetConsumerId()) + len(r.GetError())
}

// publishReadAhead is how many publish requests (under bigRequest) a
// Publish stream reads ahead of the one being stored.
const publishReadAhead = 64

// pubResponse is a PublishResponse and its timestamp in one allocation.
type pubResponse struct {
	resp mqpb.PublishResponse
	ts   timestamppb.Timestamp
}

type pubResult struct {
	resp *mqpb.PublishResponse
	log  *topicLog
	pos  int64
}

// Publish answers every PublishRequest in order. Responses are sent by a
// second goroutine so several messages can be in flight; with wait_for_ack
// and a data dir a response waits for the fsync that covers its message
// (concurrent publishers share fsyncs).
func (s *publisherServer) Publish(stream grpc.BidiStreamingServer[mqpb.PublishRequest, mqpb.PublishResponse]) error {
	b := s.b
	if !b.Serving() {
		return errUnavailable
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out := make(chan pubResult, 1024)
	sendDone := make(chan error, 1)
	go func() {
		var err error
		for r := range out {
			if err != nil {
				continue
			}
			if r.log != nil {
				if e := r.log.sync(r.pos); e != nil {
					r.resp.Success, r.resp.Error = false, "store: "+e.Error()
				}
			}
			if e := stream.Send(r.resp); e != nil {
				err = e
				cancel()
			}
		}
		sendDone <- err
	}()
	var recvErr error
	reqs := startRecvLoop(ctx.Done(), stream.Recv, &recvErr, publishReadAhead, publishRequestSize)
	finish := func(ret error) error {
		close(out)
		if err := <-sendDone; err != nil && ret == nil {
			ret = err
		}
		return ret
	}
	for {
		var req *mqpb.PublishRequest
		var ok bool
		select {
		case req, ok = <-reqs.C:
		case <-ctx.Done():
			return finish(ctx.Err())
		case <-b.done:
			return finish(errUnavailable)
		}
		if !ok {
			if errors.Is(recvErr, io.EOF) {
				return finish(nil)
			}
			return finish(recvErr)
		}
		reqs.took(req)
		msg := req.GetMessage()
		pr := &pubResponse{}
		resp := &pr.resp
		resp.MessageId = msg.GetId()
		var r pubResult
		if msg == nil {
			resp.Error = "message is required"
		} else {
			stored, t, pos, err := b.publish(ctx, msg)
			switch {
			case errors.Is(err, ErrShuttingDown):
				return finish(errUnavailable)
			case ctx.Err() != nil:
				return finish(ctx.Err())
			case err != nil:
				resp.Error = err.Error()
			default:
				resp.MessageId, resp.Success = stored.Id, true
				if req.GetWaitForAck() && t != nil && pos > 0 {
					t.mu.Lock()
					r.log = t.log
					t.mu.Unlock()
					r.pos = pos
				}
			}
		}
		now := time.Now()
		pr.ts.Seconds, pr.ts.Nanos = now.Unix(), int32(now.Nanosecond())
		resp.Timestamp = &pr.ts
		r.resp = resp
		select {
		case out <- r:
		case <-ctx.Done():
			return finish(ctx.Err())
		}
	}
}

// Subscribe delivers a topic's messages to one member of a consumer group.
// The first request opens the subscription; every later request renews the
// leases of the messages in flight at this subscriber and may change
// batch_size, max_in_flight and ack_timeout_seconds.
func (s *subscriberServer) Subscribe(stream grpc.BidiStreamingServer[mqpb.SubscribeRequest, mqpb.SubscribeResponse]) error {
	b := s.b
	if !b.Serving() {
		return errUnavailable
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetConsumerId() == "" {
		return status.Error(codes.InvalidArgument, "consumer_id is required")
	}
	t, err := b.topic(first.GetTopic())
	if errors.Is(err, ErrShuttingDown) {
		return errUnavailable
	}
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	sub := newSubscriber(b.subSeq.Add(1))
	applySettings(sub, first)
	if len(first.GetFilter()) > 0 {
		sub.filter = first.GetFilter()
	}
	t.mu.Lock()
	sub.group = t.getGroup(first.GetConsumerId())
	sub.group.members++
	t.subs[sub.id] = sub
	t.mu.Unlock()
	b.log.Debug("subscriber joined", "topic", t.name, "group", first.GetConsumerId(), "batch_size", sub.batch, "max_in_flight", sub.maxInFlight, "ack_timeout", sub.ackTimeout)
	defer func() {
		t.mu.Lock()
		t.detach(sub)
		t.mu.Unlock()
		b.log.Debug("subscriber left", "topic", t.name, "group", first.GetConsumerId())
	}()

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					cancel()
				}
				return
			}
			t.mu.Lock()
			applySettings(sub, req)
			t.renew(sub, time.Now())
			t.mu.Unlock()
			sub.wake()
		}
	}()

	hb := time.NewTimer(b.opts.HeartbeatInterval)
	defer hb.Stop()
	for {
		t.mu.Lock()
		msgs := t.take(sub, time.Now())
		var wait <-chan struct{}
		if len(msgs) == 0 {
			wait = t.waitAvail()
		}
		t.mu.Unlock()
		if len(msgs) > 0 {
			if err := stream.Send(&mqpb.SubscribeResponse{Messages: msgs}); err != nil {
				return err
			}
			hb.Reset(b.opts.HeartbeatInterval)
			continue
		}
		select {
		case <-wait:
		case <-sub.kick:
		case <-hb.C:
			if err := stream.Send(&mqpb.SubscribeResponse{Heartbeat: true}); err != nil {
				return err
			}
			hb.Reset(b.opts.HeartbeatInterval)
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return errUnavailable
		}
	}
}

// applySettings copies the non-zero settings of req into sub. Caller holds
// the topic's mutex (or owns sub exclusively).
func applySettings(sub *subscriber, req *mqpb.SubscribeRequest) {
	if n := req.GetBatchSize(); n > 0 {
		sub.batch = int(n)
	}
	if n := req.GetMaxInFlight(); n > 0 {
		sub.maxInFlight = int(n)
	}
	if n := req.GetAckTimeoutSeconds(); n > 0 {
		sub.ackTimeout = time.Duration(n) * time.Second
	}
}

// ackBatch is the most acknowledgements Acknowledge applies in one batch
// (one topic lock round trip while they name the same topic), and the
// capacity of its receive buffer.
const ackBatch = 256

// Acknowledge applies acks and nacks until the client closes the stream.
// Requests are applied in order, in batches of what has already arrived
// (up to ackBatch).
func (s *subscriberServer) Acknowledge(stream grpc.ClientStreamingServer[mqpb.AcknowledgeRequest, emptypb.Empty]) error {
	b := s.b
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var recvErr error
	reqs := startRecvLoop(ctx.Done(), stream.Recv, &recvErr, ackBatch, ackRequestSize)
	var hint *topic
	batch := make([]*mqpb.AcknowledgeRequest, 0, ackBatch)
	for {
		var req *mqpb.AcknowledgeRequest
		var ok bool
		select {
		case req, ok = <-reqs.C:
		case <-b.done:
			return errUnavailable
		}
		batch = batch[:0]
		if ok {
			reqs.took(req)
			batch = append(batch, req)
		}
	drain:
		for ok && len(batch) < ackBatch {
			select {
			case req, ok = <-reqs.C:
				if ok {
					reqs.took(req)
					batch = append(batch, req)
				}
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			hint = b.acknowledgeBatch(hint, batch)
		}
		clear(batch)
		if !ok {
			if errors.Is(recvErr, io.EOF) {
				return stream.SendAndClose(&emptypb.Empty{})
			}
			return recvErr
		}
	}
}
