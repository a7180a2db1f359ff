package parsers

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

var testMsgTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParser(t testing.TB, format string, opts Options) Parser {
	t.Helper()
	p, err := New(format, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t testing.TB, format string, opts Options, payload []byte) *sdk.Batch {
	t.Helper()
	var b sdk.Batch
	if err := mustParser(t, format, opts).Parse(payload, testMsgTime, "msg-1", &b); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkBatch(t, &b)
	return &b
}

// checkBatch verifies the invariants every parser promises: sorted labels
// without duplicate keys or empty values, points that refer to a series,
// every series used, no two equal series, and no label slice shared.
func checkBatch(t testing.TB, b *sdk.Batch) {
	t.Helper()
	seen := map[string]bool{}
	used := make([]bool, len(b.Series))
	for i, s := range b.Series {
		for j, l := range s.Labels {
			if l.Value == "" || l.Key == "" {
				t.Fatalf("series %d %s: empty label %q=%q", i, s.Name, l.Key, l.Value)
			}
			if j > 0 && s.Labels[j-1].Key >= l.Key {
				t.Fatalf("series %d %s: labels not sorted/unique: %v", i, s.Name, s.Labels)
			}
		}
		k := s.Name + s.Labels.String()
		if seen[k] {
			t.Fatalf("series %s appears twice", k)
		}
		seen[k] = true
		if len(s.Labels) > 0 && cap(s.Labels) != len(s.Labels) {
			t.Fatalf("series %d: labels slice has spare capacity %d > %d (may be shared)", i, cap(s.Labels), len(s.Labels))
		}
	}
	for _, p := range b.Points {
		if int(p.Series) >= len(b.Series) {
			t.Fatalf("point refers to series %d of %d", p.Series, len(b.Series))
		}
		used[p.Series] = true
	}
	for i, u := range used {
		if !u {
			t.Fatalf("series %d (%s) has no point", i, b.Series[i].Name)
		}
	}
}

// find returns the values of points named name whose labels include all of
// want (key=value pairs).
func find(b *sdk.Batch, name string, want ...string) []sdk.Sample {
	var out []sdk.Sample
	for i := range b.Points {
		s := b.Sample(i)
		if s.Name != name {
			continue
		}
		ok := true
		for j := 0; j+1 < len(want); j += 2 {
			if v, has := s.Labels.Get(want[j]); !has || v != want[j+1] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

func distinct(b *sdk.Batch, key string) int {
	set := map[string]bool{}
	for _, s := range b.Series {
		if v, ok := s.Labels.Get(key); ok {
			set[v] = true
		}
	}
	return len(set)
}

func TestNewUnknownFormat(t *testing.T) {
	if _, err := New("influx", Options{}); err == nil {
		t.Fatal("want error for unknown format")
	}
	for _, f := range []string{FormatDCGMCSV, FormatNvidiaSMICSV, FormatPrometheus, FormatGPUTelJSON} {
		if _, err := New(f, Options{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestNothingUsable: payloads with nothing usable make Parse fail (so the
// caller dead-letters them) with a permanent error, and leave b empty.
func TestNothingUsable(t *testing.T) {
	tests := []struct {
		format, payload string
	}{
		{FormatDCGMCSV, ""},
		{FormatDCGMCSV, "\n\n"},
		{FormatDCGMCSV, "a,b,c\n1,2,3\n"},
		{FormatDCGMCSV, `"unterminated` + "\n"},
		{FormatNvidiaSMICSV, ""},
		{FormatNvidiaSMICSV, "2026/11/26 20:58:55.944, 0, 48\n"}, // noheader
		{FormatPrometheus, ""},
		{FormatPrometheus, "   \n"},
		{FormatPrometheus, "this is not { prometheus\n"},
		{FormatGPUTelJSON, ""},
		{FormatGPUTelJSON, "hello"},
		{FormatGPUTelJSON, "{not json"},
		{FormatGPUTelJSON, "[}"},
		{FormatGPUTelJSON, "  \n\t"},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.payload, func(t *testing.T) {
			var b sdk.Batch
			err := mustParser(t, tt.format, Options{}).Parse([]byte(tt.payload), testMsgTime, "m", &b)
			if err == nil {
				t.Fatalf("want error, got %d points %d rejects", b.Len(), len(b.Rejects))
			}
			if !sdk.IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
			if b.Len() != 0 || len(b.Rejects) != 0 {
				t.Errorf("batch not empty on error: %d points, %d rejects", b.Len(), len(b.Rejects))
			}
		})
	}
}

func TestParseValue(t *testing.T) {
	tests := []struct {
		in   string
		v    float64
		kind valueKind
	}{
		{"0", 0, valueNumber},
		{"689.457", 689.457, valueNumber},
		{" 68.12 W", 68.12, valueNumber},
		{"1980 MHz", 1980, valueNumber},
		{"81559 MiB", 81559, valueNumber},
		{"0 %", 0, valueNumber},
		{"-3.5", -3.5, valueNumber},
		{"1e3", 1000, valueNumber},
		{"0x0000000000000001", 1, valueNumber},
		{"0x00000000000000FF", 255, valueNumber},
		{"P0", 0, valueNumber},
		{"P8", 8, valueNumber},
		{"P15", 15, valueNumber},
		{"Active", 1, valueNumber},
		{"Not Active", 0, valueNumber},
		{"Enabled", 1, valueNumber},
		{"Disabled", 0, valueNumber},
		{"", 0, valueMissing},
		{"  ", 0, valueMissing},
		{"[N/A]", 0, valueMissing},
		{"[Not Supported]", 0, valueMissing},
		{"[Unknown Error]", 0, valueMissing},
		{"N/A", 0, valueMissing},
		{"NaN", 0, valueMissing},
		{"abc", 0, valueBad},
		{"12abc", 0, valueBad},
		{"W", 0, valueBad},
		{"P16", 0, valueBad},
		{"0xZZ", 0, valueBad},
		{"Default", 0, valueBad},
	}
	for _, tt := range tests {
		v, kind := parseValue([]byte(tt.in))
		if kind != tt.kind || (kind == valueNumber && v != tt.v) {
			t.Errorf("parseValue(%q) = %v, %v; want %v, %v", tt.in, v, kind, tt.v, tt.kind)
		}
	}
}

func TestIsDCGMBlank(t *testing.T) {
	for _, v := range []float64{2147483632, 2147483633, 2147483647, 140737488355328, 140737488355329, 9223372036854775792, 9223372036854775794} {
		if !isDCGMBlank(v) {
			t.Errorf("%v should be a blank sentinel", v)
		}
	}
	for _, v := range []float64{0, 2147483631, 2147483648, 140737488355327, 1e18, 689.457} {
		if isDCGMBlank(v) {
			t.Errorf("%v is not a blank sentinel", v)
		}
	}
}

func TestSplitCSV(t *testing.T) {
	tests := []struct {
		in   string
		trim bool
		want []string
		err  bool
	}{
		{`a,b,c`, false, []string{"a", "b", "c"}, false},
		{`"a","b ""x"" c",""`, false, []string{"a", `b "x" c`, ""}, false},
		{`a, b ,  "c"  `, true, []string{"a", "b", "c"}, false},
		{`,`, false, []string{"", ""}, false},
		{``, false, []string{""}, false},
		{`"a`, false, nil, true},
		{`a"b`, false, nil, true},
		{`"a"b`, false, nil, true},
	}
	for _, tt := range tests {
		got, _, err := splitCSV([]byte(tt.in), nil, nil, tt.trim)
		if (err != nil) != tt.err {
			t.Errorf("splitCSV(%q) err = %v, want err %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		var gs []string
		for _, f := range got {
			gs = append(gs, string(f))
		}
		if !slices.Equal(gs, tt.want) {
			t.Errorf("splitCSV(%q) = %q, want %q", tt.in, gs, tt.want)
		}
	}
}

func TestParsePromLabels(t *testing.T) {
	in := make(interner)
	got, err := parsePromLabels([]byte(`a="1", __name__="x",b="q\"uote\\d" ,c=""`), nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Labels{{Key: "a", Value: "1"}, {Key: "b", Value: `q"uote\d`}, {Key: "c", Value: ""}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	for _, bad := range []string{`a`, `a=1`, `a="1`, `a="1" b="2"`, `="x"`} {
		if _, err := parsePromLabels([]byte(bad), nil, in); err == nil {
			t.Errorf("%q: want error", bad)
		}
	}
}

func rejectPositions(b *sdk.Batch) []string {
	var out []string
	for _, r := range b.Rejects {
		out = append(out, r.Position)
	}
	return out
}

func labelString(s sdk.Sample) string {
	var parts []string
	for _, l := range s.Labels {
		parts = append(parts, l.Key+"="+l.Value)
	}
	return strings.Join(parts, ",")
}

type sdkBatch = sdk.Batch

// TestConcurrentUse runs one parser of each format from several goroutines
// (run with -race): results must match a sequential parse.
func TestConcurrentUse(t *testing.T) {
	inputs := map[string][]byte{
		FormatDCGMCSV:      readTestdata(t, "dcgm_metrics.csv"),
		FormatNvidiaSMICSV: readTestdata(t, "nvidia-smi-query-gpu.csv"),
		FormatPrometheus:   readTestdata(t, "dcgm-exporter-metrics.txt"),
		FormatGPUTelJSON:   []byte(strings.Repeat(telObj+"\n", 50)),
	}
	for format, payload := range inputs {
		p := mustParser(t, format, Options{Location: time.UTC})
		var want sdk.Batch
		if err := p.Parse(payload, testMsgTime, "m", &want); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 3; i++ {
					var b sdk.Batch
					if err := p.Parse(payload, testMsgTime, "m", &b); err != nil {
						t.Error(err)
						return
					}
					if b.Len() != want.Len() || len(b.Series) != len(want.Series) || !slices.Equal(b.Points, want.Points) {
						t.Errorf("%s: concurrent parse differs", format)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

// TestMayBeFloat: mayBeFloat only rules out text strconv.ParseFloat
// rejects.
func TestMayBeFloat(t *testing.T) {
	for _, s := range []string{"0", "-1.5e3", "+.5", "1_000", "0x1p-2", "0X1P4", "inf", "-Inf", "+infinity", "NaN", "nan",
		"0 %", "12 W", "0x0000000000000001", "0xZZ", "P0", "Active", "Not Active", "[N/A]", "1/2", "", " 1", "1e", "0x1.8p1", "0x_1p0", "Infinity"} {
		_, err := strconv.ParseFloat(s, 64)
		parses := err == nil || errors.Is(err, strconv.ErrRange)
		if parses && !mayBeFloat([]byte(s)) {
			t.Errorf("mayBeFloat(%q) = false, but ParseFloat accepts it", s)
		}
	}
	for _, s := range []string{"0 %", "81559 MiB", "0x0000000000000001", "P0", "Active", "Not Active", "Default"} {
		if mayBeFloat([]byte(s)) {
			t.Errorf("mayBeFloat(%q) = true, want false", s)
		}
	}
}
