package mq_service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// copiesOnEmit reports whether acc copies what it needs of a batch before
// Emit returns (sdk.BatchCopier), so the input may reuse emitted batches.
func copiesOnEmit(acc sdk.Accumulator) bool {
	c, ok := acc.(sdk.BatchCopier)
	return ok && c.EmitCopies()
}

// errNoHeartbeat ends a subscription that went silent.
var errNoHeartbeat = errors.New("no message or heartbeat within heartbeat_timeout")

// Run subscribes and feeds the pipeline until ctx is cancelled (it then
// returns nil) or a fatal error. Broken streams are reopened with backoff.
func (i *Input) Run(ctx context.Context, acc sdk.Accumulator) error {
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return nil
	}
	if i.runDone != nil {
		i.mu.Unlock()
		return errors.New("mq_service: Run called twice")
	}
	if err := i.setupLocked(); err != nil {
		i.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	i.runCancel = cancel
	i.runDone = make(chan struct{})
	defer close(i.runDone)
	loc := i.location
	i.mu.Unlock()

	pc := &parserCache{
		newParser: i.parserFactory(),
		// The builder and the SDK only read labels: batches can share the
		// parser's label slices instead of copying them per payload.
		opts: parsers.Options{Location: loc, SharedLabels: true},
		ok:   make(map[string]parsers.Parser),
		bad:  make(map[string]error),
	}
	maxPoints := i.EmitMaxPoints
	if maxPoints < 1 {
		maxPoints = DefaultEmitMaxPoints
	}
	r := &runner{in: i, acc: acc, pc: pc, bl: newBuilder(maxPoints), scratch: &sdk.Batch{}}
	r.reuse = copiesOnEmit(acc)

	bo := newBackoff(i.ReconnectBackoffMax.D())
	outage := false
	r.outage = &outage
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil
		}
		if attempt > 0 {
			i.stats.reconnects.Add(1)
		}
		got, err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if got {
			bo.reset()
			outage = false
		}
		if !outage {
			outage = true
			i.log.Warn("subscription lost; reconnecting with backoff", "address", i.Address, "topic", i.Topic, "error", err)
		} else {
			i.log.Debug("subscription still down", "address", i.Address, "topic", i.Topic, "error", err)
		}
		if !sleepCtx(ctx, bo.next()) {
			return nil
		}
	}
}

// fatalError ends Run instead of reconnecting.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// runner holds the receive loop's state across sessions; owned by Run's
// goroutine.
type runner struct {
	in  *Input
	acc sdk.Accumulator
	// reuse: acc copies what it needs of a batch before Emit returns
	// (sdk.BatchCopier), so emitted batches' memory serves later ones.
	reuse   bool
	pc      *parserCache
	bl      *builder
	scratch *sdk.Batch
	// outage is Run's "an outage was logged" flag: the first response of a
	// session clears it and logs the recovery.
	outage *bool
}

func (i *Input) subscribeRequest() *mqpb.SubscribeRequest {
	return &mqpb.SubscribeRequest{
		Topic:             i.Topic,
		ConsumerId:        i.ConsumerID,
		BatchSize:         int32(i.BatchSize),
		MaxInFlight:       int32(i.MaxInFlight),
		AckTimeoutSeconds: int32(i.ackTimeoutSeconds()),
		Filter:            i.Filter,
	}
}

// subStream is one Subscribe stream. The send side is shared by the
// renewer and the drain (CloseSend), serialised by sem so a Send blocked by
// a broker that does not read cannot hang shutdown.
type subStream struct {
	s      grpc.BidiStreamingClient[mqpb.SubscribeRequest, mqpb.SubscribeResponse]
	sem    chan struct{}
	cancel context.CancelFunc
	// lastRenewal is the unix-nano time of the last renewal sent (0: none);
	// written by the renewer, read after it stopped.
	lastRenewal time.Time
}

// session runs one Subscribe stream until it breaks or ctx is cancelled. got
// reports whether the broker answered at least once.
func (r *runner) session(ctx context.Context) (got bool, err error) {
	i := r.in
	sctx, scancel := context.WithCancel(context.WithoutCancel(ctx))
	client := mqpb.NewSubscriberServiceClient(i.conn)
	s, err := client.Subscribe(sctx)
	if err != nil {
		scancel()
		return false, fmt.Errorf("open subscribe stream to %s: %w", i.Address, err)
	}
	ss := &subStream{s: s, sem: make(chan struct{}, 1), cancel: scancel}
	if err := s.Send(i.subscribeRequest()); err != nil {
		_, rerr := s.Recv()
		scancel()
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr
		}
		return false, fmt.Errorf("send subscribe request: %w", err)
	}

	respCh := make(chan *mqcodec.Frames)
	errCh := make(chan error, 1)
	stop := make(chan struct{})
	renewDone := make(chan struct{})
	go r.receive(sctx, ss, respCh, errCh, stop)
	go r.renew(sctx, ss, stop, renewDone)

	linger := time.NewTimer(time.Hour)
	linger.Stop()
	lingerOn := false
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	heartbeats := false
	hbTimeout := i.HeartbeatTimeout.D()
	maxWait := i.EmitMaxWait.D()

	// end stops the stream's helpers after a failure and returns err.
	end := func(err error) (bool, error) {
		close(stop)
		<-renewDone
		scancel()
		linger.Stop()
		idle.Stop()
		return got, r.classify(ss, err)
	}

	for {
		var idleC <-chan time.Time
		if heartbeats && hbTimeout > 0 {
			idle.Reset(hbTimeout)
			idleC = idle.C
		}
		select {
		case <-ctx.Done():
			r.drain(ss, stop, renewDone)
			return got, nil
		case err := <-errCh:
			// Data already taken still goes to the pipeline.
			if ferr := r.flush(ctx, true); ferr != nil {
				r.drain(ss, stop, renewDone)
				return got, ferr
			}
			return end(err)
		case <-idleC:
			if ferr := r.flush(ctx, true); ferr != nil {
				r.drain(ss, stop, renewDone)
				return got, ferr
			}
			return end(errNoHeartbeat)
		case <-linger.C:
			lingerOn = false
			if err := r.flush(ctx, true); err != nil {
				r.drain(ss, stop, renewDone)
				return got, err
			}
		case frames := <-respCh:
			idle.Stop()
			// Decoded only now, into the buffer the last response was
			// parsed in (see receive).
			var resp mqcodec.Received
			if err := frames.Decode(&resp); err != nil {
				// What gRPC reports for a response its codec cannot
				// decode (the stream is ended below, as it did then).
				err = status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
				if ferr := r.flush(ctx, true); ferr != nil {
					r.drain(ss, stop, renewDone)
					return got, ferr
				}
				return end(err)
			}
			if !got {
				got = true
				if *r.outage {
					*r.outage = false
					i.log.Info("subscription restored", "address", i.Address, "topic", i.Topic)
				}
			}
			if resp.Response.GetHeartbeat() {
				heartbeats = true
				i.stats.heartbeats.Add(1)
			}
			r.process(resp.Response)
			// process copied what it keeps (parsers copy what they keep
			// of a payload): the payloads' buffer can be reused.
			resp.Release()
			all := maxWait == 0
			if err := r.flush(ctx, all); err != nil {
				r.drain(ss, stop, renewDone)
				return got, err
			}
			if r.bl.pending() && !lingerOn {
				linger.Reset(maxWait)
				lingerOn = true
			}
		}
	}
}

// classify turns a stream's end into the error Run logs, and disables lease
// renewal when the broker apparently refused one.
func (r *runner) classify(ss *subStream, err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("broker ended the subscription")
	}
	if !ss.lastRenewal.IsZero() && time.Since(ss.lastRenewal) < 2*time.Second && !errors.Is(err, errNoHeartbeat) {
		switch status.Code(err) {
		case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
			// the broker or the network went away
		default:
			if r.in.renewOff.CompareAndSwap(false, true) {
				r.in.log.Warn("broker ended the subscription right after a lease renewal; lease renewal disabled (messages may be redelivered after ack_timeout)",
					"error", err)
			}
		}
	}
	return err
}

// receive reads the stream and hands responses over one at a time (so at
// most one response waits here while the pipeline is full). A response
// waits as gRPC's frames (mqcodec.Frames), decoded by the session loop
// when it takes it: decoded here, it would be held twice while being
// copied out of its frames and then once more next to the buffer of the
// response being parsed; decoded there, it goes into the buffer the
// previous response was just released to, so the input holds one decoded
// response at a time instead of two (~5.7 MB each for a scrape-sized
// response, ~10 MB for DCGM CSV; see README, Memory). After stop it
// stops reading: what it holds is neither processed nor acknowledged (the
// broker redelivers it once the stream ends). It must not nack: our broker
// keeps sending after CloseSend, and nacked messages would come straight
// back, burning their delivery count.
func (r *runner) receive(sctx context.Context, ss *subStream, respCh chan<- *mqcodec.Frames, errCh chan<- error, stop <-chan struct{}) {
	for {
		resp := &mqcodec.Frames{}
		if err := ss.s.RecvMsg(resp); err != nil {
			errCh <- err
			return
		}
		select {
		case respCh <- resp:
		case <-stop:
			resp.Release()
			return
		case <-sctx.Done():
			resp.Release()
			return
		}
	}
}

// renew re-sends the subscription while messages are in flight: our broker
// takes it as a lease renewal. A failure only stops renewing on this stream.
func (r *runner) renew(sctx context.Context, ss *subStream, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(r.in.renewInterval())
	defer t.Stop()
	req := r.in.subscribeRequest()
	for {
		select {
		case <-stop:
			return
		case <-sctx.Done():
			return
		case <-t.C:
		}
		if r.in.renewOff.Load() || r.in.inflightCount() == 0 {
			continue
		}
		select {
		case ss.sem <- struct{}{}:
		case <-stop:
			return
		case <-sctx.Done():
			return
		}
		err := ss.s.Send(req)
		<-ss.sem
		if err != nil {
			r.in.log.Debug("lease renewal not sent", "error", err)
			return
		}
		ss.lastRenewal = time.Now()
		r.in.stats.renewals.Add(1)
	}
}

// drain implements the drain contract for the live stream: stop reading,
// nack what was taken but not emitted, and close the send side. The stream
// itself stays open (unread) until the broker ends it, every message in
// flight was acknowledged, drainMax passed or Close: our broker releases a
// subscriber's unacknowledged messages to other members when its stream
// ends, so ending it early would only cause duplicates.
func (r *runner) drain(ss *subStream, stop chan struct{}, renewDone <-chan struct{}) {
	i := r.in
	close(stop)
	for _, p := range r.bl.take(true) {
		i.batchDone(p, sdk.Delivery{OK: false, Err: errors.New("not emitted: consumer shutting down")})
	}
	closed := false
	select {
	case <-renewDone:
		select {
		case ss.sem <- struct{}{}:
			_ = ss.s.CloseSend()
			<-ss.sem
			closed = true
		default:
		}
	case <-time.After(time.Second):
	}
	if !closed {
		ss.cancel()
		return
	}
	go func() {
		defer ss.cancel()
		limit := time.NewTimer(i.drainMax())
		defer limit.Stop()
		poll := time.NewTicker(50 * time.Millisecond)
		defer poll.Stop()
		for {
			select {
			case <-limit.C:
				return
			case <-i.closing:
				return
			case <-ss.s.Context().Done():
				return
			case <-poll.C:
				if i.inflightCount() == 0 {
					return
				}
			}
		}
	}()
}

// process parses the messages of one response into the builder.
func (r *runner) process(resp *mqpb.SubscribeResponse) {
	i := r.in
	now := time.Now()
	for _, m := range resp.GetMessages() {
		i.stats.received.Add(1)
		if i.inflightHas(m.GetId()) {
			// Redelivered while the first copy is still in our pipeline
			// (the broker restarted, the stream was reopened, a lease
			// expired). Processing it again could get it acknowledged
			// before the first copy is stored: a processor such as dedup
			// drops the copy, which counts as delivered. The first copy's
			// acknowledgement (or nack) names the same id and settles it.
			i.stats.redelivered.Add(1)
			continue
		}
		i.inflightAdd(m.GetId())
		tr := &msgTrack{id: m.GetId()}
		r.scratch.Reset()
		shared, err := i.parseMessage(r.pc, m, r.scratch, now)
		if err != nil {
			i.stats.rejected.Add(1)
			i.log.Debug("message rejected", "message_id", m.GetId(), "error", err)
		} else {
			i.stats.parsed.Add(1)
			i.stats.rowRejects.Add(uint64(len(r.scratch.Rejects)))
		}
		// The batch holds copies of what it needs: let the payload go now
		// rather than with the whole response (up to batch_size payloads).
		m.Payload = nil
		if r.scratch.Len() == 0 && len(r.scratch.Rejects) == 0 {
			// Nothing to deliver (e.g. only "[N/A]" values): done already.
			i.finish(tr)
			continue
		}
		r.bl.merge(tr, r.scratch, shared)
	}
}

// flush emits the batches that are ready (all of them when all is set).
// Emit blocks while the pipeline is full; nothing is read meanwhile. A
// cancelled ctx nacks what was not taken and returns nil to the caller's
// select (which sees ctx.Done next); any other Emit error is fatal.
func (r *runner) flush(ctx context.Context, all bool) error {
	ready := r.bl.take(all)
	for k, p := range ready {
		done := func(d sdk.Delivery) { r.in.batchDone(p, d) }
		if err := r.acc.Emit(ctx, p.b, done); err != nil {
			for _, q := range ready[k:] {
				r.in.batchDone(q, sdk.Delivery{OK: false, Err: fmt.Errorf("not emitted: %w", err)})
			}
			if ctx.Err() != nil {
				return nil
			}
			return &fatalError{err: fmt.Errorf("mq_service: emit: %w", err)}
		}
		// The batch belongs to the pipeline now (or, when acc copied it,
		// its memory serves the next batch); the done callback keeps p
		// (the message tracks) until the pipeline settles it, which can be
		// long under backpressure, so p must not keep the samples alive.
		if r.reuse {
			r.bl.spare(p.b)
		}
		p.release()
		r.in.stats.emitted.Add(1)
	}
	return nil
}
