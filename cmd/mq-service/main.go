// Command mq-service runs the mq.v1 message broker (see mq/README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/telemetry-collector/telemetry-collector/internal/profiling"
	"github.com/telemetry-collector/telemetry-collector/mq/broker"
	"google.golang.org/grpc"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type config struct {
	listen, dataDir, metricsAddr, logLevel string
	maxDeliveries, maxTopicMessages        int
	maxTopicBytes                          int64
	heartbeat, shutdownTimeout             time.Duration
	showVersion                            bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("mq-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:50051", "gRPC listen address HOST:PORT")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory for the per-topic append-only logs (empty: memory only)")
	fs.StringVar(&c.metricsAddr, "metrics-address", "", "HOST:PORT serving /metrics and /healthz (empty: off)")
	fs.IntVar(&c.maxDeliveries, "max-deliveries", broker.DefaultMaxDeliveries, "deliveries before a message moves to <topic>.dlq")
	fs.Int64Var(&c.maxTopicBytes, "max-topic-bytes", 256<<20, "retained bytes per topic before publishers wait (0: unbounded)")
	fs.IntVar(&c.maxTopicMessages, "max-topic-messages", 0, "retained messages per topic before publishers wait (0: unbounded)")
	fs.DurationVar(&c.heartbeat, "heartbeat-interval", broker.DefaultHeartbeatInterval, "heartbeat interval on idle subscriptions")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for streams to end")
	fs.StringVar(&c.logLevel, "log-level", "info", "trace | debug | info | warn | error")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if hclog.LevelFromString(c.logLevel) == hclog.NoLevel {
		return c, fmt.Errorf("unknown --log-level %q", c.logLevel)
	}
	return c, nil
}

func run(args []string, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mq-service:", err)
		return 2
	}
	if c.showVersion {
		fmt.Println("mq-service", version)
		return 0
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "mq-service", Level: hclog.LevelFromString(c.logLevel), Output: stderr})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stopProfile, err := profiling.Start("mq-service")
	if err != nil {
		log.Warn("no CPU profile", "error", err)
	}
	defer stopProfile()
	if err := serve(ctx, c, log); err != nil {
		log.Error("mq-service failed", "error", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c config, log hclog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := broker.New(broker.Options{
		DataDir: c.dataDir, MaxDeliveries: c.maxDeliveries, MaxTopicBytes: c.maxTopicBytes,
		MaxTopicMessages: c.maxTopicMessages, HeartbeatInterval: c.heartbeat, Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		_ = b.Close()
		return fmt.Errorf("listen on %s: %w", c.listen, err)
	}
	srv := grpc.NewServer(broker.ServerOptions()...)
	b.Register(srv)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()

	var msrv *http.Server
	if c.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if !b.Serving() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		mlis, err := net.Listen("tcp", c.metricsAddr)
		if err != nil {
			srv.Stop()
			_ = b.Close()
			return fmt.Errorf("listen on metrics address %s: %w", c.metricsAddr, err)
		}
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(mlis) }()
		log.Info("serving metrics", "address", mlis.Addr().String())
	}
	log.Info("mq-service listening", "address", lis.Addr().String(), "data_dir", c.dataDir, "version", version)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		runErr = fmt.Errorf("grpc serve: %w", err)
	}
	// Stop accepting, end streams (NOT_SERVING meanwhile), flush the logs.
	b.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(c.shutdownTimeout):
		log.Warn("streams did not end in time; closing them", "timeout", c.shutdownTimeout)
		srv.Stop()
	}
	if msrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = msrv.Shutdown(sctx)
		cancel()
	}
	if err := b.Close(); err != nil {
		return errors.Join(runErr, fmt.Errorf("flush topic logs: %w", err))
	}
	log.Info("stopped")
	return runErr
}
