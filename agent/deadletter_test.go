package agent

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

func TestFileDeadLetterFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dl") // created on first write
	d := &FileDeadLetter{Dir: dir, MaxRaw: 8, MaxSamples: 2,
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	ctx := context.Background()
	if err := d.WriteRejects(ctx, "inputs.mq", []sdk.Reject{
		{Reason: "bad", Position: "m1", Raw: []byte("0123456789")},
		{Reason: "binary", Raw: []byte{0xc3, 0x28}},
		{Reason: "empty"},
	}); err != nil {
		t.Fatal(err)
	}
	b := &sdk.Batch{}
	s := b.AddSeries("gpu_temp", sdk.Labels{{Key: "host", Value: "h1"}})
	b.Add(s, 0, math.NaN())
	b.Add(s, 1, math.Inf(1))
	b.Add(s, 2, 3)
	if err := d.WriteBatch(ctx, "outputs.pg", "schema conflict", b); err != nil {
		t.Fatal(err)
	}
	recs := readDeadLetter(t, dir)
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	tests := []struct {
		rec  int
		key  string
		want any
	}{
		{0, "time", "2026-01-02T03:04:05Z"},
		{0, "plugin", "inputs.mq"},
		{0, "kind", "reject"},
		{0, "raw", "01234567"},
		{0, "raw_truncated", true},
		{0, "position", "m1"},
		{1, "raw_base64", "wyg="},
		{1, "raw", nil},
		{2, "raw", nil},
		{2, "raw_base64", nil},
		{3, "kind", "batch"},
		{3, "reason", "schema conflict"},
		{3, "points", float64(3)},
		{3, "samples_truncated", true},
	}
	for _, tc := range tests {
		if got := recs[tc.rec][tc.key]; got != tc.want {
			t.Errorf("record %d %s = %#v, want %#v", tc.rec, tc.key, got, tc.want)
		}
	}
	samples := recs[3]["samples"].([]any)
	if len(samples) != 2 || samples[0].(map[string]any)["value"] != "NaN" || samples[1].(map[string]any)["value"] != "+Inf" {
		t.Fatalf("samples = %v", samples)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteRejects(ctx, "x", []sdk.Reject{{Reason: "late"}}); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

func TestFileDeadLetterRotates(t *testing.T) {
	dir := t.TempDir()
	d := &FileDeadLetter{Dir: dir, MaxBytes: 300}
	defer d.Close()
	for i := 0; i < 10; i++ {
		if err := d.WriteRejects(context.Background(), "inputs.mq", []sdk.Reject{{Reason: strings.Repeat("x", 100)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"dead-letter.jsonl", "dead-letter.jsonl.1"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 300 || st.Size() == 0 {
			t.Fatalf("%s has %d bytes, bound 300", name, st.Size())
		}
	}
	if got := len(readDeadLetter(t, dir)); got == 0 {
		t.Fatal("current file empty")
	}
}
