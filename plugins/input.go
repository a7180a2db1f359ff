package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// InputClient is an input plugin process seen as an sdk.Input.
//
// Run grants Spec.Credits credits, hands every batch the plugin emits to
// acc.Emit and grants one more credit once Emit accepted it; the done
// callback sends the acknowledgement back to the plugin. When Run's ctx is
// cancelled the plugin is drained (it stops taking data) and Run returns
// once the plugin's Run returned; batches it emitted meanwhile are
// negatively acknowledged (the source redelivers them). Acknowledgements
// keep flowing until Close. If the process dies, Run restarts it and runs
// it again; acknowledgements for the dead instance's batches are dropped.
// Run must not be called concurrently with itself.
type InputClient struct {
	sup *supervisor

	life       context.Context
	lifeCancel context.CancelFunc

	mu      sync.Mutex
	cur     *runStream
	running chan struct{} // closed when Run returned; nil before Run

	closeOnce sync.Once
	closeErr  error
}

var _ sdk.Input = (*InputClient)(nil)
var _ sdk.Closer = (*InputClient)(nil)

// Input launches and configures an input plugin.
func (l *Launcher) Input(ctx context.Context, spec Spec) (*InputClient, error) {
	spec.Kind = KindInput
	if spec.Credits <= 0 {
		spec.Credits = 4
	}
	life, cancel := context.WithCancel(context.Background())
	c := &InputClient{sup: newSupervisor(l, spec), life: life, lifeCancel: cancel}
	if _, err := c.sup.launch(ctx); err != nil {
		cancel()
		return nil, wrapErr(spec, err)
	}
	return c, nil
}

// runStream is one Run stream to one instance, with its control sender:
// acks and credits are queued (never blocking the caller) and sent by one
// goroutine, coalesced into InputControl messages.
type runStream struct {
	inst   *instance
	st     pluginpb.Plugin_RunClient
	cancel context.CancelFunc

	mu      sync.Mutex
	acks    []*pluginpb.Ack
	credits uint32
	dead    bool
	closing bool
	wake    chan struct{}
	sent    chan struct{} // closed when the sender is done

	// unsettled counts the batches this stream handed to the pipeline
	// whose done callback has not run yet.
	unsettled atomic.Int64
}

func (rs *runStream) queue(ack *pluginpb.Ack, credits uint32) {
	rs.mu.Lock()
	if rs.dead {
		rs.mu.Unlock()
		return // the instance that emitted it is gone: the source redelivers
	}
	if ack != nil {
		rs.acks = append(rs.acks, ack)
	}
	rs.credits += credits
	rs.mu.Unlock()
	select {
	case rs.wake <- struct{}{}:
	default:
	}
}

func (rs *runStream) sender() {
	defer close(rs.sent)
	for {
		rs.mu.Lock()
		acks, credits, closing, dead := rs.acks, rs.credits, rs.closing, rs.dead
		rs.acks, rs.credits = nil, 0
		rs.mu.Unlock()
		if dead {
			return
		}
		if len(acks) > 0 || credits > 0 {
			if err := rs.st.Send(&pluginpb.InputControl{Credits: credits, Acks: acks}); err != nil {
				rs.kill()
				return
			}
			continue
		}
		if closing {
			_ = rs.st.CloseSend()
			return
		}
		<-rs.wake
	}
}

func (rs *runStream) kill() {
	rs.mu.Lock()
	rs.dead = true
	rs.mu.Unlock()
	select {
	case rs.wake <- struct{}{}:
	default:
	}
}

// finish flushes queued acks, closes the send side and waits (up to ctx)
// until the plugin's Run handler returned, i.e. it processed every ack.
func (rs *runStream) finish(ctx context.Context) {
	rs.mu.Lock()
	rs.closing = true
	rs.mu.Unlock()
	select {
	case rs.wake <- struct{}{}:
	default:
	}
	select {
	case <-rs.sent:
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := rs.st.Recv(); err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	rs.kill()
	rs.cancel()
}

func (c *InputClient) open(inst *instance) (*runStream, error) {
	ctx, cancel := context.WithCancel(c.life)
	st, err := inst.rpc.Run(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open run stream: %w", err)
	}
	rs := &runStream{inst: inst, st: st, cancel: cancel, wake: make(chan struct{}, 1), sent: make(chan struct{})}
	go rs.sender()
	rs.queue(nil, uint32(c.sup.spec.Credits))
	return rs, nil
}

// Run implements sdk.Input; see the type's documentation.
func (c *InputClient) Run(ctx context.Context, acc sdk.Accumulator) error {
	c.mu.Lock()
	if c.running != nil {
		c.mu.Unlock()
		return errors.New("plugins: InputClient.Run called twice")
	}
	running := make(chan struct{})
	c.running = running
	c.mu.Unlock()
	defer close(running)

	stopDrain := context.AfterFunc(ctx, func() { c.drainRPC() })
	defer stopDrain()

	spec := c.sup.spec
	inst := c.sup.current()
	if inst == nil {
		return wrapErr(spec, errClosed)
	}
	for {
		rs, err := c.open(inst)
		if err == nil {
			// Each Run stream has its own dictionary, decoded in receive
			// order. Emitted batches share the dictionary's label slices
			// (read-only for the agent, which only reads and re-encodes
			// them).
			dec := wire.StreamDecoder{ShareLabels: true}
			c.mu.Lock()
			c.cur = rs
			c.mu.Unlock()
			if ctx.Err() != nil {
				c.drainRPC()
			}
			err = c.pump(ctx, acc, rs, &dec)
			if err == nil || !errors.Is(err, errStreamBroken) {
				return err
			}
			rs.kill()
			rs.cancel()
			c.awaitSettled(ctx, rs)
		}
		if ctx.Err() != nil {
			return nil // died while draining: nothing left to run
		}
		inst, err = c.sup.restart(ctx, inst, err)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return wrapErr(spec, fmt.Errorf("restart: %w", err))
		}
	}
}

var errStreamBroken = errors.New("input stream broken")

// awaitSettled waits, before a dead input is restarted, until every batch
// its instance handed to the pipeline is settled (stored, dead-lettered or
// given up), or ctx is done. The source redelivers what the dead instance
// had not acknowledged; were the new instance to start at once, such a copy
// could reach a processor such as dedup while its first copy is still on
// its way to the outputs, be dropped there as a duplicate (which counts as
// delivered) and be acknowledged before the first copy is stored: a crash
// then would lose it. Waiting makes every redelivered copy arrive after its
// original settled. The wait is bounded by the pipeline's own progress.
func (c *InputClient) awaitSettled(ctx context.Context, rs *runStream) {
	n := rs.unsettled.Load()
	if n == 0 {
		return
	}
	c.sup.log.Info("input plugin died: waiting for the batches it emitted to settle before restarting it", "batches", n)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for rs.unsettled.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-c.life.Done():
			return
		}
	}
}

// pump moves batches from rs to acc until the plugin's Run ended (nil or
// its error) or the stream broke (errStreamBroken).
func (c *InputClient) pump(ctx context.Context, acc sdk.Accumulator, rs *runStream, dec *wire.StreamDecoder) error {
	spec := c.sup.spec
	for {
		msg, err := rs.st.Recv()
		if err != nil {
			if err == io.EOF {
				err = errors.New("plugin ended the run stream without an end marker")
			}
			return fmt.Errorf("%w: %w", errStreamBroken, err)
		}
		if msg.GetEnd() {
			if msg.GetRunError() != "" && ctx.Err() == nil {
				return wrapErr(spec, fmt.Errorf("run: %s", msg.GetRunError()))
			}
			return nil
		}
		id := msg.GetId()
		b := c.sup.l.batches.get()
		err = dec.Decode(msg, b)
		// Decode copied what it keeps: the message's columns go back to
		// the codec's pool (nothing else sees msg).
		wire.RecycleBatch(msg)
		if err != nil {
			c.sup.log.Error("malformed batch from the input plugin", "id", id, "error", err)
			rs.queue(&pluginpb.Ack{Id: id, Error: "malformed batch: " + err.Error()}, 1)
			continue
		}
		if ctx.Err() != nil {
			rs.queue(&pluginpb.Ack{Id: id, Error: "agent is draining"}, 0)
			continue
		}
		rs.unsettled.Add(1)
		done := func(d sdk.Delivery) {
			defer rs.unsettled.Add(-1)
			a := &pluginpb.Ack{Id: id, Ok: d.OK}
			if !d.OK {
				a.Error = "not delivered"
				if d.Err != nil {
					a.Error = d.Err.Error()
				}
			}
			rs.queue(a, 0)
		}
		if err := acc.Emit(ctx, b, done); err != nil {
			rs.unsettled.Add(-1) // not taken: done never runs
			rs.queue(&pluginpb.Ack{Id: id, Error: "not accepted: " + err.Error()}, 0)
			continue
		}
		rs.queue(nil, 1)
	}
}

// drainRPC asks the current instance to stop taking data.
func (c *InputClient) drainRPC() {
	if inst := c.sup.current(); inst != nil {
		ctx, cancel := context.WithTimeout(c.life, 5*time.Minute)
		defer cancel()
		if _, err := inst.rpc.Drain(ctx, &pluginpb.Empty{}); err != nil && c.life.Err() == nil {
			c.sup.log.Debug("drain failed", "error", err)
		}
	}
}

// Drain asks the plugin to stop taking data and waits until Run returned
// (or ctx is done). Without a running Run it only drains the plugin.
func (c *InputClient) Drain(ctx context.Context) error {
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.drainRPC(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if running != nil {
		select {
		case <-running:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close drains the plugin if Run is still running, flushes the queued
// acknowledgements, closes the plugin (its final acknowledgements to the
// source) and ends the process. Safe to call twice and on a nil client.
func (c *InputClient) Close(ctx context.Context) error {
	if c == nil || c.sup == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		var errs []error
		if err := c.Drain(ctx); err != nil {
			errs = append(errs, wrapErr(c.sup.spec, fmt.Errorf("drain: %w", err)))
		}
		c.mu.Lock()
		rs := c.cur
		c.mu.Unlock()
		if rs != nil {
			rs.finish(ctx)
		}
		if inst := c.sup.current(); inst != nil {
			if _, err := inst.rpc.Close(ctx, &pluginpb.Empty{}); err != nil {
				errs = append(errs, wrapErr(c.sup.spec, fmt.Errorf("close: %w", err)))
			}
		}
		c.sup.stop()
		c.lifeCancel()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// PID is the current plugin process id (0 while restarting).
func (c *InputClient) PID() int {
	if inst := c.sup.current(); inst != nil {
		return inst.pid
	}
	return 0
}

// Restarts counts restarts after the plugin died.
func (c *InputClient) Restarts() int { return int(c.sup.restarts.Load()) }
