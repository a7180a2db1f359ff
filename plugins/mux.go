package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// bidi is the agent side of a Process or Write stream.
type bidi[R any] interface {
	Send(*pluginpb.Batch) error
	Recv() (R, error)
	CloseSend() error
}

type result interface{ GetId() uint64 }

// call is one Process or Write in flight. The batch is kept until the
// result arrives: it is encoded when it is sent, with the dictionary of the
// stream it goes on, so a replay to a restarted instance encodes it afresh
// for the new stream. mu guards b against the caller returning (and
// reusing b) while a replay encodes it.
type call[R any] struct {
	id   uint64
	done chan struct{}
	res  R
	out  any // what the stream's decode hook made of res
	err  error

	mu   sync.Mutex
	b    *sdk.Batch
	gone bool // the caller returned: b must not be read any more
}

// release marks the call's batch as no longer readable, waiting for an
// encode in progress.
func (c *call[R]) release() {
	c.mu.Lock()
	c.gone = true
	c.b = nil
	c.mu.Unlock()
}

// muxStream is one stream to one instance. Sends are serialised and each
// batch is encoded under the send lock with the stream's dictionary, so the
// plugin receives definitions before the batches that use them; results
// are decoded by the stream's single receive loop, in order, with the
// stream's receive dictionary.
type muxStream[R any] struct {
	inst   *instance
	st     bidi[R]
	cancel context.CancelFunc
	sendMu sync.Mutex
	enc    *wire.StreamEncoder // sendMu
	msg    pluginpb.Batch      // sendMu: reused, Send marshals it before returning
	dec    *wire.StreamDecoder // receive loop only
}

// send encodes c's batch for this stream and sends it. A call whose caller
// is gone is skipped.
func (ms *muxStream[R]) send(c *call[R]) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return nil
	}
	ms.sendMu.Lock()
	defer ms.sendMu.Unlock()
	err := ms.st.Send(ms.enc.Encode(&ms.msg, c.id, c.b))
	ms.msg.Rejects = nil // drop references to the caller's raw bytes
	return err
}

// mux multiplexes concurrent calls over one long-lived stream, by id, and
// replays the calls in flight on a new stream when the instance dies.
type mux[R result] struct {
	sup  *supervisor
	open func(ctx context.Context, c pluginpb.PluginClient) (bidi[R], error)
	// decode, if set, runs in the stream's receive loop for every result
	// (also those nobody waits for any more: the receive dictionary must
	// see every definition), in receive order; its value or error is the
	// call's.
	decode func(dec *wire.StreamDecoder, r R) (any, error)

	life       context.Context // cancelled when the client stops
	lifeCancel context.CancelFunc

	mu       sync.Mutex
	stream   *muxStream[R] // nil while restarting
	pending  map[uint64]*call[R]
	idle     chan struct{} // closed while pending is empty
	nextID   uint64
	closing  bool  // no new calls
	stopping bool  // no restarts
	fatal    error // permanent failure: every call fails with it

	closeOnce sync.Once
	closeErr  error
}

func newMux[R result](l *Launcher, spec Spec, open func(context.Context, pluginpb.PluginClient) (bidi[R], error)) *mux[R] {
	life, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &mux[R]{sup: newSupervisor(l, spec), open: open, life: life, lifeCancel: cancel,
		pending: make(map[uint64]*call[R]), idle: idle}
}

// start launches the first instance and opens its stream.
func (m *mux[R]) start(ctx context.Context) error {
	inst, err := m.sup.launch(ctx)
	if err != nil {
		return err
	}
	ms, err := m.openStream(inst)
	if err != nil {
		m.sup.stop()
		return err
	}
	m.mu.Lock()
	m.stream = ms
	m.mu.Unlock()
	go m.recvLoop(ms)
	return nil
}

func (m *mux[R]) openStream(inst *instance) (*muxStream[R], error) {
	ctx, cancel := context.WithCancel(m.life)
	st, err := m.open(ctx, inst.rpc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	// Agent side: decoded results share the dictionary's label slices
	// (the agent only reads and re-encodes labels).
	return &muxStream[R]{inst: inst, st: st, cancel: cancel,
		enc: wire.NewStreamEncoder(), dec: &wire.StreamDecoder{ShareLabels: true}}, nil
}

// do sends b (encoded for the current stream, under a new id) and waits
// for its result and what the decode hook made of it. b is read until do
// returns (it is re-encoded if the call is replayed on a restarted
// instance), never after.
func (m *mux[R]) do(ctx context.Context, b *sdk.Batch) (R, any, error) {
	var zero R
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return zero, nil, errClosed
	}
	if m.fatal != nil {
		err := m.fatal
		m.mu.Unlock()
		return zero, nil, err
	}
	m.nextID++
	c := &call[R]{id: m.nextID, b: b, done: make(chan struct{})}
	defer c.release()
	if len(m.pending) == 0 {
		m.idle = make(chan struct{})
	}
	m.pending[c.id] = c
	ms := m.stream
	m.mu.Unlock()
	if ms != nil {
		// A failed send needs no handling here: the receive loop sees the
		// broken stream and the restart replays this call.
		_ = ms.send(c)
	}
	select {
	case <-c.done:
		return c.res, c.out, c.err
	case <-ctx.Done():
		m.mu.Lock()
		m.remove(c.id)
		m.mu.Unlock()
		return zero, nil, ctx.Err()
	}
}

// remove drops a pending call; m.mu must be held.
func (m *mux[R]) remove(id uint64) *call[R] {
	c, ok := m.pending[id]
	if !ok {
		return nil
	}
	delete(m.pending, id)
	if len(m.pending) == 0 {
		close(m.idle)
	}
	return c
}

func (m *mux[R]) recvLoop(ms *muxStream[R]) {
	for {
		r, err := ms.st.Recv()
		if err != nil {
			m.broken(ms, err)
			return
		}
		var out any
		if m.decode != nil {
			// Always, in order: the result may define series.
			out, err = m.decode(ms.dec, r)
			if err != nil {
				m.sup.log.Error("malformed result from the plugin", "id", r.GetId(), "error", err)
			}
		}
		m.mu.Lock()
		c := m.remove(r.GetId())
		m.mu.Unlock()
		if c != nil { // nil: the caller gave up
			c.res, c.out, c.err = r, out, err
			close(c.done)
		}
	}
}

// broken handles the death of ms: restart, open a new stream, replay.
func (m *mux[R]) broken(ms *muxStream[R], cause error) {
	m.mu.Lock()
	if m.stream != ms {
		m.mu.Unlock()
		return
	}
	m.stream = nil
	stopping := m.stopping
	m.mu.Unlock()
	ms.cancel()
	if stopping {
		m.failAll(errClosed)
		return
	}
	inst := ms.inst
	for {
		var err error
		inst, err = m.sup.restart(m.life, inst, cause)
		if err != nil {
			if sdk.IsPermanent(err) {
				err = wrapErr(m.sup.spec, fmt.Errorf("restart: %w", err))
				m.mu.Lock()
				m.fatal = err
				m.mu.Unlock()
			} else {
				err = errClosed
			}
			m.failAll(err)
			return
		}
		nms, err := m.openStream(inst)
		if err != nil {
			cause = err
			continue
		}
		m.mu.Lock()
		m.stream = nms
		replay := make([]*call[R], 0, len(m.pending))
		for _, c := range m.pending {
			replay = append(replay, c)
		}
		m.mu.Unlock()
		slices.SortFunc(replay, func(a, b *call[R]) int { return cmpU64(a.id, b.id) })
		go m.recvLoop(nms)
		if len(replay) > 0 {
			m.sup.log.Info("replaying calls in flight on the restarted plugin", "calls", len(replay))
		}
		// Each replayed batch is encoded afresh for the new stream (whose
		// dictionaries start empty), never re-sent as the old bytes.
		for _, c := range replay {
			if err := nms.send(c); err != nil {
				break // the receive loop restarts again
			}
		}
		return
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *mux[R]) failAll(err error) {
	m.mu.Lock()
	var cs []*call[R]
	for id := range m.pending {
		cs = append(cs, m.remove(id))
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.err = err
		close(c.done)
	}
}

// drain waits until no call is in flight, then asks the plugin to drain.
func (m *mux[R]) drain(ctx context.Context) error {
	m.mu.Lock()
	idle := m.idle
	m.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		return ctx.Err()
	}
	if inst := m.sup.current(); inst != nil {
		if _, err := inst.rpc.Drain(ctx, &pluginpb.Empty{}); err != nil {
			return wrapErr(m.sup.spec, fmt.Errorf("drain: %w", err))
		}
	}
	return nil
}

// close refuses new calls, drains, closes the plugin and ends the process.
func (m *mux[R]) close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closing = true
		m.mu.Unlock()
		var errs []error
		if err := m.drain(ctx); err != nil {
			errs = append(errs, err)
		}
		m.mu.Lock()
		m.stopping = true
		ms := m.stream
		m.mu.Unlock()
		if inst := m.sup.current(); inst != nil {
			if _, err := inst.rpc.Close(ctx, &pluginpb.Empty{}); err != nil {
				errs = append(errs, wrapErr(m.sup.spec, fmt.Errorf("close: %w", err)))
			}
		}
		if ms != nil {
			_ = ms.st.CloseSend()
		}
		m.sup.stop()
		m.lifeCancel()
		m.failAll(errClosed)
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

func (m *mux[R]) pid() int {
	if inst := m.sup.current(); inst != nil {
		return inst.pid
	}
	return 0
}
