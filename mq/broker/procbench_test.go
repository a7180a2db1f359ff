package broker

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
)

// brokerProcessEnv, when set (to a data dir, or "-" for none), makes
// TestBrokerProcess the broker process of BenchmarkBrokerProcess.
const brokerProcessEnv = "MQ_BENCH_BROKER_PROCESS"

// TestBrokerProcess is not a test: with brokerProcessEnv set it serves a
// broker on 127.0.0.1:0, prints its address, and answers each line on
// stdin with its CPU time (ns) and heap allocations so far, until stdin
// closes. Without the variable it returns at once. With
// MQ_BENCH_BROKER_PROCESS_CPUPROFILE=FILE it writes a CPU profile there,
// with MQ_BENCH_BROKER_PROCESS_MEMPROFILE=FILE an allocation profile.
func TestBrokerProcess(t *testing.T) {
	dir := os.Getenv(brokerProcessEnv)
	if dir == "" {
		return
	}
	if path := os.Getenv(brokerProcessEnv + "_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	opts := Options{Logger: hclog.NewNullLogger(), HeartbeatInterval: time.Second}
	if dir != "-" {
		opts.DataDir = dir
	}
	bk, srv, lis := serveLocal(t, opts)
	fmt.Println(lis.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "depth" {
			tp, _ := bk.topic("bench")
			tp.mu.Lock()
			fmt.Println(len(tp.entries))
			tp.mu.Unlock()
			continue
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(procfs.SelfCPU(), ms.Mallocs)
	}
	if path := os.Getenv(brokerProcessEnv + "_MEMPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	bk.Shutdown()
	srv.Stop()
	if err := bk.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkBrokerProcess is BenchmarkPublishConsumeAck with the broker in a
// process of its own (this test binary, TestBrokerProcess), reporting the
// broker's CPU time and heap allocations per message alone:
// broker-cpu-ns/msg and broker-allocs/msg are the numbers to compare.
func BenchmarkBrokerProcess(b *testing.B) {
	for _, dir := range []bool{false, true} {
		name := "memory"
		if dir {
			name = "data-dir"
		}
		b.Run(name, func(b *testing.B) {
			env := "-"
			if dir {
				env = b.TempDir()
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokerProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), brokerProcessEnv+"="+env)
			cmd.Stderr = os.Stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				_ = stdin.Close()
				_ = cmd.Wait()
			}()
			out := bufio.NewScanner(stdout)
			line := func() string {
				if !out.Scan() {
					b.Fatalf("broker process: %v", out.Err())
				}
				return out.Text()
			}
			addr := line()
			ask := func() (cpu, allocs int64) {
				fmt.Fprintln(stdin, "cpu")
				f := strings.Fields(line())
				cpu, _ = strconv.ParseInt(f[0], 10, 64)
				allocs, _ = strconv.ParseInt(f[1], 10, 64)
				return cpu, allocs
			}
			conn, err := client.Dial(addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			cpu0, allocs0 := ask()
			benchPublishConsumeAck(b, conn, func() int {
				cpu1, allocs1 := ask()
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "broker-cpu-ns/msg")
				b.ReportMetric(float64(allocs1-allocs0)/float64(b.N), "broker-allocs/msg")
				fmt.Fprintln(stdin, "depth")
				n, _ := strconv.Atoi(line())
				return n
			})
		})
	}
}
