package plugins

import (
	"context"
	"errors"
	"fmt"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// OutputClient is an output plugin process seen as an sdk.Output. Write is
// safe for concurrent use; the plugin runs up to Spec.Workers writes at
// once. A write in flight when the process dies is re-sent to its
// replacement (outputs are idempotent).
type OutputClient struct {
	m *mux[*pluginpb.WriteResult]
}

var _ sdk.Output = (*OutputClient)(nil)
var _ sdk.Closer = (*OutputClient)(nil)
var _ sdk.LabelReader = (*OutputClient)(nil)

// Output launches and configures an output plugin.
func (l *Launcher) Output(ctx context.Context, spec Spec) (*OutputClient, error) {
	spec.Kind = KindOutput
	c := &OutputClient{m: newMux(l, spec, func(ctx context.Context, pc pluginpb.PluginClient) (bidi[*pluginpb.WriteResult], error) {
		return pc.Write(ctx)
	})}
	if err := c.m.start(ctx); err != nil {
		return nil, wrapErr(spec, err)
	}
	return c, nil
}

// Write implements sdk.Output. The batch's existing Rejects are not sent
// (outputs store points); rejects the output reports are appended to
// b.Rejects. b is read (encoded for the stream, and again if the write is
// replayed on a restarted plugin) until Write returns. A permanent failure
// is marked with sdk.Permanent.
func (c *OutputClient) Write(ctx context.Context, b *sdk.Batch) error {
	tmp := *b
	tmp.Rejects = nil
	r, _, err := c.m.do(ctx, &tmp)
	if err != nil {
		return err
	}
	b.Rejects = wire.DecodeRejects(b.Rejects, r.GetRejects())
	if r.GetError() != "" {
		err := fmt.Errorf("outputs.%s (%s): %w", c.m.sup.spec.Name, c.m.sup.spec.alias(), errors.New(r.GetError()))
		if r.GetPermanent() {
			err = sdk.Permanent(err)
		}
		return err
	}
	return nil
}

// ReadsLabelsOnly implements sdk.LabelReader: Write only encodes the
// batch for the plugin process (which decodes its own copy), so the agent
// may hand it label slices shared with other batches.
func (c *OutputClient) ReadsLabelsOnly() bool { return true }

// Drain waits for the writes in flight, then asks the plugin to drain.
func (c *OutputClient) Drain(ctx context.Context) error { return c.m.drain(ctx) }

// Close drains, closes the plugin (flushing it) and ends its process. Safe
// to call twice and on a nil client.
func (c *OutputClient) Close(ctx context.Context) error {
	if c == nil || c.m == nil {
		return nil
	}
	return c.m.close(ctx)
}

// PID is the current plugin process id (0 while restarting).
func (c *OutputClient) PID() int { return c.m.pid() }

// Restarts counts restarts after the plugin died.
func (c *OutputClient) Restarts() int { return int(c.m.sup.restarts.Load()) }
