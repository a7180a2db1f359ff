package plugins

import (
	"sync"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// batchPool holds decoded batches handed back with ReleaseBatch: the
// launcher's input and processor clients decode into them instead of
// allocating new batches (their Series and Points arrays, ~640 KB per
// 10,000-point batch; label slices and strings are never reused). A batch
// in the pool is referenced by nothing else. It keeps at most
// maxPooledBatches (a mutex-guarded free list, not a sync.Pool: batches are
// released on the agent's stage goroutines and taken on the clients'
// receive loops, and a sync.Pool's per-P slots made most takes miss).
// Safe for concurrent use; the zero value is ready.
type batchPool struct {
	mu   sync.Mutex
	free []*sdk.Batch
}

// maxPooledBatches bounds what the pool holds: a few batches in flight
// between the agent's stages.
const maxPooledBatches = 8

func (bp *batchPool) get() *sdk.Batch {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if n := len(bp.free); n > 0 {
		b := bp.free[n-1]
		bp.free[n-1] = nil
		bp.free = bp.free[:n-1]
		return b
	}
	return &sdk.Batch{}
}

func (bp *batchPool) put(b *sdk.Batch) {
	if b == nil {
		return
	}
	b.Reset()
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if len(bp.free) < maxPooledBatches {
		bp.free = append(bp.free, b)
	}
}

// ReleaseBatch hands back b, a batch the caller received from one of this
// launcher's clients (an input's Emit, a processor's result) or that an
// input handed to it, once nothing refers to its arrays any more: later
// batches are decoded into them. The caller must not use b afterwards.
// The agent calls it for a batch a processor has replaced with its
// results. Safe for concurrent use.
func (c *ProcessorClient) ReleaseBatch(b *sdk.Batch) { c.m.sup.l.batches.put(b) }

// ReleaseBatch is ProcessorClient.ReleaseBatch for an output: the agent
// calls it for a batch it merged into another one, or once Write stored
// it.
func (c *OutputClient) ReleaseBatch(b *sdk.Batch) { c.m.sup.l.batches.put(b) }
