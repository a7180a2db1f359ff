package file

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

type line struct {
	Time   time.Time         `json:"time"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Value  any               `json:"value"`
}

func readLines(t *testing.T, path string) []line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func batch(n int, t0 time.Time) *sdk.Batch {
	b := &sdk.Batch{}
	s := b.AddSeries("gpu_power_watts", sdk.Labels{{Key: "gpu_uuid", Value: "GPU-1"}, {Key: "host", Value: "h\"1\x00é\xff"}})
	for i := 0; i < n; i++ {
		b.Add(s, t0.Add(time.Duration(i)*time.Second).UnixNano(), float64(i)+0.5)
	}
	return b
}

func TestWriteJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o := New()
	o.Path = path
	ctx := context.Background()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Init(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 7, 18, 20, 42, 34, 123456789, time.UTC)
	if err := o.Write(ctx, batch(3, t0)); err != nil {
		t.Fatal(err)
	}
	b := &sdk.Batch{}
	s := b.AddSeries("odd", nil)
	b.Add(s, t0.UnixNano(), math.NaN())
	if err := o.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	got := readLines(t, path)
	if len(got) != 4 {
		t.Fatalf("got %d lines, want 4", len(got))
	}
	if !got[0].Time.Equal(t0) || got[0].Name != "gpu_power_watts" || got[0].Value != 0.5 {
		t.Errorf("first line = %+v", got[0])
	}
	if h := got[0].Labels["host"]; h != "h\"1\x00é\uFFFD" {
		t.Errorf("host label = %q", h)
	}
	if got[2].Value != 2.5 || !got[2].Time.Equal(t0.Add(2*time.Second)) {
		t.Errorf("third line = %+v", got[2])
	}
	if got[3].Value != "NaN" {
		t.Errorf("NaN value written as %v, want the string NaN", got[3].Value)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	o := New()
	o.Path = path
	o.RotateMaxBytes = 400
	o.RotateMaxFiles = 2
	ctx := context.Background()
	if err := o.Init(ctx); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := 0; i < 10; i++ {
		if err := o.Write(ctx, batch(2, time.Unix(int64(i*10), 0))); err != nil {
			t.Fatal(err)
		}
		total += 2
	}
	o.Close(ctx)
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "out.jsonl,out.jsonl.1,out.jsonl.2" {
		t.Fatalf("files after rotation: %v", names)
	}
	for _, n := range names {
		st, _ := os.Stat(filepath.Join(dir, n))
		if st.Size() > 400 {
			t.Errorf("%s has %d bytes, over the 400 limit", n, st.Size())
		}
	}
	// The newest lines are in the current file.
	cur := readLines(t, path)
	if len(cur) == 0 || cur[len(cur)-1].Time.Unix() != 91 {
		t.Errorf("current file ends with %+v", cur)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Output)
		wantErr string
	}{
		{"defaults", func(*Output) {}, ""},
		{"empty path", func(o *Output) { o.Path = "" }, "path"},
		{"negative rotate", func(o *Output) { o.RotateMaxBytes = -1 }, "rotate_max_bytes"},
		{"rotate without files", func(o *Output) { o.RotateMaxBytes = 10; o.RotateMaxFiles = 0 }, "rotate_max_files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := New()
			tt.mod(o)
			err := o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpenErrorSaysWhatToDo(t *testing.T) {
	o := New()
	o.Path = filepath.Join(t.TempDir(), "missing", "out.jsonl")
	err := o.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "directory exists") {
		t.Fatalf("Init error %v", err)
	}
}

func TestBadSeriesRefIsPermanent(t *testing.T) {
	o := New()
	o.Path = filepath.Join(t.TempDir(), "o")
	b := &sdk.Batch{Points: []sdk.Point{{Series: 3}}}
	if err := o.Write(context.Background(), b); !sdk.IsPermanent(err) {
		t.Fatalf("Write error %v, want a permanent error", err)
	}
}

func BenchmarkWrite(b *testing.B) {
	o := New()
	o.Path = filepath.Join(b.TempDir(), "o")
	o.Fsync = false
	ctx := context.Background()
	bt := batch(10000, time.Unix(0, 0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := o.Write(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/sample")
}

// TestWriteFailsThenRecovers: a file that fails at Write (here a disk-full
// device behind the path, opened fine by Init) returns a retryable error
// each time, and once the path is fixed the next Write opens it again and
// stores the whole batch, with no torn line from the failed attempts.
func TestWriteFailsThenRecovers(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("this test needs /dev/full (Linux): %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	o := New()
	o.Path = path
	ctx := context.Background()
	if err := o.Init(ctx); err != nil {
		t.Fatalf("Init must succeed (the device opens fine): %v", err)
	}
	b := batch(3, time.Unix(1700000000, 0))
	for i := 0; i < 2; i++ {
		err := o.Write(ctx, b)
		if err == nil {
			t.Fatal("Write to a full device succeeded")
		}
		if sdk.IsPermanent(err) {
			t.Fatalf("a full disk must be retryable, got permanent: %v", err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name the path: %v", err)
		}
	}
	// The operator frees space / fixes the path.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(ctx, b); err != nil {
		t.Fatalf("Write after the path was fixed: %v", err)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("%s is not a regular file after recovery: %v %v", path, fi, err)
	}
	if got := readLines(t, path); len(got) != 3 {
		t.Fatalf("%d lines after recovery, want 3", len(got))
	}
}
