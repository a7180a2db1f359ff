// Package faults is the fault-injection suite: real PostgreSQL, a real
// mq-service and the real collector with its plugin processes (started by
// internal/e2e), streaming real-shaped DCGM samples while processes are
// killed, PostgreSQL stops, stalls and crashes, the broker restarts, the
// input is poisoned and outputs fail. After every fault it checks that the
// stored count equals the good samples sent, that nothing is stored twice,
// and that the broker holds nothing unacknowledged.
//
// The suite runs only with the build tag "faults" (make test-faults):
//
//	go test -tags faults -count=1 -timeout 15m ./internal/faults/
//
// This file (no tag) holds the data generator, so make test and make lint
// cover it.
package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"
)

// RowsPerMessage is how many CSV rows one generated message holds (the
// streamer's default --batch).
const RowsPerMessage = 100

// Source is a DCGM CSV export (dcgm-exporter's CSV format: timestamp first)
// whose rows are replayed with new timestamps. Rows keep everything else
// (GPU, host, metric, value, labels) as exported.
type Source struct {
	Header []byte   // the header line, with its newline
	Rows   [][]byte // data rows without their first (timestamp) field, with their newline
}

// LoadSource reads a DCGM CSV export. Every data row must start with a
// quoted timestamp field and hold no newline inside quotes (true of
// dcgm-exporter's CSV export).
func LoadSource(path string) (*Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) < 2 || !bytes.HasPrefix(lines[0], []byte("timestamp,")) {
		return nil, fmt.Errorf("faults: %s: not a DCGM CSV export (header must start with \"timestamp,\")", path)
	}
	s := &Source{Header: lines[0]}
	for i, l := range lines[1:] {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if l[len(l)-1] != '\n' {
			l = append(l[:len(l):len(l)], '\n')
		}
		// Drop the first field: "2025-07-18T20:42:34Z",
		if l[0] != '"' {
			return nil, fmt.Errorf("faults: %s line %d: timestamp is not quoted", path, i+2)
		}
		end := bytes.Index(l[1:], []byte(`",`))
		if end < 0 {
			return nil, fmt.Errorf("faults: %s line %d: no timestamp field", path, i+2)
		}
		s.Rows = append(s.Rows, l[end+3:])
	}
	if len(s.Rows) < RowsPerMessage {
		return nil, fmt.Errorf("faults: %s: %d rows, need at least %d", path, len(s.Rows), RowsPerMessage)
	}
	return s, nil
}

// Plan places generated messages in time: message m (counted from 0 over the
// whole test) holds source rows m*RowsPerMessage ... (mod the source size)
// and every one of its rows has the time Start + m*Step. Each message thus
// owns one instant, so the rows stored at that instant tell whether that
// message was stored, and no two messages share a (GPU, metric, time) key.
type Plan struct {
	Src   *Source
	Start time.Time
	Step  time.Duration
}

// Time is the sample time of message m.
func (p *Plan) Time(m int64) time.Time { return p.Start.Add(time.Duration(m) * p.Step) }

// Message returns the index of the message whose sample time is t, and
// whether t is one.
func (p *Plan) Message(t time.Time) (int64, bool) {
	d := t.Sub(p.Start)
	if d < 0 || d%p.Step != 0 {
		return 0, false
	}
	return int64(d / p.Step), true
}

// AppendRows appends the RowsPerMessage rows of message m (no header).
func (p *Plan) AppendRows(dst []byte, m int64) []byte {
	ts := p.Time(m).UTC().Format(time.RFC3339Nano)
	n := int64(len(p.Src.Rows))
	for k := int64(0); k < RowsPerMessage; k++ {
		dst = append(dst, '"')
		dst = append(dst, ts...)
		dst = append(dst, '"', ',')
		dst = append(dst, p.Src.Rows[(m*RowsPerMessage+k)%n]...)
	}
	return dst
}

// Payload is message m as one dcgm-csv payload: the header and its rows.
func (p *Plan) Payload(m int64) []byte {
	return p.AppendRows(append([]byte(nil), p.Src.Header...), m)
}

// WriteFile writes messages first ... first+count-1 as one CSV file (one
// header) for telemetry-streamer --format dcgm-csv --batch RowsPerMessage,
// which splits it back into exactly these messages.
func (p *Plan) WriteFile(path string, first, count int64) error {
	if count <= 0 {
		return errors.New("faults: WriteFile needs at least one message")
	}
	buf := append([]byte(nil), p.Src.Header...)
	for m := first; m < first+count; m++ {
		buf = p.AppendRows(buf, m)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}
