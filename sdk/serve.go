package sdk

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/profiling"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
)

// Kind is a plugin kind.
type Kind string

// Plugin kinds.
const (
	KindInput     Kind = "input"
	KindProcessor Kind = "processor"
	KindOutput    Kind = "output"
)

// Registration describes one plugin a binary serves.
type Registration struct {
	// Name is the plugin type name, the X in [[outputs.X]].
	Name string
	// Kind says which interface New's values implement.
	Kind Kind
	// Description is one line for listings.
	Description string
	// SampleConfig is the plugin's sample TOML (usually its embedded
	// sample.conf).
	SampleConfig string
	// New returns a fresh, unconfigured plugin value: an Input, Processor
	// or Output as Kind says, usually a pointer to its config struct.
	New func() any
}

// LogLevelEnv names the environment variable that sets a plugin process's
// log level (trace, debug, info, warn, error; default debug). The launcher
// sets it to the agent's level.
const LogLevelEnv = "TELEMETRY_PLUGIN_LOG_LEVEL"

// PluginAliasEnv names the environment variable in which the agent tells a
// plugin process the alias of the instance it serves, so operators (and
// tests) can tell plugin processes of one binary apart in /proc/<pid>/environ.
const PluginAliasEnv = "TELEMETRY_PLUGIN_ALIAS"

// Serve runs the plugin process: it serves regs to the agent that started
// it and returns never (the process exits when the agent stops it or dies).
// Call it from main():
//
//	func main() { sdk.Serve(sdk.Registration{Name: "rename", Kind: sdk.KindProcessor, New: func() any { return &Rename{} }}) }
//
// Logs go through hclog as JSON to stderr, which the agent forwards into its
// own log under the plugin's alias; stdout is reserved for the handshake.
// Started by hand (not by the agent), the binary prints a notice and exits
// with status 1.
func Serve(regs ...Registration) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Output:     os.Stderr,
		JSONFormat: true,
		Level:      hclog.LevelFromString(envOr(LogLevelEnv, "debug")),
	})
	if err := checkRegistrations(regs); err != nil {
		logger.Error("bad plugin registrations", "error", err)
		os.Exit(1)
	}
	srv := newServer(logger, regs)
	stopProfile, err := profiling.Start("plugin-" + envOr(PluginAliasEnv, "unnamed"))
	if err != nil {
		logger.Warn("no CPU profile", "error", err)
	}
	defer stopProfile()
	go watchParent(logger, os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake(),
		Plugins:         plugin.PluginSet{wire.PluginSetName: &grpcPlugin{srv: srv}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, serverOptions()...)...)
		},
		Logger: logger,
	})
	// plugin.Serve returns when the agent closed the connection.
	srv.closeAll(context.Background())
}

// ServeListener serves regs on lis until ctx is done, without go-plugin's
// handshake or TLS. It is for in-process harnesses (package sdktest) and
// custom launchers; plugin binaries call Serve. It returns after the server
// stopped (cancelling ctx stops it abruptly, like a crash would) and after
// closing the plugin if the agent never called Close.
func ServeListener(ctx context.Context, lis net.Listener, logger hclog.Logger, regs ...Registration) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := checkRegistrations(regs); err != nil {
		return err
	}
	srv := newServer(logger, regs)
	gs := grpc.NewServer(serverOptions()...)
	pluginpb.RegisterPluginServer(gs, srv)
	stop := context.AfterFunc(ctx, gs.Stop)
	defer stop()
	err := gs.Serve(lis)
	srv.closeAll(context.Background())
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func serverOptions() []grpc.ServerOption {
	pool := grpcbuf.NewBufferPool()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(wire.MaxMessageSize), grpc.MaxSendMsgSize(wire.MaxMessageSize),
		grpc.InitialWindowSize(wire.WindowSize), grpc.InitialConnWindowSize(wire.WindowSize),
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(wire.NewCodec(pool)),
	}
}

func checkRegistrations(regs []Registration) error {
	seen := map[string]bool{}
	var problems []string
	for _, r := range regs {
		switch r.Kind {
		case KindInput, KindProcessor, KindOutput:
		default:
			problems = append(problems, fmt.Sprintf("%q: unknown kind %q", r.Name, r.Kind))
		}
		if r.Name == "" || r.New == nil {
			problems = append(problems, fmt.Sprintf("%q: Name and New are required", r.Name))
		}
		k := string(r.Kind) + "/" + r.Name
		if seen[k] {
			problems = append(problems, fmt.Sprintf("%s registered twice", k))
		}
		seen[k] = true
	}
	if len(problems) > 0 {
		return fmt.Errorf("sdk: %s", strings.Join(problems, "; "))
	}
	return nil
}

// watchParent exits the process when its parent (the agent) is gone: the
// parent pid changes when the agent dies and the process is reparented.
// It backs up the agent's Pdeathsig, which Linux delivers when the forking
// thread (not process) exits.
func watchParent(logger hclog.Logger, ppid int, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			logger.Error("agent process went away; exiting", "parent_pid", ppid)
			os.Exit(2)
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// grpcPlugin plugs the server into go-plugin's plugin set.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *server
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPluginServer(s, p.srv)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("sdk: the plugin side has no client")
}
