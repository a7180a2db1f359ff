package plugins

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// errClosed is returned by calls made after Close (test with ErrClosed).
var errClosed = errors.New("plugin client is closed")

// ErrClosed reports whether err says the client was closed.
func ErrClosed(err error) bool { return errors.Is(err, errClosed) }

// supervisor owns the current instance of one plugin and replaces it when
// it dies. Restarts are serialised.
type supervisor struct {
	l    *Launcher
	spec Spec
	log  hclog.Logger

	restartMu sync.Mutex // one restart at a time

	mu       sync.Mutex
	inst     *instance
	maxConc  int
	started  time.Time
	delay    time.Duration
	stopped  bool
	restarts atomic.Int64
}

func newSupervisor(l *Launcher, spec Spec) *supervisor {
	return &supervisor{l: l, spec: spec, log: l.logger().Named(spec.alias())}
}

// launch starts and configures a new instance and makes it current.
func (s *supervisor) launch(ctx context.Context) (*instance, error) {
	inst, err := s.l.start(ctx, s.spec)
	if err != nil {
		return nil, err
	}
	mc, err := configure(ctx, inst, s.spec, false)
	if err != nil {
		inst.stop()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		go inst.stop()
		return nil, errClosed
	}
	s.inst, s.maxConc, s.started = inst, mc, time.Now()
	return inst, nil
}

func (s *supervisor) current() *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inst
}

// restart replaces old, which died of cause, by a fresh configured
// instance, retrying with backoff until ctx is done. If another caller
// already replaced old, the current instance is returned. A permanent
// error (configuration rejected, binary gone) ends the retries.
func (s *supervisor) restart(ctx context.Context, old *instance, cause error) (*instance, error) {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	b := s.l.Backoff.withDefaults()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, errClosed
	}
	if s.inst != nil && s.inst != old {
		cur := s.inst
		s.mu.Unlock()
		return cur, nil
	}
	s.inst = nil
	if !s.started.IsZero() && time.Since(s.started) >= b.ResetAfter {
		s.delay = 0
	}
	s.mu.Unlock()
	pid := 0
	if old != nil {
		pid = old.pid
		go old.stop()
	}
	s.log.Warn("plugin instance died; restarting", "alias", s.spec.alias(), "pid", pid, "error", cause)
	for {
		s.mu.Lock()
		if s.delay == 0 {
			s.delay = b.Initial
		} else {
			s.delay = min(2*s.delay, b.Max)
		}
		d := s.delay
		s.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		inst, err := s.launch(ctx)
		if err == nil {
			s.restarts.Add(1)
			s.log.Warn("plugin restarted", "alias", s.spec.alias(), "pid", inst.pid, "restarts", s.restarts.Load())
			if s.l.OnRestart != nil {
				s.l.OnRestart(s.spec.alias())
			}
			return inst, nil
		}
		if sdk.IsPermanent(err) || errors.Is(err, errClosed) {
			s.log.Error("plugin cannot be restarted", "alias", s.spec.alias(), "error", err)
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Warn("plugin restart failed; retrying", "alias", s.spec.alias(), "error", err, "next_in", min(2*d, b.Max))
	}
}

// stop ends the current instance; later launches are refused.
func (s *supervisor) stop() {
	s.mu.Lock()
	inst := s.inst
	s.inst = nil
	s.stopped = true
	s.mu.Unlock()
	if inst != nil {
		inst.stop()
	}
}
