// Package mq_service is the input plugin that consumes telemetry from an
// mq.v1 message queue: our broker (consumer groups, leases, redelivery) or
// the original mq-service it replaces.
//
// One Input owns one gRPC connection, one Subscribe stream at a time (reopened
// with backoff when it breaks) and one long-lived Acknowledge stream. Every
// message is parsed with the parser its metadata["content-type"] names (or
// data_format), merged into columnar batches and emitted; the message is
// acknowledged only when the agent reports the batches holding it delivered,
// and negatively acknowledged (redelivered by our broker) when they failed.
// A message that cannot be parsed becomes a reject (dead-lettered by the
// agent) and is acknowledged like the others, so it never loops.
package mq_service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Name is the plugin's type name in the configuration ([[inputs.mq_service]]).
const Name = "mq_service"

// Description is a one-line summary for listings.
const Description = "Consume GPU telemetry from an mq.v1 message queue, acknowledging messages once stored"

// SampleConfig is the documented sample configuration.
//
//go:embed sample.conf
var SampleConfig string

// Defaults.
const (
	DefaultAddress             = "localhost:50051"
	DefaultConsumerID          = "telemetry-collector"
	DefaultBatchSize           = 100
	DefaultMaxInFlight         = 1000
	DefaultAckTimeout          = 30 * time.Second
	DefaultDataFormat          = parsers.FormatGPUTelJSON
	DefaultMaxMessageBytes     = 64 << 20
	DefaultEmitMaxPoints       = 10000
	DefaultEmitMaxWait         = 10 * time.Millisecond
	DefaultReconnectBackoffMax = 30 * time.Second
	DefaultHeartbeatTimeout    = 90 * time.Second

	// maxRejectRaw caps the raw payload kept in a whole-message reject.
	maxRejectRaw = 64 << 10
	// maxBatchRejectBytes caps the raw bytes of rejects in one emitted batch.
	maxBatchRejectBytes = 4 << 20
	// initialBackoff is the first reconnect delay.
	initialBackoff = 100 * time.Millisecond
	// recvWindow is the gRPC flow-control window of the connection to
	// the broker (stream and connection).
	recvWindow = 1 << 20
	// maxCachedParserErrors bounds the cache of failed parser look-ups
	// (content types come from the wire).
	maxCachedParserErrors = 64
)

// Input is the mq_service input plugin. Configuration fields are set by the
// agent's strict TOML decoding before Validate/Run and not changed after.
//
// Concurrency: Run is called once; the done callbacks it hands to the
// Accumulator may be called from any goroutine, also after Run returned;
// Close may be called concurrently with those callbacks, at most
// meaningfully once (later calls return nil). Stats is safe at any time.
type Input struct {
	Address             string            `toml:"address"`
	Topic               string            `toml:"topic"`
	ConsumerID          string            `toml:"consumer_id"`
	BatchSize           int               `toml:"batch_size"`
	MaxInFlight         int               `toml:"max_in_flight"`
	AckTimeout          sdk.Duration      `toml:"ack_timeout"`
	DataFormat          string            `toml:"data_format"`
	Timezone            string            `toml:"timezone"`
	Filter              map[string]string `toml:"filter"`
	TLSCA               string            `toml:"tls_ca"`
	TLSCert             string            `toml:"tls_cert"`
	TLSKey              string            `toml:"tls_key"`
	TLSServerName       string            `toml:"tls_server_name"`
	InsecureSkipVerify  bool              `toml:"insecure_skip_verify"`
	MaxMessageBytes     int               `toml:"max_message_bytes"`
	EmitMaxPoints       int               `toml:"emit_max_points"`
	EmitMaxWait         sdk.Duration      `toml:"emit_max_wait"`
	ReconnectBackoffMax sdk.Duration      `toml:"reconnect_backoff_max"`
	HeartbeatTimeout    sdk.Duration      `toml:"heartbeat_timeout"`

	log hclog.Logger
	// newParser builds parsers; parsers.New unless a test replaces it.
	newParser func(format string, opts parsers.Options) (parsers.Parser, error)
	// renewEvery overrides ack_timeout/3 (tests).
	renewEvery time.Duration
	// drainGrace, when set, bounds how long a drained subscription is kept
	// open after Run returned (default: ack_timeout).
	drainGrace time.Duration

	stats counters

	// inflight counts messages received and not yet acknowledged, by id
	// (an id can be in flight twice after a redelivery).
	inflightMu sync.Mutex
	inflight   map[string]int
	inflightN  int

	// trackMu guards msgTrack.pending/err of emitted batches.
	trackMu sync.Mutex

	mu        sync.Mutex
	conn      *grpc.ClientConn
	location  *time.Location
	acks      *acker
	runCancel context.CancelFunc
	runDone   chan struct{}
	closed    bool
	closing   chan struct{} // closed by Close
	renewOff  atomic.Bool   // lease renewal found unsupported by the broker
}

// New returns an Input with the defaults set.
func New() *Input {
	return &Input{
		Address:             DefaultAddress,
		ConsumerID:          DefaultConsumerID,
		BatchSize:           DefaultBatchSize,
		MaxInFlight:         DefaultMaxInFlight,
		AckTimeout:          sdk.Duration(DefaultAckTimeout),
		DataFormat:          DefaultDataFormat,
		MaxMessageBytes:     DefaultMaxMessageBytes,
		EmitMaxPoints:       DefaultEmitMaxPoints,
		EmitMaxWait:         sdk.Duration(DefaultEmitMaxWait),
		ReconnectBackoffMax: sdk.Duration(DefaultReconnectBackoffMax),
		HeartbeatTimeout:    sdk.Duration(DefaultHeartbeatTimeout),
		log:                 hclog.NewNullLogger(),
		newParser:           parsers.New,
		inflight:            make(map[string]int),
		closing:             make(chan struct{}),
	}
}

// SetLogger sets the logger (an optional ability: the plugin runtime calls it
// when it has one; the default discards everything). Call it before Run.
func (i *Input) SetLogger(l hclog.Logger) {
	if l == nil {
		l = hclog.NewNullLogger()
	}
	i.log = l
}

// Validate checks the configuration and returns every problem found, each
// an *sdk.ConfigIssue naming its key.
func (i *Input) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, &sdk.ConfigIssue{Key: key, Message: fmt.Sprintf(format, a...)})
	}
	if err := validateAddress(i.Address); err != nil {
		bad("address", "%v", err)
	}
	if strings.TrimSpace(i.Topic) == "" {
		bad("topic", "is required (the mq topic to subscribe to, e.g. \"gpu-telemetry\")")
	}
	if strings.TrimSpace(i.ConsumerID) == "" {
		bad("consumer_id", "must not be empty")
	}
	if i.BatchSize < 1 || i.BatchSize > math.MaxInt32 {
		bad("batch_size", "must be between 1 and %d, got %d", math.MaxInt32, i.BatchSize)
	}
	if i.MaxInFlight < 1 || i.MaxInFlight > math.MaxInt32 {
		bad("max_in_flight", "must be between 1 and %d, got %d", math.MaxInt32, i.MaxInFlight)
	}
	if i.AckTimeout.D() < time.Second || i.ackTimeoutSeconds() > math.MaxInt32 {
		bad("ack_timeout", "must be at least 1s (the wire carries whole seconds), got %s", i.AckTimeout.D())
	}
	if i.MaxMessageBytes < 1<<10 || i.MaxMessageBytes > math.MaxInt32 {
		bad("max_message_bytes", "must be between 1024 and %d, got %d", math.MaxInt32, i.MaxMessageBytes)
	}
	if i.EmitMaxPoints < 1 {
		bad("emit_max_points", "must be at least 1, got %d", i.EmitMaxPoints)
	}
	if i.EmitMaxWait.D() < 0 || i.EmitMaxWait.D() > 10*time.Second {
		bad("emit_max_wait", "must be between 0s and 10s, got %s", i.EmitMaxWait.D())
	}
	if i.ReconnectBackoffMax.D() < initialBackoff {
		bad("reconnect_backoff_max", "must be at least %s, got %s", initialBackoff, i.ReconnectBackoffMax.D())
	}
	if i.HeartbeatTimeout.D() < 0 {
		bad("heartbeat_timeout", "must not be negative (0s disables it), got %s", i.HeartbeatTimeout.D())
	}
	loc, err := loadLocation(i.Timezone)
	if err != nil {
		bad("timezone", "%v", err)
	}
	if i.DataFormat == "" {
		bad("data_format", "must not be empty")
	} else if _, err := i.parserFactory()(i.DataFormat, parsers.Options{Location: loc}); err != nil {
		bad("data_format", "%v", err)
	}
	if (i.TLSCert == "") != (i.TLSKey == "") {
		bad("tls_key", "tls_cert and tls_key must be set together")
	}
	if i.usesTLS() {
		if _, err := i.tlsConfig(); err != nil {
			bad("tls_ca", "%v", err)
		}
	}
	return errors.Join(errs...)
}

func validateAddress(a string) error {
	if strings.TrimSpace(a) == "" {
		return errors.New("must not be empty")
	}
	if strings.Contains(a, "://") || strings.HasPrefix(a, "unix:") {
		return nil // a gRPC target URI; grpc checks it when dialling
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want host:port, got %q: %w", a, err)
	}
	_ = host
	if port == "" {
		return fmt.Errorf("want host:port, got %q: missing port", a)
	}
	return nil
}

func loadLocation(tz string) (*time.Location, error) {
	switch strings.TrimSpace(tz) {
	case "", "Local", "local":
		return time.Local, nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: %w", tz, err)
	}
	return loc, nil
}

func (i *Input) parserFactory() func(string, parsers.Options) (parsers.Parser, error) {
	if i.newParser != nil {
		return i.newParser
	}
	return parsers.New
}

// ackTimeoutSeconds is ack_timeout rounded up to whole seconds.
func (i *Input) ackTimeoutSeconds() int64 {
	d := i.AckTimeout.D()
	return int64((d + time.Second - 1) / time.Second)
}

// drainMax bounds how long a drained subscription stays open.
func (i *Input) drainMax() time.Duration {
	if i.drainGrace > 0 {
		return i.drainGrace
	}
	return i.AckTimeout.D()
}

// renewInterval is how often in-flight leases are renewed.
func (i *Input) renewInterval() time.Duration {
	if i.renewEvery > 0 {
		return i.renewEvery
	}
	d := i.AckTimeout.D() / 3
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	return d
}

func (i *Input) usesTLS() bool {
	return i.TLSCA != "" || i.TLSCert != "" || i.TLSKey != "" || i.TLSServerName != "" || i.InsecureSkipVerify
}

func (i *Input) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         i.TLSServerName,
		InsecureSkipVerify: i.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice
	}
	if i.TLSCA != "" {
		pem, err := os.ReadFile(i.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("read tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca %s: no PEM certificate found", i.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if i.TLSCert != "" && i.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(i.TLSCert, i.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("load tls_cert/tls_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// setup creates the connection, the location and the acknowledger once.
// Callers hold i.mu.
func (i *Input) setupLocked() error {
	if i.conn != nil {
		return nil
	}
	if i.log == nil {
		i.log = hclog.NewNullLogger()
	}
	loc, err := loadLocation(i.Timezone)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("mq_service: timezone: %w", err))
	}
	creds := insecure.NewCredentials()
	if i.usesTLS() {
		cfg, err := i.tlsConfig()
		if err != nil {
			return sdk.Permanent(fmt.Errorf("mq_service: %w", err))
		}
		creds = credentials.NewTLS(cfg)
	}
	maxMsg := i.MaxMessageBytes
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMessageBytes
	}
	bmax := i.ReconnectBackoffMax.D()
	if bmax < initialBackoff {
		bmax = initialBackoff
	}
	pool := grpcbuf.NewBufferPool()
	bufs := &mqcodec.Buffers{}
	conn, err := grpc.NewClient(i.Address,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.ForceCodecV2(brokerCodec(pool, bufs))),
		// Bounded receive buffers: a fixed flow-control window (grpc's
		// dynamic one grows to 16 MiB a stream, frames the broker may send
		// ahead of what we read). HTTP/2 frames (16 KiB at most) are read
		// into pooled buffers, which go back to the pool as soon as the
		// codec has copied a message's frames into a buffer of its own
		// (see brokerCodec): the pool holds frames, never whole responses.
		grpc.WithInitialWindowSize(recvWindow),
		grpc.WithInitialConnWindowSize(recvWindow),
		experimental.WithBufferPool(pool),
		// Our own reconnect backoff governs streams; keep the channel's
		// connection backoff in the same range so a restarted broker is
		// found quickly (grpc's default grows to 120s).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  initialBackoff,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   bmax,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("mq_service: address %q: %w", i.Address, err))
	}
	i.conn = conn
	i.location = loc
	i.acks = newAcker(conn, i.ConsumerID, bmax, i.log, &i.stats)
	return nil
}

// Close stops a running Run, flushes pending acknowledgements, closes the
// Acknowledge stream and the connection. It is safe to call twice and
// without Run; after ctx expires it gives up on unsent acknowledgements (the
// broker redelivers those messages) and returns an error saying how many.
func (i *Input) Close(ctx context.Context) error {
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return nil
	}
	i.closed = true
	close(i.closing)
	cancel, runDone, acks, conn := i.runCancel, i.runDone, i.acks, i.conn
	i.mu.Unlock()

	if cancel != nil {
		cancel()
		select {
		case <-runDone:
		case <-ctx.Done():
		}
	}
	var errs []error
	if acks != nil {
		if err := acks.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if conn != nil {
		if err := conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("mq_service: close connection: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Stats is a snapshot of the input's counters.
type Stats struct {
	Received   uint64 // messages received from the broker
	Parsed     uint64 // messages parsed (possibly with row rejects)
	Rejected   uint64 // messages rejected whole (unparseable, unknown content-type)
	RowRejects uint64 // rows rejected by parsers inside otherwise good messages
	Emitted    uint64 // batches accepted by the pipeline
	Acked      uint64 // positive acknowledgements sent
	Nacked     uint64 // negative acknowledgements sent
	AckDropped uint64 // acknowledgements given up (Close deadline, after Close)
	Renewals   uint64 // lease renewals sent
	Reconnects uint64 // Subscribe streams reopened after a failure
	Heartbeats uint64 // heartbeats received
	// Redelivered counts messages received again while their first copy
	// was still in our pipeline (after a broker restart, a reconnect, an
	// expired lease): not processed again, the first copy's
	// acknowledgement covers them.
	Redelivered uint64
	InFlight    int // messages received and not yet acknowledged
	// RenewalsDisabled is true once the broker rejected a lease renewal.
	RenewalsDisabled bool
}

type counters struct {
	received, parsed, rejected, rowRejects, emitted atomic.Uint64
	acked, nacked, ackDropped, renewals, reconnects atomic.Uint64
	heartbeats, redelivered                         atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (i *Input) Stats() Stats {
	i.inflightMu.Lock()
	n := i.inflightN
	i.inflightMu.Unlock()
	return Stats{
		Received:         i.stats.received.Load(),
		Parsed:           i.stats.parsed.Load(),
		Rejected:         i.stats.rejected.Load(),
		RowRejects:       i.stats.rowRejects.Load(),
		Emitted:          i.stats.emitted.Load(),
		Redelivered:      i.stats.redelivered.Load(),
		Acked:            i.stats.acked.Load(),
		Nacked:           i.stats.nacked.Load(),
		AckDropped:       i.stats.ackDropped.Load(),
		Renewals:         i.stats.renewals.Load(),
		Reconnects:       i.stats.reconnects.Load(),
		Heartbeats:       i.stats.heartbeats.Load(),
		InFlight:         n,
		RenewalsDisabled: i.renewOff.Load(),
	}
}

func (i *Input) inflightAdd(id string) {
	i.inflightMu.Lock()
	i.inflight[id]++
	i.inflightN++
	i.inflightMu.Unlock()
}

// inflightHas reports whether a message with this id is in our pipeline
// (received, not yet acknowledged). Empty ids are never matched.
func (i *Input) inflightHas(id string) bool {
	if id == "" {
		return false
	}
	i.inflightMu.Lock()
	defer i.inflightMu.Unlock()
	return i.inflight[id] > 0
}

func (i *Input) inflightDone(id string) {
	i.inflightMu.Lock()
	if n := i.inflight[id]; n > 1 {
		i.inflight[id] = n - 1
	} else if n == 1 {
		delete(i.inflight, id)
	}
	if i.inflightN > 0 {
		i.inflightN--
	}
	i.inflightMu.Unlock()
}

func (i *Input) inflightCount() int {
	i.inflightMu.Lock()
	defer i.inflightMu.Unlock()
	return i.inflightN
}

var (
	_ sdk.Input     = (*Input)(nil)
	_ sdk.Validator = (*Input)(nil)
	_ sdk.Closer    = (*Input)(nil)
)
