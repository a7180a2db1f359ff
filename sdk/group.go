package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
)

// group runs the processors of a process group (the agent's
// process_group key) one after the other on every batch, inside one
// plugin process: the batch crosses one gRPC hop instead of one per
// processor.
//
// Semantics, as the agent would run the members in their own processes:
//   - each batch a member returns goes to the next member; one without
//     points is not passed on (a drop);
//   - rejects a member returns are taken off its batches and sent back to
//     the agent in a batch of their own, marked with the member's index, so
//     they are counted and dead-lettered under that member's name;
//   - a permanent error, or any error of the first member, ends the call
//     (the agent retries or dead-letters the batch it sent, as for one
//     processor);
//   - a retryable error of a later member is retried here, with backoff,
//     on the batch as the members before it left it: running those again
//     would be wrong for stateful ones (dedup would drop the whole batch as
//     duplicates of itself). Processor's contract says a failed call leaves
//     its batch unchanged.
//
// The server runs up to MaxConcurrency calls at once, the smallest of the
// members' limits, so each member sees no more concurrency than it allows.
// members is read-only after configuration; stats are per call.
type group struct {
	members []groupMember
	// Retry backoff of later members: initial, doubling to max, each wait
	// jittered between half and all of it.
	retryInitial, retryMax time.Duration
}

// groupMember is one configured processor of a group.
type groupMember struct {
	alias string
	p     Processor
	log   hclog.Logger
}

// groupStats is what happened to each member during one call, for the
// agent's per-member metrics. Slices have one entry per member.
type groupStats struct {
	calls, points, nanos, retries []uint64
}

var (
	_ Processor     = (*group)(nil)
	_ Concurrent    = (*group)(nil)
	_ LabelReader   = (*group)(nil)
	_ BatchReleaser = (*group)(nil)
	_ Closer        = (*group)(nil)
)

// Process implements Processor: run without the per-member bookkeeping.
// Rejects stay on the batches that carry them.
func (g *group) Process(ctx context.Context, b *Batch) ([]*Batch, error) {
	out, _, _, _, err := g.run(ctx, b)
	return out, err
}

// run passes b through every member. out are the batches to send on, with
// members[i] the member whose rejects out[i] carries; on error, errMember
// is the member that failed. st is filled whether or not run fails.
func (g *group) run(ctx context.Context, b *Batch) (out []*Batch, members []uint32, st groupStats, errMember int, err error) {
	n := len(g.members)
	st = groupStats{calls: make([]uint64, n), points: make([]uint64, n), nanos: make([]uint64, n), retries: make([]uint64, n)}
	cur := []*Batch{b}
	last := n - 1
	for i, m := range g.members {
		var next []*Batch
		for _, x := range cur {
			if len(x.Points) == 0 {
				continue // nothing left to process: a drop
			}
			st.calls[i]++
			st.points[i] += uint64(len(x.Points))
			res, retries, err := g.call(ctx, i, m, x, &st.nanos[i])
			st.retries[i] += retries
			if err != nil {
				return nil, nil, st, i, err
			}
			for _, r := range res {
				if r == nil {
					continue
				}
				if i == last {
					next = append(next, r)
					continue
				}
				if len(r.Rejects) > 0 {
					out = append(out, &Batch{Rejects: r.Rejects})
					members = append(members, uint32(i))
					r.Rejects = nil
				}
				if len(r.Points) > 0 {
					next = append(next, r)
				}
			}
		}
		cur = next
	}
	for _, r := range cur {
		out = append(out, r)
		members = append(members, uint32(last))
	}
	return out, members, st, 0, nil
}

// call runs member i on b, retrying retryable errors of members after the
// first until they succeed, fail permanently or ctx ends. nanos
// accumulates the time spent in the member's Process.
func (g *group) call(ctx context.Context, i int, m groupMember, b *Batch, nanos *uint64) ([]*Batch, uint64, error) {
	var retries uint64
	for attempt := 0; ; attempt++ {
		start := time.Now()
		res, err := safeMemberProcess(ctx, m, b)
		*nanos += uint64(time.Since(start))
		if err == nil {
			return res, retries, nil
		}
		err = fmt.Errorf("%s: %w", m.alias, err)
		if i == 0 || IsPermanent(err) {
			return nil, retries, err
		}
		if ctx.Err() != nil {
			return nil, retries, errors.Join(err, ctx.Err())
		}
		retries++
		wait := g.backoff(attempt)
		m.log.Warn("process failed, retrying in the process group", "attempt", attempt+1, "in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, retries, errors.Join(err, ctx.Err())
		}
	}
}

// backoff is the wait before retry attempt+1.
func (g *group) backoff(attempt int) time.Duration {
	d := g.retryInitial
	for range attempt {
		if d >= g.retryMax/2 {
			d = g.retryMax
			break
		}
		d *= 2
	}
	d = min(d, g.retryMax)
	return d/2 + rand.N(d/2+1)
}

// safeMemberProcess calls m's Process, turning a panic into a permanent
// error (the same batch would panic again).
func safeMemberProcess(ctx context.Context, m groupMember, b *Batch) (out []*Batch, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("processor panicked", "panic", r, "stack", string(debug.Stack()))
			out, err = nil, Permanent(fmt.Errorf("processor panicked: %v", r))
		}
	}()
	return m.p.Process(ctx, b)
}

// MaxConcurrency implements Concurrent: the smallest member limit.
func (g *group) MaxConcurrency() int {
	n := 0
	for _, m := range g.members {
		c := 1
		if cc, ok := m.p.(Concurrent); ok {
			c = max(1, cc.MaxConcurrency())
		}
		if n == 0 || c < n {
			n = c
		}
	}
	return max(1, n)
}

// ReadsLabelsOnly implements LabelReader: when every member does.
func (g *group) ReadsLabelsOnly() bool {
	for _, m := range g.members {
		if !readsLabelsOnly(m.p) {
			return false
		}
	}
	return true
}

// ReleasesBatches implements BatchReleaser: when every member does (a
// batch a member returned is the next member's input, and all of them
// are sent or dropped by the time the call's result is sent).
func (g *group) ReleasesBatches() bool {
	for _, m := range g.members {
		if !releasesBatches(m.p) {
			return false
		}
	}
	return true
}

// Close implements Closer: every member that is a Closer, in order; the
// errors joined.
func (g *group) Close(ctx context.Context) error {
	var errs []error
	for _, m := range g.members {
		if c, ok := m.p.(Closer); ok {
			if err := c.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.alias, err))
			}
		}
	}
	return errors.Join(errs...)
}
