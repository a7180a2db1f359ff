package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/telemetry-collector/telemetry-collector/internal/pgtest"
	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
)

// Environment variables the harness reads.
const (
	// EnvBinDir names a directory of prebuilt binaries (telemetry-collector,
	// mq-service, telemetry-streamer, plugins/telemetry-plugins), e.g. the
	// repository's bin/ after `make build`; the harness then builds nothing.
	EnvBinDir = "E2E_BIN_DIR"
	// EnvKeep, when set to anything, keeps every test's directory (logs,
	// configs, data) even when the test passed. Failed tests always keep it.
	EnvKeep = "E2E_KEEP"
)

// Binaries are the built programs.
type Binaries struct {
	Dir       string // the directory holding them
	Collector string // telemetry-collector
	MQService string // mq-service
	Streamer  string // telemetry-streamer
	PluginDir string // holds telemetry-plugins (the built-in plugin binary)
}

// shared holds what every test of one test binary shares: the binaries
// (built once) and one PostgreSQL cluster (each test gets its own
// database). It is the harness's only package-level state; Main creates and
// removes it, so its lifetime is the test binary's.
var shared struct {
	mu      sync.Mutex
	inMain  bool
	tmpDir  string // build output, removed by Main
	bins    *Binaries
	binsErr error
	pg      *pgtest.Server
	pgErr   error
	dbSeq   atomic.Int64
	// durable starts the shared cluster with PostgreSQL's durability
	// settings (fsync, synchronous_commit, full_page_writes on) instead of
	// fsync off; see DurablePostgres.
	durable bool
}

// DurablePostgres makes SharedPostgres start the cluster with PostgreSQL's
// default durability (a commit is on disk when it returns) rather than
// fsync off, for measurements that must reflect a real deployment (make
// bench). It must be called before the cluster is first used, typically
// in TestMain before Main.
func DurablePostgres(on bool) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.durable = on
}

// Main runs a package's tests with the harness's shared resources and
// removes them afterwards. Every test package that uses the harness calls
// it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.pg != nil {
		if err := shared.pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop PostgreSQL:", err)
		}
	}
	if shared.tmpDir != "" {
		os.RemoveAll(shared.tmpDir)
	}
	return code
}

// ModuleRoot finds the repository root: the nearest directory at or above
// the working directory (a test's package directory) holding the module's
// go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/telemetry-collector/telemetry-collector\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("e2e: no go.mod of github.com/telemetry-collector/telemetry-collector at or above the working directory")
		}
		dir = parent
	}
}

// Build compiles the four programs into dir (plugins into dir/plugins).
// It needs the go command (from PATH).
func Build(ctx context.Context, dir string) (*Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("e2e: building the binaries needs the go command: %w (or set %s)", err, EnvBinDir)
	}
	b := binariesIn(dir)
	if err := os.MkdirAll(b.PluginDir, 0o755); err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	for _, args := range [][]string{
		{"build", "-o", dir + string(filepath.Separator), "./cmd/telemetry-collector", "./cmd/mq-service", "./cmd/telemetry-streamer"},
		{"build", "-o", filepath.Join(b.PluginDir, "telemetry-plugins"), "./cmd/telemetry-plugins"},
	} {
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("e2e: go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return b, b.check()
}

func binariesIn(dir string) *Binaries {
	return &Binaries{
		Dir:       dir,
		Collector: filepath.Join(dir, "telemetry-collector"),
		MQService: filepath.Join(dir, "mq-service"),
		Streamer:  filepath.Join(dir, "telemetry-streamer"),
		PluginDir: filepath.Join(dir, "plugins"),
	}
}

func (b *Binaries) check() error {
	for _, p := range []string{b.Collector, b.MQService, b.Streamer, filepath.Join(b.PluginDir, "telemetry-plugins")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("e2e: binary missing: %w", err)
		}
	}
	return nil
}

// SharedBinaries returns the binaries of this test binary, building them on
// first use (or taking them from $E2E_BIN_DIR). Needs Main.
func SharedBinaries(t testing.TB) *Binaries {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	requireMain(t)
	if shared.bins == nil && shared.binsErr == nil {
		if d := os.Getenv(EnvBinDir); d != "" {
			abs, err := filepath.Abs(d)
			if err == nil {
				b := binariesIn(abs)
				shared.bins, shared.binsErr = b, b.check()
			} else {
				shared.binsErr = err
			}
		} else {
			dir, err := os.MkdirTemp("", "e2e-bin-")
			if err != nil {
				shared.binsErr = err
			} else {
				shared.tmpDir = dir
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				shared.bins, shared.binsErr = Build(ctx, dir)
				cancel()
			}
		}
	}
	if shared.binsErr != nil {
		t.Fatal(shared.binsErr)
	}
	return shared.bins
}

// SharedPostgres returns the test binary's PostgreSQL cluster (fsync off
// unless DurablePostgres), starting it on first use. Needs Main.
func SharedPostgres(t testing.TB) *pgtest.Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	requireMain(t)
	if shared.pg == nil && shared.pgErr == nil {
		// pgtest makes its directory under os.TempDir (world-searchable
		// parents, as running PostgreSQL as the postgres user needs when we
		// are root) and removes it at Stop.
		shared.pg, shared.pgErr = pgtest.Start(context.Background(), pgtest.Options{FsyncOff: !shared.durable,
			Settings: []string{"max_connections=200"}})
	}
	if shared.pgErr != nil {
		t.Fatal(shared.pgErr)
	}
	return shared.pg
}

func requireMain(t testing.TB) {
	t.Helper()
	if !shared.inMain {
		t.Fatal("e2e: the package must run its tests through e2e.Main: func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }")
	}
}

// Env is one test's end-to-end environment: a directory for logs, configs
// and data, the shared binaries, a fresh database in the shared PostgreSQL,
// and every process the test starts. Everything is cleaned up at the test's
// end (processes stopped, no orphans); when the test failed, the tail of
// every process's log is printed and the directory is kept.
//
// Methods that fail the test (Fatal) must be called from the test's
// goroutine; Proc, MQ and Collector methods documented as not failing the
// test may be used from any goroutine.
type Env struct {
	T           testing.TB
	Ctx         context.Context // cancelled at cleanup
	Dir         string          // per-test directory (logs: *.log)
	Bins        *Binaries
	PG          *pgtest.Server
	DBName      string
	DatabaseURL string
	DB          *pgxpool.Pool // connected to DatabaseURL

	mu    sync.Mutex
	procs []*Proc
	seq   map[string]int
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// New prepares an Env for t.
func New(t testing.TB) *Env {
	t.Helper()
	bins := SharedBinaries(t)
	pg := SharedPostgres(t)
	safe := strings.Trim(unsafeChars.ReplaceAllString(t.Name(), "_"), "_")
	if len(safe) > 40 {
		safe = safe[:40]
	}
	dir, err := os.MkdirTemp("", "e2e-"+safe+"-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Env{T: t, Ctx: ctx, Dir: dir, Bins: bins, PG: pg, seq: map[string]int{}}
	// Registered first, so it runs last: after every process stopped.
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			e.dumpLogs()
			t.Logf("e2e: test directory kept: %s", dir)
			return
		}
		if os.Getenv(EnvKeep) == "" {
			os.RemoveAll(dir)
		}
	})
	e.DBName = strings.ToLower(fmt.Sprintf("e2e_%d_%s", shared.dbSeq.Add(1), safe))
	if len(e.DBName) > 63 {
		e.DBName = e.DBName[:63]
	}
	if err := pg.CreateDB(ctx, e.DBName); err != nil {
		t.Fatal(err)
	}
	e.DatabaseURL = pg.URL(e.DBName)
	pool, err := pgxpool.New(ctx, e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	e.DB = pool
	t.Cleanup(pool.Close)
	return e
}

// Path returns a path inside the test directory.
func (e *Env) Path(elem ...string) string {
	return filepath.Join(append([]string{e.Dir}, elem...)...)
}

// nextName returns "base-N", N counting per base from 1.
func (e *Env) nextName(base string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq[base]++
	return fmt.Sprintf("%s-%d", base, e.seq[base])
}

// NewProc creates (does not start) a process whose output goes to
// <Dir>/<name>.log. Its log tail is printed when the test fails. The
// caller arranges its cleanup (StartMQ, StartCollector and StartStreamer
// do); see also CleanupProc.
func (e *Env) NewProc(name, path string, args ...string) *Proc {
	p := &Proc{Name: name, Path: path, Args: args, Dir: e.Dir, LogPath: e.Path(name + ".log")}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p
}

// dumpLogs prints the tail of every process's log.
func (e *Env) dumpLogs() {
	e.mu.Lock()
	procs := append([]*Proc(nil), e.procs...)
	e.mu.Unlock()
	for _, p := range procs {
		e.T.Logf("e2e: ---- %s (%s, %s) last lines of %s ----\n%s", p.Name, p.Path, p.ExitState(), p.LogPath, p.LogTail(40))
	}
}

// Fatalf fails the test with the message followed by the tail of every
// collector's log.
func (e *Env) Fatalf(format string, args ...any) {
	e.T.Helper()
	e.T.Fatalf("%s%s", fmt.Sprintf(format, args...), e.collectorTails())
}

func (e *Env) collectorTails() string {
	e.mu.Lock()
	procs := append([]*Proc(nil), e.procs...)
	e.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		if strings.HasPrefix(p.Name, "collector") {
			fmt.Fprintf(&b, "\n---- %s (%s) last lines ----\n%s", p.Name, p.ExitState(), p.LogTail(25))
		}
	}
	return b.String()
}

// Eventually polls cond every 50ms until it returns true or timeout passes;
// then it fails the test with what, cond's last status and the collectors'
// log tails.
func (e *Env) Eventually(timeout time.Duration, what string, cond func() (ok bool, status string)) {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.Fatalf("e2e: timed out after %v waiting for %s; last: %s", timeout, what, status)
		}
		select {
		case <-e.Ctx.Done():
			e.Fatalf("e2e: test ended while waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Count runs a query returning one integer (count(*) ...) and returns it,
// failing the test on error.
func (e *Env) Count(sql string, args ...any) int64 {
	e.T.Helper()
	n, err := e.CountErr(sql, args...)
	if err != nil {
		e.T.Fatal(err)
	}
	return n
}

// CountErr is Count without failing the test (any goroutine).
func (e *Env) CountErr(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(e.Ctx, 10*time.Second)
	defer cancel()
	var n int64
	if err := e.DB.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("e2e: query %q: %w", sql, err)
	}
	return n, nil
}

// Float runs a query returning one float and returns it.
func (e *Env) Float(sql string, args ...any) float64 {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(e.Ctx, 10*time.Second)
	defer cancel()
	var v float64
	if err := e.DB.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		e.T.Fatalf("e2e: query %q: %v", sql, err)
	}
	return v
}

// Exec runs a statement.
func (e *Env) Exec(sql string, args ...any) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(e.Ctx, 30*time.Second)
	defer cancel()
	if _, err := e.DB.Exec(ctx, sql, args...); err != nil {
		e.T.Fatalf("e2e: exec %q: %v", sql, err)
	}
}

// WaitCount waits until the query (one integer) returns want. A query error
// (e.g. the view does not exist yet) counts as "not yet".
func (e *Env) WaitCount(timeout time.Duration, want int64, sql string, args ...any) {
	e.T.Helper()
	e.Eventually(timeout, fmt.Sprintf("%q = %d", sql, want), func() (bool, string) {
		n, err := e.CountErr(sql, args...)
		if err != nil {
			return false, err.Error()
		}
		return n == want, fmt.Sprintf("%d", n)
	})
}

// WaitStable waits until the query (one integer) returns the same value,
// without error, for quiet, and returns that value. It fails the test if
// that does not happen within timeout.
func (e *Env) WaitStable(timeout, quiet time.Duration, sql string, args ...any) int64 {
	e.T.Helper()
	var last int64 = -1
	var since time.Time
	e.Eventually(timeout, fmt.Sprintf("%q to stay unchanged for %v", sql, quiet), func() (bool, string) {
		n, err := e.CountErr(sql, args...)
		if err != nil {
			last = -1
			return false, err.Error()
		}
		if n != last {
			last, since = n, time.Now()
			return false, fmt.Sprintf("%d (changing)", n)
		}
		return time.Since(since) >= quiet, fmt.Sprintf("%d", n)
	})
	return last
}

// FreeAddr returns 127.0.0.1:PORT with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("e2e: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (e *Env) freeAddr() string {
	e.T.Helper()
	a, err := FreeAddr()
	if err != nil {
		e.T.Fatal(err)
	}
	return a
}

// CleanupProc stops p at the test's end: SIGTERM with grace (0: SIGKILL at
// once), then SIGKILL; then SIGKILL for every child it had.
func (e *Env) CleanupProc(p *Proc, grace time.Duration) { e.cleanupProc(p, grace) }

func (e *Env) cleanupProc(p *Proc, grace time.Duration) {
	e.T.Cleanup(func() {
		var kids []int
		if p.Running() {
			kids = p.Children()
			if grace > 0 {
				_, _ = p.Stop(grace)
			} else {
				p.Kill()
			}
		}
		killAll(kids)
	})
}

// killAll sends SIGKILL to every pid still alive and waits (up to 5s) for
// them to be gone.
func killAll(pids []int) {
	for _, pid := range pids {
		if procfs.Alive(pid) {
			_ = killPID(pid)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for procfs.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Table runs a query and formats its result as text (one row per line,
// columns separated by " | "), for failure messages. Errors are returned as
// the text.
func (e *Env) Table(sql string, args ...any) string {
	ctx, cancel := context.WithTimeout(e.Ctx, 10*time.Second)
	defer cancel()
	rows, err := e.DB.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Sprintf("(query %q: %v)", sql, err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return fmt.Sprintf("(query %q: %v)", sql, err)
		}
		for i, v := range vals {
			if i > 0 {
				b.WriteString(" | ")
			}
			fmt.Fprint(&b, v)
		}
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		fmt.Fprintf(&b, "(query %q: %v)", sql, err)
	}
	return b.String()
}
