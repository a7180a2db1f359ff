package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// DeadLetter keeps what the agent could not deliver so an operator can read
// it: rejected rows and batches that failed permanently (or ran out of
// retries). A write returns nil only once the records are durable: the agent
// settles (acknowledges) the data on that promise. Implementations must be
// safe for concurrent use; the agent never retains the slices or batches it
// passes in after the call returns.
type DeadLetter interface {
	// WriteRejects stores one record per reject, attributed to plugin (a
	// conf.Plugin ID such as "inputs.mq_service").
	WriteRejects(ctx context.Context, plugin string, rejects []sdk.Reject) error
	// WriteBatch stores one record for a failed batch: reason is the error,
	// and (up to a cap) its samples.
	WriteBatch(ctx context.Context, plugin, reason string, b *sdk.Batch) error
	// Close releases the store. Writes after Close fail.
	Close() error
}

// Defaults of FileDeadLetter.
const (
	DefaultDeadLetterMaxBytes   = 64 << 20
	DefaultDeadLetterMaxSamples = 100_000
	DefaultDeadLetterMaxRaw     = 64 << 10
	deadLetterFile              = "dead-letter.jsonl"
)

// FileDeadLetter appends JSON lines to Dir/dead-letter.jsonl, fsyncs before
// returning, and rotates the file to dead-letter.jsonl.1 (replacing an older
// .1) when it would grow past MaxBytes. The format is documented in
// agent/README.md. The directory and file are created on the first write.
// It is safe for concurrent use.
type FileDeadLetter struct {
	Dir        string
	MaxBytes   int64 // rotate past this size (default DefaultDeadLetterMaxBytes)
	MaxSamples int   // samples kept per failed batch (default DefaultDeadLetterMaxSamples)
	MaxRaw     int   // bytes of Reject.Raw kept (default DefaultDeadLetterMaxRaw)
	Now        func() time.Time

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

// NewFileDeadLetter returns a store writing under dir.
func NewFileDeadLetter(dir string) *FileDeadLetter {
	return &FileDeadLetter{Dir: dir}
}

// deadLetterRecord is one line of the dead-letter file.
type deadLetterRecord struct {
	Time             string           `json:"time"`
	Plugin           string           `json:"plugin"`
	Kind             string           `json:"kind"` // "reject" or "batch"
	Reason           string           `json:"reason"`
	Position         string           `json:"position,omitempty"`
	Raw              *string          `json:"raw,omitempty"`
	RawBase64        string           `json:"raw_base64,omitempty"`
	RawTruncated     bool             `json:"raw_truncated,omitempty"`
	Points           int              `json:"points,omitempty"`
	Samples          []deadLetterSmpl `json:"samples,omitempty"`
	SamplesTruncated bool             `json:"samples_truncated,omitempty"`
}

type deadLetterSmpl struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Time   string            `json:"time"`
	Value  any               `json:"value"` // a number, or "NaN", "+Inf", "-Inf"
}

// jsonValue returns v as a JSON-encodable value: JSON has no NaN or
// infinities, so those become strings.
func jsonValue(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return v
}

func (d *FileDeadLetter) now() string {
	t := time.Now()
	if d.Now != nil {
		t = d.Now()
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// WriteRejects implements DeadLetter.
func (d *FileDeadLetter) WriteRejects(ctx context.Context, plugin string, rejects []sdk.Reject) error {
	if len(rejects) == 0 {
		return nil
	}
	maxRaw := d.MaxRaw
	if maxRaw <= 0 {
		maxRaw = DefaultDeadLetterMaxRaw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	now := d.now()
	for _, r := range rejects {
		rec := deadLetterRecord{Time: now, Plugin: plugin, Kind: "reject", Reason: r.Reason, Position: r.Position}
		raw := r.Raw
		if len(raw) > maxRaw {
			raw, rec.RawTruncated = raw[:maxRaw], true
		}
		if len(raw) > 0 {
			if utf8.Valid(raw) {
				s := string(raw)
				rec.Raw = &s
			} else {
				rec.RawBase64 = base64.StdEncoding.EncodeToString(raw)
			}
		}
		if err := enc.Encode(&rec); err != nil {
			return fmt.Errorf("dead-letter: encode reject: %w", err)
		}
	}
	return d.append(ctx, buf.Bytes())
}

// WriteBatch implements DeadLetter.
func (d *FileDeadLetter) WriteBatch(ctx context.Context, plugin, reason string, b *sdk.Batch) error {
	maxS := d.MaxSamples
	if maxS <= 0 {
		maxS = DefaultDeadLetterMaxSamples
	}
	rec := deadLetterRecord{Time: d.now(), Plugin: plugin, Kind: "batch", Reason: reason, Points: len(b.Points)}
	n := len(b.Points)
	if n > maxS {
		n, rec.SamplesTruncated = maxS, true
	}
	rec.Samples = make([]deadLetterSmpl, 0, n)
	for i := 0; i < n; i++ {
		p := b.Points[i]
		s := deadLetterSmpl{Time: time.Unix(0, p.Time).UTC().Format(time.RFC3339Nano), Value: jsonValue(p.Value)}
		if int(p.Series) < len(b.Series) {
			ser := b.Series[p.Series]
			s.Name = ser.Name
			if len(ser.Labels) > 0 {
				s.Labels = make(map[string]string, len(ser.Labels))
				for _, l := range ser.Labels {
					s.Labels[l.Key] = l.Value
				}
			}
		} else {
			s.Name = fmt.Sprintf("<invalid series %d>", p.Series)
		}
		rec.Samples = append(rec.Samples, s)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&rec); err != nil {
		return fmt.Errorf("dead-letter: encode batch: %w", err)
	}
	return d.append(ctx, buf.Bytes())
}

var errDeadLetterClosed = errors.New("dead-letter store closed")

// append writes data (whole lines) and fsyncs, rotating first if needed.
func (d *FileDeadLetter) append(ctx context.Context, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errDeadLetterClosed
	}
	maxB := d.MaxBytes
	if maxB <= 0 {
		maxB = DefaultDeadLetterMaxBytes
	}
	path := filepath.Join(d.Dir, deadLetterFile)
	if d.f != nil && d.size > 0 && d.size+int64(len(data)) > maxB {
		if err := d.f.Close(); err != nil {
			return fmt.Errorf("dead-letter: close %s: %w", path, err)
		}
		d.f = nil
		if err := os.Rename(path, path+".1"); err != nil {
			return fmt.Errorf("dead-letter: rotate %s: %w", path, err)
		}
	}
	if d.f == nil {
		if err := os.MkdirAll(d.Dir, 0o750); err != nil {
			return fmt.Errorf("dead-letter: create directory %s: %w", d.Dir, err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("dead-letter: open %s: %w", path, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("dead-letter: stat %s: %w", path, err)
		}
		d.f, d.size = f, st.Size()
	}
	n, err := d.f.Write(data)
	d.size += int64(n)
	if err != nil {
		return fmt.Errorf("dead-letter: write %s: %w", path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter: fsync %s: %w", path, err)
	}
	return nil
}

// Close implements DeadLetter.
func (d *FileDeadLetter) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
