package e2e

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
)

func TestParseMetrics(t *testing.T) {
	const text = `# HELP c_total A counter.
# TYPE c_total counter
c_total{plugin="inputs.mq_service",type="reject"} 3
c_total{plugin="outputs.postgresql",type="retryable"} 2
c_total{plugin="outputs.postgresql",type="reject"} 1
# TYPE g gauge
g 7.5
# TYPE h histogram
h_bucket{plugin="p",le="0.1"} 1
h_bucket{plugin="p",le="+Inf"} 4
h_sum{plugin="p"} 2.5
h_count{plugin="p"} 4
# TYPE esc gauge
esc{v="a\"b,c=d"} 1
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"Sum all", m.Sum("c_total"), 6},
		{"Sum by type", m.Sum("c_total", "type", "reject"), 4},
		{"Sum by two labels", m.Sum("c_total", "plugin", "outputs.postgresql", "type", "reject"), 1},
		{"Sum no match", m.Sum("c_total", "plugin", "nope"), 0},
		{"Sum unknown name", m.Sum("nope"), 0},
		{"gauge", m["g"], 7.5},
		{"histogram count", m[SeriesKey("h_count", "plugin", "p")], 4},
		{"histogram sum", m[SeriesKey("h_sum", "plugin", "p")], 2.5},
		{"histogram +Inf bucket", m[SeriesKey("h_bucket", "plugin", "p", "le", "+Inf")], 4},
		{"escaped label", m.Sum("esc", "v", `a"b,c=d`), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if v, ok := m.Get("c_total", "type", "reject", "plugin", "inputs.mq_service"); !ok || v != 3 {
		t.Errorf("Get (labels in any order) = %v, %v; want 3, true", v, ok)
	}
	if _, ok := m.Get("c_total", "plugin", "inputs.mq_service"); ok {
		t.Error("Get matched a partial label set")
	}
	if !m.Has("h_count") || m.Has("h") {
		t.Error("Has: histograms are flattened into _count, _sum and _bucket")
	}
	if _, err := ParseMetrics(strings.NewReader("bad metric line {\n")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestTailLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"a\nb\nc\n", 3, "a\nb\nc"},
		{"", 3, ""},
		{"one", 1, "one"},
	} {
		if got := tailLines(c.in, c.n); got != c.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestProcStat(t *testing.T) {
	ppid, st := procfs.Stat(os.Getpid())
	if ppid != os.Getppid() || st == 0 {
		t.Errorf("procfs.Stat(self) = %d, %q; want parent %d", ppid, st, os.Getppid())
	}
	if r, err := procfs.RSS(os.Getpid()); err != nil || r < 1<<20 {
		t.Errorf("procfs.RSS(self) = %d, %v", r, err)
	}
	if _, err := procfs.RSS(1 << 30); err == nil {
		t.Error("RSS of a missing pid succeeded")
	}
	if len(Cmdline(os.Getpid())) == 0 {
		t.Error("Cmdline(self) is empty")
	}
}

// TestPluginsAndCleanup checks the harness's process handling on the real
// binaries: it finds each plugin process, kills one (the supervisor
// restarts it and data still lands), reads RSS, and leaves no process
// behind when the test ends.
func TestPluginsAndCleanup(t *testing.T) {
	var leftovers []int
	t.Run("run", func(t *testing.T) {
		e, mq, c := startPipeline(t, CollectorConfig{})
		pids := c.PluginPIDs()
		kids := c.Children()
		if len(pids) != 4 || len(kids) != 4 {
			t.Fatalf("plugins %v, children %v; want 4 of each", pids, kids)
		}
		for alias, pid := range pids {
			if ppid, _ := procfs.Stat(pid); ppid != c.PID() {
				t.Errorf("plugin %s pid %d has parent %d, not the collector %d", alias, pid, ppid, c.PID())
			}
		}
		old := c.KillPlugin("dedup")
		pid := c.WaitPluginRestart(20*time.Second, "dedup", old)
		if procfs.Alive(old) {
			t.Errorf("killed plugin %d still alive", old)
		}
		e.Stream(StreamOptions{Address: mq.Addr, Format: "nvidia-smi-csv"}, smiFile)
		e.WaitCount(30*time.Second, smiRows*smiSamplesPerRow, `SELECT count(*) FROM gpu_metrics`)
		if v := c.Metrics().Sum("collector_plugin_restarts_total"); v != 1 {
			t.Errorf("collector_plugin_restarts_total = %v, want 1", v)
		}
		own, err1 := c.RSS()
		tree, err2 := c.TreeRSS()
		if err1 != nil || err2 != nil || own < 1<<20 || tree < own+4<<20 {
			t.Errorf("RSS %d (%v), tree %d (%v): want the tree to add four plugin processes", own, err1, tree, err2)
		}
		leftovers = append(leftovers, c.PID(), mq.PID(), pid)
		leftovers = append(leftovers, c.Children()...)
		// A streamer still running at the end is killed too.
		s := e.StartStreamer(StreamOptions{Address: mq.Addr, Format: "dcgm-csv", Loop: true, Rate: 5}, dcgmFile)
		leftovers = append(leftovers, s.PID())
	})
	for _, pid := range leftovers {
		if procfs.Alive(pid) {
			t.Errorf("pid %d (%v) outlived its test", pid, Cmdline(pid))
		}
	}
}

// TestLostPortRace: a process whose port was taken is recognised, so the
// harness can pick another port.
func TestLostPortRace(t *testing.T) {
	e := New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := e.NewProc("mq-taken", e.Bins.MQService, "--listen", l.Addr().String())
	e.CleanupProc(p, 0)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(20 * time.Second); err != nil || code == 0 {
		t.Fatalf("mq-service on a taken port: exit %d, %v", code, err)
	}
	if !lostPortRace(p) {
		t.Errorf("not recognised as a lost port race:\n%s", p.LogTail(5))
	}
	// A Proc starts again, appending to its log.
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Log(), "=== e2e: start #2") {
		t.Errorf("restart marker missing:\n%s", p.Log())
	}
}
