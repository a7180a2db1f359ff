package plugins

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// ProcessorClient is a processor plugin process seen as an sdk.Processor.
// Process is safe for concurrent use (calls are multiplexed over one
// stream; the plugin runs up to MaxConcurrency of them at once). A call in
// flight when the process dies is re-sent to its replacement.
type ProcessorClient struct {
	m *mux[*pluginpb.ProcessResult]
}

var _ sdk.Processor = (*ProcessorClient)(nil)
var _ sdk.Closer = (*ProcessorClient)(nil)
var _ sdk.Concurrent = (*ProcessorClient)(nil)

// Processor launches and configures a processor plugin. A configuration
// the plugin rejects is a permanent *sdk.ConfigError (wrapped).
func (l *Launcher) Processor(ctx context.Context, spec Spec) (*ProcessorClient, error) {
	spec.Kind = KindProcessor
	c := &ProcessorClient{m: newMux(l, spec, func(ctx context.Context, pc pluginpb.PluginClient) (bidi[*pluginpb.ProcessResult], error) {
		return pc.Process(ctx)
	})}
	c.m.decode = func(dec *wire.StreamDecoder, r *pluginpb.ProcessResult) (any, error) {
		out := make([]*sdk.Batch, 0, len(r.GetBatches()))
		var first error
		for _, pb := range r.GetBatches() {
			// Decode every batch even after a failure: later ones may
			// define series the stream's later results use.
			ob := l.batches.get()
			err := dec.Decode(pb, ob)
			// Decode copied what it keeps: the columns go back to the
			// codec's pool (r's batches are read nowhere else).
			wire.RecycleBatch(pb)
			if err != nil {
				if first == nil {
					first = sdk.Permanent(fmt.Errorf("processors.%s: malformed result: %w", spec.Name, err))
				}
				continue
			}
			out = append(out, ob)
		}
		if first != nil {
			return nil, first
		}
		return out, nil
	}
	if err := c.m.start(ctx); err != nil {
		return nil, wrapErr(spec, err)
	}
	return c, nil
}

// Process implements sdk.Processor. b is read (encoded for the stream, and
// again if the call is replayed on a restarted plugin) until Process
// returns, never changed, and not used afterwards; the returned batches are
// new. Their series share the stream dictionary's label slices
// (wire.StreamDecoder.ShareLabels), with each other and with earlier and
// later results, so their labels are read-only: the agent only reads and
// re-encodes them.
func (c *ProcessorClient) Process(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	r, out, err := c.m.do(ctx, b)
	if err != nil {
		return nil, err
	}
	if r.GetError() != "" {
		err := fmt.Errorf("processors.%s (%s): %w", c.m.sup.spec.Name, c.m.sup.spec.alias(), errors.New(r.GetError()))
		if r.GetPermanent() {
			err = sdk.Permanent(err)
		}
		return nil, err
	}
	return out.([]*sdk.Batch), nil
}

// ProcessGroup is Process for a process group (Spec.Group), reporting
// what each member did. b is treated as by Process. members[i] is the
// member (0: Spec.Name, i: Spec.Group[i-1]) whose rejects out[i] carries.
// stat, if not nil, is called before ProcessGroup returns, once for every
// member the batch reached (also when the call failed): its Process
// calls, the points handed to them, the retryable failures the plugin
// retried itself, and the time spent in them. On error, failed is the
// member whose error it is, or -1 when the call failed outside the members
// (the process died, a malformed result, ctx).
func (c *ProcessorClient) ProcessGroup(ctx context.Context, b *sdk.Batch, stat func(member, calls, points, retries int, spent time.Duration)) (out []*sdk.Batch, members []int, failed int, err error) {
	r, res, err := c.m.do(ctx, b)
	if err != nil {
		return nil, nil, -1, err
	}
	if stat != nil {
		calls, points, nanos, retries := r.GetMemberCalls(), r.GetMemberPoints(), r.GetMemberNanos(), r.GetMemberRetries()
		for i, n := range calls {
			if n == 0 {
				continue
			}
			stat(i, int(n), int(at(points, i)), int(at(retries, i)), time.Duration(at(nanos, i)))
		}
	}
	if r.GetError() != "" {
		err := fmt.Errorf("processors.%s (process group %s): %w", c.m.sup.spec.Name, c.m.sup.spec.alias(), errors.New(r.GetError()))
		if r.GetPermanent() {
			err = sdk.Permanent(err)
		}
		return nil, nil, int(r.GetErrorMember()), err
	}
	out = res.([]*sdk.Batch)
	bm := r.GetBatchMembers()
	if len(bm) != len(out) {
		return nil, nil, -1, sdk.Permanent(fmt.Errorf("processors.%s (process group %s): malformed result: %d batches, %d member marks",
			c.m.sup.spec.Name, c.m.sup.spec.alias(), len(out), len(bm)))
	}
	members = make([]int, len(bm))
	for i, m := range bm {
		if int(m) > len(c.m.sup.spec.Group) {
			return nil, nil, -1, sdk.Permanent(fmt.Errorf("processors.%s (process group %s): malformed result: member %d of %d",
				c.m.sup.spec.Name, c.m.sup.spec.alias(), m, len(c.m.sup.spec.Group)+1))
		}
		members[i] = int(m)
	}
	return out, members, -1, nil
}

// at is v[i], or 0 past its end.
func at(v []uint64, i int) uint64 {
	if i < len(v) {
		return v[i]
	}
	return 0
}

// MaxConcurrency implements sdk.Concurrent: the plugin's own limit, as it
// reported at Configure.
func (c *ProcessorClient) MaxConcurrency() int {
	c.m.sup.mu.Lock()
	defer c.m.sup.mu.Unlock()
	return max(1, c.m.sup.maxConc)
}

// Drain waits for the calls in flight, then asks the plugin to drain.
func (c *ProcessorClient) Drain(ctx context.Context) error { return c.m.drain(ctx) }

// Close drains, closes the plugin and ends its process. Safe to call twice
// and on a nil client.
func (c *ProcessorClient) Close(ctx context.Context) error {
	if c == nil || c.m == nil {
		return nil
	}
	return c.m.close(ctx)
}

// PID is the current plugin process id (0 while restarting).
func (c *ProcessorClient) PID() int { return c.m.pid() }

// Restarts counts restarts after the plugin died.
func (c *ProcessorClient) Restarts() int { return int(c.m.sup.restarts.Load()) }
