package profiling

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStart: without the variable nothing is written (the directory
// holds only the second call's files); with it, a CPU
// profile and a heap profile named after the process appear and are
// complete (non-empty) after stop; stop may be called twice.
func TestStart(t *testing.T) {
	t.Setenv(CPUProfileEnv, "")
	stop, err := Start("off")
	if err != nil {
		t.Fatal(err)
	}
	stop()

	dir := t.TempDir()
	t.Setenv(CPUProfileEnv, dir)
	stop, err = Start("a/b")
	if err != nil {
		t.Fatal(err)
	}
	var keep [][]byte
	deadline := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(deadline) {
		keep = append(keep, make([]byte, 1<<16))
	}
	stop()
	stop()
	_ = keep
	for _, kind := range []string{"cpu", "heap"} {
		path := filepath.Join(dir, fmt.Sprintf("a_b-%d.%s.pprof", os.Getpid(), kind))
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Fatalf("%s is empty", path)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("%d files in the profile directory (%v), want the two of \"a/b\" only", len(entries), err)
	}
}
