// Package pgtest starts throwaway PostgreSQL clusters for tests and for local
// runs: initdb into a directory, trust authentication, listening on
// 127.0.0.1 (a free port unless one is given) and on a unix socket inside the
// cluster directory.
//
// The server binaries come from Options.BinDir, else $PGTEST_BINDIR, else
// /usr/lib/postgresql/15/bin. When the binaries are missing Start fails with
// a message that says so: tests never skip because PostgreSQL is absent.
// When the caller is root, initdb and postgres run as the "postgres" user
// (PostgreSQL refuses to run as root) and the cluster directory is chowned to
// it.
//
// A Server is safe for concurrent use; its methods serialise on a mutex. Kill
// takes the postmaster and every backend down at once with SIGKILL, like a
// crash.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
)

// DefaultBinDir is where Debian/Ubuntu install the PostgreSQL 15 server.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Options configure Start.
type Options struct {
	// Dir is the cluster directory (data in Dir/data, socket and log in Dir).
	// Empty: a new temporary directory, removed by Stop. A given Dir is kept
	// and reused when it already holds an initialised cluster.
	Dir string
	// Port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres; empty: $PGTEST_BINDIR or DefaultBinDir.
	BinDir string
	// FsyncOff turns fsync, synchronous_commit and full_page_writes off: much
	// faster, and a crash of the machine (not of PostgreSQL) can lose data.
	// For tests only.
	FsyncOff bool
	// Settings are extra "name=value" server settings (postgres -c).
	Settings []string
	// StartTimeout bounds each start; default 60s.
	StartTimeout time.Duration
}

// Server is one running (or stopped) throwaway cluster.
type Server struct {
	opts    Options
	dir     string // cluster directory
	tempDir bool   // remove dir on Stop
	binDir  string
	port    int
	cred    *syscall.Credential

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd exits
	stopped bool          // Stop was called
}

// Start initialises (if needed) and starts a cluster.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	s := &Server{opts: opts, port: opts.Port}
	s.binDir = opts.BinDir
	if s.binDir == "" {
		s.binDir = os.Getenv("PGTEST_BINDIR")
	}
	if s.binDir == "" {
		s.binDir = DefaultBinDir
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(s.binDir, b)); err != nil {
			return nil, fmt.Errorf("pgtest: PostgreSQL server binaries not found: %w (install postgresql-15, e.g. `apt-get install postgresql-15`, or set PGTEST_BINDIR to the directory holding initdb and postgres)", err)
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs a \"postgres\" user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "pgtest-")
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.dir, s.tempDir = d, true
	} else {
		d, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.dir = d
	}
	if err := s.prepareDir(); err != nil {
		s.cleanupDir()
		return nil, err
	}
	if err := s.initdb(ctx); err != nil {
		s.cleanupDir()
		return nil, err
	}
	if err := s.StartAgain(ctx); err != nil {
		s.cleanupDir()
		return nil, err
	}
	return s, nil
}

// New starts a throwaway cluster with fsync off for a test and stops it at
// the test's cleanup. It fails the test (never skips) when PostgreSQL cannot
// start.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start(context.Background(), Options{FsyncOff: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: stop: %v", err)
		}
	})
	return s
}

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.dir, "data") }

// SocketDir is the directory holding the unix socket.
func (s *Server) SocketDir() string { return s.dir }

// LogFile is where the server writes its log.
func (s *Server) LogFile() string { return filepath.Join(s.dir, "postgres.log") }

// Host is the TCP address the server listens on.
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the TCP port the server listens on.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// URL returns a connection URL for database db (user postgres, no password,
// sslmode=disable) over TCP.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDB creates database name (an error if it exists).
func (s *Server) CreateDB(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast mode) and removes a temporary cluster
// directory. It is safe to call twice and after Kill.
func (s *Server) Stop() error {
	err := s.stop("fast")
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cleanupDir()
	return err
}

// Restart stops the server in mode "smart", "fast" or "immediate" and starts
// it again on the same port.
func (s *Server) Restart(ctx context.Context, mode string) error {
	if err := s.stop(mode); err != nil {
		return err
	}
	return s.StartAgain(ctx)
}

// Shutdown stops the server in mode "smart", "fast" or "immediate" without
// removing anything; StartAgain brings it back.
func (s *Server) Shutdown(mode string) error { return s.stop(mode) }

// Kill sends SIGKILL to the postmaster and every backend (a crash). The
// cluster stays on disk; StartAgain recovers it.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	// Backends call setsid(), so they are not in the postmaster's process
	// group: find them by parent pid and kill them together with it.
	children := procfs.Children(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pgtest: kill: %w", err)
	}
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	<-s.exited
	// Wait until they are gone, so their shared memory is released.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		alive := false
		for _, c := range children {
			if procfs.Alive(c) {
				alive = true
			}
		}
		if !alive {
			break
		}
	}
	s.cmd = nil
	return nil
}

// StartAgain starts the server after Shutdown, Restart's stop or Kill, on the
// same port. It is a no-op when the server is running.
func (s *Server) StartAgain(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("pgtest: server was stopped for good")
	}
	if s.cmd != nil {
		return nil
	}
	var lastErr error
	for attempt := 0; attempt < 25; attempt++ {
		// Keep the port across restarts (clients hold URLs); pick another
		// only when a free port found earlier was taken meanwhile.
		pickPort := s.opts.Port == 0 && (s.port == 0 || lastErr != nil && strings.Contains(lastErr.Error(), "could not bind"))
		if pickPort {
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		lastErr = s.startLocked(ctx)
		if lastErr == nil {
			return nil
		}
		// A lost race for the port, or shared memory still held by a killed
		// cluster's dying backends: try again shortly.
		if !strings.Contains(lastErr.Error(), "could not bind") &&
			!strings.Contains(lastErr.Error(), "is still in use") &&
			!strings.Contains(lastErr.Error(), "already running") {
			return lastErr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return lastErr
}

func (s *Server) prepareDir() error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("pgtest: chown %s to postgres: %w", s.dir, err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	// The postgres user must be able to reach the directory.
	for d := filepath.Dir(s.dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgtest: the postgres user cannot enter %s (mode %v); choose a cluster directory whose parents are world-searchable, e.g. under /tmp", d, fi.Mode().Perm())
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if ctx != nil {
		cmd = exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	} else {
		cmd = exec.Command(filepath.Join(s.binDir, name), args...)
	}
	cmd.Dir = s.dir
	cmd.Env = []string{"LC_ALL=C.UTF-8", "LANG=C.UTF-8", "PATH=/usr/bin:/bin", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

func (s *Server) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.DataDir(), "PG_VERSION")); err == nil {
		return nil // already initialised: reuse
	}
	args := []string{"-D", s.DataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"}
	if s.opts.FsyncOff {
		args = append(args, "--no-sync")
	}
	// A hung initdb must not hang the caller: bound it, and kill its whole
	// process group (it runs postgres in bootstrap mode) when it overruns.
	ictx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	cmd := s.command(ictx, "initdb", args...)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, tail(out, 2000))
	}
	return nil
}

func (s *Server) startLocked(ctx context.Context) error {
	args := []string{
		"-D", s.DataDir(),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "timezone=UTC",
		"-c", "log_timezone=UTC",
	}
	if s.opts.FsyncOff {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	for _, kv := range s.opts.Settings {
		args = append(args, "-c", kv)
	}
	logf, err := os.OpenFile(s.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	logStart, _ := logf.Seek(0, 2)
	cmd := s.command(nil, "postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If this process dies, take the postmaster with it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()

	deadline := time.Now().Add(s.opts.StartTimeout)
	connURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", s.port)
	for {
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited during start-up:\n%s", s.logSince(logStart))
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := pgx.Connect(cctx, connURL)
		cancel()
		if err == nil {
			c.Close(context.Background())
			s.cmd, s.exited = cmd, exited
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("pgtest: postgres not ready after %v: %v\n%s", s.opts.StartTimeout, err, s.logSince(logStart))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) stop(mode string) error {
	var sig syscall.Signal
	switch mode {
	case "smart":
		sig = syscall.SIGTERM
	case "fast", "":
		sig = syscall.SIGINT
	case "immediate":
		sig = syscall.SIGQUIT
	default:
		return fmt.Errorf("pgtest: unknown shutdown mode %q (smart, fast, immediate)", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(pid, sig)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
	return nil
}

func (s *Server) cleanupDir() {
	if s.tempDir {
		_ = os.RemoveAll(s.dir)
	}
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.LogFile())
	if err != nil {
		return ""
	}
	if off > int64(len(b)) {
		off = 0
	}
	return string(tail(b[off:], 4000))
}

func tail(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
