package agent

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestConcurrentEmitters exercises the reference counting: concurrent
// emitters, a processor that splits, drops and keeps, two required outputs
// with flaky writes, merges and splits at the outputs. Every batch must be
// acknowledged exactly once, OK, and every kept point written exactly once by
// each output.
func TestConcurrentEmitters(t *testing.T) {
	proc := &funcProcessor{fn: func(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
		switch b.Points[0].Value / 100 {
		case 0: // drop the first batch of each emitter's range
			return nil, nil
		default:
			if int(b.Points[0].Value/100)%2 == 0 {
				half := len(b.Points) / 2
				a := &sdk.Batch{Series: b.Series, Points: b.Points[:half]}
				c := &sdk.Batch{Series: append([]sdk.Series(nil), b.Series...), Points: b.Points[half:]}
				return []*sdk.Batch{a, c}, nil
			}
			return []*sdk.Batch{b}, nil
		}
	}}
	flaky := func() *testOutput {
		var n atomic.Int32
		return &testOutput{hook: func(context.Context, *sdk.Batch) error {
			if n.Add(1)%3 == 0 {
				return errors.New("flaky")
			}
			return nil
		}}
	}
	o1, o2 := flaky(), flaky()
	h := start(t, setup{
		agent: conf.Agent{QueueSize: 2, InputCredits: 8},
		order: []string{"p"},
		procs: map[string]sdk.Processor{"p": proc},
		outputs: []conf.Plugin{
			outputPlugin("a", func(p *conf.Plugin) { p.BatchSize = 150; p.Workers = 3; p.FlushInterval = time.Millisecond }),
			outputPlugin("b", func(p *conf.Plugin) { p.BatchSize = 40; p.Workers = 2 }),
		},
		outImpl: map[string]sdk.Output{"a": o1, "b": o2},
	})
	const emitters, perEmitter, points = 4, 25, 100
	var wg sync.WaitGroup
	for e := 0; e < emitters; e++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perEmitter; i++ {
				id := e*perEmitter + i
				// Values id*100 .. id*100+99; batch 0 of the whole run is dropped.
				if err := h.acc.Emit(context.Background(), batchOf(id*points, points), h.acks.done(id)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	h.acks.wait(t, emitters*perEmitter, 10*time.Second)
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	n, dups := h.acks.count()
	if n != emitters*perEmitter || dups != 0 {
		t.Fatalf("deliveries=%d dups=%d", n, dups)
	}
	for id := 0; id < n; id++ {
		if d, _ := h.acks.get(id); !d.OK {
			t.Fatalf("batch %d: %+v", id, d)
		}
	}
	for name, o := range map[string]*testOutput{"a": o1, "b": o2} {
		_, v := o.snapshot()
		sort.Float64s(v)
		if len(v) != (n-1)*points {
			t.Fatalf("%s wrote %d points, want %d", name, len(v), (n-1)*points)
		}
		for i, x := range v {
			if x != float64(i+points) {
				t.Fatalf("%s: point %d = %v (lost or duplicated)", name, i, x)
			}
		}
	}
}
