package sdk

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Input produces batches.
//
// Run is called once per plugin process lifetime, after configuration, and
// returns when ctx is cancelled (return nil then) or on a fatal error. It
// hands batches to acc.Emit, which blocks while the pipeline is full: that is
// the backpressure an input must respect (it must not read more from its
// source while Emit blocks).
//
// Cancelling ctx means "stop taking new data" (drain), not "stop": the done
// callbacks of batches already emitted keep arriving after Run returned,
// until Close is called, and the input must still acknowledge them to its
// source. Close (sdk.Closer) is the point to flush final acknowledgements.
type Input interface {
	Run(ctx context.Context, acc Accumulator) error
}

// Delivery tells an input what became of an emitted batch.
type Delivery struct {
	// OK is true when every output durably stored everything derived from
	// the batch (or a processor dropped it, or it was dead-lettered). The
	// input should then acknowledge the batch's source.
	OK bool
	// Err says why the batch could not be delivered when OK is false. The
	// input should then negatively acknowledge the source so it is
	// redelivered later.
	Err error
}

// Accumulator is the input's way into the pipeline. It is safe for
// concurrent use.
type Accumulator interface {
	// Emit passes b to the pipeline; b belongs to the agent from then on.
	// It blocks until the pipeline has room (or ctx is done, returning
	// ctx.Err()). done, if not nil, is called exactly once, from any
	// goroutine, when the batch's fate is known; it must not block.
	Emit(ctx context.Context, b *Batch, done func(Delivery)) error
}

// BatchReleaser is implemented by a Processor or an Output that keeps no
// reference to the Series, Points or Rejects arrays of a batch it received
// once Process or Write has returned (nor to those of the batches Process
// returned, once they were sent): the sdk may then decode a later batch
// into the same arrays instead of allocating new ones. Label slices and
// strings are never reused this way. Plugins that keep batches (to
// aggregate, to write later) must not implement it, or return false.
type BatchReleaser interface {
	ReleasesBatches() bool
}

// BatchCopier is implemented by an Accumulator whose Emit, when it returns
// nil, has already copied all it needs of the batch: the accumulator of a
// plugin process encodes the batch and hands the bytes to gRPC before Emit
// returns. An input may then reuse the batch's memory (its Series, Points
// and Rejects arrays; the label slices and strings they refer to are not
// changed by the reuse) for a later batch. Without it, or when EmitCopies
// is false, b belongs to the pipeline once emitted.
type BatchCopier interface {
	EmitCopies() bool
}

// Processor transforms batches.
//
// Process receives a batch it owns until it returns, and returns the batches
// derived from it: the same batch changed in place, several (a split) or
// none (a drop: the input's acknowledgement treats dropped data as
// delivered). Rejects found are appended to a returned batch's Rejects (or
// to b, returned with no points). The agent may call Process concurrently
// only if the plugin implements Concurrent; otherwise calls are serial.
//
// An error is retryable unless marked with Permanent, and a call that
// fails retryably is made again with the same batch: it must leave b as it
// received it. In a process group (several processors in one plugin
// process) a retryable failure of a processor after the first is retried
// inside the process, without running the processors before it again.
type Processor interface {
	Process(ctx context.Context, b *Batch) ([]*Batch, error)
}

// Output stores batches.
//
// Write returns nil only once b is durably stored (acknowledgements flow back
// to the source on that promise). Rows the output refuses while storing the
// rest are appended to b.Rejects and Write returns nil. An error is
// retryable unless marked with Permanent; the agent retries retryable errors
// with backoff while holding the acknowledgement, and dead-letters batches
// that failed permanently. Write must be idempotent: the same data may
// arrive again after a crash. Calls may be concurrent up to the output's
// configured workers.
type Output interface {
	Write(ctx context.Context, b *Batch) error
}

// Initializer is an optional ability: Init is called once after the
// configuration was decoded and validated, before any other call.
type Initializer interface {
	Init(ctx context.Context) error
}

// Validator is an optional ability: Validate checks the decoded
// configuration. Return errors.Join of every problem found.
type Validator interface {
	Validate() error
}

// Closer is an optional ability: Close is called once when the plugin stops,
// after the agent drained it. It must be safe to call without Init.
type Closer interface {
	Close(ctx context.Context) error
}

// Concurrent is an optional ability of a Processor: MaxConcurrency is how
// many Process calls may run at once (values below 1 mean 1).
type Concurrent interface {
	MaxConcurrency() int
}

// LabelReader is an optional ability of a Processor or an Output. One
// whose ReadsLabelsOnly returns true promises never to write into the
// label slices of the batches it receives: no assignment to
// s.Labels[i], no in-place sort (replacing s.Labels with a new slice is
// fine; the received slices have no spare capacity, so append copies).
// The sdk then hands it label slices shared between batches and series (the
// stream dictionary's own, which never change) instead of a copy per
// series per batch: for scrape-shaped batches, one point per series,
// that copy is most of what receiving a batch costs. Such labels may also
// be kept after the call returns. Without it (or with false) every
// received batch owns its label slices.
type LabelReader interface {
	ReadsLabelsOnly() bool
}

// Environment is what the agent tells a plugin about its place in the
// pipeline, besides its own configuration.
type Environment struct {
	// Name is the plugin type name, e.g. "postgresql".
	Name string
	// Alias is the instance name from the configuration (defaults to Name).
	Alias string
	// Workers is how many concurrent Write calls the agent will make to an
	// output (its "workers" key), so the output can size its resources.
	Workers int
	// BatchSize is the maximum number of points per Write batch (outputs).
	BatchSize int
}

// EnvironmentReceiver is an optional ability: SetEnvironment is called before
// configuration is decoded.
type EnvironmentReceiver interface {
	SetEnvironment(env Environment)
}

// LoggerReceiver is an optional ability: SetLogger is called once, before
// the configuration is decoded, with a logger named after the plugin
// instance. Its lines travel as hclog JSON on stderr into the agent's log.
// Plugins without it get no logger (they must not write to stdout).
type LoggerReceiver interface {
	SetLogger(logger hclog.Logger)
}

// permanentError marks an error that retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: retrying the same call will fail the
// same way (bad data, a schema conflict). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Duration is a time.Duration that decodes from TOML strings such as "30s"
// or "10m" (and from integers, taken as nanoseconds) in plugin configs.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
