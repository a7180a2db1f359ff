package mq_service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// acker sends acknowledgements on one long-lived Acknowledge client stream,
// reopened with backoff when it breaks. enqueue never blocks (done callbacks
// call it); the queue is bounded by the messages in flight, which the
// broker's max_in_flight and the pipeline's capacity bound.
//
// A request whose Send failed is sent again on the next stream; one that was
// sent on a stream that then broke may be lost, and the broker redelivers
// that message (at-least-once).
type acker struct {
	client     mqpb.SubscriberServiceClient
	consumerID string
	backoffMax time.Duration
	log        hclog.Logger
	stats      *counters

	ctx    context.Context // ends the loop and the stream when cancelled
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []*mqpb.AcknowledgeRequest
	started bool
	closing bool // no new requests; flush and stop
	unsent  int  // requests given up by the loop
	wake    chan struct{}
	done    chan struct{}

	// owned by the loop goroutine
	stream       grpc.ClientStreamingClient[mqpb.AcknowledgeRequest, emptypb.Empty]
	streamCancel context.CancelFunc
	outage       bool
}

func newAcker(conn grpc.ClientConnInterface, consumerID string, backoffMax time.Duration, log hclog.Logger, st *counters) *acker {
	ctx, cancel := context.WithCancel(context.Background())
	return &acker{
		client:     mqpb.NewSubscriberServiceClient(conn),
		consumerID: consumerID,
		backoffMax: backoffMax,
		log:        log,
		stats:      st,
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
}

// enqueue queues an acknowledgement (success) or a nack. It reports false
// when the acker is closed and the request was dropped.
func (a *acker) enqueue(id string, success bool, reason string) bool {
	req := &mqpb.AcknowledgeRequest{MessageId: id, ConsumerId: a.consumerID, Success: success, Error: reason}
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		a.stats.ackDropped.Add(1)
		return false
	}
	a.queue = append(a.queue, req)
	if !a.started {
		a.started = true
		go a.loop()
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return true
}

// close flushes the queue, closes the stream (CloseAndRecv) and stops the
// loop. When ctx ends first it abandons what is left and reports it.
func (a *acker) close(ctx context.Context) error {
	a.mu.Lock()
	a.closing = true
	started := a.started
	a.mu.Unlock()
	if !started {
		a.cancel()
		return nil
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel()
		<-a.done
	}
	a.cancel()
	a.mu.Lock()
	n := a.unsent + len(a.queue)
	a.queue = nil
	a.mu.Unlock()
	if n > 0 {
		a.stats.ackDropped.Add(uint64(n))
		return fmt.Errorf("mq_service: %d acknowledgements not sent before shutdown (the broker redelivers those messages): %w",
			n, context.Cause(ctx))
	}
	return nil
}

func (a *acker) loop() {
	defer close(a.done)
	bo := newBackoff(a.backoffMax)
	for {
		a.mu.Lock()
		for len(a.queue) == 0 {
			if a.closing {
				a.mu.Unlock()
				a.closeStream()
				return
			}
			a.mu.Unlock()
			select {
			case <-a.wake:
			case <-a.ctx.Done():
				a.dropStream()
				return
			}
			a.mu.Lock()
		}
		batch := a.queue
		a.queue = nil
		a.mu.Unlock()

		for k := 0; k < len(batch); {
			if a.ctx.Err() != nil {
				a.mu.Lock()
				a.unsent += len(batch) - k
				a.mu.Unlock()
				a.dropStream()
				return
			}
			if a.stream == nil {
				if err := a.openStream(); err != nil {
					a.failed("open acknowledge stream", err)
					sleepCtx(a.ctx, bo.next()) // a cancelled ctx is handled above
					continue
				}
			}
			req := batch[k]
			if err := a.stream.Send(req); err != nil {
				err = a.streamError(err)
				a.failed("send acknowledgement", err)
				sleepCtx(a.ctx, bo.next())
				continue
			}
			if a.outage {
				a.outage = false
				a.log.Info("acknowledge stream restored")
			}
			bo.reset()
			if req.Success {
				a.stats.acked.Add(1)
			} else {
				a.stats.nacked.Add(1)
			}
			k++
		}
	}
}

func (a *acker) openStream() error {
	sctx, cancel := context.WithCancel(a.ctx)
	s, err := a.client.Acknowledge(sctx)
	if err != nil {
		cancel()
		return err
	}
	a.stream, a.streamCancel = s, cancel
	return nil
}

// streamError returns the stream's real status after a failed Send (Send
// only says io.EOF) and forgets the stream.
func (a *acker) streamError(sendErr error) error {
	s := a.stream
	a.dropStream()
	if s != nil {
		if _, err := s.CloseAndRecv(); err != nil {
			return err
		}
	}
	return sendErr
}

func (a *acker) dropStream() {
	if a.streamCancel != nil {
		a.streamCancel()
	}
	a.stream, a.streamCancel = nil, nil
}

func (a *acker) closeStream() {
	if a.stream == nil {
		return
	}
	if _, err := a.stream.CloseAndRecv(); err != nil && a.ctx.Err() == nil {
		a.log.Warn("acknowledge stream ended with an error; the last acknowledgements may be lost (the broker redelivers those messages)", "error", err)
	}
	a.dropStream()
}

func (a *acker) failed(what string, err error) {
	if a.ctx.Err() != nil {
		return
	}
	if !a.outage {
		a.outage = true
		a.log.Warn("acknowledgements stalled; retrying with backoff", "op", what, "error", err)
		return
	}
	a.log.Debug("acknowledgements still stalled", "op", what, "error", err)
}

// backoff is an exponential, jittered delay: 100ms doubling up to max.
type backoffState struct {
	cur, max time.Duration
}

func newBackoff(max time.Duration) *backoffState {
	if max < initialBackoff {
		max = initialBackoff
	}
	return &backoffState{cur: initialBackoff, max: max}
}

// next returns the delay to wait now (the current step ±20%) and doubles
// the step.
func (b *backoffState) next() time.Duration {
	d := time.Duration(float64(b.cur) * (0.8 + 0.4*rand.Float64()))
	b.cur *= 2
	if b.cur > b.max {
		b.cur = b.max
	}
	return d
}

func (b *backoffState) reset() { b.cur = initialBackoff }

// sleepCtx waits d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
