// Package plugins is the agent's bridge to plugin processes: it launches
// them (hashicorp/go-plugin over gRPC), performs the handshake, configures
// them, supervises and restarts them, and presents each remote plugin as a
// plain sdk.Input, sdk.Processor or sdk.Output so the agent uses a plugin
// process exactly like an in-process plugin.
//
// Delivery: calls in flight when a processor or output process dies are
// re-sent to its replacement (callers only see latency); an input is
// restarted and Run again, and the acknowledgements of batches its dead
// instance emitted are dropped (its source redelivers them).
package plugins

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// DefaultBuiltinBinary is the binary, under Launcher.PluginDir, that serves
// every built-in plugin (the plugin is picked by name at Configure).
const DefaultBuiltinBinary = "telemetry-plugins"

// Plugin kinds, as in Spec.Kind.
const (
	KindInput     = string(sdk.KindInput)
	KindProcessor = string(sdk.KindProcessor)
	KindOutput    = string(sdk.KindOutput)
)

// ConfigIssue is one configuration problem a plugin reported (Key is the
// dotted key path inside the plugin's table).
type ConfigIssue = sdk.ConfigIssue

// Spec says which plugin to run and how.
type Spec struct {
	Kind    string // KindInput, KindProcessor or KindOutput
	Name    string // plugin type name, e.g. "postgresql"
	Alias   string // instance name for logs and metrics (default Name)
	Command string // plugin binary; "" = Launcher.PluginDir/Launcher.BuiltinBinary
	Args    []string
	// ConfigJSON is the plugin's TOML table as JSON, agent keys removed.
	ConfigJSON []byte
	// Workers is how many concurrent Write calls an output accepts
	// (default 1); BatchSize the most points per Write (informational).
	Workers, BatchSize int
	// Credits is how many batches an input may have emitted and not yet
	// had accepted by the pipeline (default 4).
	Credits int
	// MemoryLimit is the plugin process's soft memory limit in bytes,
	// passed as GOMEMLIMIT (which Go plugins honour); 0: none.
	MemoryLimit int64
	// MaxProcs is the most CPUs the plugin process runs Go code on at
	// once, passed as GOMAXPROCS; 0: Go's default.
	MaxProcs int
	// GOGC is the plugin process's garbage collection target percentage,
	// passed as GOGC; 0: Go's default.
	GOGC int
	// Group, for a processor, lists more processors the same process runs
	// after this one, in order, on every batch (a process group: one
	// process and one hop for all of them). They are served by the same
	// binary; the process settings above are the group's. See
	// ProcessorClient.ProcessGroup.
	Group []Member
}

// Member is one more processor of a process group (Spec.Group).
type Member struct {
	Name       string // plugin type name, e.g. "dedup"
	Alias      string // instance name (default Name)
	ConfigJSON []byte // its TOML table as JSON, agent keys removed
}

func (s Spec) alias() string {
	if s.Alias != "" {
		return s.Alias
	}
	return s.Name
}

// Backoff is the restart schedule: Initial, doubling up to Max; the delay
// resets once an instance stayed up for ResetAfter.
type Backoff struct {
	Initial    time.Duration // default 100ms
	Max        time.Duration // default 30s
	ResetAfter time.Duration // default 1m
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = time.Minute
	}
	return b
}

// PluginInfo describes one plugin a binary serves.
type PluginInfo struct {
	Name         string
	Kind         string
	Description  string
	SampleConfig string
}

// Launcher starts and supervises plugin processes. Its fields are read at
// each launch; set them before the first call and do not change them
// afterwards. A Launcher is safe for concurrent use.
type Launcher struct {
	// Logger receives the launcher's logs and, named by alias, every log
	// line the plugins write (hclog JSON on their stderr). Default: none.
	Logger hclog.Logger
	// PluginDir holds the built-in plugin binary.
	PluginDir string
	// BuiltinBinary is the built-in plugin binary's file name (default
	// DefaultBuiltinBinary).
	BuiltinBinary string
	// Backoff is the restart schedule.
	Backoff Backoff
	// OnRestart, if set, is called (from any goroutine, must not block)
	// each time a plugin instance was restarted after it died; the agent
	// turns it into a metric.
	OnRestart func(alias string)
	// StartTimeout bounds a plugin's start and handshake (default 1m).
	StartTimeout time.Duration
	// InProcess, when not empty, serves plugins from these registrations
	// inside this process (sdk.ServeListener on a unix socket: the real
	// gRPC server and client code) instead of launching binaries. For
	// tests and package sdktest.
	InProcess []sdk.Registration

	// batches: decoded batches handed back (ReleaseBatch), shared by the
	// launcher's clients.
	batches batchPool
}

func (l *Launcher) logger() hclog.Logger {
	if l.Logger == nil {
		return hclog.NewNullLogger()
	}
	return l.Logger
}

// Command returns the binary a spec runs.
func (l *Launcher) Command(spec Spec) string {
	if spec.Command != "" {
		return spec.Command
	}
	name := l.BuiltinBinary
	if name == "" {
		name = DefaultBuiltinBinary
	}
	return filepath.Join(l.PluginDir, name)
}

// instance is one started plugin process (or in-process server).
type instance struct {
	rpc  pluginpb.PluginClient
	pid  int
	stop func() // ends it: go-plugin Kill (graceful close, then SIGKILL after 2s)
}

// dialOptions raise the message limits and flow-control windows to match
// the plugin side (sdk).
func dialOptions() []grpc.DialOption {
	pool := grpcbuf.NewBufferPool()
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageSize), grpc.MaxCallSendMsgSize(wire.MaxMessageSize),
			grpc.ForceCodecV2(wire.NewCodec(pool))),
		grpc.WithInitialWindowSize(wire.WindowSize), grpc.WithInitialConnWindowSize(wire.WindowSize),
		experimental.WithBufferPool(pool),
	}
}

// start launches a plugin instance and checks its protocol version.
func (l *Launcher) start(ctx context.Context, spec Spec) (*instance, error) {
	var inst *instance
	var err error
	if len(l.InProcess) > 0 {
		inst, err = l.startInProcess(spec)
	} else {
		inst, err = l.startProcess(ctx, spec)
	}
	if err != nil {
		return nil, err
	}
	d, err := inst.rpc.Describe(ctx, &pluginpb.Empty{})
	if err != nil {
		inst.stop()
		return nil, fmt.Errorf("describe: %w", err)
	}
	if d.GetProtocolVersion() != wire.ProtocolVersion {
		inst.stop()
		return nil, sdk.Permanent(fmt.Errorf("plugin speaks protocol %d, the agent %d (rebuild the plugin with this sdk)", d.GetProtocolVersion(), wire.ProtocolVersion))
	}
	return inst, nil
}

type clientPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (clientPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("plugins: the agent side serves nothing")
}

func (clientPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pluginpb.NewPluginClient(c), nil
}

func (l *Launcher) startProcess(ctx context.Context, spec Spec) (*instance, error) {
	path := l.Command(spec)
	if _, err := os.Stat(path); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("plugin binary %s: %w (set plugin_dir or the plugin's command)", path, err))
	}
	cmd := exec.Command(path, spec.Args...)
	// Own process group: a Ctrl-C to the agent's group does not kill the
	// plugin before the agent drained it. Pdeathsig: the plugin dies with
	// the agent (sdk.Serve also watches its parent pid).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// The agent's environment, then (overriding it: for a repeated
	// variable the last one wins) the plugin's own: it logs at the agent's
	// level (no debug lines built only to be dropped), its alias is
	// visible to operators in /proc/<pid>/environ, its memory_limit is
	// GOMEMLIMIT, its max_procs GOMAXPROCS and its gogc GOGC. go-plugin is
	// told not to add the agent's environment again after these
	// (SkipHostEnv).
	cmd.Env = append(os.Environ(),
		sdk.PluginAliasEnv+"="+spec.alias(),
		sdk.LogLevelEnv+"="+l.logger().GetLevel().String(),
	)
	if spec.MemoryLimit > 0 {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+strconv.FormatInt(spec.MemoryLimit, 10))
	}
	if spec.MaxProcs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(spec.MaxProcs))
	}
	if spec.GOGC > 0 {
		cmd.Env = append(cmd.Env, "GOGC="+strconv.Itoa(spec.GOGC))
	}
	timeout := l.StartTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake(),
		Plugins:          plugin.PluginSet{wire.PluginSetName: clientPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           l.logger().Named(spec.alias()),
		GRPCDialOptions:  dialOptions(),
		StartTimeout:     timeout,
		SkipHostEnv:      true, // cmd.Env holds it already
	})
	type result struct {
		rpc pluginpb.PluginClient
		err error
	}
	ch := make(chan result, 1)
	go func() {
		cp, err := client.Client()
		if err != nil {
			ch <- result{err: err}
			return
		}
		raw, err := cp.Dispense(wire.PluginSetName)
		if err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{rpc: raw.(pluginpb.PluginClient)}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		client.Kill()
		return nil, ctx.Err()
	}
	if r.err != nil {
		client.Kill()
		if strings.Contains(r.err.Error(), "incompatible API version") {
			// go-plugin's handshake compares wire.ProtocolVersion: a plugin
			// built with another sdk cannot work, restarting it won't help.
			return nil, sdk.Permanent(fmt.Errorf("start %s: the plugin speaks another agent<->plugin protocol than the agent's version %d (rebuild the plugin with this sdk): %w",
				path, wire.ProtocolVersion, r.err))
		}
		return nil, fmt.Errorf("start %s: %w", path, r.err)
	}
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	return &instance{rpc: r.rpc, pid: pid, stop: client.Kill}, nil
}

func (l *Launcher) startInProcess(spec Spec) (*instance, error) {
	dir, err := os.MkdirTemp("", "tcplugin")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "plugin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sdk.ServeListener(ctx, lis, l.logger().Named(spec.alias()), l.InProcess...); err != nil {
			l.logger().Error("in-process plugin server failed", "alias", spec.alias(), "error", err)
		}
	}()
	conn, err := grpc.NewClient("unix://"+sock, append(dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		cancel()
		<-done
		os.RemoveAll(dir)
		return nil, err
	}
	stop := func() {
		conn.Close()
		cancel()
		<-done
		os.RemoveAll(dir)
	}
	return &instance{rpc: pluginpb.NewPluginClient(conn), pid: os.Getpid(), stop: sync.OnceFunc(stop)}, nil
}

// configure sends the spec's configuration. Configuration problems come
// back as a permanent *sdk.ConfigError (for a group, each issue's Member
// says whose table it is about).
func configure(ctx context.Context, inst *instance, spec Spec, checkOnly bool) (maxConc int, err error) {
	req := &pluginpb.ConfigureRequest{
		Name: spec.Name, Kind: spec.Kind, ConfigJson: spec.ConfigJSON, Alias: spec.alias(),
		Workers: int32(spec.Workers), BatchSize: int32(spec.BatchSize), CheckOnly: checkOnly,
	}
	for _, m := range spec.Group {
		req.Group = append(req.Group, &pluginpb.GroupMember{Name: m.Name, Alias: m.alias(), ConfigJson: m.ConfigJSON})
	}
	resp, err := inst.rpc.Configure(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("configure: %w", err)
	}
	if len(resp.GetIssues()) > 0 {
		ce := &sdk.ConfigError{}
		for _, is := range resp.GetIssues() {
			ce.Issues = append(ce.Issues, sdk.ConfigIssue{Key: is.GetKey(), Message: is.GetMessage(), Member: int(is.GetMember())})
		}
		return 0, sdk.Permanent(ce)
	}
	if resp.GetError() != "" {
		err := errors.New(resp.GetError())
		if resp.GetPermanent() {
			err = sdk.Permanent(err)
		}
		return 0, fmt.Errorf("init: %w", err)
	}
	if n := len(spec.Group); n > 0 && int(resp.GetGroupSize()) != n+1 {
		// A binary built with an sdk that predates process groups
		// ignores the other members: it must not run in their place.
		return 0, sdk.Permanent(fmt.Errorf("the plugin binary configured %d of the %d processors of the process group: it cannot run process groups (rebuild it with this sdk, or give its processors no process_group)",
			resp.GetGroupSize(), n+1))
	}
	return max(1, int(resp.GetMaxConcurrency())), nil
}

func (m Member) alias() string {
	if m.Alias != "" {
		return m.Alias
	}
	return m.Name
}

func wrapErr(spec Spec, err error) error {
	if err == nil {
		return nil
	}
	e := fmt.Errorf("%ss.%s (%s): %w", spec.Kind, spec.Name, spec.alias(), err)
	if sdk.IsPermanent(err) {
		return sdk.Permanent(e)
	}
	return e
}

// Check starts the spec's plugin, has it decode and validate its
// configuration (without Init), and stops it. It returns the configuration
// issues found (nil when the configuration is fine), or an error when the
// plugin could not be checked at all.
func (l *Launcher) Check(ctx context.Context, spec Spec) ([]ConfigIssue, error) {
	inst, err := l.start(ctx, spec)
	if err != nil {
		return nil, wrapErr(spec, err)
	}
	defer inst.stop()
	_, err = configure(ctx, inst, spec, true)
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		return ce.Issues, nil
	}
	return nil, wrapErr(spec, err)
}

// Describe starts binary (or, with InProcess set, the in-process server)
// and lists the plugins it serves.
func (l *Launcher) Describe(ctx context.Context, binary string) ([]PluginInfo, error) {
	spec := Spec{Name: filepath.Base(binary), Command: binary}
	inst, err := l.start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", binary, err)
	}
	defer inst.stop()
	d, err := inst.rpc.Describe(ctx, &pluginpb.Empty{})
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", binary, err)
	}
	var out []PluginInfo
	for _, p := range d.GetPlugins() {
		out = append(out, PluginInfo{Name: p.GetName(), Kind: p.GetKind(), Description: p.GetDescription(), SampleConfig: p.GetSampleConfig()})
	}
	return out, nil
}
