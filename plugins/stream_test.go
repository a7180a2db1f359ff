package plugins_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// hostScrape is one scrape of one host (8 GPUs x 5 metrics, one point per
// series); value encodes (call, series) so results can be matched.
func hostScrape(call, host int) *sdk.Batch {
	b := &sdk.Batch{}
	for g := 0; g < 8; g++ {
		ls := sdk.Labels{
			{Key: sdk.LabelGPUIndex, Value: fmt.Sprint(g)},
			{Key: sdk.LabelGPUUUID, Value: fmt.Sprintf("GPU-%04d-%d", host, g)},
			{Key: sdk.LabelHost, Value: fmt.Sprintf("node-%04d", host)},
		}
		for m := 0; m < 5; m++ {
			b.Add(b.AddSeries(fmt.Sprintf("gpu_metric_%d", m), ls), int64(call), float64(call*1000+g*10+m))
		}
	}
	return b
}

// TestProcessorStreamDictionary sends many concurrent scrape-shaped calls
// whose series overlap (so most refer to series an earlier call defined)
// through the passthrough plugin, optionally SIGKILLing it mid-stream, and
// checks every result carries exactly its input's series and points: the
// replayed calls were re-encoded for the new stream's empty dictionary.
func TestProcessorStreamDictionary(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			var restarts atomic.Int64
			l := newLauncher(t, &restarts)
			p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough",
				ConfigJSON: cfg(t, "max_concurrency = 4\ndelay = '5ms'\n")})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIt(t, p)
			firstPID := p.PID()
			const n = 60
			var wg sync.WaitGroup
			sem := make(chan struct{}, 8)
			for i := 0; i < n; i++ {
				if kill && i == n/2 {
					time.Sleep(10 * time.Millisecond)
					if err := syscall.Kill(firstPID, syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					in := hostScrape(i, i%3)
					want := hostScrape(i, i%3)
					out, err := p.Process(context.Background(), in)
					if err != nil {
						t.Errorf("call %d: %v", i, err)
						return
					}
					if len(out) != 1 || !reflect.DeepEqual(out[0].Series, want.Series) || !reflect.DeepEqual(out[0].Points, want.Points) {
						t.Errorf("call %d: result differs from its input", i)
					}
					if !reflect.DeepEqual(in, want) {
						t.Errorf("call %d: Process changed its input", i)
					}
				}()
			}
			wg.Wait()
			if want := map[bool]int64{false: 0, true: 1}[kill]; restarts.Load() != want {
				t.Fatalf("restarts = %d, want %d", restarts.Load(), want)
			}
		})
	}
}

// A plugin built against another protocol version is refused at the
// handshake, permanently (no restart loop), with a message that says why.
func TestProtocolVersionMismatch(t *testing.T) {
	l := newLauncher(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := l.Processor(ctx, plugins.Spec{Name: "passthrough", Command: oldProtoBin})
	if err == nil {
		t.Fatal("a protocol 1 plugin was accepted")
	}
	t.Log(err)
	if !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "protocol") || !strings.Contains(err.Error(), "rebuild the plugin") {
		t.Fatalf("err = %v (permanent %v), want a permanent protocol mismatch", err, sdk.IsPermanent(err))
	}
}

// TestProcessorResultsKept: results are the caller's for good. Every
// result is kept until all calls are done (with label-copying and
// label-reading plugins, one and several calls in flight) and then
// compared with its input: nothing the codec recycles after a decode (the
// received messages' columns) may show through in a result a later call
// reuses memory for.
func TestProcessorResultsKept(t *testing.T) {
	for _, tc := range []struct {
		reader bool
		conc   int
	}{{false, 1}, {true, 1}, {true, 4}} {
		t.Run(fmt.Sprintf("reader=%v,inflight=%d", tc.reader, tc.conc), func(t *testing.T) {
			l := newLauncher(t, nil)
			p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough",
				ConfigJSON: cfg(t, fmt.Sprintf("max_concurrency = %d\nlabels_read_only = %v\n", tc.conc, tc.reader))})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIt(t, p)
			const n = 40
			results := make([][]*sdk.Batch, n)
			var wg sync.WaitGroup
			sem := make(chan struct{}, tc.conc)
			for i := 0; i < n; i++ {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					out, err := p.Process(context.Background(), hostScrape(i, i%5))
					if err != nil {
						t.Errorf("call %d: %v", i, err)
					}
					results[i] = out
				}()
			}
			wg.Wait()
			for i, out := range results {
				want := hostScrape(i, i%5)
				if len(out) != 1 || !reflect.DeepEqual(out[0].Series, want.Series) || !reflect.DeepEqual(out[0].Points, want.Points) {
					t.Fatalf("call %d: the kept result no longer equals its input", i)
				}
			}
		})
	}
}
