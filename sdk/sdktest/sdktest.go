// Package sdktest runs a plugin in the test process over the real plugin
// protocol: the same gRPC server code as sdk.Serve and the same client code
// the agent uses (package plugins), over a unix socket. What passes here is
// what the agent will run, including strict config decoding, Validate,
// Init, the batch codec, Drain and Close.
//
//	p := sdktest.Processor(t, myRegistration, `window = "10m"`)
//	out, err := p.Process(ctx, batch)
//
// Every harness closes its plugin in t.Cleanup.
package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Options are the agent-side settings of a harnessed plugin.
type Options struct {
	Alias     string
	Workers   int // outputs: concurrent writes (default 1)
	BatchSize int // outputs: informational max batch size
	Credits   int // inputs: batches in flight before Emit blocks (default 4)
}

// ConfigJSON turns a plugin table written as TOML (or already as JSON,
// when it starts with '{') into the JSON the agent sends.
func ConfigJSON(config string) ([]byte, error) {
	trimmed := bytes.TrimSpace([]byte(config))
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return trimmed, nil
	}
	m := map[string]any{}
	if _, err := toml.Decode(config, &m); err != nil {
		return nil, fmt.Errorf("sdktest: config is neither JSON nor TOML: %w", err)
	}
	return json.Marshal(m)
}

func spec(t testing.TB, reg sdk.Registration, config string, o []Options) plugins.Spec {
	t.Helper()
	js, err := ConfigJSON(config)
	if err != nil {
		t.Fatal(err)
	}
	s := plugins.Spec{Kind: string(reg.Kind), Name: reg.Name, ConfigJSON: js}
	if len(o) > 0 {
		s.Alias, s.Workers, s.BatchSize, s.Credits = o[0].Alias, o[0].Workers, o[0].BatchSize, o[0].Credits
	}
	return s
}

func launcher(t testing.TB, reg sdk.Registration) *plugins.Launcher {
	return &plugins.Launcher{InProcess: []sdk.Registration{reg}, Logger: testLogger(t)}
}

func cleanup(t testing.TB, c sdk.Closer) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("sdktest: close: %v", err)
		}
	})
}

// Processor configures reg (a processor) with config and returns it as the
// agent sees it. The test fails if the configuration is rejected.
func Processor(t testing.TB, reg sdk.Registration, config string, o ...Options) sdk.Processor {
	t.Helper()
	p, err := launcher(t, reg).Processor(context.Background(), spec(t, reg, config, o))
	if err != nil {
		t.Fatalf("sdktest: start processor %s: %v", reg.Name, err)
	}
	cleanup(t, p)
	return p
}

// Output configures reg (an output) with config and returns it as the agent
// sees it.
func Output(t testing.TB, reg sdk.Registration, config string, o ...Options) sdk.Output {
	t.Helper()
	p, err := launcher(t, reg).Output(context.Background(), spec(t, reg, config, o))
	if err != nil {
		t.Fatalf("sdktest: start output %s: %v", reg.Name, err)
	}
	cleanup(t, p)
	return p
}

// Input configures reg (an input) with config and returns it as the agent
// sees it: run it with a Collector.
func Input(t testing.TB, reg sdk.Registration, config string, o ...Options) sdk.Input {
	t.Helper()
	p, err := launcher(t, reg).Input(context.Background(), spec(t, reg, config, o))
	if err != nil {
		t.Fatalf("sdktest: start input %s: %v", reg.Name, err)
	}
	cleanup(t, p)
	return p
}

// Check returns the configuration issues the plugin reports for config
// (nil if it is valid), exactly as `telemetry-collector check` would.
func Check(t testing.TB, reg sdk.Registration, config string) []sdk.ConfigIssue {
	t.Helper()
	issues, err := launcher(t, reg).Check(context.Background(), spec(t, reg, config, nil))
	if err != nil {
		t.Fatalf("sdktest: check %s: %v", reg.Name, err)
	}
	return issues
}

// Collector is an Accumulator that keeps what an input emits. Emitted
// batches wait for Ack or Nack; it is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	batches []*sdk.Batch
	dones   []func(sdk.Delivery)
	acked   int
	changed chan struct{}
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{changed: make(chan struct{})} }

// Emit implements sdk.Accumulator; it never blocks.
func (c *Collector) Emit(ctx context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	c.batches = append(c.batches, b)
	c.dones = append(c.dones, done)
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// Batches returns the batches emitted so far, in order.
func (c *Collector) Batches() []*sdk.Batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*sdk.Batch(nil), c.batches...)
}

// Wait waits until at least n batches were emitted and returns them; the
// test fails after timeout.
func (c *Collector) Wait(t testing.TB, n int, timeout time.Duration) []*sdk.Batch {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		if len(c.batches) >= n {
			out := append([]*sdk.Batch(nil), c.batches...)
			c.mu.Unlock()
			return out
		}
		ch := c.changed
		got := len(c.batches)
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("sdktest: %d batches emitted, want %d (timeout %v)", got, n, timeout)
		}
	}
}

// Ack reports every emitted, not yet acknowledged batch as delivered (ok)
// or not, and returns how many it acknowledged.
func (c *Collector) Ack(ok bool) int {
	c.mu.Lock()
	dones := c.dones[c.acked:]
	c.acked = len(c.dones)
	c.mu.Unlock()
	for _, d := range dones {
		if d != nil {
			if ok {
				d(sdk.Delivery{OK: true})
			} else {
				d(sdk.Delivery{Err: fmt.Errorf("sdktest: nack")})
			}
		}
	}
	return len(dones)
}
