//go:build faults

package faults

import (
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
)

// TestProcessGroupKilled runs gpu_normalize and dedup in one process
// group (one plugin process) in the real pipeline and SIGKILLs that
// process mid-stream: both members restart together, the calls in flight
// are replayed, and every good sample is stored once (dedup's memory is
// gone with the process; the idempotent output keeps the replayed copies
// out). Each member keeps its own metrics.
func TestProcessGroupKilled(t *testing.T) {
	r := newRun(t, e2e.CollectorConfig{AckTimeout: suiteAckTimeout, ProcessGroup: "gpu"})
	defer r.report()
	const msgs, rate = 150, 50
	r.phase("baseline, gpu_normalize and dedup in one process", msgs, 0, nil)
	pids := r.c.PluginPIDs()
	if _, own := pids["dedup"]; own || pids["gpu_normalize"] == 0 {
		r.e.Fatalf("plugin processes %v: want one process for the group, named by its first member, none for dedup", pids)
	}
	r.phase("SIGKILL the process group", msgs, rate, func() {
		old := r.c.KillPlugin("gpu_normalize")
		pid := r.c.WaitPluginRestart(30*time.Second, "gpu_normalize", old)
		r.t.Logf("   process group: pid %d killed, restarted as %d", old, pid)
	})
	for _, member := range []string{"processors.gpu_normalize", "processors.dedup"} {
		if n := r.metric(r.c, "collector_plugin_restarts_total", "plugin", member); n != 1 {
			r.e.Fatalf("collector_plugin_restarts_total{plugin=%q} = %v, want 1", member, n)
		}
		if n := r.metric(r.c, "collector_samples_processed_total", "plugin", member); n < 2*msgs*RowsPerMessage {
			r.e.Fatalf("collector_samples_processed_total{plugin=%q} = %v, want >= %d", member, n, 2*msgs*RowsPerMessage)
		}
	}
}
