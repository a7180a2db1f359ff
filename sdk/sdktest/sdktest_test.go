package sdktest_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/testplugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/sdktest"
)

func reg(name string) sdk.Registration {
	for _, r := range testplugins.Registrations() {
		if r.Name == name {
			return r
		}
	}
	panic(name)
}

func TestProcessorRoundTrip(t *testing.T) {
	p := sdktest.Processor(t, reg("passthrough"), `max_concurrency = 2`)
	in := testplugins.SeqBatch(3, 100)
	in.Reject("bad row", "line 1", []byte("x"))
	out, err := p.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || !reflect.DeepEqual(out[0].Points, in.Points) || !reflect.DeepEqual(out[0].Series, in.Series) ||
		!reflect.DeepEqual(out[0].Rejects, in.Rejects) {
		t.Fatalf("passthrough changed the batch: %+v", out)
	}
	if c, ok := p.(sdk.Concurrent); !ok || c.MaxConcurrency() != 2 {
		t.Fatalf("max concurrency not reported")
	}
}

func TestProcessorPermanentError(t *testing.T) {
	p := sdktest.Processor(t, reg("passthrough"), `fail_permanent = true`)
	_, err := p.Process(context.Background(), testplugins.SeqBatch(0, 1))
	if err == nil || !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "told to fail") {
		t.Fatalf("want permanent error, got %v", err)
	}
}

func TestOutputRetryableAndRejects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o := sdktest.Output(t, reg("collect"), "path = '"+path+"'\nfail_first = 1\nreject_value = 2.0\n", sdktest.Options{Workers: 2})
	b := testplugins.SeqBatch(0, 4) // values 0,1,2,3
	err := o.Write(context.Background(), b)
	if err == nil || sdk.IsPermanent(err) {
		t.Fatalf("first write: want retryable error, got %v", err)
	}
	b = testplugins.SeqBatch(0, 4)
	if err := o.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(b.Rejects) != 1 || b.Rejects[0].Position != "point 2" {
		t.Fatalf("rejects = %+v", b.Rejects)
	}
	lines := readLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("stored %d lines, want 3", len(lines))
	}
}

func TestInputEmitsAndAcks(t *testing.T) {
	ackFile := filepath.Join(t.TempDir(), "acks")
	in := sdktest.Input(t, reg("seq"), "batches = 5\npoints = 10\nack_file = '"+ackFile+"'\n", sdktest.Options{Credits: 2})
	acc := sdktest.NewCollector()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- in.Run(ctx, acc) }()
	got := acc.Wait(t, 5, 10*time.Second)
	for i, b := range got {
		if !reflect.DeepEqual(b.Points, testplugins.SeqBatch(i, 10).Points) {
			t.Fatalf("batch %d differs", i)
		}
	}
	if n := acc.Ack(true); n != 5 {
		t.Fatalf("acked %d", n)
	}
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Acks arrive asynchronously; Close flushes them.
	if err := in.(sdk.Closer).Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, ackFile)
	sort.Strings(lines)
	want := []string{"0 ok", "1 ok", "2 ok", "3 ok", "4 ok"}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("acks = %v", lines)
	}
}

// countingInput emits forever, counting the Emit calls that returned.
type countingInput struct{ emitted *atomic.Int64 }

func (c *countingInput) Run(ctx context.Context, acc sdk.Accumulator) error {
	for ctx.Err() == nil {
		if err := acc.Emit(ctx, testplugins.SeqBatch(0, 1), nil); err != nil {
			return nil
		}
		c.emitted.Add(1)
	}
	return nil
}

func TestCreditsBoundEmits(t *testing.T) {
	var emitted atomic.Int64
	r := sdk.Registration{Name: "counting", Kind: sdk.KindInput, New: func() any { return &countingInput{emitted: &emitted} }}
	in := sdktest.Input(t, r, "", sdktest.Options{Credits: 3})
	blocking := &blockingAcc{release: make(chan struct{}), got: make(chan struct{}, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.Run(ctx, blocking) //nolint:errcheck
	<-blocking.got
	time.Sleep(300 * time.Millisecond)
	// The agent-side Emit blocks, so no credit comes back: the plugin
	// can send exactly Credits batches.
	if n := emitted.Load(); n != 3 {
		t.Fatalf("plugin emitted %d batches with 3 credits and a blocked pipeline", n)
	}
	close(blocking.release)
	deadline := time.Now().Add(5 * time.Second)
	for emitted.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if emitted.Load() < 20 {
		t.Fatalf("credits were not granted again after the pipeline took batches (%d)", emitted.Load())
	}
}

type blockingAcc struct {
	release chan struct{}
	got     chan struct{}
}

func (a *blockingAcc) Emit(ctx context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	select { // never block here: the test stops reading got
	case a.got <- struct{}{}:
	default:
	}
	select {
	case <-a.release:
		// The agent settles every batch it took; the plugin's Drain
		// waits for that.
		if done != nil {
			done(sdk.Delivery{OK: true})
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name, config string
		want         []sdk.ConfigIssue
	}{
		{"valid", "path = '/tmp/x'", nil},
		{"missing", "", []sdk.ConfigIssue{{Key: "path", Message: "is required"}}},
		{"typo", "path = '/x'\nfail_frist = 1", []sdk.ConfigIssue{{Key: "fail_frist", Message: `unknown key (did you mean "fail_first"?)`}}},
		{"type", `path = 5`, []sdk.ConfigIssue{{Key: "path", Message: "incompatible types: value has type integer; want type string"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sdktest.Check(t, reg("collect"), tt.config); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("issues = %#v", got)
			}
		})
	}
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
