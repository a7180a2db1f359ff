// Package profiling writes an opt-in CPU profile of a process: the
// collector and every plugin process started with CPUProfileEnv set write
// DIR/NAME-PID.cpu.pprof from start to exit, so a whole pipeline (for
// example `make bench` with BENCH_CPUPROFILE) can be profiled per process.
package profiling

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
)

// CPUProfileEnv names the environment variable holding the directory the
// profiles go to. Unset or empty: nothing is profiled.
const CPUProfileEnv = "TELEMETRY_CPUPROFILE_DIR"

// Start starts a CPU profile named after name when CPUProfileEnv is set
// and returns the function that stops it and closes the file (safe to call
// more than once). The profile is complete only if stop runs, so callers
// call it on their normal exit path. Errors are returned, never fatal.
func Start(name string) (stop func(), err error) {
	dir := os.Getenv(CPUProfileEnv)
	if dir == "" {
		return func() {}, nil
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r < ' ' {
			return '_'
		}
		return r
	}, name)
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.cpu.pprof", name, os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return func() {}, fmt.Errorf("profiling: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}, fmt.Errorf("profiling: %s: %w", path, err)
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
