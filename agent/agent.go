// Package agent is the pipeline core of telemetry-collector: it creates the
// plugins of a configuration through a Factory, moves batches from inputs
// through processors to every output over bounded queues, tracks each
// emitted batch until every required output stored what was derived from it
// (then tells the input, which acknowledges its source), retries and
// dead-letters failures, exports self-metrics and shuts down gracefully.
//
// The agent works only with the sdk interfaces; whether a plugin runs in
// process or behind the plugin runtime (package plugins) is the Factory's
// business. See README.md for the architecture, the backpressure bound and
// the dead-letter format.
package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Factory creates the plugin instances of a configuration. The returned
// values may also implement sdk.Closer and Drainer; the agent calls Drain
// then Close once at shutdown (also when Run fails after creating some
// plugins). The agent calls the Factory from one goroutine, in the order
// outputs, processors, inputs. p must not be retained beyond the plugin's
// lifetime and must not be modified.
type Factory interface {
	NewInput(ctx context.Context, p *conf.Plugin) (sdk.Input, error)
	NewProcessor(ctx context.Context, p *conf.Plugin) (sdk.Processor, error)
	NewOutput(ctx context.Context, p *conf.Plugin) (sdk.Output, error)
}

// GroupFactory is an optional ability of a Factory: running several
// consecutive processors (conf's process_group) in one plugin process, one
// hop for all of them. The agent calls it instead of NewProcessor for
// every group of two or more; ps are the members in order.
type GroupFactory interface {
	NewProcessorGroup(ctx context.Context, ps []*conf.Plugin) (GroupProcessor, error)
}

// GroupProcessor runs the members of a process group on each batch. The
// agent calls ProcessGroup, never Process; concurrency, Drain, Close and
// ReleaseBatch are as for a processor (the group's process is one plugin).
type GroupProcessor interface {
	sdk.Processor
	// ProcessGroup passes b through every member in order. members[i] is
	// the member (an index into ps) whose rejects out[i] carries. stat is
	// called before it returns, also on failure, for each member the batch
	// reached: its Process calls, the points handed to them, the retryable
	// failures retried inside the process, and the time they took. On
	// error, failed is the member that failed, or -1 when the failure is
	// not a member's (the process died, ctx).
	ProcessGroup(ctx context.Context, b *sdk.Batch, stat func(member, calls, points, retries int, spent time.Duration)) (out []*sdk.Batch, members []int, failed int, err error)
}

// Drainer is an optional ability of a plugin value (typically a plugin
// runtime client): Drain waits until the plugin finished the work it was
// given (an input: sent its final acknowledgements) without stopping it.
// The agent calls it at shutdown, before Close, once nothing more will be
// sent to the plugin.
type Drainer interface {
	Drain(ctx context.Context) error
}

// ErrStopped is returned by Accumulator.Emit once the agent stopped taking
// new data (shutdown began). The batch was not taken: its done callback
// will not be called and the input should not acknowledge it.
var ErrStopped = errors.New("agent: intake stopped (shutting down)")

// errShutdownTimeout is the Delivery.Err of batches given up at shutdown.
var errShutdownTimeout = errors.New("agent: shutdown timeout reached before the batch was delivered")

// Options are the agent's injectable dependencies. The zero value is usable.
type Options struct {
	// Logger receives the agent's logs; each plugin gets a sub-logger named
	// after its ID. nil discards logs.
	Logger hclog.Logger
	// Registry receives the self-metrics. nil creates a new registry (never
	// the global default one); Registry() returns it.
	Registry *prometheus.Registry
	// DeadLetter stores rejects and failed batches. nil creates a
	// FileDeadLetter in cfg.Agent.DeadLetterDir, which the agent closes when
	// Run returns; an injected store is never closed by the agent.
	DeadLetter DeadLetter
	// RetryInitial and RetryMax bound the exponential backoff between
	// retries of a retryable error (defaults 100ms and 30s). Each wait is
	// jittered between half and all of the nominal delay.
	RetryInitial, RetryMax time.Duration
}

// Defaults applied when the configuration leaves a value at zero.
const (
	DefaultQueueSize       = 8
	DefaultInputCredits    = 64
	DefaultShutdownTimeout = 30 * time.Second
	DefaultFlushInterval   = time.Second
	DefaultBatchSize       = 10000
	DefaultDeadLetterDir   = "dead-letter"
	defaultRetryInitial    = 100 * time.Millisecond
	defaultRetryMax        = 30 * time.Second
)

// Agent states, as reported by /readyz and /healthz.
const (
	stateNew int32 = iota
	stateStarting
	stateReady
	stateStopping
	stateStopped
)

var stateNames = [...]string{"new", "starting", "ready", "stopping", "stopped"}

// Agent runs one pipeline. Create it with New, run it once with Run. Handler
// and PluginRestarted are safe to call from any goroutine at any time.
type Agent struct {
	cfg     *conf.Config
	factory Factory
	log     hclog.Logger
	reg     *prometheus.Registry
	m       *metrics
	dl      DeadLetter
	ownDL   bool
	handler http.Handler

	retryInitial, retryMax time.Duration
	queueSize, credits     int
	shutdownTimeout        time.Duration

	state   atomic.Int32
	started atomic.Bool

	trackers registry
	ids      map[string]string // alias and ID -> ID, for PluginRestarted
	// groups maps the first member of each process group to the IDs of
	// all its members. ids and groups are read-only after New.
	groups map[string][]string
	// rejectLog rate-limits the log line about dead-lettered rejects.
	rejectLog *logLimiter

	// first is the queue every input emits into.
	first        chan item
	fanoutIn     chan item
	intakeMu     sync.RWMutex
	intakeClosed bool
	intakeStop   chan struct{}
	emitWG       sync.WaitGroup

	// hardCtx is given to Process and Write calls and backoff waits; it is
	// cancelled only when the shutdown deadline passes (or Run returns).
	hardCtx    context.Context
	hardCancel context.CancelFunc

	inputs  []*inputRunner
	procs   []*procStage
	outputs []*outputStage
	pipeWG  sync.WaitGroup // processor, fan-out and required output goroutines
	bestWG  sync.WaitGroup // best-effort output goroutines
	inputWG sync.WaitGroup // Input.Run goroutines
}

// item is one batch travelling between stages, with its tracker. from is the
// ID of the plugin whose rejects b may still carry.
type item struct {
	b    *sdk.Batch
	tr   *tracker
	from string
}

// New checks cfg and prepares an agent; it creates no plugin (Run does).
func New(cfg *conf.Config, f Factory, opts Options) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("agent: nil configuration")
	}
	if f == nil {
		return nil, errors.New("agent: nil plugin factory")
	}
	if len(cfg.Outputs) == 0 {
		return nil, errors.New("agent: no outputs configured (add an [[outputs.X]] table)")
	}
	a := &Agent{
		cfg:             cfg,
		factory:         f,
		log:             opts.Logger,
		reg:             opts.Registry,
		dl:              opts.DeadLetter,
		retryInitial:    opts.RetryInitial,
		retryMax:        opts.RetryMax,
		queueSize:       cfg.Agent.QueueSize,
		credits:         cfg.Agent.InputCredits,
		shutdownTimeout: cfg.Agent.ShutdownTimeout,
		rejectLog:       newLogLimiter(10 * time.Second),
		intakeStop:      make(chan struct{}),
		ids:             make(map[string]string),
		groups:          make(map[string][]string),
	}
	a.trackers.live = make(map[uint64]*tracker)
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	if a.reg == nil {
		// Its own registry: the process's Go runtime (memory, GC, the
		// memory limit) and resource metrics too.
		a.reg = prometheus.NewRegistry()
		a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if a.retryInitial <= 0 {
		a.retryInitial = defaultRetryInitial
	}
	if a.retryMax <= 0 {
		a.retryMax = defaultRetryMax
	}
	a.retryMax = max(a.retryMax, a.retryInitial)
	if a.queueSize <= 0 {
		a.queueSize = DefaultQueueSize
	}
	if a.credits <= 0 {
		a.credits = DefaultInputCredits
	}
	if a.shutdownTimeout <= 0 {
		a.shutdownTimeout = DefaultShutdownTimeout
	}
	if a.dl == nil {
		dir := cfg.Agent.DeadLetterDir
		if dir == "" {
			dir = DefaultDeadLetterDir
		}
		a.dl, a.ownDL = NewFileDeadLetter(dir), true
	}
	seen := make(map[string]bool)
	for _, list := range [][]conf.Plugin{cfg.Inputs, cfg.Processors, cfg.Outputs} {
		for i := range list {
			id := list[i].ID()
			if seen[id] {
				return nil, fmt.Errorf("agent: two plugins share the ID %q (%s): give one an alias", id, list[i].Source)
			}
			seen[id] = true
			a.ids[id] = id
			alias := list[i].Alias
			if alias == "" {
				alias = list[i].Name
			}
			if _, dup := a.ids[alias]; !dup {
				a.ids[alias] = id
			}
		}
	}
	for _, g := range cfg.ProcessorGroups() {
		if len(g) > 1 {
			for _, p := range g {
				a.groups[g[0].ID()] = append(a.groups[g[0].ID()], p.ID())
			}
		}
	}
	m, err := newMetrics(a.reg)
	if err != nil {
		return nil, fmt.Errorf("agent: register metrics: %w", err)
	}
	a.m = m
	a.first = make(chan item, a.queueSize)
	a.handler = a.newHandler()
	return a, nil
}

// Registry returns the registry holding the self-metrics.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// PluginRestarted counts a restart of the plugin named by alias (or by its
// ID) in collector_plugin_restarts_total. The plugin runtime calls it.
func (a *Agent) PluginRestarted(alias string) {
	id, ok := a.ids[alias]
	if !ok {
		id = alias
	}
	if members := a.groups[id]; len(members) > 0 {
		// A process group's process: every member restarted.
		for _, m := range members {
			a.m.restarts.WithLabelValues(m).Inc()
		}
		a.log.Warn("plugin restarted", "plugins", members)
		return
	}
	a.m.restarts.WithLabelValues(id).Inc()
	a.log.Warn("plugin restarted", "plugin", id)
}

// Run creates the plugins (outputs, processors, inputs), starts the
// pipeline, serves cfg.Agent.MetricsAddress when set, and runs until ctx is
// cancelled; then it shuts down gracefully (see README.md) within
// cfg.Agent.ShutdownTimeout. It returns nil after a clean shutdown (also
// when ctx was cancelled before or while plugins were created), and an
// error when plugins could not be created, the metrics address could not be
// served, or the shutdown timed out. Run may be called only once.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	a.hardCtx, a.hardCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		a.hardCancel()
		if a.ownDL {
			if cerr := a.dl.Close(); cerr != nil {
				a.log.Error("close dead-letter store", "error", cerr)
			}
		}
		a.state.Store(stateStopped)
	}()
	if ctx.Err() != nil {
		return nil
	}
	a.state.Store(stateStarting)

	if addr := a.cfg.Agent.MetricsAddress; addr != "" {
		ln, lerr := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if lerr != nil {
			return fmt.Errorf("agent: serve metrics_address %s: %w (is another process using the port?)", addr, lerr)
		}
		srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if serr := srv.Serve(ln); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
				a.log.Error("metrics server stopped", "address", addr, "error", serr)
			}
		}()
		a.log.Info("serving /metrics, /healthz, /readyz", "address", ln.Addr().String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	if berr := a.build(ctx); berr != nil {
		a.state.Store(stateStopping)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.shutdownTimeout)
		defer cancel()
		a.closePlugins(cctx)
		if ctx.Err() != nil {
			a.log.Info("cancelled while starting plugins")
			return nil
		}
		return berr
	}
	a.start()
	a.state.Store(stateReady)
	a.log.Info("pipeline running", "inputs", len(a.inputs), "processors", len(a.procs), "outputs", len(a.outputs))
	<-ctx.Done()
	return a.shutdown()
}

// build creates every plugin: outputs, then processors in order, then
// inputs. On error the plugins created so far are in a.outputs/procs/inputs
// so that closePlugins can stop them.
func (a *Agent) build(ctx context.Context) error {
	for i := range a.cfg.Outputs {
		p := &a.cfg.Outputs[i]
		o, err := a.factory.NewOutput(ctx, p)
		if err != nil {
			return fmt.Errorf("agent: start %s (%s): %w", p.ID(), p.Source, err)
		}
		s := a.newOutputStage(p, o)
		a.outputs = append(a.outputs, s)
		if err := queueDepth(a.reg, s.id, s.queue); err != nil {
			return fmt.Errorf("agent: register metrics of %s: %w", s.id, err)
		}
	}
	for _, g := range a.cfg.ProcessorGroups() {
		s, err := a.newProcStage(ctx, g)
		if err != nil {
			return err
		}
		if c, ok := s.proc.(sdk.Concurrent); ok {
			s.workers = max(1, c.MaxConcurrency())
		}
		a.procs = append(a.procs, s)
	}
	for i := range a.cfg.Inputs {
		p := &a.cfg.Inputs[i]
		in, err := a.factory.NewInput(ctx, p)
		if err != nil {
			return fmt.Errorf("agent: start %s (%s): %w", p.ID(), p.Source, err)
		}
		a.inputs = append(a.inputs, &inputRunner{
			a: a, p: p, id: p.ID(), in: in, log: a.log.Named(p.ID()),
			credits:  make(chan struct{}, a.credits),
			inflight: a.m.inflight.WithLabelValues(p.ID()),
		})
	}
	// Wire the queues: first -> processors -> fan-out.
	prev := a.first
	for _, s := range a.procs {
		s.in = prev
		if err := queueDepth(a.reg, s.id, s.in); err != nil {
			return fmt.Errorf("agent: register metrics of %s: %w", s.id, err)
		}
		prev = make(chan item, a.queueSize)
		s.out = prev
	}
	if err := queueDepth(a.reg, "fanout", prev); err != nil {
		return fmt.Errorf("agent: register metrics of fanout: %w", err)
	}
	a.fanoutIn = prev
	return nil
}

// newProcStage creates the processor of g (one processor, or the members
// of a process group) and its stage.
func (a *Agent) newProcStage(ctx context.Context, g []*conf.Plugin) (*procStage, error) {
	p := g[0]
	s := &procStage{a: a, p: p, id: p.ID(), log: a.log.Named(p.ID()), workers: 1}
	if len(g) == 1 {
		pr, err := a.factory.NewProcessor(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("agent: start %s (%s): %w", p.ID(), p.Source, err)
		}
		s.proc = pr
		return s, nil
	}
	for _, m := range g {
		s.members = append(s.members, m.ID())
	}
	gf, ok := a.factory.(GroupFactory)
	if !ok {
		return nil, fmt.Errorf("agent: start %s (%s): process_group %q: this plugin factory cannot run process groups", p.ID(), p.Source, p.ProcessGroup)
	}
	gp, err := gf.NewProcessorGroup(ctx, g)
	if err != nil {
		return nil, fmt.Errorf("agent: start process_group %q (%s): %w", p.ProcessGroup, strings.Join(s.members, ", "), err)
	}
	s.proc, s.group = gp, gp
	s.log = a.log.Named(p.ProcessGroup)
	return s, nil
}

// start launches the goroutines: outputs, fan-out, processors, then inputs.
func (a *Agent) start() {
	for _, o := range a.outputs {
		if o.required {
			o.start(&a.pipeWG)
		} else {
			o.start(&a.bestWG)
		}
	}
	a.pipeWG.Add(1)
	go a.fanout()
	for _, s := range a.procs {
		s.start(&a.pipeWG)
	}
	for _, r := range a.inputs {
		r.start()
	}
}

// shutdown stops intake, drains the pipeline, waits for every tracked batch
// to settle, then drains and closes the plugins (inputs last), all within
// the shutdown timeout.
func (a *Agent) shutdown() error {
	a.state.Store(stateStopping)
	began := time.Now()
	deadline := began.Add(a.shutdownTimeout)
	// Keep a slice of the budget for Drain/Close, so final acks and nacks
	// can go out even when the drain used its whole share.
	reserve := min(a.shutdownTimeout/10, 2*time.Second)
	a.log.Info("shutting down: intake stopped, draining", "timeout", a.shutdownTimeout)

	// 1. Stop intake.
	for _, r := range a.inputs {
		r.cancel()
	}
	close(a.intakeStop)
	a.intakeMu.Lock()
	a.intakeClosed = true
	a.intakeMu.Unlock()
	go func() {
		a.emitWG.Wait()
		close(a.first) // no Emit can send any more
	}()

	// 2. Drain: every stage empties and exits, every output flushes, every
	// tracked batch settles (its done callback ran), every Input.Run returned.
	drained := make(chan struct{})
	go func() {
		a.pipeWG.Wait()
		a.trackers.wg.Wait()
		a.inputWG.Wait()
		close(drained)
	}()
	var err error
	timer := time.NewTimer(time.Until(deadline.Add(-reserve)))
	select {
	case <-drained:
		timer.Stop()
		a.log.Info("pipeline drained", "took", time.Since(began))
		a.drainBestEffort(deadline.Add(-reserve))
	case <-timer.C:
		left := a.trackers.snapshot()
		err = fmt.Errorf("agent: shutdown timed out after %s: gave up on %d unacknowledged batches (a stuck output or input?)", a.shutdownTimeout, len(left))
		a.log.Error("shutdown timeout: giving up", "unsettled_batches", len(left))
		a.hardCancel()
		// Give up on every unsettled batch. A stage woken by hardCancel may
		// win the race to settle one and still be running its done
		// callback (a tracker leaves the registry only after its callback
		// ran): repeat until the registry is empty, so every callback has
		// run before the inputs are closed.
		for len(left) > 0 {
			for _, t := range left {
				t.fail(errShutdownTimeout)
			}
			if left = a.trackers.snapshot(); len(left) > 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}

	// 3. Drain and close the plugins: processors, outputs, inputs last.
	cctx, cancel := context.WithDeadline(context.WithoutCancel(a.hardCtx), deadline)
	defer cancel()
	closed := make(chan struct{})
	go func() {
		a.closePlugins(cctx)
		close(closed)
	}()
	select {
	case <-closed:
	case <-cctx.Done():
		<-time.After(10 * time.Millisecond) // let a Close that honours ctx return
		select {
		case <-closed:
		default:
			if err == nil {
				err = fmt.Errorf("agent: shutdown timed out after %s while closing plugins", a.shutdownTimeout)
			}
			a.log.Error("shutdown timeout while closing plugins")
		}
	}
	if err == nil {
		a.log.Info("shutdown complete", "took", time.Since(began))
	}
	return err
}

// drainBestEffort lets best-effort outputs write what they hold once the
// required path drained (every acknowledgement is out by then), until
// deadline. An output that is failing (its last write attempt failed) is
// abandoned at once, and whatever is left at the deadline is abandoned
// too: a broken best-effort output must not hold the shutdown, as it never
// holds an acknowledgement. Abandoned batches count in
// collector_dropped_total.
func (a *Agent) drainBestEffort(deadline time.Time) {
	var best []*outputStage
	for _, o := range a.outputs {
		if !o.required {
			best = append(best, o)
		}
	}
	if len(best) == 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		a.bestWG.Wait()
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	abandon := func(o *outputStage, why string) {
		if o.ctx.Err() == nil {
			a.log.Warn("best-effort output abandoned at shutdown; what it still holds is dropped", "plugin", o.id, "reason", why)
			o.cancel()
		}
	}
	for {
		for _, o := range best {
			if o.failing.Load() {
				abandon(o, "its writes are failing")
			}
		}
		select {
		case <-done:
			return
		case <-timer.C:
			for _, o := range best {
				abandon(o, "shutdown deadline")
			}
			select {
			case <-done:
			case <-time.After(time.Second): // a plugin call that ignores its context
			}
			return
		case <-tick.C:
		}
	}
}

// closePlugins calls Drain then Close on every created plugin that has
// them: processors, outputs, then inputs (so the inputs' final acks go out
// after everything else stopped).
func (a *Agent) closePlugins(ctx context.Context) {
	for _, s := range a.procs {
		a.closePlugin(ctx, s.id, s.proc, s.log)
	}
	for _, o := range a.outputs {
		a.closePlugin(ctx, o.id, o.out, o.log)
	}
	for _, r := range a.inputs {
		a.closePlugin(ctx, r.id, r.in, r.log)
	}
}

func (a *Agent) closePlugin(ctx context.Context, id string, v any, log hclog.Logger) {
	if d, ok := v.(Drainer); ok {
		if err := d.Drain(ctx); err != nil {
			a.m.errors.WithLabelValues(id, errTypeClose).Inc()
			log.Error("drain failed", "error", err)
		}
	}
	if c, ok := v.(sdk.Closer); ok {
		if err := c.Close(ctx); err != nil {
			a.m.errors.WithLabelValues(id, errTypeClose).Inc()
			log.Error("close failed", "error", err)
		}
	}
}

// settle records the fate of a tracked batch exactly once: it runs the
// input's done callback, returns the input's credit and forgets the batch.
func (a *Agent) settle(t *tracker, d sdk.Delivery) {
	if !t.settled.CompareAndSwap(false, true) {
		return
	}
	if !d.OK {
		a.m.errors.WithLabelValues(t.in.id, errTypeGaveUp).Inc()
		t.in.log.Warn("batch not delivered; the input will not acknowledge it", "error", d.Err)
	}
	t.in.inflight.Dec()
	if t.done != nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.in.log.Error("done callback panicked", "panic", r)
				}
			}()
			t.done(d)
		}()
	}
	<-t.in.credits // after done: emitted-but-not-done never exceeds the credits
	a.trackers.unregister(t)
}

// send passes it to ch unless the shutdown deadline passed.
func (a *Agent) send(ch chan<- item, it item) bool {
	select {
	case ch <- it:
		return true
	case <-a.hardCtx.Done():
		return false
	}
}

// backoff waits before retry number attempt (0-based); false when the
// shutdown deadline passed meanwhile.
func (a *Agent) backoff(attempt int) bool { return a.backoffCtx(a.hardCtx, attempt) }

// backoffCtx is backoff ending early when ctx is done.
func (a *Agent) backoffCtx(ctx context.Context, attempt int) bool {
	d := a.retryInitial
	for i := 0; i < attempt && d < a.retryMax; i++ {
		d *= 2
	}
	d = min(d, a.retryMax)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// takeRejects writes the rejects it.b carries to the dead-letter store and
// clears them. false means the store failed and the batch was given up.
func (a *Agent) takeRejects(it item) bool {
	n := len(it.b.Rejects)
	if n == 0 {
		return true
	}
	a.m.errors.WithLabelValues(it.from, errTypeReject).Add(float64(n))
	err := a.dl.WriteRejects(a.hardCtx, it.from, it.b.Rejects)
	if err != nil {
		a.m.errors.WithLabelValues(it.from, errTypeDeadLetter).Inc()
		a.log.Error("cannot store rejects in the dead-letter store", "plugin", it.from, "rejects", n, "error", err)
		it.tr.fail(fmt.Errorf("agent: %d rejects of %s could not be dead-lettered: %w", n, it.from, err))
		return false
	}
	a.m.deadLetter.WithLabelValues(it.from).Add(float64(n))
	if ok, held := a.rejectLog.allow(it.from); ok {
		a.log.Warn("rejected rows dead-lettered", "plugin", it.from, "rejects", n,
			"first_reason", it.b.Rejects[0].Reason, "first_position", it.b.Rejects[0].Position,
			"similar_lines_held_back", held)
	}
	it.b.Rejects = nil
	return true
}

// deadLetterBatch stores b (which failed in plugin with reason) and settles
// one reference of each tracker in trs; when the store fails, the trackers
// are given up.
func (a *Agent) deadLetterBatch(plugin string, reason error, b *sdk.Batch, trs []*tracker) {
	if err := a.dl.WriteBatch(a.hardCtx, plugin, reason.Error(), b); err != nil {
		a.m.errors.WithLabelValues(plugin, errTypeDeadLetter).Inc()
		a.log.Error("cannot store a failed batch in the dead-letter store", "plugin", plugin, "points", len(b.Points), "error", err)
		for _, t := range trs {
			t.fail(fmt.Errorf("agent: %s failed (%v) and the dead-letter store failed: %w", plugin, reason, err))
		}
		return
	}
	a.m.deadLetter.WithLabelValues(plugin).Inc()
	a.log.Error("batch dead-lettered", "plugin", plugin, "points", len(b.Points), "reason", reason)
	for _, t := range trs {
		t.release(1)
	}
}
