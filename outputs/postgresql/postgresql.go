// Package postgresql is the PostgreSQL output: it stores canonical GPU
// telemetry in one wide row per (GPU, time), partitioned by time, and keeps
// the gpu_metrics view (DESIGN.md section 6) as the stable query shape.
//
// Concurrency: after Init, Write may be called concurrently (up to the
// agent's workers); each Write uses one transaction on its own connection.
// The GPU, workload and metric-name dictionaries and the partition list are
// cached in memory behind mutexes. Init, Close and SetEnvironment are not
// concurrent with anything else. A Write's batch is read, never written,
// except that refused rows are appended to its Rejects; its label slices
// and strings may be kept (read only) by the label cache of the Write's
// scratch, which verifies them against a copy before reusing what it
// parsed from them (see labelCache).
package postgresql

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Name is the plugin's type name.
const Name = "postgresql"

// Description is a one-line summary.
const Description = "Store GPU telemetry in PostgreSQL (wide rows per GPU and time, idempotent, partitioned by time; view gpu_metrics)"

// SampleConfig is the plugin's documented TOML table.
//
//go:embed sample.conf
var SampleConfig string

// Output is the PostgreSQL output. Configure its exported fields (TOML keys
// in the tags), then call Init.
type Output struct {
	// Connection is a URL or libpq key=value string. Empty: the discrete
	// keys below; none of those either: $DATABASE_URL, then PG* variables.
	Connection string `toml:"connection" json:"connection"`
	Host       string `toml:"host" json:"host"`
	Port       int    `toml:"port" json:"port"`
	User       string `toml:"user" json:"user"`
	Password   string `toml:"password" json:"password"`
	DBName     string `toml:"dbname" json:"dbname"`
	SSLMode    string `toml:"sslmode" json:"sslmode"`

	// Schema holds every table and the view (created if missing).
	Schema string `toml:"schema" json:"schema"`
	// PartitionInterval is the width of the time partitions ("1d", "6h", "7d").
	PartitionInterval Interval `toml:"partition_interval" json:"partition_interval"`
	// Retention drops partitions wholly older than this; 0 keeps everything.
	Retention Interval `toml:"retention" json:"retention"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout sdk.Duration `toml:"connect_timeout" json:"connect_timeout"`
	// MaxConnections is the pool size; default workers+1.
	MaxConnections int `toml:"max_connections" json:"max_connections"`

	env     sdk.Environment
	log     hclog.Logger
	getenv  func(string) string
	now     func() time.Time
	secrets []string

	pool   *pgxpool.Pool
	sql    statements
	cache  dictCache
	parts  partitionCache
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// conflictCredit > 0 makes Write skip the plain-COPY attempt (recent
	// batches collided); see writeTable.
	conflictCredit atomic.Int32
	conflictSpan   atomic.Int32
	scratchMu      sync.Mutex
	scratchFree    []*scratch // see getScratch
}

// New returns an output with default settings.
func New() *Output {
	return &Output{
		Schema:            "public",
		PartitionInterval: Interval(24 * time.Hour),
		ConnectTimeout:    sdk.Duration(10 * time.Second),
		log:               hclog.NewNullLogger(),
		getenv:            os.Getenv,
		now:               time.Now,
	}
}

// SetEnvironment implements sdk.EnvironmentReceiver.
func (o *Output) SetEnvironment(env sdk.Environment) { o.env = env }

// SetLogger sets the logger (default: discard). Call before Init.
func (o *Output) SetLogger(l hclog.Logger) {
	if l != nil {
		o.log = l
	}
}

// Validate implements sdk.Validator.
func (o *Output) Validate() error {
	var errs []error
	discrete := o.Host != "" || o.Port != 0 || o.User != "" || o.Password != "" || o.DBName != "" || o.SSLMode != ""
	if strings.TrimSpace(o.Connection) != "" && discrete {
		errs = append(errs, errors.New("outputs.postgresql: set either connection or host/port/user/password/dbname/sslmode, not both"))
	}
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("outputs.postgresql: port %d out of range", o.Port))
	}
	switch o.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		errs = append(errs, fmt.Errorf("outputs.postgresql: sslmode %q: use disable, allow, prefer, require, verify-ca or verify-full", o.SSLMode))
	}
	if o.Schema == "" {
		o.Schema = "public"
	}
	if len(o.Schema) > 63 {
		errs = append(errs, fmt.Errorf("outputs.postgresql: schema %q longer than 63 bytes", o.Schema))
	}
	if o.PartitionInterval == 0 {
		o.PartitionInterval = Interval(24 * time.Hour)
	}
	if d := o.PartitionInterval.D(); d < time.Hour || d%time.Hour != 0 {
		errs = append(errs, fmt.Errorf("outputs.postgresql: partition_interval %v: use whole hours, at least 1h (e.g. \"1d\")", d))
	}
	if o.Retention < 0 {
		errs = append(errs, errors.New("outputs.postgresql: retention must not be negative"))
	} else if o.Retention != 0 && o.Retention.D() < o.PartitionInterval.D() {
		errs = append(errs, fmt.Errorf("outputs.postgresql: retention %v shorter than partition_interval %v", o.Retention.D(), o.PartitionInterval.D()))
	}
	if o.ConnectTimeout < 0 {
		errs = append(errs, errors.New("outputs.postgresql: connect_timeout must not be negative"))
	}
	if o.MaxConnections < 0 {
		errs = append(errs, errors.New("outputs.postgresql: max_connections must not be negative"))
	}
	if _, err := o.poolConfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Init implements sdk.Initializer: it connects and creates or migrates the
// schema (idempotent, serialised between collectors by an advisory lock).
func (o *Output) Init(ctx context.Context) error {
	if o.log == nil {
		o.log = hclog.NewNullLogger()
	}
	if o.getenv == nil {
		o.getenv = os.Getenv
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = max(o.env.Workers, 1) + 1
	}
	if err := o.Validate(); err != nil {
		return sdk.Permanent(err)
	}
	cfg, err := o.poolConfig()
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("outputs.postgresql: %w", o.mask(err)))
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return o.connectError(cfg, err)
	}
	o.sql = buildStatements(o.Schema)
	err = o.migrate(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		pool.Close()
		return o.mask(err)
	}
	o.pool = pool
	o.cache.init()
	o.parts.init()

	// Create the current and next partitions now, drop expired ones, and
	// keep doing so in the background.
	if err := o.maintain(ctx); err != nil {
		pool.Close()
		o.pool = nil
		return o.mask(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	o.stop = cancel
	o.wg.Add(1)
	go o.maintenanceLoop(mctx)
	o.log.Info("connected", "schema", o.Schema, "max_connections", o.MaxConnections,
		"partition_interval", o.PartitionInterval.String(), "retention", o.Retention.String())
	return nil
}

// Close implements sdk.Closer. It is safe without Init and when called twice.
func (o *Output) Close(ctx context.Context) error {
	if o.closed.Swap(true) {
		return nil
	}
	if o.stop != nil {
		o.stop()
	}
	o.wg.Wait()
	if o.pool != nil {
		o.pool.Close()
	}
	return nil
}

func (o *Output) maintenanceLoop(ctx context.Context) {
	defer o.wg.Done()
	every := min(o.PartitionInterval.D()/4, time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			mctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := o.maintain(mctx); err != nil && ctx.Err() == nil {
				o.log.Warn("partition maintenance failed; will retry", "error", o.mask(err).Error())
			}
			cancel()
		}
	}
}

// maintain creates the partitions for now and the next interval and drops
// partitions older than the retention.
func (o *Output) maintain(ctx context.Context) error {
	now := o.now().UTC()
	iv := o.PartitionInterval.D()
	for _, tbl := range []string{tableSamples, tableExtra} {
		if err := o.ensurePartitions(ctx, tbl, []int64{now.UnixMicro(), now.Add(iv).UnixMicro()}); err != nil {
			return err
		}
		if o.Retention > 0 {
			if err := o.dropExpired(ctx, tbl, now.Add(-o.Retention.D())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Interval is a duration that also accepts days and weeks ("1d", "7d", "2w")
// besides Go durations ("6h", "90m").
type Interval time.Duration

// D returns i as a time.Duration.
func (i Interval) D() time.Duration { return time.Duration(i) }

// String renders i in days when whole, else as a Go duration.
func (i Interval) String() string {
	d := time.Duration(i)
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (i *Interval) UnmarshalText(b []byte) error {
	d, err := ParseInterval(string(b))
	if err != nil {
		return err
	}
	*i = Interval(d)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (i Interval) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// ParseInterval parses "1d", "7d", "2w" or a Go duration.
func ParseInterval(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			var v int64
			if _, err := fmt.Sscanf(n, "%d", &v); err != nil || fmt.Sprint(v) != n || v < 0 {
				return 0, fmt.Errorf("invalid interval %q: want e.g. \"1d\", \"12h\"", s)
			}
			return time.Duration(v) * u.d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid interval %q: want e.g. \"1d\", \"12h\"", s)
	}
	return d, nil
}

// ReadsLabelsOnly implements sdk.LabelReader: Output never writes into the
// label slices it receives (it reads them, or builds new ones), so the sdk
// may hand it slices shared between batches instead of a copy per series.
func (*Output) ReadsLabelsOnly() bool { return true }

// ReleasesBatches implements sdk.BatchReleaser: Write stores the batch before it returns, and its scratch keeps no pointer into a batch it reads past the next Write's reset, keeping nothing of its
// arrays once the call returned, so the sdk may decode later batches into
// them.
func (*Output) ReleasesBatches() bool { return true }
