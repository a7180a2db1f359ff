package main

// These tests run the real telemetry-collector binary with real plugin
// processes: the test plugins of internal/testplugins (served by
// cmd/testplugins), the built-in plugin binary and the third-party example
// processor of examples/cluster_label, loaded through `command = ...`.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

var bins struct {
	dir, collector, testplugins, clusterLabel string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "collector-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.collector = filepath.Join(dir, "telemetry-collector")
	bins.testplugins = filepath.Join(dir, "testplugins")
	bins.clusterLabel = filepath.Join(dir, "plugins", "cluster-label")
	builds := [][]string{
		{"build", "-o", bins.collector, "."},
		{"build", "-o", filepath.Join(dir, "plugins", "telemetry-plugins"), "../telemetry-plugins"},
		{"build", "-o", bins.testplugins, "../testplugins"},
		{"build", "-C", "../../examples/cluster_label", "-o", bins.clusterLabel, "."},
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n", strings.Join(args, " "), err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runCollector runs the binary to completion and returns its exit code and
// combined output.
func runCollector(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bins.collector, args...)
	cmd.Env = append(os.Environ(), "TELEMETRY_COLLECTOR_PLUGIN_DIR="+filepath.Join(bins.dir, "plugins"))
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, fmt.Sprintf(`
[agent]
  log_level = "warn"
[[inputs.seq]]
  command = %q
  points = 10
[[processors.cluster_label]]
  command = %q
  clusters = { "h1" = "c1" }
[[outputs.postgresql]]
  connection = "postgres://writer:s3cret@127.0.0.1:1/telemetry"
[[outputs.file]]
  path = "stdout"
`, bins.testplugins, bins.clusterLabel))
	badAgent := filepath.Join(dir, "bad-agent.toml")
	writeFile(t, badAgent, "[agent]\n  log_levle = \"info\"\n[[inputs.seq]]\n  points = 1\n[[outputs.file]]\n")
	badPlugin := filepath.Join(dir, "bad-plugin.toml")
	writeFile(t, badPlugin, fmt.Sprintf("[[inputs.seq]]\n  command = %q\n  points = 1\n\n[[outputs.file]]\n  path = \"stdout\"\n  fsycn = true\n", bins.testplugins))
	dropins := filepath.Join(dir, "conf.d")
	os.Mkdir(dropins, 0o755)
	writeFile(t, filepath.Join(dropins, "10-extra.toml"), "[agent]\n  log_level = \"error\"\n[[outputs.file]]\n  alias = \"copy\"\n  path = \"stderr\"\n")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		notWant  []string
	}{
		{"version", []string{"--version"}, 0, []string{"telemetry-collector "}, nil},
		{"no config", nil, 2, []string{"--config is required"}, nil},
		{"unknown flag", []string{"--nope"}, 2, []string{"flag provided but not defined"}, nil},
		{"missing file", []string{"--config", filepath.Join(dir, "none.toml")}, 3, []string{"none.toml"}, nil},
		{"check prints the pipeline, passwords masked", []string{"check", "--config", good}, 0,
			[]string{"inputs.seq -> processors.cluster_label -> {outputs.postgresql, outputs.file}", "configuration OK", "writer:xxxxx@"},
			[]string{"s3cret"}},
		{"check with drop-ins", []string{"check", "--config", good, "--config-directory", dropins}, 0,
			[]string{"outputs.file[copy]", "10-extra.toml"}, nil},
		{"misspelt agent key", []string{"check", "--config", badAgent}, 3,
			[]string{badAgent + ":2", "log_levle", `did you mean "log_level"`}, nil},
		{"misspelt plugin key in check", []string{"check", "--config", badPlugin}, 3,
			[]string{badPlugin + ":7", "outputs.file.fsycn", `did you mean "fsync"`}, nil},
		{"misspelt plugin key in a run", []string{"--config", badPlugin}, 3,
			[]string{badPlugin + ":7", "fsycn"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runCollector(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}
		})
	}
}

func countLines(path, suffix string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), suffix) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, logPath string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("timed out waiting for %s; collector log:\n%s", what, tail(string(logs), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func alive(pid int) bool {
	// A zombie still answers signal 0; look at its state instead.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func metric(t *testing.T, addr, name, labelSubstr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	total := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name) && strings.Contains(line, labelSubstr) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// startCollector starts the collector binary with the configuration file
// cfg, its output going to collector.log next to it. exited receives the
// result of Wait; the process is killed at the test's end.
func startCollector(t *testing.T, cfg string) (cmd *exec.Cmd, exited chan error, logPath string) {
	t.Helper()
	logPath = filepath.Join(filepath.Dir(cfg), "collector.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd = exec.Command(bins.collector, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	return cmd, exited, logPath
}

// TestKillProcessorMidStream runs a real pipeline of plugin processes
// (input -> processor -> third-party processor -> two outputs), SIGKILLs the
// processor plugin mid-stream, and checks that it was restarted, that every
// batch was acknowledged and that nothing was lost on the way.
func TestKillProcessorMidStream(t *testing.T) {
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
  memory_limit = "200MiB"
  plugin_memory_limit = "96MiB"
  max_procs = 1
  plugin_max_procs = 2
  gogc = 150
  plugin_gogc = 300

[[inputs.seq]]
  command = %[4]q
  batches = %[5]d
  points = %[6]d
  interval = "10ms"
  ack_file = %[7]q

[[processors.passthrough]]
  command = %[4]q
  pid_file = %[8]q
  memory_limit = "64MiB"
  max_procs = 1
  gogc = 50

[[processors.cluster_label]]
  command = %[9]q
  [processors.cluster_label.clusters]
    "h*" = "test-cluster"

[[outputs.collect]]
  command = %[4]q
  path = %[10]q
  batch_size = 500

[[outputs.file]]
  path = %[11]q
`, metricsAddr, filepath.Join(dir, "dead-letter"), filepath.Join(bins.dir, "plugins"), bins.testplugins,
		batches, points, filepath.Join(dir, "acks"), filepath.Join(dir, "passthrough.pid"), bins.clusterLabel,
		filepath.Join(dir, "collected.jsonl"), filepath.Join(dir, "file.jsonl")))

	cmd, exited, logPath := startCollector(t, cfg)
	acks := filepath.Join(dir, "acks")
	pidFile := filepath.Join(dir, "passthrough.pid")
	waitFor(t, "the first acknowledgements", 60*time.Second, func() bool { return countLines(acks, " ok") >= 20 }, logPath)
	oldPID := readPID(pidFile)
	if oldPID <= 0 {
		t.Fatal("the passthrough plugin wrote no pid file")
	}
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the processor plugin: %v", err)
	}
	if countLines(acks, " ok") >= batches {
		t.Fatal("the stream ended before the kill; make it longer")
	}

	waitFor(t, "every batch to be acknowledged", 90*time.Second, func() bool { return countLines(acks, " ok") >= batches }, logPath)
	if n := countLines(acks, " nack"); n != 0 {
		t.Errorf("%d batches were not delivered", n)
	}
	newPID := readPID(pidFile)
	if newPID == oldPID || newPID <= 0 || !alive(newPID) {
		t.Errorf("processor not restarted: pid %d before, %d after", oldPID, newPID)
	}
	// memory_limit: the collector's own (Go runtime metric), the
	// processor's (its GOMEMLIMIT, also after the restart).
	if got := metric(t, metricsAddr, "go_gc_gomemlimit_bytes", ""); got != 200<<20 {
		t.Errorf("collector go_gc_gomemlimit_bytes = %v, want %d", got, 200<<20)
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", newPID)); err != nil {
		t.Error(err)
	} else if vars := strings.Split(string(env), "\x00"); !slices.Contains(vars, "GOMEMLIMIT=67108864") || !slices.Contains(vars, "GOMAXPROCS=1") || !slices.Contains(vars, "GOGC=50") {
		t.Errorf("restarted processor's environment lacks GOMEMLIMIT=67108864 (64MiB), GOMAXPROCS=1 or GOGC=50 (its own settings)")
	}
	// max_procs and gogc: the collector's own, and plugin_max_procs and
	// plugin_gogc for a plugin without its own (the input).
	if got := metric(t, metricsAddr, "go_sched_gomaxprocs_threads", ""); got != 1 {
		t.Errorf("collector go_sched_gomaxprocs_threads = %v, want 1", got)
	}
	if got := metric(t, metricsAddr, "go_gc_gogc_percent", ""); got != 150 {
		t.Errorf("collector go_gc_gogc_percent = %v, want 150", got)
	}
	if pid := childWithAlias(t, cmd.Process.Pid, "seq"); pid > 0 {
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil {
			t.Error(err)
		} else if vars := strings.Split(string(env), "\x00"); !slices.Contains(vars, "GOMAXPROCS=2") || !slices.Contains(vars, "GOGC=300") {
			t.Errorf("input's environment lacks GOMAXPROCS=2 (plugin_max_procs) or GOGC=300 (plugin_gogc)")
		}
	}
	if alive(oldPID) {
		t.Errorf("killed processor %d still alive", oldPID)
	}
	if r := metric(t, metricsAddr, "collector_plugin_restarts_total", "passthrough"); r < 1 {
		t.Errorf("collector_plugin_restarts_total for passthrough = %v, want >= 1", r)
	}

	// SIGTERM: drain, flush, exit 0.
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("collector exited with %v after SIGTERM; log:\n%s", err, tail(string(logs), 4000))
		}
	case <-time.After(25 * time.Second):
		t.Fatal("collector did not exit within shutdown_timeout after SIGTERM")
	}
	t.Logf("shutdown took %v", time.Since(start))
	if alive(newPID) {
		t.Errorf("plugin process %d outlived the collector", newPID)
	}

	// Both outputs hold every point (at least once: a replayed batch may be
	// written twice by an output, which must be idempotent), each labelled
	// by the third-party processor.
	for _, path := range []string{filepath.Join(dir, "collected.jsonl"), filepath.Join(dir, "file.jsonl")} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			// collect writes unix-nano times, outputs.file RFC 3339 strings.
			var r struct {
				Time   json.RawMessage   `json:"time"`
				Labels map[string]string `json:"labels"`
			}
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("%s: bad line %q: %v", path, line, err)
			}
			var ts time.Time
			if err := json.Unmarshal(r.Time, &ts); err != nil {
				var ns int64
				if err := json.Unmarshal(r.Time, &ns); err != nil {
					t.Fatalf("%s: bad time in %q", path, line)
				}
				ts = time.Unix(0, ns)
			}
			if r.Labels["cluster"] != "test-cluster" {
				t.Fatalf("%s: line without the cluster label: %s", path, line)
			}
			seen[fmt.Sprintf("%s/%d", r.Labels["series"], ts.UnixNano())] = true
		}
		if len(seen) != batches*points {
			t.Errorf("%s: %d distinct points, want %d", path, len(seen), batches*points)
		}
	}
}

// childWithAlias returns the pid of the child of parent whose environment
// names the plugin alias (the launcher sets sdk.PluginAliasEnv), failing
// the test when there is none.
func childWithAlias(t *testing.T, parent int, alias string) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, ppid follows ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(parent) {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err == nil && slices.Contains(strings.Split(string(env), "\x00"), sdk.PluginAliasEnv+"="+alias) {
			return pid
		}
	}
	t.Errorf("no child of %d runs the plugin %q", parent, alias)
	return 0
}
