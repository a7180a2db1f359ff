package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
)

// Proc is one child process started by the harness (mq-service, the
// collector, the streamer). Its stdout and stderr go to LogPath (appended
// across restarts, with a marker line per start). A Proc may be started
// again after it exited (Start), with the same command line.
//
// Its methods are safe for concurrent use; the ones that wait never call
// t.Fatal, so fault-injection goroutines may use them.
type Proc struct {
	Name    string   // short name for logs, e.g. "mq-service-1"
	Path    string   // binary
	Args    []string // arguments
	Env     []string // extra KEY=VALUE entries on top of the test's environment
	Dir     string   // working directory
	LogPath string   // stdout+stderr of every start

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run exited
	state   *os.ProcessState
	starts  int
	started time.Time
}

// Start launches the process (again). It fails if it is running. The child
// gets its own process group and SIGKILL when the test binary dies
// (Pdeathsig), so a crashed test leaves no orphans.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("e2e: %s is already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("e2e: %s log: %w", p.Name, err)
	}
	p.starts++
	fmt.Fprintf(logf, "=== e2e: start #%d at %s: %s %s\n", p.starts, time.Now().UTC().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("e2e: start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.state, p.started = cmd, done, nil, time.Now()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// PID is the pid of the current (or last) run; 0 before the first start.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// Done is closed when the current run exits (nil before the first start).
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// StartedAt is when the current run was started.
func (p *Proc) StartedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// Signal sends sig to the process (not its group). Signalling a process that
// already exited is not an error.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("e2e: signal %v to %s: %w", sig, p.Name, err)
	}
	return nil
}

// Wait waits up to timeout for the current run to exit and returns its exit
// code (-1 when a signal ended it). It returns an error on timeout.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	done := p.Done()
	if done == nil {
		return -1, fmt.Errorf("e2e: %s was never started", p.Name)
	}
	select {
	case <-done:
		return p.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("e2e: %s (pid %d) still running after %v", p.Name, p.PID(), timeout)
	}
}

// ExitCode is the exit status of the last run: -1 while running or when a
// signal ended it.
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// ExitState describes how the last run ended ("exit status 0", "signal:
// killed"), or "running".
func (p *Proc) ExitState() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return "running"
	}
	return p.state.String()
}

// Stop sends SIGTERM and waits up to timeout for the exit; past it, the
// process is killed with SIGKILL and an error says so. It returns the exit
// code of the graceful exit (-1 if it had to be killed).
func (p *Proc) Stop(timeout time.Duration) (int, error) {
	if !p.Running() {
		return p.ExitCode(), nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return -1, err
	}
	code, err := p.Wait(timeout)
	if err != nil {
		p.Kill()
		return -1, fmt.Errorf("e2e: %s did not exit within %v of SIGTERM; killed", p.Name, timeout)
	}
	return code, nil
}

// Kill sends SIGKILL and waits for the exit (a crash). Its own children are
// not signalled: they see their parent die (plugins have Pdeathsig).
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	if d := p.Done(); d != nil {
		<-d
	}
}

// Log returns everything the process wrote (all runs).
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// LogTail returns the last n lines the process wrote.
func (p *Proc) LogTail(n int) string {
	return tailLines(p.Log(), n)
}

func tailLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	i := len(s)
	for k := 0; k < n && i > 0; k++ {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
	}
	if i == 0 {
		return s
	}
	return s[i+1:]
}

// RSS is the resident set size of the current run in bytes.
func (p *Proc) RSS() (int64, error) {
	if !p.Running() {
		return 0, fmt.Errorf("e2e: %s is not running", p.Name)
	}
	return procfs.RSS(p.PID())
}

// Children lists the live (non-zombie) processes whose parent is the
// current run.
func (p *Proc) Children() []int {
	if !p.Running() {
		return nil
	}
	return procfs.Children(p.PID())
}

// Cmdline returns /proc/PID/cmdline split into arguments.
func Cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// killPID sends SIGKILL to pid.
func killPID(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("e2e: kill %d: %w", pid, err)
	}
	return nil
}
