// Package testplugins holds small deterministic plugins for the plugin
// runtime's integration tests (served by cmd/testplugins). Not for
// production use.
package testplugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Registrations lists every test plugin.
func Registrations() []sdk.Registration {
	return []sdk.Registration{
		{Name: "seq", Kind: sdk.KindInput, Description: "emits N deterministic batches", New: func() any { return &Seq{} }},
		{Name: "passthrough", Kind: sdk.KindProcessor, Description: "returns batches unchanged; can crash once", New: func() any { return &Passthrough{} }},
		{Name: "transform", Kind: sdk.KindProcessor, Description: "changes values, rejects, splits, fails on demand (process group tests)", New: func() any { return &Transform{} }},
		{Name: "collect", Kind: sdk.KindOutput, Description: "appends points to a JSON-lines file", New: func() any { return &Collect{} }},
	}
}

// SeqBatch builds batch i of the seq input: m points over 4 series.
func SeqBatch(i, m int) *sdk.Batch {
	b := &sdk.Batch{}
	idx := sdk.NewSeriesIndex(b)
	for j := 0; j < m; j++ {
		s := idx.ID("seq_metric", sdk.Labels{{Key: "host", Value: "h1"}, {Key: "series", Value: strconv.Itoa(j % 4)}})
		b.Add(s, int64(i)*1_000_000_000+int64(j), float64(i*1000+j))
	}
	return b
}

// Seq emits Batches batches of Points points, then waits for the drain.
// Each delivery is appended to AckFile as "<batch> ok" or "<batch> nack".
type Seq struct {
	Batches int    `toml:"batches"`
	Points  int    `toml:"points"`
	AckFile string `toml:"ack_file"`
	// Exit makes Run return after the last batch instead of waiting.
	Exit bool `toml:"exit"`
	// Interval is a pause between batches, so tests can act mid-stream.
	Interval sdk.Duration `toml:"interval"`
	// ReuseBatch fills one batch again and again, as the mq_service input
	// does with an accumulator that copies on Emit (sdk.BatchCopier), and
	// scribbles over it as soon as Emit returns: whatever the agent gets
	// must be what was emitted. Run fails when the accumulator does not
	// say it copies.
	ReuseBatch bool `toml:"reuse_batch"`

	mu sync.Mutex
	f  *os.File
}

// Validate implements sdk.Validator.
func (s *Seq) Validate() error {
	var errs []error
	if s.Batches < 0 {
		errs = append(errs, &sdk.ConfigIssue{Key: "batches", Message: "must not be negative"})
	}
	if s.Points <= 0 {
		errs = append(errs, &sdk.ConfigIssue{Key: "points", Message: "must be positive"})
	}
	return errors.Join(errs...)
}

// Init implements sdk.Initializer.
func (s *Seq) Init(context.Context) error {
	if s.AckFile == "" {
		return nil
	}
	f, err := os.OpenFile(s.AckFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return sdk.Permanent(err)
	}
	s.f = f
	return nil
}

func (s *Seq) record(i int, d sdk.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return
	}
	st := "ok"
	if !d.OK {
		st = "nack"
	}
	fmt.Fprintf(s.f, "%d %s\n", i, st)
	_ = s.f.Sync()
}

// Run implements sdk.Input.
func (s *Seq) Run(ctx context.Context, acc sdk.Accumulator) error {
	if c, ok := acc.(sdk.BatchCopier); s.ReuseBatch && (!ok || !c.EmitCopies()) {
		return sdk.Permanent(fmt.Errorf("seq: reuse_batch: the accumulator (%T) does not copy batches on Emit", acc))
	}
	reused := &sdk.Batch{}
	for i := 0; i < s.Batches; i++ {
		i := i
		b := SeqBatch(i, s.Points)
		if s.ReuseBatch {
			reused.Reset()
			for k := range b.Series {
				reused.AddSeries(b.Series[k].Name, b.Series[k].Labels)
			}
			reused.Points = append(reused.Points, b.Points...)
			b = reused
		}
		if err := acc.Emit(ctx, b, func(d sdk.Delivery) { s.record(i, d) }); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if s.ReuseBatch {
			for k := range b.Points {
				b.Points[k] = sdk.Point{Series: 0, Time: -1, Value: -1}
			}
			for k := range b.Series {
				b.Series[k] = sdk.Series{Name: "scribbled"}
			}
		}
		if s.Interval > 0 {
			select {
			case <-time.After(s.Interval.D()):
			case <-ctx.Done():
				return nil
			}
		}
	}
	if s.Exit {
		return nil
	}
	<-ctx.Done()
	return nil
}

// Close implements sdk.Closer.
func (s *Seq) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}

// Passthrough returns every batch unchanged. With CrashAfter > 0 the
// process dies (os.Exit or SIGKILL to itself, CrashMode "exit"/"kill") when
// it receives batch number CrashAfter, unless CrashMarker exists; it
// creates CrashMarker first, so it crashes once across restarts.
type Passthrough struct {
	CrashAfter    int          `toml:"crash_after"`
	CrashMarker   string       `toml:"crash_marker"`
	CrashMode     string       `toml:"crash_mode"`
	Delay         sdk.Duration `toml:"delay"`
	MaxConcurrent int          `toml:"max_concurrency"`
	FailPermanent bool         `toml:"fail_permanent"`
	// PIDFile, when set, receives the process id at Init (rewritten by
	// every restarted process), so tests can kill the plugin from outside.
	PIDFile string `toml:"pid_file"`
	// LabelsReadOnly makes it an sdk.LabelReader (as gpu_normalize, dedup
	// and the outputs are): the sdk then shares label slices with it.
	LabelsReadOnly bool `toml:"labels_read_only"`
	// ReleasesBatches makes it an sdk.BatchReleaser (as gpu_normalize,
	// dedup and the postgresql output are): the sdk then decodes later
	// batches into the arrays of earlier ones.
	ReleasesBatch bool `toml:"releases_batches"`
	seen          atomic.Int64
}

// ReadsLabelsOnly implements sdk.LabelReader: it never changes labels.
func (p *Passthrough) ReadsLabelsOnly() bool { return p.LabelsReadOnly }

// ReleasesBatches implements sdk.BatchReleaser: it keeps no batch.
func (p *Passthrough) ReleasesBatches() bool { return p.ReleasesBatch }

// Init implements sdk.Initializer.
func (p *Passthrough) Init(context.Context) error {
	if p.PIDFile == "" {
		return nil
	}
	tmp := p.PIDFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return sdk.Permanent(err)
	}
	return os.Rename(tmp, p.PIDFile)
}

// Validate implements sdk.Validator.
func (p *Passthrough) Validate() error {
	if p.CrashAfter > 0 && p.CrashMarker == "" {
		return &sdk.ConfigIssue{Key: "crash_marker", Message: "is required with crash_after"}
	}
	switch p.CrashMode {
	case "", "exit", "kill":
	default:
		return &sdk.ConfigIssue{Key: "crash_mode", Message: `must be "exit" or "kill"`}
	}
	return nil
}

// MaxConcurrency implements sdk.Concurrent.
func (p *Passthrough) MaxConcurrency() int { return p.MaxConcurrent }

// Process implements sdk.Processor.
func (p *Passthrough) Process(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	n := p.seen.Add(1)
	if p.CrashAfter > 0 && n == int64(p.CrashAfter) {
		if f, err := os.OpenFile(p.CrashMarker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			f.Close()
			if p.CrashMode == "kill" {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			os.Exit(3)
		}
	}
	if p.FailPermanent {
		return nil, sdk.Permanent(errors.New("passthrough: told to fail"))
	}
	if p.Delay > 0 {
		select {
		case <-time.After(p.Delay.D()):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return []*sdk.Batch{b}, nil
}

// Row is one line of the collect output's file.
type Row struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Time   int64             `json:"time"`
	Value  float64           `json:"value"`
}

// Collect appends every point as a JSON line to Path and fsyncs before
// Write returns. The first FailFirst writes fail (retryable); points whose
// value equals RejectValue (when set) are rejected.
type Collect struct {
	Path        string   `toml:"path"`
	FailFirst   int      `toml:"fail_first"`
	RejectValue *float64 `toml:"reject_value"`

	mu    sync.Mutex
	f     *os.File
	fails int
}

// Validate implements sdk.Validator.
func (c *Collect) Validate() error {
	if c.Path == "" {
		return &sdk.ConfigIssue{Key: "path", Message: "is required"}
	}
	return nil
}

// Init implements sdk.Initializer.
func (c *Collect) Init(context.Context) error {
	f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return sdk.Permanent(err)
	}
	c.f = f
	return nil
}

// Write implements sdk.Output.
func (c *Collect) Write(_ context.Context, b *sdk.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails < c.FailFirst {
		c.fails++
		return fmt.Errorf("collect: planned failure %d of %d", c.fails, c.FailFirst)
	}
	var buf []byte
	for i := range b.Points {
		s := b.Sample(i)
		if c.RejectValue != nil && s.Value == *c.RejectValue {
			b.Reject("value is the reject value", fmt.Sprintf("point %d", i), []byte(strconv.FormatFloat(s.Value, 'g', -1, 64)))
			continue
		}
		r := Row{Name: s.Name, Labels: map[string]string{}, Time: s.Time.UnixNano(), Value: s.Value}
		for _, l := range s.Labels {
			r.Labels[l.Key] = l.Value
		}
		line, err := json.Marshal(r)
		if err != nil {
			return sdk.Permanent(err)
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := c.f.Write(buf); err != nil {
		return err
	}
	return c.f.Sync()
}

// Close implements sdk.Closer.
func (c *Collect) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		err := c.f.Close()
		c.f = nil
		return err
	}
	return nil
}

// Transform changes batches in ways the process group tests can observe:
// each point's value becomes value*Scale+Add (so the order of two members
// shows), every RejectEvery-th point of a call becomes a reject whose
// reason names Tag, batches are cut into pieces of at most Split points,
// and the first FailTimes calls fail (retryable, or permanent with
// FailPermanent), leaving the batch unchanged. With DropAll every batch is
// dropped; with PanicOn a call whose first value equals it panics. It is
// safe for concurrent use; MaxConcurrent is its MaxConcurrency.
type Transform struct {
	Tag           string  `toml:"tag"`
	Scale         float64 `toml:"scale"`
	Add           float64 `toml:"add"`
	RejectEvery   int     `toml:"reject_every"`
	Split         int     `toml:"split"`
	FailTimes     int     `toml:"fail_times"`
	FailPermanent bool    `toml:"fail_permanent"`
	DropAll       bool    `toml:"drop_all"`
	PanicOn       float64 `toml:"panic_on"`
	MaxConcurrent int     `toml:"max_concurrency"`
	// Closed, when set, is a file Close appends Tag to.
	Closed string `toml:"closed_file"`
	calls  atomic.Int64
}

// Validate implements sdk.Validator.
func (t *Transform) Validate() error {
	var errs []error
	if t.Scale == 0 {
		errs = append(errs, &sdk.ConfigIssue{Key: "scale", Message: "must not be 0"})
	}
	if t.RejectEvery < 0 || t.Split < 0 || t.FailTimes < 0 {
		errs = append(errs, &sdk.ConfigIssue{Key: "", Message: "reject_every, split and fail_times must be >= 0"})
	}
	return errors.Join(errs...)
}

// MaxConcurrency implements sdk.Concurrent.
func (t *Transform) MaxConcurrency() int { return t.MaxConcurrent }

// Close implements sdk.Closer.
func (t *Transform) Close(context.Context) error {
	if t.Closed == "" {
		return nil
	}
	f, err := os.OpenFile(t.Closed, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, t.Tag)
	return errors.Join(err, f.Close())
}

// Process implements sdk.Processor.
func (t *Transform) Process(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	if n := t.calls.Add(1); n <= int64(t.FailTimes) {
		err := fmt.Errorf("%s: told to fail (call %d of %d)", t.Tag, n, t.FailTimes)
		if t.FailPermanent {
			err = sdk.Permanent(err)
		}
		return nil, err
	}
	if t.PanicOn != 0 && len(b.Points) > 0 && b.Points[0].Value == t.PanicOn {
		panic(t.Tag + ": told to panic")
	}
	if t.DropAll {
		return nil, nil
	}
	kept := b.Points[:0]
	for i, p := range b.Points {
		if t.RejectEvery > 0 && (i+1)%t.RejectEvery == 0 {
			b.Rejects = append(b.Rejects, sdk.Reject{Reason: t.Tag + " rejected", Position: "point " + strconv.Itoa(i), Raw: []byte(strconv.FormatFloat(p.Value, 'g', -1, 64))})
			continue
		}
		p.Value = p.Value*t.Scale + t.Add
		kept = append(kept, p)
	}
	b.Points = kept
	if t.Split <= 0 || len(b.Points) <= t.Split {
		return []*sdk.Batch{b}, nil
	}
	var out []*sdk.Batch
	for start := 0; start < len(b.Points); start += t.Split {
		end := min(start+t.Split, len(b.Points))
		piece := &sdk.Batch{Series: b.Series, Points: append([]sdk.Point(nil), b.Points[start:end]...)}
		out = append(out, piece)
	}
	out[0].Rejects = b.Rejects
	return out, nil
}
