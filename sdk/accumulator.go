package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
)

// accumulator is the plugin-side Accumulator of a Run stream: Emit waits
// for a credit from the agent, numbers the batch, sends it and remembers its
// done callback until the agent acknowledges that id. Safe for concurrent
// use. Batches are encoded with the stream's dictionary (wire.StreamEncoder)
// and sent under one lock, so the agent receives definitions before the
// batches that use them.
type accumulator struct {
	stream pluginpb.Plugin_RunServer

	sendMu sync.Mutex
	enc    *wire.StreamEncoder // the Run stream's dictionary; sendMu
	msg    pluginpb.Batch

	mu       sync.Mutex
	credits  int
	avail    chan struct{} // signalled when credits were added
	nextID   uint64
	pending  map[uint64]func(Delivery)
	failed   error
	failedCh chan struct{}
}

func newAccumulator(stream pluginpb.Plugin_RunServer) *accumulator {
	return &accumulator{
		stream:   stream,
		enc:      wire.NewStreamEncoder(),
		avail:    make(chan struct{}, 1),
		pending:  make(map[uint64]func(Delivery)),
		failedCh: make(chan struct{}),
	}
}

// Emit implements Accumulator. When it returns an error the batch was not
// taken and done is never called.
func (a *accumulator) Emit(ctx context.Context, b *Batch, done func(Delivery)) error {
	if b == nil {
		return errors.New("sdk: Emit of a nil batch")
	}
	var id uint64
	for {
		a.mu.Lock()
		if a.failed != nil {
			err := a.failed
			a.mu.Unlock()
			return err
		}
		if a.credits > 0 {
			a.credits--
			if a.credits > 0 {
				a.signal()
			}
			a.nextID++
			id = a.nextID
			if done != nil {
				a.pending[id] = done
			}
			a.mu.Unlock()
			break
		}
		a.mu.Unlock()
		select {
		case <-a.avail:
		case <-a.failedCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.sendMu.Lock()
	a.enc.Encode(&a.msg, id, b)
	err := a.stream.Send(&a.msg)
	a.sendMu.Unlock()
	if err != nil {
		a.mu.Lock()
		delete(a.pending, id)
		a.mu.Unlock()
		return fmt.Errorf("sdk: send batch to the agent: %w", err)
	}
	return nil
}

// EmitCopies implements BatchCopier: Emit encodes the batch into the
// stream's message and sends it (gRPC marshals it before Send returns)
// under sendMu; the stream dictionary keeps its own copies of label slices
// and the (immutable) strings, nothing of the batch's arrays.
func (a *accumulator) EmitCopies() bool { return true }

func (a *accumulator) signal() {
	select {
	case a.avail <- struct{}{}:
	default:
	}
}

func (a *accumulator) send(m *pluginpb.Batch) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return a.stream.Send(m)
}

func (a *accumulator) grant(n int) {
	if n <= 0 {
		return
	}
	a.mu.Lock()
	a.credits += n
	a.mu.Unlock()
	a.signal()
}

func (a *accumulator) ack(x *pluginpb.Ack) {
	a.mu.Lock()
	done := a.pending[x.GetId()]
	delete(a.pending, x.GetId())
	a.mu.Unlock()
	if done == nil {
		return
	}
	d := Delivery{OK: x.GetOk()}
	if !d.OK {
		msg := x.GetError()
		if msg == "" {
			msg = "not delivered"
		}
		d.Err = errors.New(msg)
	}
	done(d)
}

func (a *accumulator) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed == nil {
		a.failed = err
		close(a.failedCh)
	}
}

// nackAll reports every unacknowledged batch as not delivered.
func (a *accumulator) nackAll(err error) {
	a.mu.Lock()
	p := a.pending
	a.pending = make(map[uint64]func(Delivery))
	a.mu.Unlock()
	for _, done := range p {
		done(Delivery{OK: false, Err: err})
	}
}
