package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessGroupCheck: check shows a process group, and a problem in a
// member's table is reported at that member's line.
func TestProcessGroupCheck(t *testing.T) {
	dir := t.TempDir()
	base := fmt.Sprintf(`[[inputs.seq]]
  command = %[1]q
  points = 1
[[processors.passthrough]]
  command = %[1]q
  process_group = "g"
[[processors.transform]]
  command = %[1]q
  process_group = "g"
  scale = %%s
[[outputs.file]]
  path = "stdout"
`, bins.testplugins)
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, fmt.Sprintf(base, "2.0"))
	code, out := runCollector(t, "check", "--config", good)
	if code != 0 || !strings.Contains(out, "[g: processors.passthrough -> processors.transform]") {
		t.Errorf("check good: exit %d\n%s", code, out)
	}
	for i, c := range []struct{ scale, want string }{
		{"0.0", ":10: processors.transform.scale: must not be 0"},
		{"2.0\n  sacle = 1.0", `:11: processors.transform.sacle: unknown key (did you mean "scale"?)`},
	} {
		bad := filepath.Join(dir, fmt.Sprintf("bad%d.toml", i))
		writeFile(t, bad, fmt.Sprintf(base, c.scale))
		code, out := runCollector(t, "check", "--config", bad)
		if code != 3 || !strings.Contains(out, bad+c.want) {
			t.Errorf("check %s: exit %d, want 3 and %q\n%s", bad, code, bad+c.want, out)
		}
	}
}

// TestProcessGroupKilled runs two processors in one process group between
// real plugin processes, SIGKILLs the group's process mid-stream and
// checks that it was restarted, that every batch was acknowledged and
// stored once transformed by both members, and that each member has its
// own metrics.
func TestProcessGroupKilled(t *testing.T) {
	const batches, points = 150, 40
	dir := t.TempDir()
	metricsAddr := freePort(t)
	cfg := filepath.Join(dir, "collector.toml")
	writeFile(t, cfg, fmt.Sprintf(`
[agent]
  metrics_address = %[1]q
  log_level = "info"
  flush_interval = "50ms"
  shutdown_timeout = "20s"
  dead_letter_dir = %[2]q
  plugin_dir = %[3]q

[[inputs.seq]]
  command = %[4]q
  batches = %[5]d
  points = %[6]d
  interval = "10ms"
  ack_file = %[7]q

[[processors.passthrough]]
  command = %[4]q
  pid_file = %[8]q
  max_concurrency = 4
  process_group = "pair"

[[processors.transform]]
  command = %[4]q
  tag = "t"
  scale = 2.0
  add = 1.0
  process_group = "pair"

[[outputs.collect]]
  command = %[4]q
  path = %[9]q
  batch_size = 500
`, metricsAddr, filepath.Join(dir, "dead-letter"), filepath.Join(bins.dir, "plugins"), bins.testplugins,
		batches, points, filepath.Join(dir, "acks"), filepath.Join(dir, "group.pid"), filepath.Join(dir, "collected.jsonl")))

	cmd, exited, logPath := startCollector(t, cfg)
	acks := filepath.Join(dir, "acks")
	pidFile := filepath.Join(dir, "group.pid")
	waitFor(t, "the first acknowledgements", 60*time.Second, func() bool { return countLines(acks, " ok") >= 20 }, logPath)
	oldPID := readPID(pidFile)
	if oldPID <= 0 {
		t.Fatal("the group's process wrote no pid file")
	}
	// One process for both members: the input, the group and the output.
	if pid := childWithAlias(t, cmd.Process.Pid, "passthrough"); pid != oldPID {
		t.Fatalf("the group's process is %d, its pid file says %d", pid, oldPID)
	}
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the group's process: %v", err)
	}
	if countLines(acks, " ok") >= batches {
		t.Fatal("the stream ended before the kill; make it longer")
	}
	waitFor(t, "every batch to be acknowledged", 90*time.Second, func() bool { return countLines(acks, " ok") >= batches }, logPath)
	if n := countLines(acks, " nack"); n != 0 {
		t.Errorf("%d batches were not delivered", n)
	}
	if newPID := readPID(pidFile); newPID == oldPID || newPID <= 0 || !alive(newPID) {
		t.Errorf("group not restarted: pid %d before, %d after", oldPID, newPID)
	}
	for _, p := range []string{"processors.passthrough", "processors.transform"} {
		if r := metric(t, metricsAddr, "collector_plugin_restarts_total", `plugin="`+p+`"`); r < 1 {
			t.Errorf("collector_plugin_restarts_total{%s} = %v, want >= 1", p, r)
		}
		if n := metric(t, metricsAddr, "collector_samples_processed_total", `plugin="`+p+`"`); n < batches*points {
			t.Errorf("collector_samples_processed_total{%s} = %v, want >= %d", p, n, batches*points)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("collector exited with %v after SIGTERM", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("collector did not exit within shutdown_timeout after SIGTERM")
	}
	// Every point, each transformed exactly once (value*2+1): seq's point
	// j of batch i has the value i*1000+j.
	data, err := os.ReadFile(filepath.Join(dir, "collected.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r struct {
			Time  int64   `json:"time"`
			Value float64 `json:"value"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		i, j := r.Time/1_000_000_000, r.Time%1_000_000_000
		if want := float64(i*1000+j)*2 + 1; r.Value != want {
			t.Fatalf("point %d/%d stored as %v, want %v", i, j, r.Value, want)
		}
		seen[r.Time] = true
	}
	if len(seen) != batches*points {
		t.Errorf("%d distinct points stored, want %d", len(seen), batches*points)
	}
}
