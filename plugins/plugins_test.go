package plugins_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/internal/testplugins"
	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/sdktest"
)

func newLauncher(t *testing.T, restarts *atomic.Int64) *plugins.Launcher {
	return &plugins.Launcher{
		Logger:        hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
		PluginDir:     filepath.Dir(testPluginBin),
		BuiltinBinary: filepath.Base(testPluginBin),
		Backoff:       plugins.Backoff{Initial: 50 * time.Millisecond},
		OnRestart: func(string) {
			if restarts != nil {
				restarts.Add(1)
			}
		},
	}
}

func cfg(t *testing.T, toml string) []byte {
	js, err := sdktest.ConfigJSON(toml)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func closeIt(t *testing.T, c sdk.Closer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := c.Close(ctx); err != nil { // twice is fine
		t.Errorf("second close: %v", err)
	}
}

func TestProcessorAndOutputThroughLauncher(t *testing.T) {
	ctx := context.Background()
	l := newLauncher(t, nil)
	p, err := l.Processor(ctx, plugins.Spec{Name: "passthrough", Alias: "pt", ConfigJSON: cfg(t, "max_concurrency = 4")})
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt(t, p)
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o, err := l.Output(ctx, plugins.Spec{Name: "collect", ConfigJSON: cfg(t, "path = '"+path+"'"), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxConcurrency() != 4 {
		t.Fatalf("max concurrency %d", p.MaxConcurrency())
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := p.Process(ctx, testplugins.SeqBatch(i, 10))
			if err != nil {
				t.Error(err)
				return
			}
			for _, b := range out {
				if err := o.Write(ctx, b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	closeIt(t, o)
	rows := readRows(t, path)
	if len(rows) != 80 {
		t.Fatalf("stored %d rows, want 80", len(rows))
	}
	// Calls after Close fail cleanly.
	if err := o.Write(ctx, testplugins.SeqBatch(0, 1)); !plugins.ErrClosed(err) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestConfigRejected(t *testing.T) {
	l := newLauncher(t, nil)
	_, err := l.Output(context.Background(), plugins.Spec{Name: "collect", ConfigJSON: cfg(t, "paht = 'x'")})
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || !sdk.IsPermanent(err) {
		t.Fatalf("want permanent ConfigError, got %v", err)
	}
	if !reflect.DeepEqual(ce.Issues, []sdk.ConfigIssue{{Key: "paht", Message: `unknown key (did you mean "path"?)`}, {Key: "path", Message: "is required"}}) &&
		!reflect.DeepEqual(ce.Issues, []sdk.ConfigIssue{{Key: "paht", Message: `unknown key (did you mean "path"?)`}}) {
		t.Fatalf("issues %#v", ce.Issues)
	}
	issues, err := l.Check(context.Background(), plugins.Spec{Kind: plugins.KindOutput, Name: "collect", ConfigJSON: cfg(t, "fail_first = 'x'")})
	if err != nil || len(issues) != 1 || issues[0].Key != "fail_first" {
		t.Fatalf("check: %v %#v", err, issues)
	}
	_, err = l.Processor(context.Background(), plugins.Spec{Name: "nope"})
	if err == nil || !sdk.IsPermanent(err) || !strings.Contains(err.Error(), `no processor plugin "nope"`) {
		t.Fatalf("unknown plugin: %v", err)
	}
	_, err = (&plugins.Launcher{PluginDir: t.TempDir()}).Processor(context.Background(), plugins.Spec{Name: "x"})
	if err == nil || !sdk.IsPermanent(err) {
		t.Fatalf("missing binary: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	infos, err := newLauncher(t, nil).Describe(context.Background(), testPluginBin)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range infos {
		names = append(names, i.Kind+"/"+i.Name)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{"input/seq", "output/collect", "processor/passthrough", "processor/transform"}) {
		t.Fatalf("describe: %v", names)
	}
}

// TestProcessorCrashReplays kills the processor mid-stream (the plugin exits
// itself on batch 5, and separately the test SIGKILLs it) and checks every
// batch still comes back exactly once.
func TestProcessorCrashReplays(t *testing.T) {
	for _, mode := range []string{"exit", "sigkill-from-test"} {
		t.Run(mode, func(t *testing.T) {
			var restarts atomic.Int64
			l := newLauncher(t, &restarts)
			marker := filepath.Join(t.TempDir(), "crashed")
			conf := "max_concurrency = 4\ndelay = '20ms'\n"
			if mode == "exit" {
				conf += "crash_after = 5\ncrash_marker = '" + marker + "'\n"
			}
			p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough", ConfigJSON: cfg(t, conf)})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIt(t, p)
			firstPID := p.PID()
			const n = 40
			results := make([]int, n)
			var wg sync.WaitGroup
			var sent atomic.Int64
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sent.Add(1)
					out, err := p.Process(context.Background(), testplugins.SeqBatch(i, 3))
					if err != nil {
						t.Errorf("batch %d: %v", i, err)
						return
					}
					for _, b := range out {
						results[int(b.Points[0].Value)/1000]++
					}
				}()
			}
			if mode != "exit" {
				time.Sleep(50 * time.Millisecond)
				if err := syscall.Kill(firstPID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			for i, c := range results {
				if c != 1 {
					t.Fatalf("batch %d came back %d times", i, c)
				}
			}
			if restarts.Load() != 1 || p.Restarts() != 1 {
				t.Fatalf("restarts = %d (hook) %d (client), want 1", restarts.Load(), p.Restarts())
			}
			if p.PID() == firstPID || p.PID() == 0 {
				t.Fatalf("pid %d did not change from %d", p.PID(), firstPID)
			}
			if processAlive(firstPID) {
				t.Fatalf("old plugin %d still alive", firstPID)
			}
		})
	}
}

func TestOutputRetryableThenOK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o, err := newLauncher(t, nil).Output(context.Background(), plugins.Spec{Name: "collect", ConfigJSON: cfg(t, "path = '"+path+"'\nfail_first = 2\nreject_value = 1.0")})
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt(t, o)
	var tries int
	b := testplugins.SeqBatch(0, 3)
	for {
		tries++
		err := o.Write(context.Background(), b)
		if err == nil {
			break
		}
		if sdk.IsPermanent(err) || tries > 3 {
			t.Fatalf("try %d: %v", tries, err)
		}
	}
	if tries != 3 || len(b.Rejects) != 1 || len(readRows(t, path)) != 2 {
		t.Fatalf("tries %d rejects %v rows %d", tries, b.Rejects, len(readRows(t, path)))
	}
}

// TestInputEmitCopies: the plugin process's accumulator says it copies a
// batch before Emit returns (sdk.BatchCopier), and does: the seq input
// fills one batch again and again and scribbles over it right after each
// Emit, and every batch the agent gets is still the one emitted.
func TestInputEmitCopies(t *testing.T) {
	const batches, points = 20, 50
	in, err := newLauncher(t, nil).Input(context.Background(), plugins.Spec{Name: "seq", Credits: batches,
		ConfigJSON: cfg(t, fmt.Sprintf("batches = %d\npoints = %d\nreuse_batch = true", batches, points))})
	if err != nil {
		t.Fatal(err)
	}
	acc := sdktest.NewCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	got := acc.Wait(t, batches, 10*time.Second)
	acc.Ack(true)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	closeIt(t, in)
	for i, b := range got {
		want := testplugins.SeqBatch(i, points)
		if b.Len() != want.Len() {
			t.Fatalf("batch %d: %d points, want %d", i, b.Len(), want.Len())
		}
		for k := 0; k < want.Len(); k++ {
			g, w := b.Sample(k), want.Sample(k)
			if g.Name != w.Name || !g.Time.Equal(w.Time) || g.Value != w.Value || g.Labels.String() != w.Labels.String() {
				t.Fatalf("batch %d point %d: got %v, want %v", i, k, g, w)
			}
		}
	}
}

// TestInputRunDrainClose runs the seq input through the launcher, acks
// every batch, drains and closes; the plugin wrote every ack to its file.
func TestInputRunDrainClose(t *testing.T) {
	ackFile := filepath.Join(t.TempDir(), "acks")
	in, err := newLauncher(t, nil).Input(context.Background(), plugins.Spec{Name: "seq", Credits: 2,
		ConfigJSON: cfg(t, "batches = 6\npoints = 5\nack_file = '"+ackFile+"'")})
	if err != nil {
		t.Fatal(err)
	}
	acc := sdktest.NewCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	acc.Wait(t, 6, 10*time.Second)
	acc.Ack(true)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	closeIt(t, in)
	lines := readLines(t, ackFile)
	sort.Strings(lines)
	if !reflect.DeepEqual(lines, []string{"0 ok", "1 ok", "2 ok", "3 ok", "4 ok", "5 ok"}) {
		t.Fatalf("acks %v", lines)
	}
}

// TestInputRestart kills the input process; Run restarts it and runs it
// again (the source, here seq, emits from the start again).
func TestInputRestart(t *testing.T) {
	var restarts atomic.Int64
	in, err := newLauncher(t, &restarts).Input(context.Background(), plugins.Spec{Name: "seq", ConfigJSON: cfg(t, "batches = 3\npoints = 1")})
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt(t, in)
	acc := sdktest.NewCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	acc.Wait(t, 3, 10*time.Second)
	pid := in.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The dead instance's batches are still in the pipeline: the input is
	// not restarted (nothing new is read from the source) until they
	// settle, so a redelivered copy can never overtake its original.
	time.Sleep(500 * time.Millisecond)
	if n := len(acc.Batches()); n != 3 || restarts.Load() != 0 {
		t.Fatalf("restarted before the dead instance's batches settled: %d batches, %d restarts", n, restarts.Load())
	}
	acc.Ack(true) // acks for the dead instance's batches are dropped, not sent to the new one
	acc.Wait(t, 6, 10*time.Second)
	if restarts.Load() != 1 || in.PID() == pid {
		t.Fatalf("restarts %d pid %d -> %d", restarts.Load(), pid, in.PID())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestOrphanedPluginExits SIGKILLs an agent-like process that launched a
// plugin; the plugin must go away by itself.
func TestOrphanedPluginExits(t *testing.T) {
	cmd := exec.Command(orphanBin, testPluginBin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		cmd.Process.Kill()
		t.Fatalf("bad pid line %q", line)
	}
	if !processAlive(pid) {
		t.Fatal("plugin not running")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d survived its agent", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func readRows(t *testing.T, path string) []testplugins.Row {
	var rows []testplugins.Row
	for _, l := range readLines(t, path) {
		var r testplugins.Row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestPluginEnvironment: a plugin process gets the agent's environment,
// its alias, GOMEMLIMIT from Spec.MemoryLimit, GOMAXPROCS from
// Spec.MaxProcs and GOGC from Spec.GOGC, which override the agent's own;
// without them the agent's values are inherited as they are.
func TestPluginEnvironment(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "1GiB")
	t.Setenv("GOMAXPROCS", "7")
	t.Setenv("GOGC", "80")
	t.Setenv("TC_TEST_MARKER", "inherited")
	for _, tc := range []struct {
		limit                  int64
		procs, gogc            int
		wantMem, wantP, wantGC string
	}{
		{0, 0, 0, "1GiB", "7", "80"},
		{48 << 20, 1, 400, "50331648", "1", "400"},
	} {
		t.Run(fmt.Sprintf("limit=%d,procs=%d,gogc=%d", tc.limit, tc.procs, tc.gogc), func(t *testing.T) {
			l := newLauncher(t, nil)
			p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough", Alias: "pt", MemoryLimit: tc.limit, MaxProcs: tc.procs, GOGC: tc.gogc})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIt(t, p)
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID()))
			if err != nil {
				t.Fatal(err)
			}
			env := map[string]string{}
			for _, kv := range strings.Split(string(raw), "\x00") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v // the last one wins, as for the process
				}
			}
			if env["GOMEMLIMIT"] != tc.wantMem || env["GOMAXPROCS"] != tc.wantP || env["GOGC"] != tc.wantGC ||
				env["TC_TEST_MARKER"] != "inherited" || env[sdk.PluginAliasEnv] != "pt" {
				t.Fatalf("plugin environment: GOMEMLIMIT=%q GOMAXPROCS=%q GOGC=%q TC_TEST_MARKER=%q alias=%q; want %s, %s, %s, inherited, pt",
					env["GOMEMLIMIT"], env["GOMAXPROCS"], env["GOGC"], env["TC_TEST_MARKER"], env[sdk.PluginAliasEnv], tc.wantMem, tc.wantP, tc.wantGC)
			}
		})
	}
}

// TestBatchReleaserConcurrent: a processor that releases its batches
// (sdk.BatchReleaser) gets later batches decoded into earlier ones' arrays
// while several calls are in flight; every result is still its own input.
func TestBatchReleaserConcurrent(t *testing.T) {
	p, err := newLauncher(t, nil).Processor(context.Background(), plugins.Spec{Name: "passthrough",
		ConfigJSON: []byte(`{"max_concurrency":4,"labels_read_only":true,"releases_batches":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt(t, p)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				n := g*1000 + i
				in := testplugins.SeqBatch(n, 40+n%7)
				out, err := p.Process(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				want := testplugins.SeqBatch(n, 40+n%7)
				if len(out) != 1 || out[0].Len() != want.Len() {
					errs <- fmt.Errorf("call %d: %d results", n, len(out))
					return
				}
				for k := 0; k < want.Len(); k++ {
					if g, w := out[0].Sample(k), want.Sample(k); g.Value != w.Value || !g.Time.Equal(w.Time) || g.Labels.String() != w.Labels.String() {
						errs <- fmt.Errorf("call %d point %d: got %v, want %v", n, k, g, w)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestReleaseBatch: a batch handed back with ReleaseBatch is what the
// launcher's clients decode later results into, and those results are
// right.
func TestReleaseBatch(t *testing.T) {
	p, err := newLauncher(t, nil).Processor(context.Background(), plugins.Spec{Name: "passthrough"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt(t, p)
	reused := 0
	var prev *sdk.Batch
	for i := 0; i < 20; i++ {
		out, err := p.Process(context.Background(), testplugins.SeqBatch(i, 30))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || !reflect.DeepEqual(out[0].Points, testplugins.SeqBatch(i, 30).Points) {
			t.Fatalf("call %d: wrong result", i)
		}
		if out[0] == prev {
			reused++
		}
		prev = out[0]
		p.ReleaseBatch(out[0])
	}
	if reused != 19 {
		t.Fatalf("%d of 19 results decoded into the batch released before", reused)
	}
}
