package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// outputStage feeds one Output: a bounded queue, a batcher goroutine that
// merges queued batches into writes of up to batchSize points (or whatever
// is pending after flushInterval), and workers goroutines calling Write.
type outputStage struct {
	a          *Agent
	p          *conf.Plugin
	id         string
	out        sdk.Output
	log        hclog.Logger
	required   bool
	batchSize  int
	workers    int
	flush      time.Duration
	maxRetries int

	queue chan item
	jobs  chan writeJob

	// ctx is given to Write calls and retry waits: the agent's hardCtx,
	// cancelled earlier for a best-effort output abandoned at shutdown.
	ctx    context.Context
	cancel context.CancelFunc
	// failing is set while the last write attempt failed.
	failing atomic.Bool
}

// writeJob is one Write: b, and one tracker reference per entry of trs
// (nil trackers never appear; best-effort data carries none).
type writeJob struct {
	b   *sdk.Batch
	trs []*tracker
}

func (a *Agent) newOutputStage(p *conf.Plugin, o sdk.Output) *outputStage {
	s := &outputStage{
		a: a, p: p, id: p.ID(), out: o, log: a.log.Named(p.ID()),
		required:   p.Required,
		batchSize:  p.BatchSize,
		workers:    p.Workers,
		flush:      p.FlushInterval,
		maxRetries: p.MaxRetries,
	}
	if s.batchSize <= 0 {
		s.batchSize = DefaultBatchSize
	}
	if s.workers <= 0 {
		s.workers = 1
	}
	if s.flush <= 0 {
		s.flush = a.cfg.Agent.FlushInterval
	}
	if s.flush <= 0 {
		s.flush = DefaultFlushInterval
	}
	qs := p.QueueSize
	if qs <= 0 {
		qs = a.queueSize
	}
	s.queue = make(chan item, qs)
	s.jobs = make(chan writeJob)
	s.ctx, s.cancel = context.WithCancel(a.hardCtx)
	return s
}

// readsLabelsOnly reports whether v promised (sdk.LabelReader) never to
// change the labels of the batches it receives.
func readsLabelsOnly(v any) bool {
	lr, ok := v.(sdk.LabelReader)
	return ok && lr.ReadsLabelsOnly()
}

func (s *outputStage) drop() {
	s.a.m.dropped.WithLabelValues(s.id).Inc()
	s.log.Debug("best-effort output queue full: batch dropped for this output")
}

func (s *outputStage) start(pipe *sync.WaitGroup) {
	pipe.Add(1 + s.workers)
	go func() {
		defer pipe.Done()
		s.batcher()
	}()
	for range s.workers {
		go func() {
			defer pipe.Done()
			for job := range s.jobs {
				s.write(job)
			}
		}()
	}
}

// batcher merges queued batches into jobs. It flushes when a job reaches
// batchSize points, when flush passed since the first batch of the pending
// job arrived, and when the queue is closed (shutdown: partial batches are
// written).
func (s *outputStage) batcher() {
	defer close(s.jobs)
	var sl slicer
	share := readsLabelsOnly(s.out)
	var pend *sdk.Batch
	var trs []*tracker
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	timerOn := false
	emit := func(job writeJob) {
		select {
		case s.jobs <- job:
		case <-s.ctx.Done():
			s.abandoned(job)
		}
	}
	flush := func() {
		if timerOn {
			timer.Stop()
			timerOn = false
		}
		if pend == nil {
			return
		}
		job := writeJob{b: pend, trs: trs}
		pend, trs = nil, nil
		emit(job)
	}
	withTr := func(t *tracker) []*tracker {
		if t == nil {
			return nil
		}
		return []*tracker{t}
	}
	add := func(it item) {
		b, n := it.b, len(it.b.Points)
		if n == 0 {
			if it.tr != nil {
				it.tr.release(1)
			}
			return
		}
		if pend != nil && len(pend.Points)+n > s.batchSize {
			flush()
		}
		switch {
		case n > s.batchSize:
			// Split: full pieces are written at once, the rest waits.
			pieces := (n + s.batchSize - 1) / s.batchSize
			if it.tr != nil {
				it.tr.add(pieces - 1)
			}
			i := 0
			for ; i+s.batchSize <= n; i += s.batchSize {
				emit(writeJob{b: sl.slice(b, i, i+s.batchSize, share), trs: withTr(it.tr)})
			}
			if i < n {
				pend, trs = sl.slice(b, i, n, share), withTr(it.tr)
			}
			s.release(b) // the pieces are copies
		case pend == nil:
			pend, trs = b, withTr(it.tr)
		default:
			mergeInto(pend, b)
			s.release(b) // copied into pend
			if it.tr != nil {
				trs = append(trs, it.tr)
			}
		}
		if pend != nil && len(pend.Points) >= s.batchSize {
			flush()
		} else if pend != nil && !timerOn {
			timer.Reset(s.flush)
			timerOn = true
		}
	}
	for {
		select {
		case it, ok := <-s.queue:
			if !ok {
				flush()
				return
			}
			add(it)
		case <-timer.C:
			timerOn = false
			flush()
		}
	}
}

// write calls Write for one job, retrying retryable errors with backoff,
// then records the rejects the output appended, then settles the job's
// tracker references. A permanent error or exhausted retries dead-letter the
// batch (which settles it too).
func (s *outputStage) write(job writeJob) {
	a := s.a
	b := job.b
	n := len(b.Points)
	base := len(b.Rejects)
	for attempt := 0; ; attempt++ {
		b.Rejects = b.Rejects[:base]
		start := time.Now()
		err := safeWrite(s.ctx, s.out, b)
		a.m.procTime.WithLabelValues(s.id).Observe(time.Since(start).Seconds())
		if err == nil {
			s.failing.Store(false)
			a.m.stage(s.id, n)
			break
		}
		s.failing.Store(true)
		if sdk.IsPermanent(err) {
			a.m.errors.WithLabelValues(s.id, errTypePermanent).Inc()
			b.Rejects = b.Rejects[:base]
			a.deadLetterBatch(s.id, err, b, job.trs)
			return
		}
		if s.ctx.Err() != nil {
			s.abandoned(job, err)
			return
		}
		a.m.errors.WithLabelValues(s.id, errTypeRetryable).Inc()
		if s.maxRetries > 0 && attempt+1 >= s.maxRetries {
			a.m.errors.WithLabelValues(s.id, errTypeExhausted).Inc()
			b.Rejects = b.Rejects[:base]
			a.deadLetterBatch(s.id, fmt.Errorf("giving up after %d retryable failures: %w", attempt+1, err), b, job.trs)
			return
		}
		s.log.Warn("write failed, retrying", "attempt", attempt+1, "points", n, "error", err)
		if !a.backoffCtx(s.ctx, attempt) {
			s.abandoned(job, err)
			return
		}
	}
	if len(b.Rejects) > base {
		// One tracker stands for the job here: a failure gives up them all.
		rej := item{b: &sdk.Batch{Rejects: b.Rejects[base:]}, from: s.id}
		if !s.takeRejects(rej, job.trs) {
			return
		}
	}
	for _, t := range job.trs {
		t.release(1)
	}
	s.release(b)
}

// release hands b back to an output that takes batches back (a batch this
// stage owns: fan-out gives every output its own), once the stage keeps
// nothing of it: merged into another batch, cut into pieces, or stored by
// Write. Batches dead-lettered or abandoned are left to the garbage
// collector.
func (s *outputStage) release(b *sdk.Batch) {
	if rel, ok := s.out.(batchReleaser); ok {
		rel.ReleaseBatch(b)
	}
}

// abandoned gives up a job at shutdown: its trackers (required outputs)
// are failed with the last error, or the shutdown timeout; a best-effort
// job carries none and is counted as dropped.
func (s *outputStage) abandoned(job writeJob, lastErr ...error) {
	err := errShutdownTimeout
	if len(lastErr) > 0 && lastErr[0] != nil {
		err = fmt.Errorf("%s: %w", s.id, lastErr[0])
	}
	if !s.required {
		s.drop()
		return
	}
	for _, t := range job.trs {
		t.fail(err)
	}
}

// takeRejects dead-letters the rejects an output appended during Write; on
// failure every tracker of the job is given up.
func (s *outputStage) takeRejects(it item, trs []*tracker) bool {
	a := s.a
	n := len(it.b.Rejects)
	a.m.errors.WithLabelValues(s.id, errTypeReject).Add(float64(n))
	if err := a.dl.WriteRejects(a.hardCtx, s.id, it.b.Rejects); err != nil {
		a.m.errors.WithLabelValues(s.id, errTypeDeadLetter).Inc()
		s.log.Error("cannot store rejects in the dead-letter store", "rejects", n, "error", err)
		for _, t := range trs {
			t.fail(fmt.Errorf("agent: %d rejects of %s could not be dead-lettered: %w", n, s.id, err))
		}
		return false
	}
	a.m.deadLetter.WithLabelValues(s.id).Add(float64(n))
	s.log.Warn("rows refused by the output dead-lettered", "rejects", n,
		"first_reason", it.b.Rejects[0].Reason, "first_position", it.b.Rejects[0].Position)
	return true
}

// mergeInto appends src's series and points to dst, renumbering src's
// points. src must not be used afterwards.
func mergeInto(dst, src *sdk.Batch) {
	off := uint32(len(dst.Series))
	dst.Series = append(dst.Series, src.Series...)
	start := len(dst.Points)
	dst.Points = append(dst.Points, src.Points...)
	if off != 0 {
		pts := dst.Points[start:]
		for i := range pts {
			pts[i].Series += off
		}
	}
	dst.Rejects = append(dst.Rejects, src.Rejects...)
}

// slicer cuts batches into pieces for one output stage's batcher. It is
// owned by that goroutine: its scratch arrays are reused from piece to
// piece without locking.
type slicer struct {
	remap []uint32 // b's series index -> piece series index + 1 (0: not in the piece yet)
	used  []uint32 // b's series indexes in the piece, to clear remap
}

// slice returns a new batch with points [i, j) of b and only the series
// they use. The pieces' Series and Points are their own. With shareLabels
// (the output promised, as an sdk.LabelReader, never to change received
// labels) they share b's label slices, which the agent itself never
// changes; without it each piece gets its own copies, in one allocation.
func (sl *slicer) slice(b *sdk.Batch, i, j int, shareLabels bool) *sdk.Batch {
	if len(sl.remap) < len(b.Series) {
		sl.remap = make([]uint32, len(b.Series))
	}
	remap := sl.remap[:len(b.Series)]
	used := sl.used[:0]
	out := &sdk.Batch{Points: make([]sdk.Point, j-i)}
	for k, p := range b.Points[i:j] {
		id := remap[p.Series]
		if id == 0 {
			used = append(used, p.Series)
			id = uint32(len(used))
			remap[p.Series] = id
		}
		out.Points[k] = sdk.Point{Series: id - 1, Time: p.Time, Value: p.Value}
	}
	out.Series = make([]sdk.Series, len(used))
	nl := 0
	for k, o := range used {
		out.Series[k] = b.Series[o]
		nl += len(b.Series[o].Labels)
		remap[o] = 0
	}
	sl.used = used
	if !shareLabels {
		labels := make(sdk.Labels, 0, nl)
		for k := range out.Series {
			start := len(labels)
			labels = append(labels, out.Series[k].Labels...)
			out.Series[k].Labels = labels[start:len(labels):len(labels)]
		}
	}
	return out
}
