package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
)

// server implements the plugin gRPC service for one plugin process. It
// hosts exactly one configured plugin value (Configure succeeds once).
// Every method is safe for concurrent use.
type server struct {
	pluginpb.UnimplementedPluginServer
	log  hclog.Logger
	regs []Registration

	mu         sync.Mutex
	configured bool
	reg        Registration
	value      any
	maxConc    int
	workers    int
	draining   bool
	runStarted bool
	runCancel  context.CancelFunc
	runDone    chan struct{}
	inflight   tracker
	closeOnce  sync.Once
	closeErr   error
}

func newServer(logger hclog.Logger, regs []Registration) *server {
	return &server{log: logger, regs: regs}
}

func (s *server) Describe(context.Context, *pluginpb.Empty) (*pluginpb.DescribeResponse, error) {
	resp := &pluginpb.DescribeResponse{ProtocolVersion: wire.ProtocolVersion}
	for _, r := range s.regs {
		resp.Plugins = append(resp.Plugins, &pluginpb.PluginInfo{
			Name: r.Name, Kind: string(r.Kind), Description: r.Description, SampleConfig: r.SampleConfig,
		})
	}
	return resp, nil
}

func (s *server) Configure(ctx context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured {
		return &pluginpb.ConfigureResponse{Error: "plugin process is already configured", Permanent: true}, nil
	}
	if len(req.GetGroup()) > 0 {
		return s.configureGroup(ctx, req), nil
	}
	workers := max(1, int(req.GetWorkers()))
	c, resp := s.prepare(req.GetKind(), req.GetName(), req.GetAlias(), req.GetConfigJson(), workers, int(req.GetBatchSize()), 0)
	if resp != nil || req.GetCheckOnly() {
		if resp == nil {
			resp = &pluginpb.ConfigureResponse{GroupSize: 1}
		}
		return resp, nil
	}
	if in, ok := c.value.(Initializer); ok {
		if err := in.Init(ctx); err != nil {
			return &pluginpb.ConfigureResponse{Error: err.Error(), Permanent: IsPermanent(err)}, nil
		}
	}
	s.maxConc = 1
	if cc, ok := c.value.(Concurrent); ok {
		s.maxConc = max(1, cc.MaxConcurrency())
	}
	s.workers = workers
	s.reg, s.value, s.configured = *c.reg, c.value, true
	s.log = s.log.Named(c.alias)
	return &pluginpb.ConfigureResponse{MaxConcurrency: uint32(s.maxConc), GroupSize: 1}, nil
}

// prepared is a plugin value whose configuration was decoded and
// validated, not yet initialised.
type prepared struct {
	reg   *Registration
	value any
	alias string
	log   hclog.Logger
}

// prepare creates the plugin value name of kind, hands it its environment
// and logger, decodes configJSON into it and validates it. A non-nil
// response is the refusal to return (issues tagged with member).
func (s *server) prepare(kind, name, alias string, configJSON []byte, workers, batchSize int, member uint32) (prepared, *pluginpb.ConfigureResponse) {
	var reg *Registration
	var names []string
	for i := range s.regs {
		if s.regs[i].Name == name && string(s.regs[i].Kind) == kind {
			reg = &s.regs[i]
		}
		names = append(names, string(s.regs[i].Kind)+" "+s.regs[i].Name)
	}
	if reg == nil {
		return prepared{}, &pluginpb.ConfigureResponse{Permanent: true,
			Error: fmt.Sprintf("this binary has no %s plugin %q (it serves: %v)", kind, name, names)}
	}
	v := reg.New()
	var ok bool
	switch reg.Kind {
	case KindInput:
		_, ok = v.(Input)
	case KindProcessor:
		_, ok = v.(Processor)
	case KindOutput:
		_, ok = v.(Output)
	}
	if !ok {
		return prepared{}, &pluginpb.ConfigureResponse{Permanent: true,
			Error: fmt.Sprintf("plugin %q: New returned %T, which is not an %s", reg.Name, v, reg.Kind)}
	}
	if alias == "" {
		alias = reg.Name
	}
	if er, ok := v.(EnvironmentReceiver); ok {
		er.SetEnvironment(Environment{Name: reg.Name, Alias: alias, Workers: workers, BatchSize: batchSize})
	}
	log := s.log.Named(alias)
	if lr, ok := v.(LoggerReceiver); ok {
		lr.SetLogger(log)
	}
	if err := DecodeConfig(configJSON, v); err != nil {
		return prepared{}, &pluginpb.ConfigureResponse{Issues: toPBIssues(IssuesOf(err), member), Permanent: true}
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return prepared{}, &pluginpb.ConfigureResponse{Issues: toPBIssues(IssuesOf(err), member), Permanent: true}
		}
	}
	return prepared{reg: reg, value: v, alias: alias, log: log}, nil
}

// configureGroup configures a process group: the request's processor and
// those of req.Group, run in that order on every batch (see group). Every
// member's configuration is checked, and its issues reported, before any
// is initialised.
func (s *server) configureGroup(ctx context.Context, req *pluginpb.ConfigureRequest) *pluginpb.ConfigureResponse {
	if req.GetKind() != string(KindProcessor) {
		return &pluginpb.ConfigureResponse{Permanent: true,
			Error: fmt.Sprintf("a process group runs processors, not an %s", req.GetKind())}
	}
	type spec struct {
		name, alias string
		config      []byte
	}
	specs := []spec{{req.GetName(), req.GetAlias(), req.GetConfigJson()}}
	for _, m := range req.GetGroup() {
		specs = append(specs, spec{m.GetName(), m.GetAlias(), m.GetConfigJson()})
	}
	g := &group{retryInitial: 100 * time.Millisecond, retryMax: 30 * time.Second}
	refused := &pluginpb.ConfigureResponse{Permanent: true}
	var aliases []string
	for i, sp := range specs {
		c, resp := s.prepare(string(KindProcessor), sp.name, sp.alias, sp.config, 1, 0, uint32(i))
		if resp != nil {
			refused.Issues = append(refused.Issues, resp.GetIssues()...)
			if resp.GetError() != "" && refused.Error == "" {
				refused.Error = fmt.Sprintf("process group member %d: %s", i, resp.GetError())
			}
			continue
		}
		g.members = append(g.members, groupMember{alias: c.alias, p: c.value.(Processor), log: c.log})
		aliases = append(aliases, c.alias)
	}
	if len(refused.Issues) > 0 || refused.Error != "" {
		return refused
	}
	if req.GetCheckOnly() {
		return &pluginpb.ConfigureResponse{GroupSize: uint32(len(g.members))}
	}
	for i, m := range g.members {
		if in, ok := m.p.(Initializer); ok {
			if err := in.Init(ctx); err != nil {
				// Close the members already initialised: the process
				// stays unconfigured.
				if cerr := (&group{members: g.members[:i]}).Close(ctx); cerr != nil {
					s.log.Warn("closing the members initialised before the failure", "error", cerr)
				}
				return &pluginpb.ConfigureResponse{Error: fmt.Sprintf("%s: %v", m.alias, err), Permanent: IsPermanent(err)}
			}
		}
	}
	s.maxConc = g.MaxConcurrency()
	s.workers = 1
	s.reg = Registration{Name: strings.Join(aliases, "+"), Kind: KindProcessor}
	s.value, s.configured = g, true
	s.log = s.log.Named(s.reg.Name)
	return &pluginpb.ConfigureResponse{MaxConcurrency: uint32(s.maxConc), GroupSize: uint32(len(g.members))}
}

func toPBIssues(is []ConfigIssue, member uint32) []*pluginpb.ConfigIssue {
	out := make([]*pluginpb.ConfigIssue, len(is))
	for i, x := range is {
		out[i] = &pluginpb.ConfigIssue{Key: x.Key, Message: x.Message, Member: member}
	}
	return out
}

// plugin returns the configured value if it is of kind k.
func (s *server) plugin(k Kind) (any, hclog.Logger, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.configured {
		return nil, nil, status.Error(codes.FailedPrecondition, "plugin is not configured")
	}
	if s.reg.Kind != k {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "plugin %q is an %s, not an %s", s.reg.Name, s.reg.Kind, k)
	}
	return s.value, s.log, nil
}

func (s *server) Run(stream pluginpb.Plugin_RunServer) error {
	v, log, err := s.plugin(KindInput)
	if err != nil {
		return err
	}
	in := v.(Input)
	s.mu.Lock()
	if s.runStarted {
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "Run was already called")
	}
	s.runStarted = true
	runCtx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	s.runCancel, s.runDone = cancel, make(chan struct{})
	if s.draining {
		cancel()
	}
	runDone := s.runDone
	s.mu.Unlock()

	acc := newAccumulator(stream)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			msg, err := stream.Recv()
			if err != nil {
				if err == io.EOF {
					err = errors.New("agent closed the input stream")
				}
				acc.fail(err)
				cancel() // without the agent there is nobody to emit to
				return
			}
			acc.grant(int(msg.GetCredits()))
			for _, a := range msg.GetAcks() {
				acc.ack(a)
			}
		}
	}()

	runErr := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("input panicked", "panic", r, "stack", string(debug.Stack()))
				err = fmt.Errorf("input panicked: %v", r)
			}
		}()
		return in.Run(runCtx, acc)
	}()
	close(runDone)
	if runErr != nil && runCtx.Err() == nil {
		log.Error("input stopped with an error", "error", runErr)
	}
	end := &pluginpb.Batch{End: true}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		end.RunError = runErr.Error()
	}
	if err := acc.send(end); err != nil {
		log.Debug("cannot send end of run", "error", err)
	}
	// Keep taking acknowledgements until the agent closes its side.
	<-recvDone
	acc.nackAll(errors.New("the agent stopped before the batch was delivered"))
	return nil
}

// Process serves the Process stream. Each direction has its stream
// dictionary: batches are decoded in receive order by the receive loop (a
// batch's definitions precede the batches that use them) and results are
// encoded and sent under the stream's send lock. Every decoded batch owns
// its label slices (processors may change them in place), unless the
// processor is a LabelReader.
func (s *server) Process(stream pluginpb.Plugin_ProcessServer) error {
	v, log, err := s.plugin(KindProcessor)
	if err != nil {
		return err
	}
	p := v.(Processor)
	s.mu.Lock()
	conc := s.maxConc
	s.mu.Unlock()
	enc := wire.NewStreamEncoder()
	var msgs []*pluginpb.Batch // reused: Send marshals before returning
	return serveStream(s, stream.Context(), conc, readsLabelsOnly(v), releasesBatches(v), stream.Recv, func(ctx context.Context, id uint64, b *Batch, decErr error) processed {
		return s.processOne(ctx, log, p, id, b, decErr)
	}, func(r processed) error {
		// Called under the stream's send lock: encode in send order.
		for _, ob := range r.out {
			if ob != nil {
				if len(r.res.Batches) == len(msgs) {
					msgs = append(msgs, &pluginpb.Batch{})
				}
				r.res.Batches = append(r.res.Batches, enc.Encode(msgs[len(r.res.Batches)], 0, ob))
			}
		}
		err := stream.Send(r.res)
		for _, m := range r.res.Batches {
			m.Rejects = nil
		}
		return err
	})
}

// processed is a processor's result, encoded when it is sent.
type processed struct {
	res *pluginpb.ProcessResult
	out []*Batch
}

func (s *server) processOne(ctx context.Context, log hclog.Logger, p Processor, id uint64, b *Batch, decErr error) processed {
	res := &pluginpb.ProcessResult{Id: id}
	if decErr != nil {
		res.Error, res.Permanent = "malformed batch from the agent: "+decErr.Error(), true
		return processed{res: res}
	}
	if g, ok := p.(*group); ok {
		out, members, st, errMember, err := g.run(ctx, b)
		res.MemberCalls, res.MemberPoints, res.MemberNanos, res.MemberRetries = st.calls, st.points, st.nanos, st.retries
		if err != nil {
			res.Error, res.Permanent, res.ErrorMember = err.Error(), IsPermanent(err), uint32(errMember)
			return processed{res: res}
		}
		res.BatchMembers = members
		return processed{res: res, out: out}
	}
	out, err := func() (out []*Batch, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("processor panicked", "panic", r, "stack", string(debug.Stack()))
				out, err = nil, Permanent(fmt.Errorf("processor panicked: %v", r))
			}
		}()
		return p.Process(ctx, b)
	}()
	if err != nil {
		res.Error, res.Permanent = err.Error(), IsPermanent(err)
		return processed{res: res}
	}
	return processed{res: res, out: out}
}

// Write serves the Write stream; batches are decoded in receive order with
// the stream's dictionary, each owning its label slices.
func (s *server) Write(stream pluginpb.Plugin_WriteServer) error {
	v, log, err := s.plugin(KindOutput)
	if err != nil {
		return err
	}
	o := v.(Output)
	s.mu.Lock()
	workers := s.workers
	s.mu.Unlock()
	return serveStream(s, stream.Context(), workers, readsLabelsOnly(v), releasesBatches(v), stream.Recv, func(ctx context.Context, id uint64, b *Batch, decErr error) *pluginpb.WriteResult {
		return s.writeOne(ctx, log, o, id, b, decErr)
	}, stream.Send)
}

func (s *server) writeOne(ctx context.Context, log hclog.Logger, o Output, id uint64, b *Batch, decErr error) *pluginpb.WriteResult {
	res := &pluginpb.WriteResult{Id: id}
	if decErr != nil {
		res.Error, res.Permanent = "malformed batch from the agent: "+decErr.Error(), true
		return res
	}
	n := len(b.Rejects)
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("output panicked", "panic", r, "stack", string(debug.Stack()))
				err = Permanent(fmt.Errorf("output panicked: %v", r))
			}
		}()
		return o.Write(ctx, b)
	}()
	if err != nil {
		res.Error, res.Permanent = err.Error(), IsPermanent(err)
	}
	if len(b.Rejects) > n {
		res.Rejects = wire.EncodeRejects(nil, b.Rejects[n:])
	}
	return res
}

// readsLabelsOnly reports whether v promised (LabelReader) not to change
// received labels in place.
func readsLabelsOnly(v any) bool {
	lr, ok := v.(LabelReader)
	return ok && lr.ReadsLabelsOnly()
}

// releasesBatches reports whether v promised (BatchReleaser) to keep
// nothing of a batch once its call returned.
func releasesBatches(v any) bool {
	r, ok := v.(BatchReleaser)
	return ok && r.ReleasesBatches()
}

// serveStream receives batches, decodes them in receive order with the
// stream's dictionary (a malformed batch reaches handle with its decode
// error), and handles up to conc of them at once, sending each result as
// soon as it is ready (sends are serialised: a grpc stream allows one
// sender at a time, and send may encode with the stream's dictionary). A
// failed send ends the stream.
//
// With reuse (the plugin is a BatchReleaser), a batch whose result was sent
// goes to a free list that later batches are decoded into (Decode empties
// it first), instead of a new batch each time.
func serveStream[R any](s *server, ctx context.Context, conc int, shareLabels, reuse bool, recv func() (*pluginpb.Batch, error),
	handle func(context.Context, uint64, *Batch, error) R, send func(R) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(1, conc))
	var free chan *Batch
	if reuse {
		free = make(chan *Batch, max(1, conc))
	}
	var sendMu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	// Plugin side: every batch owns its labels, unless the plugin is a
	// LabelReader (then they are the dictionary's, shared and read-only).
	dec := wire.StreamDecoder{ShareLabels: shareLabels}
	for {
		msg, err := recv()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		var b *Batch
		select {
		case b = <-free: // nil channel without reuse: never ready
		default:
			b = &Batch{}
		}
		decErr := dec.Decode(msg, b)
		id := msg.GetId()
		// Decode copied what it keeps: the message's columns go back to
		// the codec's pool (nothing else sees msg).
		wire.RecycleBatch(msg)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		s.inflight.add()
		wg.Add(1)
		go func() {
			defer func() { <-sem; s.inflight.done(); wg.Done() }()
			res := handle(ctx, id, b, decErr)
			sendMu.Lock()
			err := send(res)
			sendMu.Unlock()
			if err != nil {
				cancel(err)
			}
			if reuse {
				// Sent (encoded): nothing refers to b's arrays any more.
				select {
				case free <- b:
				default:
				}
			}
		}()
	}
}

func (s *server) Drain(ctx context.Context, _ *pluginpb.Empty) (*pluginpb.Empty, error) {
	s.mu.Lock()
	s.draining = true
	cancel, done := s.runCancel, s.runDone
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if err := s.inflight.wait(ctx); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return &pluginpb.Empty{}, nil
}

func (s *server) Close(ctx context.Context, _ *pluginpb.Empty) (*pluginpb.Empty, error) {
	if err := s.closeAll(ctx); err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	return &pluginpb.Empty{}, nil
}

// closeAll stops a running input and calls the plugin's Close once.
func (s *server) closeAll(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		cancel, v, log := s.runCancel, s.value, s.log
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		if c, ok := v.(Closer); ok {
			s.closeErr = c.Close(ctx)
			if s.closeErr != nil {
				log.Error("close failed", "error", s.closeErr)
			}
		}
	})
	return s.closeErr
}

// tracker counts in-flight calls and lets Drain wait for none.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0; nil means "closed"
}

func (t *tracker) add() {
	t.mu.Lock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
	t.mu.Unlock()
}

func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	ch := t.idle
	n := t.n
	t.mu.Unlock()
	if n == 0 || ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
