// Package file is the outputs.file plugin: it writes samples as JSON lines to
// a file or to stdout, with optional size-based rotation.
package file

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Name is the plugin's name in [[outputs.file]].
const Name = "file"

// Description is a one-line summary for `check` and Describe.
const Description = "Writes samples as JSON lines to a file or stdout"

// SampleConfig is the documented sample TOML table.
//
//go:embed sample.conf
var SampleConfig string

// Output writes JSON lines. Write calls are serialised by a mutex, so the
// agent may call Write concurrently; each call's lines are written
// contiguously.
type Output struct {
	Path           string `toml:"path"`
	Fsync          bool   `toml:"fsync"`
	RotateMaxBytes int64  `toml:"rotate_max_bytes"`
	RotateMaxFiles int    `toml:"rotate_max_files"`

	mu   sync.Mutex
	f    *os.File
	size int64
	buf  []byte
	own  bool // f is ours to close (not stdout/stderr)
}

// New returns an output with the defaults.
func New() *Output {
	return &Output{Path: "stdout", Fsync: true, RotateMaxFiles: 5}
}

// Validate checks the configuration.
func (o *Output) Validate() error {
	var errs []error
	if o.Path == "" {
		errs = append(errs, errors.New(`path: must not be empty (use "stdout" or a file path)`))
	}
	if o.RotateMaxBytes < 0 {
		errs = append(errs, errors.New("rotate_max_bytes: must be >= 0 (0 turns rotation off)"))
	}
	if o.RotateMaxFiles < 1 && o.RotateMaxBytes > 0 {
		errs = append(errs, errors.New("rotate_max_files: must be >= 1 when rotation is on"))
	}
	return errors.Join(errs...)
}

// Init opens the destination.
func (o *Output) Init(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.open()
}

func (o *Output) open() error {
	switch o.Path {
	case "stdout":
		o.f, o.own = os.Stdout, false
		return nil
	case "stderr":
		o.f, o.own = os.Stderr, false
		return nil
	}
	f, err := os.OpenFile(o.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("outputs.file: open %s: %w (check the directory exists and is writable)", o.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("outputs.file: stat %s: %w", o.Path, err)
	}
	o.f, o.own, o.size = f, true, st.Size()
	return nil
}

// Write appends one JSON line per point and, when fsync is on, syncs the
// file before returning.
func (o *Output) Write(_ context.Context, b *sdk.Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		if err := o.open(); err != nil {
			return err
		}
	}
	buf := o.buf[:0]
	for _, p := range b.Points {
		if int(p.Series) >= len(b.Series) {
			return sdk.Permanent(fmt.Errorf("outputs.file: point refers to series %d of %d", p.Series, len(b.Series)))
		}
		buf = appendLine(buf, &b.Series[p.Series], p)
	}
	o.buf = buf
	if len(buf) == 0 {
		return nil
	}
	if o.own && o.RotateMaxBytes > 0 && o.size > 0 && o.size+int64(len(buf)) > o.RotateMaxBytes {
		if err := o.rotate(); err != nil {
			return err
		}
	}
	before := o.size
	n, err := o.f.Write(buf)
	o.size += int64(n)
	if err != nil {
		return o.failed(before, fmt.Errorf("outputs.file: write %s: %w", o.Path, err))
	}
	if o.own && o.Fsync {
		if err := o.f.Sync(); err != nil {
			return o.failed(before, fmt.Errorf("outputs.file: fsync %s: %w", o.Path, err))
		}
	}
	return nil
}

// failed handles a Write that failed after the file was opened (disk full,
// I/O error, a path replaced under us): it cuts off what this Write may have
// appended, so a retry does not leave a torn line, and closes the file, so
// the next Write opens the path again and succeeds once the operator fixed
// it. The error stays retryable: the agent retries the batch. stdout and
// stderr are left as they are.
func (o *Output) failed(before int64, err error) error {
	if !o.own {
		return err
	}
	_ = o.f.Truncate(before) // best effort: fails on devices and pipes
	_ = o.f.Close()
	o.f, o.size = nil, 0
	return err
}

// rotate shifts PATH.(n-1) to PATH.n ... PATH to PATH.1 and reopens PATH.
func (o *Output) rotate() error {
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("outputs.file: close %s for rotation: %w", o.Path, err)
	}
	o.f = nil
	for i := o.RotateMaxFiles - 1; i >= 1; i-- {
		from := o.Path + "." + strconv.Itoa(i)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, o.Path+"."+strconv.Itoa(i+1)); err != nil {
				return fmt.Errorf("outputs.file: rotate %s: %w", from, err)
			}
		}
	}
	if err := os.Rename(o.Path, o.Path+".1"); err != nil {
		return fmt.Errorf("outputs.file: rotate %s: %w", o.Path, err)
	}
	return o.open()
}

// Close closes the file. Safe to call twice and without Init.
func (o *Output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil || !o.own {
		o.f = nil
		return nil
	}
	err := o.f.Close()
	o.f = nil
	if err != nil {
		return fmt.Errorf("outputs.file: close %s: %w", o.Path, err)
	}
	return nil
}

// appendLine renders {"time":...,"name":...,"labels":{...},"value":...}\n.
func appendLine(buf []byte, s *sdk.Series, p sdk.Point) []byte {
	buf = append(buf, `{"time":"`...)
	buf = time.Unix(0, p.Time).UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","name":`...)
	buf = appendJSONString(buf, s.Name)
	buf = append(buf, `,"labels":{`...)
	for i, l := range s.Labels {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, l.Key)
		buf = append(buf, ':')
		buf = appendJSONString(buf, l.Value)
	}
	buf = append(buf, `},"value":`...)
	switch {
	case math.IsNaN(p.Value), math.IsInf(p.Value, 0):
		// JSON has no NaN/Inf: write them as strings so nothing is lost.
		buf = append(buf, '"')
		buf = strconv.AppendFloat(buf, p.Value, 'g', -1, 64)
		buf = append(buf, '"')
	default:
		buf = strconv.AppendFloat(buf, p.Value, 'g', -1, 64)
	}
	return append(buf, "}\n"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c < 0x20:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, "\\ufffd"...)
		} else {
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

// ReadsLabelsOnly implements sdk.LabelReader: Output never writes into the
// label slices it receives (it reads them, or builds new ones), so the sdk
// may hand it slices shared between batches instead of a copy per series.
func (*Output) ReadsLabelsOnly() bool { return true }
