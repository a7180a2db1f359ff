package agent

import (
	"sync"
	"sync/atomic"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// tracker follows one emitted batch and everything derived from it.
//
// refs counts the live pieces: the emitted batch starts at 1; a processor
// result set of N adds N-1 (a drop releases 1); fan-out to R required
// outputs adds R-1; an output that splits an oversize batch into K writes
// adds K-1; each settled write (durably stored or dead-lettered) releases 1.
// When refs reaches 0 the batch is delivered. fail settles it at once as not
// delivered; later releases of its remaining pieces are ignored.
type tracker struct {
	id   uint64
	in   *inputRunner
	done func(sdk.Delivery)
	refs atomic.Int64
	// settled is set once, by whoever settles the batch first.
	settled atomic.Bool
}

// add takes n more references. It must be called by a holder of a reference
// (so refs cannot reach 0 concurrently).
func (t *tracker) add(n int) {
	if n != 0 {
		t.refs.Add(int64(n))
	}
}

// release drops n references and settles the batch as delivered when none
// are left.
func (t *tracker) release(n int) {
	if n == 0 {
		return
	}
	if t.refs.Add(-int64(n)) == 0 {
		t.in.a.settle(t, sdk.Delivery{OK: true})
	}
}

// fail settles the batch as not delivered (the agent gave up on it).
func (t *tracker) fail(err error) {
	t.in.a.settle(t, sdk.Delivery{OK: false, Err: err})
}

// registry holds the unsettled trackers, so that a shutdown past its
// deadline can give up on each of them exactly once.
type registry struct {
	mu   sync.Mutex
	live map[uint64]*tracker
	next uint64
	wg   sync.WaitGroup // one count per unsettled tracker
}

func (r *registry) register(t *tracker) {
	r.mu.Lock()
	r.next++
	t.id = r.next
	r.live[t.id] = t
	r.wg.Add(1)
	r.mu.Unlock()
}

func (r *registry) unregister(t *tracker) {
	r.mu.Lock()
	delete(r.live, t.id)
	r.mu.Unlock()
	r.wg.Done()
}

func (r *registry) snapshot() []*tracker {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*tracker, 0, len(r.live))
	for _, t := range r.live {
		out = append(out, t)
	}
	return out
}
