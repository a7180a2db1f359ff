//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
)

// Memory model of the collector's process tree (collector + one process per
// plugin) under backpressure, documented in README.md ("Delivery
// guarantees"):
//
//	RSS <= idle + perSample x S
//	S    = min(max_in_flight x samples_per_message,
//	           input_credits x emit_max_points)
//	       + batch_size x samples_per_message   (one response read ahead)
//
// idle is the tree's RSS before the outage (five Go processes) and
// perSample the cost of one held sample across the tree, garbage included
// (Go's default GOGC=100 lets a heap reach twice its live size): parsed in
// the input plugin, in the agent's queues, a copy inside a processor or
// output call, re-sent to the output at each retry. Measured at 1.2-1.6 KB
// per sample on the development machine (see the suite's report).
const memPerSample = 1600

// memoryBound applies the model to the input's settings.
func memoryBound(idle, maxInFlight, inputBatch, samplesPerMessage, credits, emitMaxPoints int64) (samples, bytes int64) {
	samples = min(maxInFlight*samplesPerMessage, credits*emitMaxPoints) + inputBatch*samplesPerMessage
	return samples, idle + memPerSample*samples
}

// TestBackpressureMemory: with PostgreSQL down and 300,000 samples waiting
// at the broker, the collector takes at most max_in_flight messages, stops
// reading, and its process tree's RSS stays within the bound; when
// PostgreSQL returns, the backlog drains with no loss and no duplicate.
// Default settings throughout (max_in_flight 1000, batch_size 100,
// input_credits 64, queue_size 8, 10,000-sample writes, 3 workers).
func TestBackpressureMemory(t *testing.T) {
	r := newRun(t, e2e.CollectorConfig{LogLevel: "info"})
	defer r.report()
	pg := r.e.PG
	cfg := r.c.Config

	r.phase("warm-up", 20, 0, nil)
	idle := treeMem(r.c)
	t.Logf("idle: RSS %s (%s), anonymous RSS %s, PSS %s", mib(idle.rss), idle.parts, mib(idle.anon), mib(idle.pss))

	const backlog = 3000 // messages: 300,000 samples
	began := time.Now()
	if err := pg.Shutdown("fast"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	peak := sampleMem(r.c, 100*time.Millisecond, stop)
	p := r.stream(backlog, 0)
	r.waitStreamer(p, backlog*RowsPerMessage)
	published := time.Since(began)

	// Intake stopped: the broker hands out nothing more and keeps the rest.
	var st1 e2e.MQTopicStats
	r.e.Eventually(30*time.Second, "the collector to stop taking messages", func() (bool, string) {
		st := r.brokerStats()
		ok := st.Delivered == st1.Delivered && st.InFlight > 0
		st1 = st
		return ok, fmt.Sprintf("%+v", st)
	})
	time.Sleep(3 * time.Second)
	st2 := r.brokerStats()
	if st2.Delivered != st1.Delivered {
		t.Errorf("the broker delivered %v more messages while the pipeline was full", st2.Delivered-st1.Delivered)
	}
	if st2.InFlight > float64(cfg.MaxInFlight) {
		t.Errorf("%v messages in flight, more than max_in_flight %d", st2.InFlight, cfg.MaxInFlight)
	}
	waiting := float64(backlog) + 20 - st2.Delivered
	if waiting < backlog/2 {
		t.Errorf("only %v messages wait at the broker: the collector buffered the backlog instead of stopping", waiting)
	}
	// Keep PostgreSQL down for at least 15 s in all.
	if d := 15*time.Second - time.Since(began); d > 0 {
		time.Sleep(d)
	}
	close(stop)
	pk := peak()
	down := time.Since(began)
	if err := pg.StartAgain(r.e.Ctx); err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	stored, dups := r.verify(3 * time.Minute)
	drain := time.Since(recovered)

	samples, bound := memoryBound(idle.rss, int64(cfg.MaxInFlight), int64(cfg.InputBatchSize), RowsPerMessage, 64, 10000)
	note := fmt.Sprintf("PostgreSQL down %.0fs; %v messages (%v samples) waited at the broker, %v in flight; peak RSS %s (%s), anonymous %s, PSS %s; bound %s for %d in-flight samples; drained in %.1fs",
		down.Seconds(), waiting, waiting*RowsPerMessage, st2.InFlight, mib(pk.rss), pk.parts, mib(pk.anon), mib(pk.pss), mib(bound), samples, drain.Seconds())
	r.record(result{phase: "backlog of 300,000 samples, PostgreSQL down", sent: backlog * RowsPerMessage, stored: stored, dups: dups,
		redelivered: counterDelta(st1.Redelivered, r.brokerStats().Redelivered), took: time.Since(began), note: note})
	t.Logf("published the backlog in %.1fs", published.Seconds())
	if pk.rss > bound {
		t.Errorf("peak RSS %s exceeds the bound %s (%s)", mib(pk.rss), mib(bound), pk.parts)
	}
	// The aim of the issue is "well under 256 MiB" for the whole tree. The
	// sum of RSS counts the text of the one plugin binary four times; PSS
	// counts shared pages once. Report both; fail on PSS.
	if pk.pss > 256<<20 {
		t.Errorf("peak PSS %s of the collector's process tree exceeds 256 MiB with default settings", mib(pk.pss))
	}
	if pk.rss > 256<<20 {
		t.Logf("note: peak RSS sum %s is above 256 MiB (PSS %s): see the report", mib(pk.rss), mib(pk.pss))
	}
}
