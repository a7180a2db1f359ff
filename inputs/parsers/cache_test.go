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

	objs := dcgmToTelJSON(t, dcgm)
	tel := ndjsonMessages(objs, 100)
	var telVar []string
	for i, v := range []string{"1", `"2"`, `"N/A"`, `"abc"`, "null", "9223372036854775794", `"5 W"`, "true", "x", "01", "-", `"\u0032"`, `"3`} {
		ts := fmt.Sprintf(`"2025-07-18T20:42:%02dZ"`, i)
		switch i {
		case 3:
			ts = `"yesterday"`
		case 4:
			ts = "1752871354000"
		case 5:
			ts = "null"
		}
		obj := func(s string) string { return strings.NewReplacer("@TS@", ts, "@V@", v).Replace(s) }
		telVar = append(telVar, obj(
			`{"metric_name":"first","value":1}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","gpu_id":0,"uuid":"GPU-1","value":@V@,"labels_raw":"job=\"j\""}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","gpu_id":0,"uuid":"GPU-1","value":@V@,"labels_raw":"job=\"k\""}`+"\n"+
				// Other spellings of the same series.
				`{"metric_name":"A","timestamp":@TS@,"gpu_id":"0","UUID":"GPU-1","value":@V@,"labels_raw":"job=\"j\""}`+"\n"+
				`{"timestamp": @TS@, "metric_name": "A", "gpu_id": 0, "uuid": "GPU-1", "VALUE": @V@, "labels_raw": "job=\"j\""}`+"\n"+
				`{"value":@V@,"timestamp":@TS@,"metric_name":"A","gpu_id":0,"uuid":"GPU-1","labels_raw":{"job":"j"}}`+"\n"+
				// No timestamp; no value; a key that looks like the
				// introducers inside a string; duplicates; bad pieces.
				`{"metric_name":"A","gpu_id":0,"uuid":"GPU-1","value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","gpu_id":0,"uuid":"GPU-1"}`+"\n"+
				`{"x":"\"timestamp\":1,\"value\":2","timestamp":@TS@,"metric_name":"A","value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","value":@V@,"value":3}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","Metric_Name":"B","value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","gpu_id":{},"value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","gpu_id":true,"value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","device":1,"value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","value":@V@,"labels_raw":"broken"}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A\u0042","value":@V@}`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","value":@V@} x`+"\n"+
				`{"timestamp":@TS@,"metric_name":"A","value":@V@,}`+"\n"))
		// One object per payload, pretty-printed, and an array.
		telVar = append(telVar, obj(`{"timestamp":@TS@,"metric_name":"A","gpu_id":0,"uuid":"GPU-1","value":@V@}`),
			obj("{\n \"timestamp\": @TS@,\n \"metric_name\": \"A\",\n \"value\": @V@\n}\n"),
			obj(`[{"timestamp":@TS@,"metric_name":"A","value":@V@},{"timestamp":@TS@,"metric_name":"B","value":@V@}]`))
	}
	out[FormatGPUTelJSON] = append(tel, toBytes(telVar)...)
	return out
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// uncached returns a parser of format whose row cache is off: every row
// is split, checked and labelled from scratch.
func uncached(format string) Parser {
	switch format {
	case FormatDCGMCSV:
		return newDCGMCSVWith(true)
	case FormatGPUTelJSON:
		return newGPUTelJSONWith(true)
	}
	panic(format)
}

// TestCacheSteadyState parses message sequences three times through one
// parser (so the later passes hit its caches) and compares every result
// with a parser whose row cache is off.
func TestCacheSteadyState(t *testing.T) {
	for format, payloads := range cachePayloads(t) {
		t.Run(format, func(t *testing.T) {
			shared := mustParser(t, format, Options{Location: time.UTC})
			for pass := 0; pass < 3; pass++ {
				for i, pl := range payloads {
					var got, want sdk.Batch
					errGot := shared.Parse(pl, testMsgTime, "m", &got)
					errWant := uncached(format).Parse(pl, testMsgTime, "m", &want)
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
