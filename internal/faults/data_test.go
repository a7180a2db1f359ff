package faults

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

const sourceCSV = "testdata/dcgm_metrics_20250718_134233.csv"

// TestPlan: generated messages parse with the real dcgm-csv parser into
// RowsPerMessage samples each, all at the message's own instant, and no
// (series, time) key repeats across a whole source pass and beyond.
func TestPlan(t *testing.T) {
	src, err := LoadSource(sourceCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Rows) != 2470 {
		t.Fatalf("%d rows, want 2470", len(src.Rows))
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &Plan{Src: src, Start: start, Step: 10 * time.Millisecond}
	parser, err := parsers.New(parsers.FormatDCGMCSV, parsers.Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	const messages = 60 // more than two passes over the source
	for m := int64(0); m < messages; m++ {
		var b sdk.Batch
		if err := parser.Parse(p.Payload(m), time.Now(), fmt.Sprint("message ", m), &b); err != nil {
			t.Fatalf("message %d: %v", m, err)
		}
		if b.Len() != RowsPerMessage || len(b.Rejects) != 0 {
			t.Fatalf("message %d: %d samples, %d rejects; want %d, 0", m, b.Len(), len(b.Rejects), RowsPerMessage)
		}
		for _, pt := range b.Points {
			if pt.Time != p.Time(m).UnixNano() {
				t.Fatalf("message %d: sample at %v, want %v", m, time.Unix(0, pt.Time).UTC(), p.Time(m))
			}
			s := b.Series[pt.Series]
			key := fmt.Sprint(s.Name, s.Labels, pt.Time)
			if seen[key] {
				t.Fatalf("message %d repeats %s", m, key)
			}
			seen[key] = true
		}
		if got, ok := p.Message(p.Time(m)); !ok || got != m {
			t.Fatalf("Message(Time(%d)) = %d, %v", m, got, ok)
		}
	}
	if _, ok := p.Message(start.Add(5 * time.Millisecond)); ok {
		t.Error("Message accepted a time between two messages")
	}
	if _, ok := p.Message(start.Add(-p.Step)); ok {
		t.Error("Message accepted a time before the start")
	}

	// WriteFile: one header, then the messages' rows in order.
	path := filepath.Join(t.TempDir(), "chunk.csv")
	if err := p.WriteFile(path, 3, 4); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 1+4*RowsPerMessage {
		t.Errorf("file has %d lines, want %d", n, 1+4*RowsPerMessage)
	}
	if bytes.Count(data, []byte("timestamp,")) != 1 {
		t.Error("file does not have exactly one header")
	}
	want := append(p.Payload(3), p.AppendRows(nil, 4)...)
	if !bytes.HasPrefix(data, want) {
		t.Error("file does not start with messages 3 and 4")
	}
}

func TestLoadSourceErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content string }{
		{"no header", "\"x\",a,b\n"},
		{"unquoted timestamp", "timestamp,metric_name\n2025-01-01T00:00:00Z,A\n"},
		{"too few rows", "timestamp,metric_name\n\"2025-01-01T00:00:00Z\",A\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.csv")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadSource(path); err == nil {
				t.Fatal("LoadSource accepted it")
			}
		})
	}
	if _, err := LoadSource(filepath.Join(dir, "missing.csv")); err == nil {
		t.Fatal("LoadSource accepted a missing file")
	}
}
