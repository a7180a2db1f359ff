package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
)

// TestGracefulShutdown: after the data landed, SIGTERM makes the collector
// exit 0 within shutdown_timeout, taking its plugin processes with it and
// leaving nothing unacknowledged at the broker.
func TestGracefulShutdown(t *testing.T) {
	const timeout = 10 * time.Second
	e, mq, c := startPipeline(t, CollectorConfig{ShutdownTimeout: timeout})
	pids := c.PluginPIDs()
	for _, alias := range []string{"mq_service", "gpu_normalize", "dedup", "postgresql"} {
		if pids[alias] == 0 {
			t.Fatalf("no plugin process %q found: %v (children %v)", alias, pids, c.Children())
		}
	}
	e.Stream(StreamOptions{Address: mq.Addr, Format: "nvidia-smi-csv", Batch: 10}, smiFile)
	e.WaitCount(30*time.Second, smiRows*smiSamplesPerRow, `SELECT count(*) FROM gpu_metrics`)

	code, took, err := c.Terminate()
	if err != nil || code != 0 {
		e.Fatalf("SIGTERM: exit %d (%s) after %v, %v; want 0 within %v", code, c.ExitState(), took, err, timeout)
	}
	if took > timeout {
		t.Errorf("exit took %v, more than shutdown_timeout %v", took, timeout)
	}
	if !strings.Contains(c.Log(), "stopped cleanly") {
		t.Errorf("the log does not say it stopped cleanly:\n%s", c.LogTail(15))
	}
	for alias, pid := range pids {
		if procfs.Alive(pid) {
			t.Errorf("plugin %s (pid %d) outlived the collector", alias, pid)
		}
	}
	st := mq.WaitDrained(10*time.Second, "gpu-telemetry")
	if st.Published != 4 || st.Acked != 4 {
		t.Errorf("broker: %+v; want 4 published and acked", st)
	}
	t.Logf("exit 0 after %v", took)
}
