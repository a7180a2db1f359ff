// Command telemetry-collector runs the agent: it loads the TOML
// configuration, launches every plugin as its own process and moves batches
// from inputs through processors to outputs until SIGTERM or SIGINT.
//
//	telemetry-collector --config FILE [--config-directory DIR]
//	telemetry-collector check --config FILE [--config-directory DIR]
//	telemetry-collector --version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/agent"
	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/internal/profiling"
	"github.com/telemetry-collector/telemetry-collector/plugins"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure: a plugin could not start, shutdown timed out
	exitUsage   = 2 // bad command line
	exitConfig  = 3 // invalid configuration
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	config    string
	configDir string
	pluginDir string
	version   bool
}

func parseFlags(name string, args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.config, "config", "", "main configuration `file` (TOML)")
	fs.StringVar(&o.configDir, "config-directory", "", "`directory` of drop-in *.toml files merged after the main file, in name order")
	fs.StringVar(&o.pluginDir, "plugin-directory", "", "`directory` of the built-in plugin binaries (default: [agent] plugin_dir, $TELEMETRY_COLLECTOR_PLUGIN_DIR, or plugins/ next to this executable)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage:\n  telemetry-collector --config FILE [--config-directory DIR]\n"+
			"  telemetry-collector check --config FILE [--config-directory DIR]\n  telemetry-collector --version\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if !o.version && o.config == "" {
		fs.Usage()
		return nil, errors.New("--config is required")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	check := false
	if len(args) > 0 && args[0] == "check" {
		check = true
		args = args[1:]
	}
	o, err := parseFlags("telemetry-collector", args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "telemetry-collector:", err)
		return exitUsage
	}
	if o.version {
		fmt.Fprintln(stdout, "telemetry-collector", version)
		return exitOK
	}

	cfg, err := conf.Load(o.config, o.configDir, conf.LoadOptions{})
	if err != nil {
		fmt.Fprintln(stderr, "telemetry-collector: invalid configuration:")
		fmt.Fprintln(stderr, indent(err.Error()))
		return exitConfig
	}
	logger := newLogger(cfg.Agent, stderr)
	launcher := &plugins.Launcher{Logger: logger.Named("plugins"), PluginDir: pluginDir(o.pluginDir, cfg.Agent.PluginDir)}

	if check {
		return runCheck(cfg, launcher, stdout, stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// A second signal after the first means "now": exit without draining.
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		logger.Error("second signal: exiting without draining")
		os.Exit(exitFailure)
	}()

	if cfg.Agent.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.Agent.MemoryLimit)
	}
	if cfg.Agent.MaxProcs > 0 {
		runtime.GOMAXPROCS(cfg.Agent.MaxProcs)
	}
	if cfg.Agent.GOGC > 0 {
		debug.SetGCPercent(cfg.Agent.GOGC)
	}
	stopProfile, err := profiling.Start("collector")
	if err != nil {
		logger.Warn("no CPU profile", "error", err)
	}
	defer stopProfile()

	factory := &pluginFactory{launcher: launcher}
	a, err := agent.New(cfg, factory, agent.Options{Logger: logger})
	if err != nil {
		logger.Error("cannot build the pipeline", "error", err)
		return exitConfig
	}
	launcher.OnRestart = a.PluginRestarted
	logger.Info("starting", "version", version, "config", o.config,
		"inputs", len(cfg.Inputs), "processors", len(cfg.Processors), "outputs", len(cfg.Outputs))
	if err := a.Run(ctx); err != nil {
		logger.Error("stopped with an error", "error", err)
		var ce *configError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitFailure
	}
	logger.Info("stopped cleanly")
	return exitOK
}

// runCheck starts every plugin binary, has it decode and validate its
// configuration, then prints the resolved pipeline.
func runCheck(cfg *conf.Config, l *plugins.Launcher, stdout, stderr io.Writer) int {
	ctx := context.Background()
	var problems []string
	var units [][]*conf.Plugin // one plugin process each
	for i := range cfg.Inputs {
		units = append(units, []*conf.Plugin{&cfg.Inputs[i]})
	}
	units = append(units, cfg.ProcessorGroups()...)
	for i := range cfg.Outputs {
		units = append(units, []*conf.Plugin{&cfg.Outputs[i]})
	}
	for _, ps := range units {
		if err := checkPlugin(ctx, l, ps...); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(stderr, "telemetry-collector: invalid configuration:")
		for _, pr := range problems {
			fmt.Fprintln(stderr, indent(pr))
		}
		return exitConfig
	}
	fmt.Fprint(stdout, cfg.Describe())
	fmt.Fprintln(stdout, "configuration OK")
	return exitOK
}

func newLogger(a conf.Agent, w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(a.LogLevel)
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "telemetry-collector",
		Level:      level,
		Output:     w,
		JSONFormat: a.LogFormat == "json",
	})
}

// pluginDir picks the directory of built-in plugin binaries: the flag, then
// the config, then the environment, then plugins/ next to the executable.
func pluginDir(flagValue, configValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if configValue != "" {
		return configValue
	}
	if env := os.Getenv("TELEMETRY_COLLECTOR_PLUGIN_DIR"); env != "" {
		return env
	}
	exe, err := os.Executable()
	if err != nil {
		return filepath.Join("bin", "plugins")
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
