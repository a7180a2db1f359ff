//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
)

// suiteAckTimeout is the input's ack_timeout in TestFaults: much shorter
// than every outage and stall below, so a pipeline that did not renew its
// leases would see its in-flight messages redelivered several times over.
const suiteAckTimeout = 4 * time.Second

// TestFaults streams real-shaped DCGM samples through the real pipeline
// (mq-service with --data-dir -> inputs.mq_service -> gpu_normalize ->
// dedup -> outputs.postgresql, every plugin its own process) and injects
// one fault per phase, mid-stream. After each phase: stored = good samples
// sent, zero duplicates, the broker holds nothing unacknowledged and has
// dead-lettered nothing.
func TestFaults(t *testing.T) {
	began := time.Now()
	r := newRun(t, e2e.CollectorConfig{AckTimeout: suiteAckTimeout})
	defer r.report()
	pg := r.e.PG
	ctx := r.e.Ctx
	const msgs, rate = 150, 50 // 15,000 samples per phase over ~3 s

	r.phase("baseline (no fault)", msgs, 0, nil)

	r.phase("collector SIGKILL twice, restarted", 2*msgs, rate, func() {
		for i := 0; i < 2; i++ {
			pid := r.c.PID()
			r.c.Kill()
			if r.c.ExitState() != "signal: killed" {
				r.e.Fatalf("collector ended with %s, want a SIGKILL", r.c.ExitState())
			}
			r.e.Eventually(10*time.Second, "the dead collector's plugins to exit", func() (bool, string) {
				kids := procfs.Children(pid)
				return len(kids) == 0, fmt.Sprint(kids)
			})
			n, _ := r.stored()
			r.c.Start()
			r.waitStored(time.Minute, n+1000, "data to flow after the restart")
		}
	})

	for _, alias := range []string{"mq_service", "gpu_normalize", "dedup", "postgresql"} {
		r.phase("SIGKILL plugin "+alias, msgs, rate, func() {
			old := r.c.KillPlugin(alias)
			pid := r.c.WaitPluginRestart(30*time.Second, alias, old)
			if !r.c.Running() {
				r.e.Fatalf("the collector died with its plugin %s", alias)
			}
			r.t.Logf("   plugin %s: pid %d killed, restarted as %d", alias, old, pid)
		})
	}
	if n := r.metric(r.c, "collector_plugin_restarts_total"); n < 4 {
		r.e.Fatalf("collector_plugin_restarts_total = %v, want >= 4", n)
	}

	var outageRedeliveries float64
	r.phase("PostgreSQL stopped for 12s", msgs, rate, func() {
		before := r.brokerStats()
		if err := pg.Shutdown("fast"); err != nil {
			r.e.Fatalf("%v", err)
		}
		time.Sleep(12 * time.Second)
		outageRedeliveries = counterDelta(before.Redelivered, r.brokerStats().Redelivered)
		if err := pg.StartAgain(ctx); err != nil {
			r.e.Fatalf("%v", err)
		}
	})
	r.results[len(r.results)-1].note = fmt.Sprintf("redeliveries while down: %.0f", outageRedeliveries)
	if outageRedeliveries != 0 {
		r.e.Fatalf("%v redeliveries while PostgreSQL was down for 3x ack_timeout: leases were not renewed", outageRedeliveries)
	}

	r.phase("PostgreSQL restarted with -m immediate", msgs, rate, func() {
		if err := pg.Restart(ctx, "immediate"); err != nil {
			r.e.Fatalf("%v", err)
		}
	})

	var stallRedeliveries float64
	r.phase("PostgreSQL stalled 12s (3x ack_timeout)", msgs, rate, func() {
		release := r.holdLock()
		before := r.brokerStats()
		time.Sleep(12 * time.Second)
		st := r.brokerStats()
		stallRedeliveries = counterDelta(before.Redelivered, st.Redelivered)
		if st.InFlight == 0 {
			r.e.Fatalf("nothing in flight at the broker during the stall: the fault missed the stream (%+v)", st)
		}
		release()
	})
	r.results[len(r.results)-1].note = fmt.Sprintf("redeliveries during the stall: %.0f", stallRedeliveries)
	if stallRedeliveries != 0 {
		r.e.Fatalf("%v redeliveries while PostgreSQL stalled for 3x ack_timeout: leases were not renewed", stallRedeliveries)
	}

	// The broker restarts while the collector holds unacknowledged messages
	// (PostgreSQL stalls meanwhile, so they stay in flight): they must be
	// stored once and acknowledged after the restart.
	for _, crash := range []bool{false, true} {
		name := "mq-service SIGTERM restart (--data-dir)"
		if crash {
			name = "mq-service SIGKILL restart (--data-dir)"
		}
		var release func()
		r.phaseWith(name, msgs, 0, func() { release = r.holdLock() }, func() {
			r.e.Eventually(time.Minute, "messages in flight at the collector", func() (bool, string) {
				st := r.brokerStats()
				return st.InFlight >= msgs, fmt.Sprintf("%+v", st)
			})
			n, _ := r.stored()
			if n > r.sent-msgs*RowsPerMessage {
				r.e.Fatalf("samples of this phase were stored while PostgreSQL was stalled")
			}
			if crash {
				r.mq.KillRestart()
			} else {
				r.mq.Restart()
			}
			time.Sleep(2 * time.Second) // the collector reconnects, still stalled
			release()
		})
	}

	r.sigtermPhase(msgs, rate)

	stored := r.e.Count(countSQL)
	if stored < 100000 {
		t.Errorf("only %d samples streamed; the issue asks for at least 100,000", stored)
	}
	t.Logf("TestFaults: %d samples sent, %d stored, 0 duplicates, %d phases, %.0fs", r.sent, stored, len(r.results), time.Since(began).Seconds())
}

// sigtermPhase sends SIGTERM mid-stream: the collector must exit 0 within
// shutdown_timeout, and every message the broker saw acknowledged must be
// stored in full (checked while the collector is down, against the set of
// messages the broker still holds unacknowledged). Then it restarts the
// collector, which takes the rest.
func (r *run) sigtermPhase(msgs int64, rate float64) {
	r.t.Helper()
	name := "collector SIGTERM mid-stream"
	r.t.Logf("== phase %q: %d messages (%d samples)", name, msgs, msgs*RowsPerMessage)
	began := time.Now()
	before := r.brokerStats()
	base := r.sent
	first := r.next
	p := r.stream(msgs, rate)
	r.waitStored(time.Minute, base+1000, "the phase's data to flow")
	code, took, err := r.c.Terminate()
	if err != nil || code != 0 {
		r.e.Fatalf("SIGTERM: exit %d after %v (%v), want 0", code, took, err)
	}
	if limit := r.c.Config.ShutdownTimeout; took > limit {
		r.e.Fatalf("SIGTERM: exit took %v, more than shutdown_timeout %v", took, limit)
	}
	r.waitStreamer(p, msgs*RowsPerMessage)
	unacked := r.probeUnacked(2 * time.Second)
	stored := r.storedPerMessage(first, msgs)
	acked := 0
	for m := first; m < first+msgs; m++ {
		if unacked[m] {
			continue
		}
		acked++
		if stored[m] != RowsPerMessage {
			r.e.Fatalf("message %d was acknowledged but only %d of its %d samples are stored", m, stored[m], RowsPerMessage)
		}
	}
	if acked == 0 || len(unacked) == 0 {
		r.e.Fatalf("SIGTERM did not land mid-stream: %d messages acknowledged, %d not", acked, len(unacked))
	}
	note := fmt.Sprintf("exit 0 in %.1fs; at exit %d messages acked (all stored), %d unacked", took.Seconds(), acked, len(unacked))
	r.c.Start()
	storedTotal, dups := r.verify(3 * time.Minute)
	after := r.brokerStats()
	r.record(result{phase: name, sent: msgs * RowsPerMessage, stored: storedTotal, dups: dups,
		redelivered: counterDelta(before.Redelivered, after.Redelivered), took: time.Since(began), note: note})
}

// TestRedeliveryWhileStalled: the broker restarts while PostgreSQL stalls
// and the collector holds unacknowledged messages. The broker redelivers
// them to the collector, which still holds the first copies. Nothing of
// them is stored yet, so nothing may be acknowledged; then the collector
// crashes before PostgreSQL recovers, and nothing may be lost.
func TestRedeliveryWhileStalled(t *testing.T) {
	r := newRun(t, e2e.CollectorConfig{AckTimeout: suiteAckTimeout})
	defer r.report()
	r.phase("baseline", 50, 0, nil)
	began := time.Now()
	release := r.holdLock()
	const msgs = 150
	base := r.sent
	p := r.stream(msgs, 0)
	r.waitStreamer(p, msgs*RowsPerMessage)
	r.e.Eventually(time.Minute, "messages in flight at the collector", func() (bool, string) {
		st := r.brokerStats()
		return st.InFlight >= msgs, fmt.Sprintf("%+v", st)
	})
	r.mq.Restart()
	time.Sleep(5 * time.Second) // reconnect, redelivery, whatever the collector does with the copies
	st := r.brokerStats()
	if n, _ := r.stored(); n != base {
		t.Fatalf("%d samples of the phase stored while PostgreSQL stalled", n-base)
	}
	acked := st.Acked
	r.c.Kill()
	release()
	r.c.Start()
	stored, dups := r.verify(3 * time.Minute)
	r.record(result{phase: "mq-service restart during a stall, then collector SIGKILL", sent: msgs * RowsPerMessage,
		stored: stored, dups: dups, took: time.Since(began),
		note: fmt.Sprintf("%v messages acknowledged while none was stored", acked)})
	if acked != 0 {
		t.Errorf("the broker saw %v messages acknowledged (after its restart) while none of their samples was stored", acked)
	}
}
