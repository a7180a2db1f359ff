// Package profiling writes opt-in profiles of a process: the collector,
// mq-service and every plugin process started with CPUProfileEnv set write
// DIR/NAME-PID.cpu.pprof from start to exit, and a heap profile
// DIR/NAME-PID.heap.pprof at the peak of the heap in use (rewritten each
// time it grows by a tenth), so a whole pipeline (for example `make bench`
// with BENCH_CPUPROFILE) can be profiled per process.
package profiling

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
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
	quit := make(chan struct{})
	heapDone := make(chan struct{})
	go watchHeap(filepath.Join(dir, fmt.Sprintf("%s-%d.heap.pprof", name, os.Getpid())), quit, heapDone)
	done := false
	return func() {
		if done {
			return
		}
		done = true
		close(quit)
		<-heapDone
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// watchHeap writes a heap profile to path whenever the heap in use grows
// a tenth past its last profile, every 250ms, until quit is closed.
func watchHeap(path string, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var last uint64
	var ms runtime.MemStats
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse < last+last/10 {
			continue
		}
		last = ms.HeapInuse
		f, err := os.Create(path)
		if err != nil {
			return
		}
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
}
