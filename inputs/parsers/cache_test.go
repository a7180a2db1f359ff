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
	out[FormatPrometheus] = promVariants(t)
	return out
}

// promVariants are the real dcgm-exporter scrape and variations of it
// that the Prometheus fast path must either emit exactly as expfmt does or
// hand to expfmt: other values and timestamps, other spacing, lines the
// cache knows in shapes or contexts expfmt rejects or reads otherwise.
func promVariants(t testing.TB) [][]byte {
	scrape := string(readTestdata(t, "dcgm-exporter-metrics.txt"))
	lines := strings.Split(strings.TrimSuffix(scrape, "\n"), "\n")
	// each rewrites every sample line with f.
	each := func(f func(i int, series, value string) string) string {
		var sb strings.Builder
		for i, l := range lines {
			if strings.HasPrefix(l, "#") {
				sb.WriteString(l)
			} else {
				sp := strings.LastIndexByte(l, ' ')
				sb.WriteString(f(i, l[:sp], l[sp+1:]))
			}
			sb.WriteByte('\n')
		}
		return sb.String()
	}
	first := lines[2] // the first sample line
	sp := strings.LastIndexByte(first, ' ')
	firstSeries := first[:sp]
	vs := []string{
		scrape,
		scrape,
		each(func(i int, s, v string) string { return fmt.Sprintf("%s %d", s, i) }),
		each(func(i int, s, v string) string { return s + " " + v + " 1735787045123" }),
		each(func(i int, s, v string) string { return s + "\t" + v + "  \t1735787045123" }),
		// Values and timestamps expfmt parses its own way.
		each(func(i int, s, v string) string {
			return s + " " + []string{"NaN", "+Inf", "-Inf", "1.5e3", ".5", "Nan", "inf", "-0", "1e-400"}[i%9]
		}),
		each(func(i int, s, v string) string { return s + " " + v + " " }),
		each(func(i int, s, v string) string { return s + v }),
		each(func(i int, s, v string) string { return s + " " + v + "\r" }),
		each(func(i int, s, v string) string { return " " + s + " " + v }),
		// DCGM blank sentinels.
		each(func(i int, s, v string) string { return s + " 9223372036854775794" }),
		each(func(i int, s, v string) string { return s + " 140737488355328" }),
		// A second HELP line inside the family.
		lines[0] + "\n" + lines[1] + "\n" + first + "\n" + lines[0] + "\n" + first + "\n",
		// No newline at the end; a generic comment; only comments.
		strings.TrimSuffix(scrape, "\n"),
		"# hello\n" + scrape,
		"# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).\n# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n",
		// A second HELP or TYPE line; a TYPE line after the samples.
		scrape + lines[0] + "\n",
		scrape + lines[1] + "\n",
		first + "\n" + lines[0] + "\n" + lines[1] + "\n",
		lines[0] + "\n" + first + "\n" + lines[1] + "\n",
		strings.Replace(lines[1], "gauge", "GAUGE", 1) + "\n" + first + "\n",
		strings.Replace(lines[1], "gauge", "counter", 1) + "\n" + first + "\n",
		strings.Replace(lines[1], "gauge", "histogram", 1) + "\n" + firstSeries + " 1\n",
		strings.Replace(lines[1], "gauge", "summary", 1) + "\n" + firstSeries + " 1\n",
		strings.Replace(lines[1], "gauge", "bogus", 1) + "\n" + first + "\n",
		strings.Replace(lines[0], "(in MHz)", `(in \q)`, 1) + "\n" + first + "\n",
		// A family's samples apart; the same sample twice.
		first + "\n" + lines[5] + "\n" + first + "\n",
		first + "\n" + first + "\n",
		// A histogram beside the scrape.
		scrape + "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
		// A changed label; an empty label; quoting inside values.
		strings.Replace(scrape, `gpu="0"`, `gpu="1"`, -1),
		strings.Replace(scrape, `container="cuda"`, `container=""`, -1),
		strings.Replace(scrape, `container="cuda"`, `container="a} 5 \"b\" \\"`, -1),
		strings.Replace(scrape, `container="cuda"`, `container="cuda",container="x"`, -1),
		strings.Replace(scrape, `{gpu="0"`, ` {gpu="0"`, -1),
		strings.Replace(scrape, `{gpu="0"`, `{"gpu"="0"`, -1),
		"up 1\nup 2 1735787045123\n",
		"up 1\nbad line\nup 3\n",
	}
	// Values and timestamps that expfmt rejects, or parses its own way, each
	// in a payload of its own.
	for _, v := range []string{"1e400", "1_0", "0x1p3", "0x10", "0X1P-2", "abc", "", "1.", "+5", "١"} {
		vs = append(vs, each(func(i int, s, _ string) string { return s + " " + v }))
	}
	for _, ts := range []string{"12.5", "1 2", "-5", "x", "9223372036854775808", "+7", "0x10", "1_000"} {
		vs = append(vs, each(func(i int, s, v string) string { return s + " " + v + " " + ts }))
	}
	return toBytes(vs)
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
	case FormatPrometheus:
		return newPrometheusWith(true)
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

// TestSharedLabels: with Options.SharedLabels every batch gets the same
// label slice for a series (clipped, so an append cannot write into it);
// without it each batch gets its own copy. Both give the same samples.
func TestSharedLabels(t *testing.T) {
	payloads := cachePayloads(t)
	for _, format := range []string{FormatDCGMCSV, FormatGPUTelJSON, FormatPrometheus} {
		t.Run(format, func(t *testing.T) {
			pl := payloads[format][0]
			shared := mustParser(t, format, Options{Location: time.UTC, SharedLabels: true})
			own := mustParser(t, format, Options{Location: time.UTC})
			if !SharesLabels(shared) || SharesLabels(own) {
				t.Fatalf("SharesLabels: %v with the option, %v without", SharesLabels(shared), SharesLabels(own))
			}
			var s1, s2, o1, o2 sdk.Batch
			for _, c := range []struct {
				p Parser
				b *sdk.Batch
			}{{shared, &s1}, {shared, &s2}, {own, &o1}, {own, &o2}} {
				if err := c.p.Parse(pl, testMsgTime, "m", c.b); err != nil {
					t.Fatal(err)
				}
			}
			if !sameBatch(&s1, &o1) || !sameBatch(&s2, &o2) {
				t.Fatalf("shared labels change the samples:\n%s\nwant:\n%s", dumpBatch(&s1), dumpBatch(&o1))
			}
			labelled := 0
			for i := range s1.Series {
				ls1, ls2 := s1.Series[i].Labels, s2.Series[i].Labels
				if len(ls1) == 0 {
					continue
				}
				labelled++
				if &ls1[0] != &ls2[0] || cap(ls1) != len(ls1) {
					t.Fatalf("series %d: shared labels not shared or not clipped (cap %d, len %d)", i, cap(ls1), len(ls1))
				}
				if &o1.Series[i].Labels[0] == &o2.Series[i].Labels[0] {
					t.Fatalf("series %d: without SharedLabels two batches share a label slice", i)
				}
			}
			if labelled == 0 {
				t.Fatal("no labelled series")
			}
			// Series with equal label sets (a GPU's metrics) share one
			// template.
			slices := map[*sdk.Label]bool{}
			sets := map[string]bool{}
			for _, ser := range s1.Series {
				if len(ser.Labels) > 0 {
					slices[&ser.Labels[0]] = true
					sets[ser.Labels.String()] = true
				}
			}
			if len(slices) != len(sets) {
				t.Fatalf("%d label slices for %d distinct label sets", len(slices), len(sets))
			}
		})
	}
}
