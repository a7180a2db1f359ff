package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// inputRunner runs one Input and is its Accumulator.
type inputRunner struct {
	a        *Agent
	p        *conf.Plugin
	id       string
	in       sdk.Input
	log      hclog.Logger
	credits  chan struct{} // one token per emitted, unsettled batch
	inflight prometheus.Gauge
	cancel   context.CancelFunc
}

func (r *inputRunner) start() {
	ctx, cancel := context.WithCancel(r.a.hardCtx)
	r.cancel = cancel
	r.a.inputWG.Add(1)
	go func() {
		defer r.a.inputWG.Done()
		err := r.in.Run(ctx, r)
		switch {
		case err != nil && ctx.Err() == nil:
			r.a.m.errors.WithLabelValues(r.id, errTypeInput).Inc()
			r.log.Error("input stopped with an error; the other plugins keep running", "error", err)
		case err != nil && !errors.Is(err, context.Canceled):
			r.log.Warn("input stopped with an error while shutting down", "error", err)
		case ctx.Err() == nil:
			r.log.Info("input finished")
		}
	}()
}

// Emit implements sdk.Accumulator. It blocks until the input has a credit
// (fewer than input_credits of its batches are unsettled) and the first
// queue has room. When it returns nil, b belongs to the agent and done will
// be called exactly once; when it returns an error (ctx done, ErrStopped),
// the batch was not taken and done is never called. Safe for concurrent use.
func (r *inputRunner) Emit(ctx context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	if b == nil {
		return errors.New("agent: Emit of a nil batch")
	}
	a := r.a
	a.intakeMu.RLock()
	if a.intakeClosed {
		a.intakeMu.RUnlock()
		return ErrStopped
	}
	a.emitWG.Add(1)
	a.intakeMu.RUnlock()
	defer a.emitWG.Done()

	select {
	case r.credits <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.intakeStop:
		return ErrStopped
	}
	t := &tracker{in: r, done: done}
	t.refs.Store(1)
	a.trackers.register(t)
	r.inflight.Inc()
	n := len(b.Points)
	var err error
	select {
	case a.first <- item{b: b, tr: t, from: r.id}:
		a.m.stage(r.id, n)
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-a.intakeStop:
		err = ErrStopped
	}
	// Not taken: forget the tracker without calling done.
	t.settled.Store(true)
	r.inflight.Dec()
	<-r.credits
	a.trackers.unregister(t)
	return err
}

// procStage runs one Processor, or the members of a process group in one
// plugin process, over its input queue with workers goroutines.
type procStage struct {
	a       *Agent
	p       *conf.Plugin // the processor; a group's first member
	id      string       // p's ID
	proc    sdk.Processor
	log     hclog.Logger
	workers int
	in, out chan item
	// A process group: proc is group, members the IDs of its processors
	// in order (metrics, errors and rejects are counted under them).
	group   GroupProcessor
	members []string
}

func (s *procStage) start(pipe *sync.WaitGroup) {
	var wg sync.WaitGroup
	for range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range s.in {
				s.handle(it)
			}
		}()
	}
	pipe.Add(1)
	go func() {
		defer pipe.Done()
		wg.Wait()
		close(s.out)
	}()
}

func (s *procStage) handle(it item) {
	a := s.a
	if !a.takeRejects(it) {
		return
	}
	if len(it.b.Points) == 0 {
		it.tr.release(1)
		return
	}
	if it.tr.settled.Load() {
		return // given up already (shutdown deadline): skip the work
	}
	results, from, err := s.process(it.b)
	if err != nil {
		if a.hardCtx.Err() != nil && !sdk.IsPermanent(err) {
			it.tr.fail(fmt.Errorf("%s: %w", from[0], err))
			return
		}
		// A group dead-letters the batch it was given, under the member
		// that failed.
		a.deadLetterBatch(from[0], err, it.b, []*tracker{it.tr})
		return
	}
	n := 0
	for _, r := range results {
		if r != nil {
			n++
		}
	}
	if n == 0 {
		it.tr.release(1) // a drop counts as delivered
		s.release(it.b, results)
		return
	}
	it.tr.add(n - 1)
	for i, r := range results {
		if r == nil {
			continue
		}
		if !a.send(s.out, item{b: r, tr: it.tr, from: from[min(i, len(from)-1)]}) {
			it.tr.fail(errShutdownTimeout)
			return
		}
	}
	s.release(it.b, results)
}

// batchReleaser is implemented by processors that take back batches the
// agent no longer refers to, to decode later batches into
// (plugins.ProcessorClient.ReleaseBatch).
type batchReleaser interface {
	ReleaseBatch(b *sdk.Batch)
}

// release hands b, a batch the processor has replaced with results, back
// to a processor that takes batches back: nothing in the agent refers to b
// once its results are on their way (its rejects were dead-lettered and
// cleared before the call; the tracker counts batches, it holds none).
// A processor that returned b itself among its results keeps it in the
// pipeline, and nothing is released. Only a processor whose results never
// share memory with b may implement batchReleaser: a ProcessorClient's
// results are decoded from the plugin's reply.
func (s *procStage) release(b *sdk.Batch, results []*sdk.Batch) {
	rel, ok := s.proc.(batchReleaser)
	if !ok || slices.Contains(results, b) {
		return
	}
	rel.ReleaseBatch(b)
}

// process calls Process (a group's ProcessGroup), retrying retryable
// errors with backoff (up to max_retries when set). A non-nil error is
// permanent, exhausted retries, or the shutdown deadline; from[0] is then
// the ID of the processor that failed. On success from[i] is the ID of the
// processor whose rejects results[i] may carry (one entry, s.id, when
// every result's are s.id's).
func (s *procStage) process(b *sdk.Batch) (results []*sdk.Batch, from []string, err error) {
	a := s.a
	n := len(b.Points)
	for attempt := 0; ; attempt++ {
		id := s.id
		if s.group != nil {
			var members []int
			var failed int
			results, members, failed, err = safeProcessGroup(a.hardCtx, s.group, b, s.memberStat)
			if failed >= 0 && failed < len(s.members) {
				id = s.members[failed]
			}
			if err == nil {
				from = make([]string, len(members))
				for i, m := range members {
					from[i] = s.members[min(max(m, 0), len(s.members)-1)]
				}
				return results, from, nil
			}
		} else {
			start := time.Now()
			results, err = safeProcess(a.hardCtx, s.proc, b)
			a.m.procTime.WithLabelValues(s.id).Observe(time.Since(start).Seconds())
			if err == nil {
				a.m.stage(s.id, n)
				return results, []string{s.id}, nil
			}
		}
		from = []string{id}
		if sdk.IsPermanent(err) {
			a.m.errors.WithLabelValues(id, errTypePermanent).Inc()
			return nil, from, err
		}
		if a.hardCtx.Err() != nil {
			return nil, from, err
		}
		a.m.errors.WithLabelValues(id, errTypeRetryable).Inc()
		if s.p.MaxRetries > 0 && attempt+1 >= s.p.MaxRetries {
			a.m.errors.WithLabelValues(id, errTypeExhausted).Inc()
			return nil, from, fmt.Errorf("giving up after %d retryable failures: %w", attempt+1, err)
		}
		s.log.Warn("process failed, retrying", "plugin", id, "attempt", attempt+1, "error", err)
		if !a.backoff(attempt) {
			return nil, from, err
		}
	}
}

// memberStat records what member i of the stage's process group did in
// one call: its calls and points (as a processor's stage does), the time
// spent in them, and the retryable failures retried inside the process.
func (s *procStage) memberStat(i, calls, points, retries int, spent time.Duration) {
	if i < 0 || i >= len(s.members) || calls <= 0 {
		return
	}
	id, m := s.members[i], s.a.m
	m.messages.WithLabelValues(id).Add(float64(calls))
	m.samples.WithLabelValues(id).Add(float64(points))
	size := m.batchSize.WithLabelValues(id)
	for range calls {
		size.Observe(float64(points) / float64(calls))
	}
	m.procTime.WithLabelValues(id).Observe(spent.Seconds())
	if retries > 0 {
		m.errors.WithLabelValues(id, errTypeRetryable).Add(float64(retries))
	}
}

// fanout hands every batch leaving the last processor to every output:
// required outputs get a blocking send (backpressure) and hold a tracker
// reference each; best-effort outputs get a copy if their queue has room,
// else the batch is dropped for them and counted.
func (a *Agent) fanout() {
	defer a.pipeWG.Done()
	var required, best []*outputStage
	// Copies share the labels of the batch they copy when no output
	// changes labels (every one is an sdk.LabelReader, as plugin
	// processes' clients are): the labels are then never written.
	share := true
	for _, o := range a.outputs {
		if o.required {
			required = append(required, o)
		} else {
			best = append(best, o)
		}
		share = share && readsLabelsOnly(o.out)
	}
	defer func() {
		for _, o := range a.outputs {
			close(o.queue)
		}
	}()
	for it := range a.fanoutIn {
		if !a.takeRejects(it) {
			continue
		}
		if len(it.b.Points) == 0 {
			it.tr.release(1)
			continue
		}
		if it.tr.settled.Load() {
			continue
		}
		for _, o := range best {
			if len(o.queue) == cap(o.queue) {
				o.drop()
				continue
			}
			select {
			case o.queue <- item{b: cloneBatch(it.b, share), from: it.from}:
			default:
				o.drop()
			}
		}
		if len(required) == 0 {
			it.tr.release(1)
			continue
		}
		it.tr.add(len(required) - 1)
		for i, o := range required {
			b := it.b
			if i < len(required)-1 {
				b = cloneBatch(it.b, share) // the original goes last, to the last output
			}
			if !a.send(o.queue, item{b: b, tr: it.tr, from: it.from}) {
				it.tr.fail(errShutdownTimeout)
				break
			}
		}
	}
}

// cloneBatch copies series and points; rejects are not copied (they were
// dead-lettered before fan-out). Labels are copied too unless shareLabels
// (the copy then shares b's label slices: only for outputs that never
// change labels).
func cloneBatch(b *sdk.Batch, shareLabels bool) *sdk.Batch {
	c := &sdk.Batch{
		Series: make([]sdk.Series, len(b.Series)),
		Points: make([]sdk.Point, len(b.Points)),
	}
	copy(c.Points, b.Points)
	if shareLabels {
		copy(c.Series, b.Series)
		return c
	}
	nl := 0
	for _, s := range b.Series {
		nl += len(s.Labels)
	}
	labels := make(sdk.Labels, 0, nl)
	for i, s := range b.Series {
		start := len(labels)
		labels = append(labels, s.Labels...)
		c.Series[i] = sdk.Series{Name: s.Name, Labels: labels[start:len(labels):len(labels)]}
	}
	return c
}

// safeProcess calls Process, turning a panic into a permanent error (the
// same batch would panic again), so one bad batch is dead-lettered instead of
// crashing the agent.
func safeProcess(ctx context.Context, p sdk.Processor, b *sdk.Batch) (res []*sdk.Batch, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, sdk.Permanent(fmt.Errorf("processor panicked: %v", r))
		}
	}()
	return p.Process(ctx, b)
}

// safeProcessGroup calls ProcessGroup, turning a panic into a permanent
// error of no member.
func safeProcessGroup(ctx context.Context, g GroupProcessor, b *sdk.Batch, stat func(member, calls, points, retries int, spent time.Duration)) (res []*sdk.Batch, members []int, failed int, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, members, failed, err = nil, nil, -1, sdk.Permanent(fmt.Errorf("process group panicked: %v", r))
		}
	}()
	return g.ProcessGroup(ctx, b, stat)
}

// safeWrite calls Write, turning a panic into a permanent error.
func safeWrite(ctx context.Context, o sdk.Output, b *sdk.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = sdk.Permanent(fmt.Errorf("output panicked: %v", r))
		}
	}()
	return o.Write(ctx, b)
}
