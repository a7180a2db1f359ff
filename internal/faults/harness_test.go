//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

const (
	topic    = "gpu-telemetry"
	consumer = "telemetry-collector"
	// countSQL and dupSQL are the acceptance queries.
	countSQL = "SELECT count(*) FROM gpu_metrics"
	dupSQL   = "SELECT count(*) - count(DISTINCT (gpu_uuid, metric, time)) FROM gpu_metrics"
)

// run is one fault scenario: a database, a broker with a data directory, a
// collector, and the stream of generated messages sent so far.
type run struct {
	t    *testing.T
	e    *e2e.Env
	mq   *e2e.MQ
	c    *e2e.Collector
	plan *Plan
	next int64 // next message index
	sent int64 // good samples sent so far (what must be stored)

	results []result
}

// result is one line of the figures the suite reports.
type result struct {
	phase       string
	sent        int64 // samples sent in the phase
	stored      int64 // samples stored in total after it
	dups        int64
	redelivered float64 // broker redeliveries during the phase
	took        time.Duration
	note        string
}

// newRun prepares the environment. cfg gets MQAddress filled in; the
// database is set to synchronous_commit=on first (the shared throwaway
// cluster runs with it off for speed, and an immediate shutdown would then
// lose commits the output was told were durable: a test artefact, not a
// collector bug).
func newRun(t *testing.T, cfg e2e.CollectorConfig) *run {
	t.Helper()
	src, err := LoadSource(sourceCSV)
	if err != nil {
		t.Fatal(err)
	}
	e := e2e.New(t)
	e.Exec(fmt.Sprintf("ALTER DATABASE %s SET synchronous_commit = on", pgx.Identifier{e.DBName}.Sanitize()))
	// Reconnect the harness's pool so its sessions see the setting too.
	e.DB.Reset()
	r := &run{t: t, e: e, plan: &Plan{Src: src, Start: time.Now().UTC().Truncate(time.Second).Add(-time.Hour), Step: 10 * time.Millisecond}}
	r.mq = e.StartMQ(e2e.MQOptions{})
	cfg.MQAddress = r.mq.Addr
	r.c = e.StartCollector(cfg)
	return r
}

// chunk writes the next count messages to a file and counts them as sent.
func (r *run) chunk(count int64) (path string, first int64) {
	r.t.Helper()
	first = r.next
	path = r.e.Path(fmt.Sprintf("messages-%06d-%06d.csv", first, first+count-1))
	if err := r.plan.WriteFile(path, first, count); err != nil {
		r.t.Fatal(err)
	}
	r.next += count
	r.sent += count * RowsPerMessage
	return path, first
}

// stream starts telemetry-streamer on the next count messages at rate
// messages/s (0: as fast as it can).
func (r *run) stream(count int64, rate float64) *e2e.Proc {
	r.t.Helper()
	path, _ := r.chunk(count)
	return r.e.StartStreamer(e2e.StreamOptions{Address: r.mq.Addr, Topic: topic, Format: "dcgm-csv",
		Batch: RowsPerMessage, Rate: rate}, path)
}

// waitStreamer waits for the streamer to publish everything and checks its
// summary.
func (r *run) waitStreamer(p *e2e.Proc, records int64) {
	r.t.Helper()
	code, err := p.Wait(3 * time.Minute)
	if err != nil || code != 0 {
		r.e.Fatalf("%s: exit %d, %v\n%s", p.Name, code, err, p.LogTail(20))
	}
	for _, line := range strings.Split(p.Log(), "\n") {
		if strings.HasPrefix(line, "published ") {
			if _, n, err := e2e.ParseSummary(line); err != nil || n != records {
				r.e.Fatalf("%s: %q: want %d records (%v)", p.Name, line, records, err)
			}
			return
		}
	}
	r.e.Fatalf("%s printed no summary:\n%s", p.Name, p.LogTail(20))
}

// stored is the number of samples in gpu_metrics (-1 and the error while
// PostgreSQL is unreachable).
func (r *run) stored() (int64, error) { return r.e.CountErr(countSQL) }

// waitStored waits until at least n samples are stored.
func (r *run) waitStored(timeout time.Duration, n int64, what string) {
	r.t.Helper()
	r.e.Eventually(timeout, what, func() (bool, string) {
		got, err := r.stored()
		if err != nil {
			return false, err.Error()
		}
		return got >= n, fmt.Sprintf("%d of %d stored", got, n)
	})
}

// verify waits until the stored count equals the good samples sent (failing
// at once if it overshoots), checks that no (gpu_uuid, metric, time) is
// stored twice, and that the broker holds nothing unacknowledged.
func (r *run) verify(timeout time.Duration) (stored, dups int64) {
	r.t.Helper()
	r.e.Eventually(timeout, fmt.Sprintf("%d samples stored", r.sent), func() (bool, string) {
		n, err := r.stored()
		if err != nil {
			return false, err.Error()
		}
		if n > r.sent {
			r.e.Fatalf("%d samples stored, more than the %d sent", n, r.sent)
		}
		stored = n
		return n == r.sent, fmt.Sprintf("%d of %d stored", n, r.sent)
	})
	dups = r.e.Count(dupSQL)
	if dups != 0 {
		r.e.Fatalf("%d duplicate (gpu_uuid, metric, time) rows in gpu_metrics", dups)
	}
	st := r.mq.WaitDrained(timeout, topic)
	if st.DeadLettered != 0 {
		r.e.Fatalf("the broker dead-lettered %v messages of %s: %+v", st.DeadLettered, topic, st)
	}
	return stored, dups
}

// brokerStats reads the broker's figures for the topic, failing the test
// when the broker does not answer.
func (r *run) brokerStats() e2e.MQTopicStats {
	r.t.Helper()
	st, err := r.mq.TopicStats(r.e.Ctx, topic)
	if err != nil {
		r.e.Fatalf("%v", err)
	}
	return st
}

// counterDelta is after-before for a counter that restarts from zero when
// its process restarts.
func counterDelta(before, after float64) float64 {
	if after < before {
		return after
	}
	return after - before
}

// phase streams count messages at rate (so the fault lands mid-stream),
// waits until this phase's data flows end to end, runs fault, waits for the
// streamer, then verifies. fault may be nil (baseline). It records and logs
// the figures.
func (r *run) phase(name string, count int64, rate float64, fault func()) {
	r.t.Helper()
	r.phaseWith(name, count, rate, nil, fault)
}

// phaseWith is phase with a setup step run before the stream starts; with
// a setup, fault runs as soon as the stream started (setup decides what
// "mid-stream" means, e.g. by stalling PostgreSQL first).
func (r *run) phaseWith(name string, count int64, rate float64, setup, fault func()) {
	r.t.Helper()
	r.t.Logf("== phase %q: %d messages (%d samples)", name, count, count*RowsPerMessage)
	began := time.Now()
	before := r.brokerStats()
	base := r.sent
	if setup != nil {
		setup()
	}
	p := r.stream(count, rate)
	if fault != nil {
		if setup == nil {
			// Mid-stream: some of this phase's samples are stored already.
			r.waitStored(time.Minute, base+min(count*RowsPerMessage/10, 1000), "the phase's data to flow")
		}
		fault()
	}
	r.waitStreamer(p, count*RowsPerMessage)
	stored, dups := r.verify(3 * time.Minute)
	after := r.brokerStats()
	r.record(result{phase: name, sent: count * RowsPerMessage, stored: stored, dups: dups,
		redelivered: counterDelta(before.Redelivered, after.Redelivered), took: time.Since(began)})
}

func (r *run) record(res result) {
	r.results = append(r.results, res)
	r.t.Logf("   %-44s sent %6d  stored(total) %7d  duplicates %d  redeliveries %5.0f  %6.1fs  %s",
		res.phase, res.sent, res.stored, res.dups, res.redelivered, res.took.Seconds(), res.note)
}

// report logs every phase's figures as a table.
func (r *run) report() {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| phase | samples sent | stored (total) | duplicates | broker redeliveries | seconds | note |\n|---|---|---|---|---|---|---|\n")
	for _, x := range r.results {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.0f | %.1f | %s |\n", x.phase, x.sent, x.stored, x.dups, x.redelivered, x.took.Seconds(), x.note)
	}
	r.t.Log(b.String())
}

// memSample is the memory of the collector's process tree at one instant:
// the sum of the RSS of the collector and every plugin process (what the
// issue asks to read), the same sum of anonymous RSS (heap, stacks: what
// the process allocated itself), and the sum of PSS (proportional set
// size: pages shared between processes, such as the text of the one plugin
// binary that four plugin processes run, counted once in all).
type memSample struct {
	rss, anon, pss int64
	parts          string // per-process breakdown of RSS
}

// sampleMem samples the collector's process tree every interval until stop
// is closed; the returned func reports the peak of each measure (the
// breakdown is that of the RSS peak).
func sampleMem(c *e2e.Collector, interval time.Duration, stop <-chan struct{}) func() memSample {
	var mu sync.Mutex
	var peak memSample
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if m := treeMem(c); m.rss > 0 {
				mu.Lock()
				if m.rss > peak.rss {
					peak.rss, peak.parts = m.rss, m.parts
				}
				peak.anon = max(peak.anon, m.anon)
				peak.pss = max(peak.pss, m.pss)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() memSample {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// treeMem measures the collector and each plugin process.
func treeMem(c *e2e.Collector) memSample {
	if !c.Running() {
		return memSample{}
	}
	names := map[int]string{c.PID(): "collector"}
	for alias, pid := range c.PluginPIDs() {
		names[pid] = alias
	}
	var m memSample
	var parts []string
	for _, pid := range append([]int{c.PID()}, c.Children()...) {
		rss, err := procfs.RSS(pid)
		if err != nil {
			continue
		}
		m.rss += rss
		m.anon += procField(pid, "status", "RssAnon:")
		m.pss += procField(pid, "smaps_rollup", "Pss:")
		name := names[pid]
		if name == "" {
			name = fmt.Sprint("pid ", pid)
		}
		parts = append(parts, fmt.Sprintf("%s %s", name, mib(rss)))
	}
	m.parts = strings.Join(parts, ", ")
	return m
}

// procField reads a "Name:   123 kB" line of /proc/PID/<file> in bytes (0
// when missing).
func procField(pid int, file, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// probeUnacked subscribes to the topic as a member of the collector's
// consumer group while the collector is stopped, takes every message the
// broker still has unacknowledged for the group, and returns their indexes
// (from their sample time). It never acknowledges: closing the stream hands
// them back to the group, so the collector gets them when it restarts.
func (r *run) probeUnacked(idle time.Duration) map[int64]bool {
	r.t.Helper()
	conn, err := client.Dial(r.mq.Addr)
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(r.e.Ctx)
	defer cancel()
	s, err := mqpb.NewSubscriberServiceClient(conn).Subscribe(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := s.Send(&mqpb.SubscribeRequest{Topic: topic, ConsumerId: consumer, BatchSize: 500,
		MaxInFlight: 1 << 30, AckTimeoutSeconds: 300}); err != nil {
		r.t.Fatal(err)
	}
	type recv struct {
		resp *mqpb.SubscribeResponse
		err  error
	}
	ch := make(chan recv, 1)
	go func() {
		for {
			resp, err := s.Recv()
			select {
			case ch <- recv{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	out := map[int64]bool{}
	for {
		select {
		case x := <-ch:
			if x.err != nil {
				if errors.Is(x.err, io.EOF) {
					return out
				}
				r.t.Fatalf("probe subscription: %v", x.err)
			}
			for _, m := range x.resp.GetMessages() {
				idx, ok := r.messageIndex(m.GetPayload())
				if !ok {
					r.t.Fatalf("probe: message %s is not one of ours", m.GetId())
				}
				out[idx] = true
			}
		case <-time.After(idle):
			return out
		}
	}
}

// messageIndex finds a generated message's index from the timestamp of its
// first row.
func (r *run) messageIndex(payload []byte) (int64, bool) {
	s := string(payload)
	nl := strings.IndexByte(s, '\n')
	if nl < 0 || len(s) < nl+3 || s[nl+1] != '"' {
		return 0, false
	}
	end := strings.IndexByte(s[nl+2:], '"')
	if end < 0 {
		return 0, false
	}
	ts, err := time.Parse(time.RFC3339Nano, s[nl+2:nl+2+end])
	if err != nil {
		return 0, false
	}
	return r.plan.Message(ts)
}

// storedPerMessage returns how many samples are stored for each message of
// [first, first+count).
func (r *run) storedPerMessage(first, count int64) map[int64]int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.e.Ctx, 30*time.Second)
	defer cancel()
	rows, err := r.e.DB.Query(ctx, "SELECT time, count(*) FROM gpu_metrics WHERE time BETWEEN $1 AND $2 GROUP BY time",
		r.plan.Time(first), r.plan.Time(first+count-1))
	if err != nil {
		r.e.Fatalf("%v", err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var ts time.Time
		var n int64
		if err := rows.Scan(&ts, &n); err != nil {
			r.e.Fatalf("%v", err)
		}
		m, ok := r.plan.Message(ts)
		if !ok {
			r.e.Fatalf("a sample at %v belongs to no message", ts)
		}
		out[m] = n
	}
	if err := rows.Err(); err != nil {
		r.e.Fatalf("%v", err)
	}
	return out
}

// holdLock takes an EXCLUSIVE lock on gpu_samples (writes wait, reads go
// on: PostgreSQL stalls without failing) until the returned func is called.
func (r *run) holdLock() (release func()) {
	r.t.Helper()
	ctx := r.e.Ctx
	conn, err := pgx.Connect(ctx, r.e.DatabaseURL)
	if err != nil {
		r.e.Fatalf("%v", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		r.e.Fatalf("%v", err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE gpu_samples IN EXCLUSIVE MODE"); err != nil {
		r.e.Fatalf("%v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Commit(context.Background())
			_ = conn.Close(context.Background())
		})
	}
	r.t.Cleanup(release)
	return release
}

// metric scrapes the collector and sums a metric over the label pairs.
func (r *run) metric(c *e2e.Collector, name string, kv ...string) float64 {
	r.t.Helper()
	return c.Metrics().Sum(name, kv...)
}
