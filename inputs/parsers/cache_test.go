package parsers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// dumpBatch renders a batch completely (series, points, rejects), for
// comparisons.
func dumpBatch(b *sdk.Batch) string {
	var sb strings.Builder
	for i, s := range b.Series {
		fmt.Fprintf(&sb, "S%d %q %s\n", i, s.Name, s.Labels.String())
	}
	for _, p := range b.Points {
		fmt.Fprintf(&sb, "P %d %d %v\n", p.Series, p.Time, p.Value)
	}
	for _, r := range b.Rejects {
		fmt.Fprintf(&sb, "R %q %q %q\n", r.Reason, r.Position, r.Raw)
	}
	return sb.String()
}

func sameBatch(a, b *sdk.Batch) bool {
	if len(a.Series) != len(b.Series) || !slices.Equal(a.Points, b.Points) || len(a.Rejects) != len(b.Rejects) {
		return false
	}
	return dumpBatch(a) == dumpBatch(b)
}

// cachePayloads are realistic message sequences per format: the same
// series again and again, plus variations that must not be confused with
// them (other values and timestamps, a changed label, quoting, bad rows).
func cachePayloads(t *testing.T) map[string][][]byte {
	dcgm := readTestdata(t, "dcgm_metrics.csv")
	msgs := splitCSVMessages(dcgm, 100)
	row := func(ts, metric, value, labels string) string {
		return `"` + ts + `","` + metric + `","0","nvidia0","GPU-1","H100","host1","","","","` + value + `","` + labels + `"`
	}
	lr := `DCGM_FI_DRIVER_VERSION=""535"",Hostname=""host1"",gpu=""0"",job=""j""`
	lr2 := `DCGM_FI_DRIVER_VERSION=""535"",Hostname=""host1"",gpu=""0"",job=""k""`
	var dcgmVar []string
	for i, v := range []string{"1", "2", "N/A", "abc", "9223372036854775794", "3.5", " 4 ", "5 W"} {
		ts := fmt.Sprintf("2025-07-18T20:42:%02dZ", i)
		if i == 3 {
			ts = "yesterday"
		}
		dcgmVar = append(dcgmVar, dcgmHeader+"\n"+
			row(ts, "A", v, lr)+"\n"+
			row(ts, "A", v, lr2)+"\n"+
			row(ts, "B", v, lr)+"\n"+
			// Same series, other spellings: unquoted fields, spaces, a
			// doubled quote in the value, label order.
			strings.ReplaceAll(row(ts, "A", v, lr), `"0","nvidia0"`, `0, nvidia0`)+"\n"+
			`"`+ts+`","A","0","nvidia0","GPU-1","H100","host1","","","","""`+v+`""","`+lr+`"`+"\n"+
			row(ts, "A", v, `job=""j"",gpu=""0"",Hostname=""host1"",DCGM_FI_DRIVER_VERSION=""535""`)+"\n"+
			row(ts, "A", v, `broken`)+"\n"+
			row(ts, "A", v, lr)+",extra\n")
	}
	// Another column order, then the first one again.
	dcgmVar = append(dcgmVar, "value,metric_name,UUID,timestamp\n1,A,GPU-1,2025-07-18T20:42:34Z\n2,A,GPU-1,\n",
		"metric_name,value\nA,1\n")
	out := map[string][][]byte{FormatDCGMCSV: append(msgs, toBytes(dcgmVar)...)}
	return out
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// TestCacheSteadyState parses message sequences three times through one
// parser (so the later passes hit its caches) and compares every result
// with a parser that has never seen anything.
func TestCacheSteadyState(t *testing.T) {
	for format, payloads := range cachePayloads(t) {
		t.Run(format, func(t *testing.T) {
			shared := mustParser(t, format, Options{Location: time.UTC})
			for pass := 0; pass < 3; pass++ {
				for i, pl := range payloads {
					var got, want sdk.Batch
					errGot := shared.Parse(pl, testMsgTime, "m", &got)
					errWant := mustParser(t, format, Options{Location: time.UTC}).Parse(pl, testMsgTime, "m", &want)
					if fmt.Sprint(errGot) != fmt.Sprint(errWant) {
						t.Fatalf("pass %d payload %d: error %v, want %v", pass, i, errGot, errWant)
					}
					if !sameBatch(&got, &want) {
						t.Fatalf("pass %d payload %d differs:\n%s\nwant:\n%s", pass, i, dumpBatch(&got), dumpBatch(&want))
					}
					if errGot == nil {
						checkBatch(t, &got)
					}
				}
			}
		})
	}
}

// TestCacheBatchOwnsLabels: a processor changing the labels of one batch
// in place must not change what the next payload gets.
func TestCacheBatchOwnsLabels(t *testing.T) {
	payload := []byte(dcgmHeader + "\n" + `"2025-07-18T20:42:34Z","A","0","nvidia0","GPU-1","H100","host1","","","","1",""` + "\n")
	p := mustParser(t, FormatDCGMCSV, Options{})
	var b1, b2 sdk.Batch
	if err := p.Parse(payload, testMsgTime, "m", &b1); err != nil {
		t.Fatal(err)
	}
	for i := range b1.Series[0].Labels {
		b1.Series[0].Labels[i].Value = "changed"
	}
	if err := p.Parse(payload, testMsgTime, "m", &b2); err != nil {
		t.Fatal(err)
	}
	if got := b2.Series[0].Labels.String(); strings.Contains(got, "changed") {
		t.Fatalf("second batch sees the first batch's edit: %s", got)
	}
}

// TestSteadyStateAllocs: once a parser has seen the series, a payload
// costs at most a few allocations (the label slab its batch owns), not
// one per sample.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop states at random")
	}
	tests := []struct {
		format   string
		payloads [][]byte
		perMsg   float64
	}{
		{FormatDCGMCSV, splitCSVMessages(readTestdata(t, "dcgm_metrics.csv"), 100), 2},
	}
	for _, tt := range tests {
		p := mustParser(t, tt.format, Options{Location: time.UTC})
		var b sdk.Batch
		run := func() {
			for _, pl := range tt.payloads {
				b.Reset()
				if err := p.Parse(pl, testMsgTime, "m", &b); err != nil {
					t.Fatal(err)
				}
			}
		}
		run()
		if got := testing.AllocsPerRun(5, run) / float64(len(tt.payloads)); got > tt.perMsg {
			t.Errorf("%s: %.1f allocations per payload, want <= %v", tt.format, got, tt.perMsg)
		}
	}
}
