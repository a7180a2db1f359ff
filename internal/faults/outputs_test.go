//go:build faults

package faults

import (
	"bufio"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
)

// brokenFile makes path a file output destination that opens fine (Init
// succeeds) and fails at every Write with ENOSPC, like a full disk: a
// symlink to /dev/full. fix replaces it with nothing, so the output's next
// attempt creates a regular file (the operator freed space).
func brokenFile(t *testing.T, path string) (fix func()) {
	t.Helper()
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatalf("make %s fail at write: %v", path, err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

func countFileLines(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var n int64
	for sc.Scan() {
		n++
	}
	return n
}

// TestFailingFileOutput runs PostgreSQL plus a file output whose disk is
// full (it fails at Write, not at Init), both ways:
//
//   - required = true: nothing is acknowledged to the broker while the file
//     output fails (PostgreSQL may store meanwhile, harmlessly); once the
//     disk is fixed, every sample reaches both outputs and is acknowledged.
//   - required = false: the pipeline keeps flowing into PostgreSQL and
//     acknowledging; the file output drops what does not fit its bounded
//     queue and counts it (collector_dropped_total); SIGTERM still exits 0
//     within shutdown_timeout.
func TestFailingFileOutput(t *testing.T) {
	dir := t.TempDir()
	reqPath := dir + "/required.jsonl"
	fixRequired := brokenFile(t, reqPath)
	r := newRun(t, e2e.CollectorConfig{LogLevel: "info", ShutdownTimeout: 15 * time.Second,
		ExtraTOML: e2e.FileOutputTOML(reqPath, true)})
	defer r.report()

	// required = true: acknowledgements are held.
	began := time.Now()
	const msgs = 100
	p := r.stream(msgs, 0)
	r.waitStreamer(p, msgs*RowsPerMessage)
	r.e.Eventually(time.Minute, "the file output to fail and retry", func() (bool, string) {
		n := r.metric(r.c, "collector_errors_total", "plugin", "outputs.file", "type", "retryable")
		return n >= 3, fmt.Sprintf("%v retryable errors", n)
	})
	time.Sleep(2 * time.Second)
	st := r.brokerStats()
	if st.Acked != 0 {
		r.e.Fatalf("%v messages acknowledged while a required output failed every write", st.Acked)
	}
	if st.InFlight == 0 {
		r.e.Fatalf("nothing in flight at the broker while the required output fails: %+v", st)
	}
	pgMeanwhile, _ := r.stored()
	fixRequired()
	stored, dups := r.verify(2 * time.Minute)
	lines := countFileLines(t, reqPath)
	if lines < msgs*RowsPerMessage {
		t.Errorf("the file output holds %d lines after recovery, want at least %d", lines, msgs*RowsPerMessage)
	}
	r.record(result{phase: "file output (required) on a full disk, then fixed", sent: msgs * RowsPerMessage, stored: stored, dups: dups,
		took: time.Since(began), note: fmt.Sprintf("0 acked while failing (%v in flight, PostgreSQL had %d); file %d lines after the fix",
			st.InFlight, pgMeanwhile, lines)})
	if code, took, err := r.c.Terminate(); err != nil || code != 0 {
		r.e.Fatalf("SIGTERM: exit %d after %v (%v)", code, took, err)
	}

	// required = false: the broken output never holds the pipeline.
	bestPath := dir + "/best-effort.jsonl"
	brokenFile(t, bestPath)
	cfg := r.c.Config
	cfg.MetricsAddress, cfg.DeadLetterDir = "", ""
	cfg.ExtraTOML = e2e.FileOutputTOML(bestPath, false)
	r.c = r.e.StartCollector(cfg)
	began = time.Now()
	// At a steady rate, so the input emits many small batches (a burst is
	// merged into a few 10,000-sample batches that fit the output's queue).
	const more = 300
	p = r.stream(more, 150)
	r.waitStreamer(p, more*RowsPerMessage)
	stored, dups = r.verify(2 * time.Minute)
	dropped := r.metric(r.c, "collector_dropped_total", "plugin", "outputs.file")
	retries := r.metric(r.c, "collector_errors_total", "plugin", "outputs.file", "type", "retryable")
	if dropped == 0 {
		t.Errorf("collector_dropped_total{plugin=outputs.file} = 0: the failing best-effort output dropped nothing (%v retryable errors)", retries)
	}
	flowed := time.Since(began)
	code, took, err := r.c.Terminate()
	if err != nil || code != 0 {
		r.e.Fatalf("SIGTERM with a failing best-effort output: exit %d after %v (%v), want 0", code, took, err)
	}
	if took > cfg.ShutdownTimeout {
		t.Errorf("SIGTERM took %v, more than shutdown_timeout %v", took, cfg.ShutdownTimeout)
	}
	r.record(result{phase: "file output (best effort) on a full disk", sent: more * RowsPerMessage, stored: stored, dups: dups,
		took: flowed, note: fmt.Sprintf("all acked; %v batches dropped for the file output, %v retries; SIGTERM exit 0 in %.1fs",
			dropped, retries, took.Seconds())})
}
