//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/internal/profiling"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/outputs/postgresql"
)

func TestMain(m *testing.M) {
	// The product acknowledges a message once its rows are durably
	// committed: measure against a PostgreSQL that makes commits durable,
	// as deployments do. BENCH_PG_FSYNC=off measures with fsync,
	// synchronous_commit and full_page_writes off instead.
	e2e.DurablePostgres(os.Getenv("BENCH_PG_FSYNC") != "off")
	os.Exit(e2e.Main(m))
}

// Settings (environment):
//
//	BENCH_SAMPLES    samples per workload (default 2,000,000)
//	BENCH_GPUS       GPUs of the generated cluster (default 1024, 8 per host)
//	BENCH_WORKLOADS  comma-separated subset of scrape,dcgm-csv,gpu-tel-json
//	BENCH_TIMEOUT    how long a workload may take (default 10m)
//	BENCH_LOG_LEVEL  the collector's log level (default info)
//	BENCH_INPUT_BATCH, BENCH_MAX_IN_FLIGHT  override the input's batch_size
//	                 and max_in_flight (messages)
//	BENCH_CREDITS    the agent's input_credits
//	BENCH_PG_FSYNC   "off": PostgreSQL with fsync, synchronous_commit and
//	                 full_page_writes off (default: on, durable commits)
//	BENCH_CPUPROFILE DIR: the collector and every plugin process write a
//	                 CPU profile there (internal/profiling)
//	BENCH_MEMORY_LIMITS "AGENT,PLUGINS,INPUT" memory_limit of the collector,
//	                 plugin_memory_limit, and the input's memory_limit, e.g.
//	                 "56MiB,48MiB,80MiB" (the default; the collector took
//	                 64MiB and the input 96MiB until process groups and
//	                 the input's changes lowered what they keep live);
//	                 "off": none
//	BENCH_MAX_PROCS  "AGENT,PLUGINS": max_procs of the collector and
//	                 plugin_max_procs (0: Go's default); default "0,1": on
//	                 this 2-vCPU machine, shared by four plugin processes,
//	                 the agent, the broker and PostgreSQL, one CPU per
//	                 plugin process measured 6-10% less CPU and 5% more
//	                 throughput than Go's default (two each); "0,0" for that
//	BENCH_PROCESS_GROUP process_group of gpu_normalize and dedup, as the
//	                 shipped configuration has it (default "gpu": one
//	                 process for both); "" gives each its own process
//	BENCH_GOGC       "AGENT,PLUGINS": gogc of the collector and plugin_gogc
//	                 (0: Go's default), e.g. "100,400"; one number: both
//	BENCH_GOMEMLIMIT GOMEMLIMIT of the collector and (inherited) its plugin
//	                 processes
//	BENCH_FLUSH_INTERVAL the agent's flush_interval (default 100ms): the
//	                 last partial write of a run waits up to this long
//	                 before its COMMIT, and that wait is part of the time
type settings struct {
	maxProcs      [2]int // max_procs, plugin_max_procs (0: Go's default)
	gogc          [2]int // gogc, plugin_gogc (0: Go's default)
	credits       int
	goEnv         []string
	profileEnv    []string  // the CPU profile setting, for mq-service too
	memLimits     [3]string // collector, plugins default, input ("": none)
	samples, gpus int
	inputBatch    int
	maxInFlight   int
	workloads     []string
	timeout       time.Duration
	logLevel      string
	processGroup  string // process_group of gpu_normalize and dedup ("": each its own process)
	flush         time.Duration
}

func readSettings(t *testing.T) settings {
	s := settings{samples: 2_000_000, gpus: 1024, timeout: 10 * time.Minute, logLevel: "info", processGroup: "gpu", flush: 100 * time.Millisecond}
	atoi := func(k string, dst *int) {
		if v := os.Getenv(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive integer", k, v)
			}
			*dst = n
		}
	}
	if v := os.Getenv("BENCH_FLUSH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("BENCH_FLUSH_INTERVAL=%q: want a positive duration, e.g. 25ms", v)
		}
		s.flush = d
	}
	atoi("BENCH_SAMPLES", &s.samples)
	atoi("BENCH_GPUS", &s.gpus)
	atoi("BENCH_INPUT_BATCH", &s.inputBatch)
	atoi("BENCH_MAX_IN_FLIGHT", &s.maxInFlight)
	atoi("BENCH_CREDITS", &s.credits)
	if v := os.Getenv("BENCH_GOGC"); v != "" {
		a, p, ok := strings.Cut(v, ",")
		if !ok {
			p = a
		}
		n1, err1 := strconv.Atoi(a)
		n2, err2 := strconv.Atoi(p)
		if err1 != nil || err2 != nil || n1 < 0 || n2 < 0 {
			t.Fatalf("BENCH_GOGC=%q: want AGENT,PLUGINS percentages (0: Go's default) or one for both, e.g. 100,400", v)
		}
		s.gogc = [2]int{n1, n2}
	}
	if v, ok := os.LookupEnv("BENCH_PROCESS_GROUP"); ok {
		s.processGroup = v
	}
	if v := os.Getenv("BENCH_GOMEMLIMIT"); v != "" {
		s.goEnv = append(s.goEnv, "GOMEMLIMIT="+v)
	}
	if v := os.Getenv("BENCH_CPUPROFILE"); v != "" {
		abs, err := filepath.Abs(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			t.Fatal(err)
		}
		s.profileEnv = []string{profiling.CPUProfileEnv + "=" + abs}
		s.goEnv = append(s.goEnv, s.profileEnv...)
	}
	s.memLimits = [3]string{"56MiB", "48MiB", "80MiB"}
	if v := os.Getenv("BENCH_MEMORY_LIMITS"); v == "off" {
		s.memLimits = [3]string{}
	} else if v != "" {
		parts := strings.Split(v, ",")
		if len(parts) != 3 {
			t.Fatalf("BENCH_MEMORY_LIMITS=%q: want AGENT,PLUGINS,INPUT sizes (e.g. 48MiB,40MiB,80MiB) or off", v)
		}
		copy(s.memLimits[:], parts)
	}
	s.maxProcs = [2]int{0, 1}
	if v := os.Getenv("BENCH_MAX_PROCS"); v != "" {
		a, p, ok := strings.Cut(v, ",")
		n1, err1 := strconv.Atoi(a)
		n2, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil || n1 < 0 || n2 < 0 {
			t.Fatalf("BENCH_MAX_PROCS=%q: want AGENT,PLUGINS counts (0: Go's default), e.g. 0,1", v)
		}
		s.maxProcs = [2]int{n1, n2}
	}
	if s.gpus%GPUsPerHost != 0 {
		t.Fatalf("BENCH_GPUS=%d: want a multiple of %d", s.gpus, GPUsPerHost)
	}
	if v := os.Getenv("BENCH_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BENCH_TIMEOUT: %v", err)
		}
		s.timeout = d
	}
	if v := os.Getenv("BENCH_LOG_LEVEL"); v != "" {
		s.logLevel = v
	}
	for _, w := range Workloads {
		s.workloads = append(s.workloads, w.Name)
	}
	if v := os.Getenv("BENCH_WORKLOADS"); v != "" {
		s.workloads = strings.Split(v, ",")
	}
	return s
}

// TestBench runs every workload end to end and prints one line per workload:
//
//	workload=NAME pipeline_samples_per_sec=N ceiling_samples_per_sec=M ratio=R peak_rss_mib=X peak_pss_mib=Y
func TestBench(t *testing.T) {
	s := readSettings(t)
	pgMode := "PostgreSQL durable (fsync, synchronous_commit on)"
	if os.Getenv("BENCH_PG_FSYNC") == "off" {
		pgMode = "PostgreSQL fsync off (BENCH_PG_FSYNC=off)"
	}
	fmt.Printf("bench: %s; %d CPUs (%s); %s; %s; load average at start: %s\n",
		runtime.Version(), runtime.NumCPU(), cpuModel(), memTotal(), pgMode, loadAvg())
	var lines []string
	for _, name := range s.workloads {
		i := slices.IndexFunc(Workloads, func(w Workload) bool { return w.Name == name })
		if i < 0 {
			t.Fatalf("unknown workload %q", name)
		}
		w := Workloads[i]
		t.Run(w.Name, func(t *testing.T) {
			line := runWorkload(t, s, w)
			lines = append(lines, line)
		})
	}
	fmt.Printf("\nbench summary (load average at end: %s)\n%s\n", loadAvg(), strings.Join(lines, "\n"))
}

// collectorConfig is the pipeline under test: inputs.mq_service ->
// processors.gpu_normalize -> processors.dedup -> outputs.postgresql, every
// plugin out of process, acknowledgements after commit, dedup on.
func collectorConfig(s settings, w Workload, mqAddr string) e2e.CollectorConfig {
	cfg := e2e.CollectorConfig{
		MQAddress:       mqAddr,
		LogLevel:        s.logLevel,
		FlushInterval:   s.flush,
		InputBatchSize:  100,
		MaxInFlight:     1000,
		DedupWindow:     10 * time.Minute,
		OutputBatchSize: 10000,
		Workers:         3,
	}
	switch w.Name {
	case "scrape":
		cfg.DataFormat = ContentPrometheus
	case "dcgm-csv":
		cfg.DataFormat = ContentDCGMCSV
	case "gpu-tel-json":
		// One sample per message: the consumer needs many messages in
		// flight to fill its batches.
		cfg.DataFormat = ContentGPUTelJSON
		cfg.InputBatchSize = 1000
		cfg.MaxInFlight = 20000
	}
	if s.inputBatch > 0 {
		cfg.InputBatchSize = s.inputBatch
	}
	if s.maxInFlight > 0 {
		cfg.MaxInFlight = s.maxInFlight
	}
	cfg.InputCredits = s.credits
	if l := s.memLimits; l[0] != "" {
		cfg.AgentExtra = fmt.Sprintf("memory_limit = %q\nplugin_memory_limit = %q", l[0], l[1])
		cfg.InputExtra = fmt.Sprintf("memory_limit = %q", l[2])
	}
	if n := s.maxProcs[0]; n > 0 {
		cfg.AgentExtra += fmt.Sprintf("\nmax_procs = %d", n)
	}
	if n := s.maxProcs[1]; n > 0 {
		cfg.AgentExtra += fmt.Sprintf("\nplugin_max_procs = %d", n)
	}
	if n := s.gogc[0]; n > 0 {
		cfg.AgentExtra += fmt.Sprintf("\ngogc = %d", n)
	}
	if n := s.gogc[1]; n > 0 {
		cfg.AgentExtra += fmt.Sprintf("\nplugin_gogc = %d", n)
	}
	cfg.ProcessGroup = s.processGroup
	cfg.Env = s.goEnv
	return cfg
}

func runWorkload(t *testing.T, s settings, w Workload) string {
	env := e2e.New(t)
	mq := env.StartMQ(e2e.MQOptions{Memory: true, LogLevel: "warn", Env: s.profileEnv})
	cfg := collectorConfig(s, w, mq.Addr)
	col := env.StartCollector(cfg)

	// The payloads are built before the clock starts, into an arena
	// outside the Go heap (Messages): the publisher is not what is
	// measured. Each message is encoded when it is sent (publish), as a
	// real publisher encodes it; what it shares with the others (topic,
	// metadata, its round's timestamp) is encoded once. Before, 2M
	// pre-built *mqpb.Message values (a ~2 GB live heap: rare, costly
	// collections, fresh pages for every allocation) cost the bench
	// process 8.2-9.7 CPU-s of a gpu-tel-json run, CPU the system under
	// test competes for; now 4.6-4.8.
	c := Cluster{GPUs: s.gpus, Fields: len(Fields)}
	c.Rounds = c.RoundsFor(s.samples)
	c.Start = time.Now().UTC().Truncate(time.Second).Add(-time.Duration(c.Rounds) * time.Second)
	msgs, err := w.Build(c, col.Config.Topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(c.Samples())
	nmsgs, payload := msgs.Len(), msgs.PayloadBytes()
	runtime.GC()

	conn, err := client.Dial(mq.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pub := mqpb.NewPublisherServiceClient(conn)
	codec := newPublishCodec()

	ctx, cancel := context.WithTimeout(env.Ctx, s.timeout)
	defer cancel()

	// Peak RSS of the collector and its plugin processes, sampled every
	// 50ms from /proc. The list of plugin processes is read again every
	// 500ms (and when one is gone), not at every sample: finding them reads
	// every process's /proc/PID/stat (~80 files here), and the sampling
	// took ~0.15 CPU-s of a ~2 s scrape run (the bench process's profile),
	// CPU the pipeline under test competes for.
	var peak rssPeak
	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	go func() {
		defer close(rssDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var kids []int
		for n := 0; ; n++ {
			if n%10 == 0 || !peak.sample(col.PID(), kids) {
				kids = procfs.Children(col.PID())
				peak.sample(col.PID(), kids)
			}
			if n%4 == 0 { // PSS walks page tables: every 200ms
				peak.samplePSS(col.PID(), kids)
			}
			select {
			case <-stopRSS:
				return
			case <-tick.C:
			}
		}
	}()

	cpu0 := snapshotCPU(col.PID(), mq.PID(), env.PG.DataDir())
	kids0 := map[int]float64{col.PID(): procCPU(col.PID(), false)}
	for _, k := range procfs.Children(col.PID()) {
		kids0[k] = procCPU(k, true)
	}
	t0 := time.Now()
	var pubEnd atomic.Int64
	pubErr := make(chan error, 1)
	go func() {
		// 4 streams, each publishing its quarter of the messages in order.
		const streams = 4
		var wg sync.WaitGroup
		errs := make([]error, streams)
		per := (msgs.Len() + streams - 1) / streams
		for i := 0; i < streams; i++ {
			lo, hi := min(i*per, msgs.Len()), min((i+1)*per, msgs.Len())
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = publish(ctx, pub, codec, msgs, lo, hi)
			}()
		}
		wg.Wait()
		pubEnd.Store(int64(time.Since(t0)))
		pubErr <- errors.Join(errs...)
	}()

	// The last committed row: the output's sample counter (incremented
	// when a Write returned, i.e. after COMMIT) reaches the total.
	var stored float64
	var t1 time.Time
	for {
		ms, err := e2e.Scrape(ctx, col.MetricsURL())
		if err == nil {
			stored = ms.Sum("collector_samples_processed_total", "plugin", "outputs.postgresql")
			if stored >= float64(want) {
				t1 = time.Now()
				break
			}
		}
		select {
		case err := <-pubErr:
			if err != nil {
				t.Fatalf("publish: %.2000s", err)
			}
			pubErr = nil
		case <-ctx.Done():
			env.Fatalf("%s: %v after %d of %d samples stored", w.Name, ctx.Err(), int64(stored), want)
		case <-time.After(pollInterval(stored, want, time.Since(t0))):
		}
		if !col.Running() {
			env.Fatalf("%s: the collector exited", w.Name)
		}
	}
	elapsed := t1.Sub(t0)
	cpu1 := snapshotCPU(col.PID(), mq.PID(), env.PG.DataDir())
	close(stopRSS)
	<-rssDone
	var perPlugin, cpuPlugin []string
	for name, pid := range col.PluginPIDs() { // names need log level debug
		perPlugin = append(perPlugin, fmt.Sprintf("%s %.0f", name, float64(peak.byPID[pid])/(1<<20)))
		cpuPlugin = append(cpuPlugin, fmt.Sprintf("%s %.2f", name, procCPU(pid, true)-kids0[pid]))
	}
	slices.Sort(perPlugin)
	slices.Sort(cpuPlugin)
	cpuPlugin = append(cpuPlugin, fmt.Sprintf("agent %.2f", procCPU(col.PID(), false)-kids0[col.PID()]))
	if pubErr != nil {
		if err := <-pubErr; err != nil {
			t.Fatalf("publish: %.2000s", err)
		}
	}
	// Every stream is done (and the broker answered every message): no
	// one reads the payloads any more. (On a failure above they stay
	// mapped: a publishing goroutine may still be reading them.)
	if err := msgs.Free(); err != nil {
		t.Fatal(err)
	}
	ms := col.Metrics()
	errorsTotal := ms.Sum("collector_errors_total")

	// Every sample must be in the view, once.
	if n := env.Count("SELECT count(*) FROM gpu_metrics"); n != want {
		env.Fatalf("%s: gpu_metrics holds %d samples, want %d", w.Name, n, want)
	}
	if errorsTotal != 0 {
		env.Fatalf("%s: collector_errors_total = %v, want 0", w.Name, errorsTotal)
	}
	if code, _, err := col.Terminate(); err != nil || code != 0 {
		env.Fatalf("%s: collector shutdown: exit %d, %v", w.Name, code, err)
	}
	if _, err := mq.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	ceil := measureCeiling(t, env, want)
	pipeRate := float64(want) / elapsed.Seconds()
	line := fmt.Sprintf("workload=%s pipeline_samples_per_sec=%.0f ceiling_samples_per_sec=%.0f ratio=%.3f peak_rss_mib=%.0f peak_pss_mib=%.0f",
		w.Name, pipeRate, ceil.best, pipeRate/ceil.best, float64(peak.total)/(1<<20), float64(peak.pss)/(1<<20))
	fmt.Println(line)
	fmt.Printf("  %s: %d samples in %d messages (%.0f MiB payload), first publish to last commit %.2fs (publishing took %.2fs)\n",
		w.Name, want, nmsgs, float64(payload)/(1<<20), elapsed.Seconds(), time.Duration(pubEnd.Load()).Seconds())
	fmt.Printf("  peak RSS MiB: collector+plugins %.0f (collector %.0f, largest plugin %.0f, %d plugin processes) %s\n",
		float64(peak.total)/(1<<20), float64(peak.collector)/(1<<20), float64(peak.plugin)/(1<<20), peak.plugins, strings.Join(perPlugin, ", "))
	limits := "none (BENCH_MEMORY_LIMITS=off)"
	if l := s.memLimits; l[0] != "" {
		limits = fmt.Sprintf("collector %s, plugins %s, mq_service input %s", l[0], l[1], l[2])
	}
	fmt.Printf("  peak PSS MiB (shared pages counted once): collector+plugins %.0f; memory_limit: %s; max_procs: collector %d, plugins %d; gogc: collector %d, plugins %d (0: Go's default); process_group of gpu_normalize and dedup: %q; flush_interval: %s\n",
		float64(peak.pss)/(1<<20), limits, s.maxProcs[0], s.maxProcs[1], s.gogc[0], s.gogc[1], s.processGroup, s.flush)
	busy := (cpu1.busy - cpu0.busy) / clockTicks
	named := (cpu1.collector - cpu0.collector) + (cpu1.mq - cpu0.mq) + (cpu1.pg - cpu0.pg) + (cpu1.bench - cpu0.bench)
	fmt.Printf("  CPU seconds during the run: collector+plugins %.2f, mq-service %.2f, PostgreSQL %.2f, bench process (publisher, sampling) %.2f, rest (kernel threads, other processes) %.2f; machine busy %.0f%% of %d CPUs\n",
		cpu1.collector-cpu0.collector, cpu1.mq-cpu0.mq, cpu1.pg-cpu0.pg, cpu1.bench-cpu0.bench, max(busy-named, 0),
		100*(cpu1.busy-cpu0.busy)/max(cpu1.all-cpu0.all, 1e-9), runtime.NumCPU())
	if len(cpuPlugin) > 1 {
		fmt.Printf("  CPU seconds per process: %s\n", strings.Join(cpuPlugin, ", "))
	}
	fmt.Printf("  ceiling (same rows, same tables, pgx CopyFrom): %s; best %s\n", ceil.detail, ceil.bestName)
	return line
}

// publishWindow is how many messages a stream of publish keeps awaiting
// their response.
const publishWindow = 256

// publish sends messages lo..hi-1 of msgs, in order, on a stream of its
// own, keeping up to publishWindow of them in flight, and waits for every
// response. Each message is encoded from msgs just before it is sent
// (codec, a publishCodec: Messages.encodeRequest); responses are decoded
// into an ack and counted, not kept. A stream error, a missing response or
// a rejected message (success=false) is an error naming it.
func publish(ctx context.Context, pub mqpb.PublisherServiceClient, codec publishCodec, msgs *Messages, lo, hi int) error {
	if lo >= hi {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pub.Publish(ctx, grpc.ForceCodecV2(codec))
	if err != nil {
		return fmt.Errorf("messages %d-%d: open publish stream: %w", lo, hi-1, err)
	}
	credits := make(chan struct{}, publishWindow)
	sendErr := make(chan error, 1)
	go func() {
		for i := lo; i < hi; i++ {
			select {
			case credits <- struct{}{}:
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			}
			if err := stream.SendMsg(&outgoing{msgs: msgs, i: i}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var a ack
	for n := 0; n < hi-lo; n++ {
		if err := stream.RecvMsg(&a); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			cancel()
			if serr := <-sendErr; serr != nil && !errors.Is(serr, io.EOF) && !errors.Is(serr, context.Canceled) {
				err = errors.Join(err, serr)
			}
			return fmt.Errorf("messages %d-%d: publish stream after %d of %d responses: %w", lo, hi-1, n, hi-lo, err)
		}
		<-credits
		if !a.success {
			cancel()
			<-sendErr
			return fmt.Errorf("messages %d-%d: message %s rejected: %s", lo, hi-1, a.id, a.err)
		}
	}
	if err := <-sendErr; err != nil {
		return fmt.Errorf("messages %d-%d: publish stream: %w", lo, hi-1, err)
	}
	return nil
}

// ceiling is the best rate at which the same final rows go straight into the
// same table.
type ceiling struct {
	best     float64
	bestName string
	detail   string
}

// measureCeiling reads the rows the pipeline stored, and writes them again
// into the emptied gpu_samples in several ways with pgx CopyFrom; the best
// rate is the ceiling.
func measureCeiling(t *testing.T, env *e2e.Env, want int64) ceiling {
	ctx := env.Ctx
	if n := env.Count("SELECT count(*) FROM gpu_samples_extra"); n != 0 {
		t.Fatalf("ceiling: %d samples in gpu_samples_extra; the workload should only produce canonical metrics", n)
	}
	cols := postgresql.Columns()
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	conns := make([]*pgx.Conn, 3)
	for i := range conns {
		c, err := pgx.Connect(ctx, env.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	rs, err := conns[0].Query(ctx, "SELECT "+strings.Join(quoted, ", ")+" FROM gpu_samples ORDER BY time, gpu_id")
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]any
	var samples int64
	for rs.Next() {
		v, err := rs.Values()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range v[3:] {
			if x != nil {
				samples++
			}
		}
		rows = append(rows, v)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if samples != want {
		t.Fatalf("ceiling: gpu_samples holds %d samples, want %d", samples, want)
	}
	perRow := float64(samples) / float64(len(rows))
	// The output writes 10,000-sample batches: the same batch size here.
	batchRows := max(1, int(10000/perRow))
	var batches [][][]any
	for i := 0; i < len(rows); i += batchRows {
		batches = append(batches, rows[i:min(i+batchRows, len(rows))])
	}

	variants := []struct {
		name string
		run  func() error
	}{
		{"one COPY of all rows, 1 connection", func() error {
			_, err := postgresql.CeilingCopy(ctx, conns[0], "public", rows)
			return err
		}},
		{"10k-sample COPYs, 1 connection", func() error {
			_, err := postgresql.CeilingWrite(ctx, conns[0], "public", batches)
			return err
		}},
		{"10k-sample COPYs, 3 connections", func() error {
			var wg sync.WaitGroup
			errs := make([]error, len(conns))
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := i; j < len(batches); j += len(conns) {
						if _, err := postgresql.CeilingCopy(ctx, c, "public", batches[j]); err != nil {
							errs[i] = err
							return
						}
					}
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return err
				}
			}
			return nil
		}},
	}
	var out ceiling
	var parts []string
	for _, v := range variants {
		if _, err := conns[0].Exec(ctx, "TRUNCATE gpu_samples"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := v.run(); err != nil {
			t.Fatalf("ceiling %s: %v", v.name, err)
		}
		rate := float64(samples) / time.Since(start).Seconds()
		parts = append(parts, fmt.Sprintf("%s %.0f/s", v.name, rate))
		if rate > out.best {
			out.best, out.bestName = rate, v.name
		}
	}
	if n := env.Count("SELECT count(*) FROM gpu_metrics"); n != want {
		t.Fatalf("ceiling: gpu_metrics holds %d samples after the ceiling runs, want %d", n, want)
	}
	out.detail = strings.Join(parts, ", ")
	return out
}

// rssPeak tracks the peak RSS of a collector and its children.
type rssPeak struct {
	total, collector, plugin int64
	plugins                  int
	byPID                    map[int]int64
	pss                      int64 // peak of the summed PSS (samplePSS)
}

// samplePSS adds up the PSS of the collector and its plugin processes:
// unlike their RSS, it counts the pages they share (the text of the
// plugin binary four of them run) once.
func (p *rssPeak) samplePSS(pid int, kids []int) {
	if pid == 0 {
		return
	}
	total, err := procfs.PSS(pid)
	if err != nil {
		return
	}
	for _, k := range kids {
		if v, err := procfs.PSS(k); err == nil {
			total += v
		}
	}
	p.pss = max(p.pss, total)
}

// sample adds the RSS of the collector pid and of kids, its plugin
// processes. It reports false when one of them is gone (kids is stale).
func (p *rssPeak) sample(pid int, kids []int) bool {
	if pid == 0 {
		return true
	}
	c, err := procfs.RSS(pid)
	if err != nil {
		return true
	}
	total := c
	ok := true
	for _, k := range kids {
		r, err := procfs.RSS(k)
		if err != nil {
			ok = false
			continue
		}
		total += r
		p.plugin = max(p.plugin, r)
		if p.byPID == nil {
			p.byPID = map[int]int64{}
		}
		p.byPID[k] = max(p.byPID[k], r)
	}
	p.collector = max(p.collector, c)
	p.total = max(p.total, total)
	p.plugins = max(p.plugins, len(kids))
	return ok
}

// cpuSnap is CPU time in seconds, from /proc.
type cpuSnap struct {
	collector, mq, pg float64 // process families (the process, its live children, its reaped children)
	bench             float64 // this process: the publisher, and the RSS and /metrics sampling
	busy, all         float64 // the machine (/proc/stat), in ticks
}

func snapshotCPU(collector, mq int, pgData string) cpuSnap {
	s := cpuSnap{collector: familyCPU(collector), mq: familyCPU(mq), bench: procCPU(os.Getpid(), false)}
	if b, err := os.ReadFile(filepath.Join(pgData, "postmaster.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])); err == nil {
			s.pg = familyCPU(pid)
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		for i, x := range f[1:] {
			v, _ := strconv.ParseFloat(x, 64)
			s.all += v
			if i != 3 && i != 4 { // idle, iowait
				s.busy += v
			}
		}
	}
	return s
}

const clockTicks = 100 // USER_HZ on Linux

// familyCPU is the CPU seconds of pid, its reaped children and its live
// children.
func familyCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	total := procCPU(pid, true)
	for _, k := range procfs.Children(pid) {
		total += procCPU(k, true)
	}
	return total
}

func procCPU(pid int, withChildren bool) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// After the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
	if len(f) < 15 {
		return 0
	}
	n := 12
	if withChildren {
		n = 14
	}
	var ticks float64
	for j := 11; j <= n; j++ {
		v, _ := strconv.ParseFloat(f[j], 64)
		ticks += v
	}
	return ticks / clockTicks
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	if len(f) >= 2 {
		kb, _ := strconv.ParseFloat(f[1], 64)
		return fmt.Sprintf("%.0f GiB RAM", kb/(1<<20))
	}
	return "?"
}
