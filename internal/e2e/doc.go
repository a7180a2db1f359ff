// Package e2e is the end-to-end test harness: it builds the real binaries
// once per test binary (telemetry-collector, mq-service, telemetry-streamer
// and the built-in plugin binary under plugins/), starts one throwaway
// PostgreSQL per test binary (a fresh database per test), and starts, stops,
// crashes and restarts mq-service and collector processes with generated
// configurations, finds and kills the collector's plugin processes, runs the
// streamer, waits on SQL counts, scrapes /metrics and reads RSS from /proc.
//
// Every process a test starts is stopped in t.Cleanup (SIGTERM with grace,
// then SIGKILL, plugin children included) and dies with the test binary
// (Pdeathsig), so a failing or panicking test leaves no orphans. Logs go to
// <Env.Dir>/<process>.log; when a test fails their tails are printed and the
// directory is kept (set E2E_KEEP=1 to keep it always). Passing tests print
// nothing.
//
// A test package using the harness runs through Main:
//
//	func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
//
//	func TestX(t *testing.T) {
//		e := e2e.New(t)
//		mq := e.StartMQ(e2e.MQOptions{})
//		c := e.StartCollector(e2e.CollectorConfig{MQAddress: mq.Addr})
//		e.Stream(e2e.StreamOptions{Address: mq.Addr, Format: "dcgm-csv"}, "testdata/x.csv")
//		e.WaitCount(30*time.Second, 2470, "SELECT count(*) FROM gpu_metrics")
//		_ = c
//	}
//
// Set E2E_BIN_DIR to a directory of prebuilt binaries (bin/ after `make
// build`) to skip the build. See README.md for the whole API.
package e2e
