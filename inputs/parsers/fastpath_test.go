package parsers

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// The template fast paths (rowTemplate: a known row's timestamp and value
// found where the predicted row had them, the rest of the line compared
// with that row's key) must give exactly what the full parsers give. The
// tests here parse a base row until its row is known and predicted, then
// variants of it (other values and timestamps, other spellings, other
// structure, bad pieces), and compare every result with a parser whose
// caches are off.

// diffSequence parses payloads in order through one cached parser and
// compares every result (error, series, points, rejects) with a parser
// whose row cache is off. It returns the cached parser.
func diffSequence(t testing.TB, format string, payloads [][]byte) Parser {
	t.Helper()
	p := mustParser(t, format, Options{Location: time.UTC})
	diffSequenceWith(t, p, format, payloads)
	return p
}

// diffSequenceWith is diffSequence through parser p.
func diffSequenceWith(t testing.TB, p Parser, format string, payloads [][]byte) {
	t.Helper()
	for i, pl := range payloads {
		var got, want sdk.Batch
		errGot := p.Parse(pl, testMsgTime, "m", &got)
		errWant := uncached(format).Parse(pl, testMsgTime, "m", &want)
		if fmt.Sprint(errGot) != fmt.Sprint(errWant) {
			t.Fatalf("payload %d %q: error %v, want %v", i, pl, errGot, errWant)
		}
		if !sameBatch(&got, &want) {
			t.Fatalf("payload %d %q differs:\n%s\nwant:\n%s", i, pl, dumpBatch(&got), dumpBatch(&want))
		}
		if errGot == nil {
			checkBatch(t, &got)
		}
	}
}

// tplHits returns how many rows the template fast path of p emitted (p
// must be idle).
func tplHits(p Parser) int {
	n := 0
	switch p := p.(type) {
	case *gpuTelJSON:
		if st := p.pool.last.Load(); st != nil {
			n += st.tplHits
		}
		for _, st := range p.pool.free {
			n += st.tplHits
		}
	case *dcgmCSV:
		if st := p.pool.last.Load(); st != nil {
			n += st.tplHits
		}
		for _, st := range p.pool.free {
			n += st.tplHits
		}
	}
	return n
}

var (
	telValueRe = regexp.MustCompile(`("value"\s*:\s*)(-?[0-9][0-9.eE+-]*|"(?:[^"\\]|\\.)*"|null|true|false)`)
	telTSRe    = regexp.MustCompile(`("timestamp"\s*:\s*)(-?[0-9][0-9.eE+-]*|"(?:[^"\\]|\\.)*"|null|true|false)`)
	telGPURe   = regexp.MustCompile(`("gpu_id"\s*:\s*)(-?[0-9][0-9.eE+-]*|"(?:[^"\\]|\\.)*"|null|true|false)`)
	telLRRe    = regexp.MustCompile(`,?"labels_raw"\s*:\s*"(?:[^"\\]|\\.)*"`)
)

// telVariants returns variants of object base: every way the fast path
// could be fooled that we could think of.
func telVariants(base string) []string {
	var out []string
	set := func(re *regexp.Regexp, v string) {
		out = append(out, re.ReplaceAllStringFunc(base, func(m string) string {
			return re.FindStringSubmatch(m)[1] + v
		}))
	}
	for _, v := range []string{"1", "100", "0", "-0", "0.5", "1e3", "1E-3", "68.12", "123456789012345", "1234567890123456",
		"12345678901234567890", "0.000000000000001", `"2"`, `" 3 "`, `"N/A"`, `"n/a"`, `"[N/A]"`, `"abc"`, `"5 W"`, `"0x1F"`, `"P3"`,
		`"Active"`, "null", "true", "false", "9223372036854775794", "2147483647", "2147483631", "140737488355328",
		`"\u0032"`, `"é"`, `"\n"`, "{}", "[1]", `{"a":1}`, `1,"value":2`, ` 1`, `1 `, `"3`, "01", "-", "1.", ".5", "NaN",
		`"NaN"`, `""`, `"1_000"`, "-1.5", `"-1.5"`, "1.7976931348623157e309", `"1e400"`, `1,"x":1`, `"`} {
		set(telValueRe, v)
	}
	for _, v := range []string{`"2025-07-18T20:42:35Z"`, `"2025-07-18T20:42:34.123456789Z"`, `"2025-07-18T22:42:34+02:00"`,
		`"yesterday"`, "1752871354", "1752871354000", "1752871354.5", `"1752871354"`, "null", `""`, "-1", "{}",
		`"\u0032025-07-18T20:42:34Z"`, "true", `"2025-07-18T20:42:34Z","x":1`, "1e400"} {
		set(telTSRe, v)
	}
	for _, v := range []string{`"0"`, "1", "10", "null", "true", "{}", `"x"`, "-1", "1.5", `""`, `"\u0031"`} {
		set(telGPURe, v)
	}
	rep := func(old, new string) { out = append(out, strings.Replace(base, old, new, 1)) }
	rep(`"metric_name":`, `"Metric_Name":`)
	rep(`"value":`, `"VALUE":`)
	rep(`"value":`, `"val\u0075e":`)
	rep(`"value":`, `"value":0,"value":`)
	rep(`"value":`, `"valuex":`)
	rep(`"timestamp":`, `"Timestamp":`)
	rep(`"timestamp":`, `"timestamp":null,"timestamp":`)
	rep(`"metric_name":"`, `"metric_name":"\u0041`)
	rep(`"metric_name":"`, `"metric_name":"Ü`)
	rep(`"metric_name":"`, `"metric_name":"`+"\xff")
	rep(`"uuid":"`, `"uuid":"\u0041`)
	rep(`"uuid":"`, `"uuid":"Ü`)
	rep(`"gpu_id":`, `"gpu":`)
	rep(`"model_name":`, `"modelName":`)
	rep("{", `{"x":1,`)
	rep("{", `{"x":"\"value\":1,\"timestamp\":2",`)
	rep("{", "{\n  ")
	rep("{", "{\t")
	rep(":", ": ")
	rep(",", " ,")
	rep(",", ",\n")
	out = append(out,
		strings.ReplaceAll(base, `":`, `": `),
		strings.ReplaceAll(base, `,"`, `, "`),
		strings.TrimSuffix(base, "}")+`,"x":1}`,
		strings.TrimSuffix(base, "}")+`,"x":{"value":1}}`,
		strings.TrimSuffix(base, "}")+`,}`,
		strings.TrimSuffix(base, "}"),
		strings.TrimSuffix(base, "}")+`,"labels_raw":{"job":"j","n":1}}`,
		base+" x",
		base+" ",
		" "+base,
		base+"\r",
		"\ufeff"+base,
		telLRRe.ReplaceAllString(base, ""),
		telLRRe.ReplaceAllString(base, `,"labels_raw":"broken"`),
		telLRRe.ReplaceAllString(base, `,"labels_raw":{"job":"j"}`),
		telLRRe.ReplaceAllString(base, `,"labels_raw":"job=\"j\\\"k\""`),
		telLRRe.ReplaceAllString(base, `,"labels_raw":null`),
		strings.Replace(base, `"metric_name":"`, `"metric_name":"`+"\u00e9", 1),
		"["+base+"]",
		base+base,
	)
	// Every single-byte change of the part before the value (an identity
	// byte of the same length), a few of them.
	for i := 1; i < len(base)-1; i += max(1, len(base)/12) {
		b := []byte(base)
		if b[i] >= 'a' && b[i] < 'z' {
			b[i]++
			out = append(out, string(b))
		}
	}
	return out
}

func TestGPUTelJSONFastPath(t *testing.T) {
	objs := dcgmToTelJSON(t, readTestdata(t, "dcgm_metrics.csv"))
	bases := []string{
		telObj,
		string(objs[0]), string(objs[1]), string(objs[200]),
		`{"value":1,"timestamp":"2025-07-18T20:42:34Z","metric_name":"A","gpu_id":0}`,
		`{"metric_name":"A","gpu_id":0,"uuid":"GPU-1","value":1}`,
		`{"timestamp":"2025-07-18T20:42:34Z","metric_name":"A","gpu_id":"0"}`,
		"{\n \"timestamp\": \"2025-07-18T20:42:34Z\",\n \"metric_name\": \"A\",\n \"value\": 1\n}",
		`{"timestamp":1752871354,"metric_name":"A","value":"5 W","labels_raw":"job=\"j\""}`,
	}
	p := mustParser(t, FormatGPUTelJSON, Options{Location: time.UTC})
	variants := 0
	for _, base := range bases {
		for _, v := range telVariants(base) {
			variants++
			b, vb := []byte(base), []byte(v)
			lines := []byte(base + "\n" + v + "\n" + base + "\n")
			// One object per payload: the base until it is predicted (each
			// payload's row follows the last one's), then the variant.
			seq := [][]byte{b, b, b, vb, vb, b, vb, b}
			// Newline-delimited, and both shapes mixed.
			seq = append(seq, lines, lines, vb, lines, b, vb)
			diffSequenceWith(t, p, FormatGPUTelJSON, seq)
			// A fresh parser: the variant first.
			diffSequence(t, FormatGPUTelJSON, [][]byte{vb, vb, vb, b, b, vb})
			// White space and line breaks around it: one object, or one
			// line of newline-delimited objects.
			for _, w := range [][2]string{{" ", " \n"}, {"\n", ""}, {"", "\n"}, {"\n ", " \r\n"}, {"\t", "\n\n"}, {",", ","}} {
				wb := []byte(w[0] + v + w[1])
				diffSequenceWith(t, p, FormatGPUTelJSON, [][]byte{b, b, wb, wb, b, wb})
			}
		}
	}
	hits := tplHits(p)
	t.Logf("%d variants, %d template hits", variants, hits)
	if hits < variants {
		t.Errorf("template fast path taken %d times for %d variants", hits, variants)
	}
}

// rawCSVFields splits a CSV line at the commas outside quotes, keeping
// each field as written.
func rawCSVFields(line string) []string {
	var out []string
	q := false
	start := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '"':
			q = !q
		case ',':
			if !q {
				out = append(out, line[start:i])
				start = i + 1
			}
		}
	}
	return append(out, line[start:])
}

// csvVariants returns variants of row base (fields in the order of
// dcgmHeader when full is true).
func csvVariants(base string, tsCol, valCol int) []string {
	fields := rawCSVFields(base)
	var out []string
	with := func(col int, v string) {
		if col < 0 || col >= len(fields) {
			return
		}
		f := append([]string(nil), fields...)
		f[col] = v
		out = append(out, strings.Join(f, ","))
	}
	for _, v := range []string{`"1"`, `"100"`, `1`, ` 1 `, `" 1 "`, `""`, ``, `"N/A"`, `N/A`, `"abc"`, `"2147483647"`, `"1,5"`,
		`"""1"""`, `"1"x`, `"1`, `1"`, `"5 W"`, `"-0"`, `"1.5"`, `"1e3"`, `"0x1F"`, `"P0"`, `"9223372036854775794"`, `"1234567890123456"`,
		`"68.12"`, "\t2\t", `"[N/A]"`, `"1",""`, `"é"`} {
		with(valCol, v)
	}
	// Line breaks inside the cut fields (quoted, the quotes on two lines).
	with(valCol, "\"1\n2\"")
	with(tsCol, "\"2025-07-18T20:42:35Z\nx\"")
	with(tsCol, "\"2025-07-18T20:42:35Z\r\nx\"")
	for _, v := range []string{`"2025-07-18T20:42:35Z"`, `2025-07-18T20:42:35Z`, `""`, ``, `"yesterday"`, `"1752871354"`,
		` "2025-07-18T20:42:35Z" `, `"2025-07-18T20:42:35.5Z"`, `"2025-07-18T20:42:35Z","x"`, `"2025-07-18T20:42:35Z`, `"1752871354000"`} {
		with(tsCol, v)
	}
	for col := range fields {
		if col == tsCol || col == valCol {
			continue
		}
		f := fields[col]
		switch {
		case len(f) >= 2 && f[0] == '"':
			with(col, strings.Trim(f, `"`))                  // unquoted
			with(col, ` `+f+` `)                             // spaces around
			with(col, `"`+f[1:len(f)-1]+`x"`)                // one byte more
			with(col, `"`+strings.Repeat("y", len(f)-2)+`"`) // same length, other bytes
			with(col, `"a""b"`)                              // doubled quote
		default:
			with(col, `"`+f+`"`)
			with(col, f+"z")
		}
	}
	out = append(out,
		base+`,"extra"`,
		strings.Join(fields[:len(fields)-1], ","),
		base+" ",
		" "+base,
		strings.ReplaceAll(base, `","`, `", "`),
		base+"\r",
	)
	return out
}

func TestDCGMCSVFastPath(t *testing.T) {
	lines := strings.Split(string(readTestdata(t, "dcgm_metrics.csv")), "\n")
	type baseRow struct {
		header, row   string
		tsCol, valCol int
	}
	bases := []baseRow{
		{lines[0], lines[1], 0, 10},
		{lines[0], lines[2], 0, 10},
		{lines[0], lines[500], 0, 10},
		{dcgmHeader, `"2025-07-18T20:42:34Z","A","0","nvidia0","GPU-1","H100","host1","","","","1","job=""j"""`, 0, 10},
		{"metric_name,value", "A,1", -1, 1},
		{"value,metric_name,UUID,timestamp", "1,A,GPU-1,2025-07-18T20:42:34Z", 3, 0},
		{"metric_name,timestamp,uuid,value,labels_raw", `"A", "2025-07-18T20:42:34Z" ,"GPU-1", "1" ,"job=""j"""`, 1, 3},
	}
	p := mustParser(t, FormatDCGMCSV, Options{Location: time.UTC})
	variants := 0
	for _, b := range bases {
		for _, v := range csvVariants(b.row, b.tsCol, b.valCol) {
			variants++
			pb := []byte(b.header + "\n" + b.row + "\n")
			pv := []byte(b.header + "\n" + v + "\n")
			multi := []byte(b.header + "\n" + b.row + "\n" + v + "\n" + b.row + "\n" + v + "\n")
			diffSequenceWith(t, p, FormatDCGMCSV, [][]byte{pb, pb, pb, pv, pv, pb, pv, multi, multi, pv, pb})
			diffSequence(t, FormatDCGMCSV, [][]byte{pv, pv, pv, pb, pb, pv, multi, multi})
		}
	}
	hits := tplHits(p)
	t.Logf("%d variants, %d template hits", variants, hits)
	if hits < variants {
		t.Errorf("template fast path taken %d times for %d variants", hits, variants)
	}
	// Line ends: "\r\n", a "\r" of the row's own before "\r\n" or "\n"
	// or the end, no line end at all; unquoted last fields, where such a
	// "\r" is part of the row.
	for _, b := range []baseRow{bases[0], bases[3], {"timestamp,metric_name,value,pod", "2025-07-18T20:42:34Z,A,1,p", 0, 2},
		{"timestamp,value,metric_name", `"2025-07-18T20:42:34Z","1",A`, 0, 1}} {
		for _, ends := range [][]string{{"\n", "\n", "\n"}, {"\r\n", "\r\n", "\r\n"}, {"\r\r\n", "\r\n", "\n"},
			{"\r\n", "\r\r\n", "\r"}, {"\n", "\r\r\n", ""}, {"\r\r\n", "\r\r\n", "\r\r"}, {"\r\r\n", "\r\r\n", "\r\n"},
			{"\r\r\n", "\r\r\n", "\n"}} {
			var pl []byte
			pl = append(pl, b.header+"\n"...)
			for i := 0; i < 4; i++ {
				for _, e := range ends {
					pl = append(pl, b.row+e...)
				}
			}
			// The last line without a line end, after rows whose "\r" is
			// their own.
			pl = append(pl, b.row+"\r\r\n"+b.row+"\r\r\n"+b.row+"\r"...)
			pv := bytes.ReplaceAll(pl, []byte(`"2025-07-18T20:42:34Z"`), []byte(`"2025-07-18T20:42:36Z"`))
			diffSequence(t, FormatDCGMCSV, [][]byte{pl, pl, pl, pv, pl, pv})
		}
	}
	// The real export cut into messages, then the same messages with
	// every value and timestamp changed.
	msgs := splitCSVMessages(readTestdata(t, "dcgm_metrics.csv"), 100)
	var changed [][]byte
	for i, m := range msgs {
		m = bytes.ReplaceAll(m, []byte(`"2025-07-18T20:42:34Z"`), []byte(fmt.Sprintf(`"2025-07-18T20:43:%02dZ"`, i%60)))
		m = bytes.ReplaceAll(m, []byte(`","0","DCGM`), []byte(`","1234.5","DCGM`))
		changed = append(changed, m)
	}
	q := diffSequence(t, FormatDCGMCSV, append(append(append(msgs, msgs...), changed...), msgs...))
	if tplHits(q) == 0 {
		t.Error("template fast path not taken on the export")
	}
}

// TestPlainDecimal: the quick decimal parser gives exactly what
// strconv.ParseFloat gives, and declines everything else.
func TestPlainDecimal(t *testing.T) {
	ins := []string{"0", "-0", "1", "-1", "007", "0.5", "-0.5", "1.5", "68.12", "689.457", "123456789012345",
		"999999999999999", "99999999999999.9", "0.00000000000001", "1234567.89012345", "9007199254740993",
		"1234567890123456", "1.", ".5", "-", "", "1..2", "1.2.3", "1e3", "+1", "1_000", "0x10", " 1", "1 ", "--1", "-.5", "12a"}
	for i := 0; i < 20000; i++ {
		// Pseudo-random digit strings with a dot somewhere.
		n := 1 + i%16
		b := make([]byte, 0, n+2)
		if i%3 == 0 {
			b = append(b, '-')
		}
		x := uint64(i)*0x9E3779B97F4A7C15 + 12345
		for j := 0; j < n; j++ {
			b = append(b, byte('0'+x%10))
			x /= 10
			if x == 0 {
				x = uint64(i*j+7) * 0x9E3779B97F4A7C15
			}
		}
		if i%2 == 0 && n > 1 {
			d := 1 + int(x%uint64(n-1))
			b = append(b[:d+1], b[d:]...)
			b[d] = '.'
			if b[0] == '-' && d == 1 {
				b[1], b[2] = b[2], '.'
			}
		}
		ins = append(ins, string(b))
	}
	for _, s := range ins {
		v, ok := plainDecimal([]byte(s))
		if !ok {
			continue
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || v != want || (v == 0 && fmt.Sprint(v) != fmt.Sprint(want)) {
			t.Fatalf("plainDecimal(%q) = %v, ParseFloat gives %v, %v", s, v, want, err)
		}
		if fmt.Sprintf("%b", v) != fmt.Sprintf("%b", want) {
			t.Fatalf("plainDecimal(%q) = %b, want %b", s, v, want)
		}
	}
	for _, s := range []string{"1.", ".5", "-", "", "1..2", "1e3", "+1", "1_000", "0x10", " 1", "1234567890123456", "1.234567890123456"} {
		if _, ok := plainDecimal([]byte(s)); ok {
			t.Errorf("plainDecimal(%q) accepted", s)
		}
	}
}

// withKeyBudget returns a parser of format whose states keep at most
// budget bytes of row keys (0: none; rows are then recognised by their
// hash, as when the budget is spent).
func withKeyBudget(format string, budget int) Parser {
	switch format {
	case FormatDCGMCSV:
		p := newDCGMCSV()
		mk := p.pool.make
		p.pool.make = func() *dcgmState { st := mk(); st.cache.keyBudget = budget; return st }
		return p
	case FormatGPUTelJSON:
		p := newGPUTelJSON()
		mk := p.pool.make
		p.pool.make = func() *telState { st := mk(); st.cache.keyBudget = budget; return st }
		return p
	}
	panic(format)
}

// TestFastPathKeyBudget: with no row keys kept, or only some, the fast
// paths check rows by their hash instead, with the same results.
func TestFastPathKeyBudget(t *testing.T) {
	for _, budget := range []int{0, 2000} {
		objs := dcgmToTelJSON(t, readTestdata(t, "dcgm_metrics.csv"))
		p := withKeyBudget(FormatGPUTelJSON, budget)
		for _, v := range telVariants(string(objs[3])) {
			b, vb := objs[3], []byte(v)
			diffSequenceWith(t, p, FormatGPUTelJSON, [][]byte{b, b, b, vb, vb, b, vb})
		}
		msgs := ndjsonMessages(objs, 100)
		diffSequenceWith(t, p, FormatGPUTelJSON, append(append(msgs, msgs...), msgs...))
		if tplHits(p) == 0 {
			t.Errorf("budget %d: gpu-tel-json template fast path not taken", budget)
		}

		q := withKeyBudget(FormatDCGMCSV, budget)
		lines := strings.Split(string(readTestdata(t, "dcgm_metrics.csv")), "\n")
		for _, v := range csvVariants(lines[7], 0, 10) {
			pb := []byte(lines[0] + "\n" + lines[7] + "\n")
			pv := []byte(lines[0] + "\n" + v + "\n")
			diffSequenceWith(t, q, FormatDCGMCSV, [][]byte{pb, pb, pb, pv, pv, pb, pv})
		}
		csv := splitCSVMessages(readTestdata(t, "dcgm_metrics.csv"), 100)
		diffSequenceWith(t, q, FormatDCGMCSV, append(append(csv, csv...), csv...))
		if tplHits(q) == 0 {
			t.Errorf("budget %d: dcgm-csv template fast path not taken", budget)
		}
	}
}

// promHost is the real dcgm-exporter scrape (testdata) as host would
// serve it with gpus GPUs: each family's HELP and TYPE lines, then its
// sample for every GPU (gpu, UUID, device and Hostname rewritten).
func promHost(t testing.TB, host string, gpus int) string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(readTestdata(t, "dcgm-exporter-metrics.txt")), "\n"), "\n")
	var sb strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, "#") {
			sb.WriteString(l + "\n")
			continue
		}
		l = strings.Replace(l, `Hostname="lke529760-766837-0a634ab30000"`, `Hostname="`+host+`"`, 1)
		for g := 0; g < gpus; g++ {
			r := strings.NewReplacer(`gpu="0"`, fmt.Sprintf(`gpu="%d"`, g), `device="nvidia0"`, fmt.Sprintf(`device="nvidia%d"`, g),
				`UUID="GPU-a8394b51`, fmt.Sprintf(`UUID="GPU-%08d`, g))
			sb.WriteString(r.Replace(l) + "\n")
		}
	}
	return sb.String()
}

// promState returns the idle state of a Prometheus parser.
func promStateOf(t testing.TB, p Parser) *promState {
	t.Helper()
	st := p.(*prometheusText).pool.last.Load()
	if st == nil {
		t.Fatal("no idle parser state")
	}
	return st
}

// TestPrometheusFirstSight: a host's first scrape, when every name and
// label set in it is known from other hosts' scrapes or can be learned
// from a few of its lines, is emitted without expfmt parsing it whole,
// and gives exactly what expfmt gives; so do first scrapes whose new lines
// are unusual in every way the composition could get wrong.
func TestPrometheusFirstSight(t *testing.T) {
	p := mustParser(t, FormatPrometheus, Options{Location: time.UTC})
	diffSequenceWith(t, p, FormatPrometheus, toBytes([]string{promHost(t, "h1", 4)}))
	st := promStateOf(t, p)
	if st.fullParses != 1 || st.firstSights != 0 {
		t.Fatalf("first host: %d full parses, %d first sights; want 1, 0", st.fullParses, st.firstSights)
	}
	// Other hosts: their label sets are new, the names are not.
	diffSequenceWith(t, p, FormatPrometheus, toBytes([]string{promHost(t, "h2", 4), promHost(t, "h3", 8), promHost(t, "h2", 4)}))
	if st.fullParses != 1 || st.firstSights != 2 {
		t.Fatalf("later hosts: %d full parses, %d first sights; want 1, 2", st.fullParses, st.firstSights)
	}

	// First scrapes of further hosts, each with something new in it.
	host := 10
	next := func(f func(s string) string) string {
		host++
		return f(promHost(t, fmt.Sprintf("h%d", host), 2))
	}
	known := promHost(t, "h1", 4)
	knownSample := strings.Split(known, "\n")[2] // a line of h1, gpu 0
	knownSeries := knownSample[:strings.LastIndexByte(knownSample, ' ')]
	knownBlock := knownSeries[strings.IndexByte(knownSeries, '{'):]
	vs := []string{
		// A label with an empty value (no label), and one changed for some
		// GPUs only.
		next(func(s string) string { return strings.ReplaceAll(s, `container="cuda"`, `container=""`) }),
		next(func(s string) string { return strings.ReplaceAll(s, `gpu="1"`, `gpu="1",extra="x"`) }),
		// Label sets expfmt rejects: a duplicate name; a reserved one; a
		// quoted metric name inside the braces as well as one outside.
		next(func(s string) string {
			return strings.ReplaceAll(s, `container="cuda"`, `container="cuda",container="x"`)
		}),
		next(func(s string) string { return strings.ReplaceAll(s, `gpu="1"`, `gpu="1",__name__="x"`) }),
		next(func(s string) string { return strings.ReplaceAll(s, `{gpu="1"`, `{"DCGM_OTHER",gpu="1"`) }),
		// Quoting, '}' and blanks inside values; quoted label names; le
		// and quantile on untyped and gauge families.
		next(func(s string) string { return strings.ReplaceAll(s, `container="cuda"`, `container="a} 5 \"b\" \\"`) }),
		next(func(s string) string { return strings.ReplaceAll(s, `{gpu="1"`, `{"gpu"="1"`) }),
		next(func(s string) string { return strings.ReplaceAll(s, `container="cuda"`, `le="0.5",quantile="x"`) }),
		// New names: untyped lines with a known label set, and with a new
		// one; a name known as gauge used untyped.
		next(func(s string) string { return s + "NEW_ONE" + knownBlock + " 5\nNEW_TWO{a=\"b\"} 6\n" }),
		next(func(s string) string { return s + "DCGM_FI_DEV_SM_CLOCK_x" + knownBlock + " 7\n" }),
		next(func(s string) string { return s + "DCGM_FI_DEV_SM_CLOCK" + knownBlock + " 7\n" }), // family apart
		// Unknown names and label sets in families of other types.
		next(func(s string) string {
			return s + "# TYPE hh histogram\nhh_bucket" + knownBlock + " 1\nhh_bucket{le=\"+Inf\"} 2\nhh_sum 3\nhh_count 2\n"
		}),
		// Bad values and timestamps on new lines; NaN; DCGM blanks.
		next(func(s string) string { return strings.Replace(s, `"} `, `"} x`, 3) }),
		next(func(s string) string { return strings.ReplaceAll(s, `pod_uid=""} `, `pod_uid=""} NaN `) }),
		next(func(s string) string {
			return strings.Replace(s, "\n", " 1735787045123\n", -1)
		}),
		next(func(s string) string {
			return strings.ReplaceAll(s, `pod_uid=""} `, `pod_uid=""} 9223372036854775794 `)
		}),
		next(func(s string) string { return strings.ReplaceAll(s, `modelName=`, `modelname=`) }),
		// Lines without labels; an empty label set.
		next(func(s string) string { return s + "up 1\nup_two{} 2\n" }),
		"up 3\nup_two{} 4\nup_three 5\n",
		// A new host whose GPUs are listed in another order.
		next(func(s string) string {
			var out, samples []string
			for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
				if strings.HasPrefix(l, "#") {
					slices.Reverse(samples)
					out, samples = append(out, samples...), nil
					out = append(out, l)
				} else {
					samples = append(samples, l)
				}
			}
			slices.Reverse(samples)
			return strings.Join(append(out, samples...), "\n") + "\n"
		}),
	}
	seq := toBytes(vs)
	diffSequenceWith(t, p, FormatPrometheus, seq)
	diffSequenceWith(t, p, FormatPrometheus, seq)
	t.Logf("%d full parses, %d first sights", st.fullParses, st.firstSights)
	if st.firstSights < 6 {
		t.Fatalf("only %d payloads took the first-sight path", st.firstSights)
	}
}

// TestPrometheusQuickLines: once a host's scrape is known, its sample
// lines are read through the predicted row's kept key (promQuick) and its
// comment lines compared with the last payload's (promMetaRec). Every
// variant of the scrape here (other tails after the series part, braces
// and blanks where the split could go wrong, other line ends, changed,
// missing, extra, repeated or moved comment lines) must give exactly what
// expfmt gives, each parsed after the known scrape so that both shortcuts
// are tried on it.
func TestPrometheusQuickLines(t *testing.T) {
	base := promHost(t, "h1", 2) + "up 1\nup_two{} 2\n"
	lines := strings.Split(strings.TrimSuffix(base, "\n"), "\n")
	edit := func(f func(ls []string) []string) string {
		return strings.Join(f(slices.Clone(lines)), "\n") + "\n"
	}
	sample := func(i int) int { // the index of the i-th sample line
		for j, l := range lines {
			if !strings.HasPrefix(l, "#") {
				if i == 0 {
					return j
				}
				i--
			}
		}
		t.Fatal("no such sample line")
		return 0
	}
	first, up := sample(0), len(lines)-2
	vs := []string{
		base,
		strings.ReplaceAll(base, `"} `, `"} 1`),
		strings.ReplaceAll(base, `"} `, `"} -`),
		strings.ReplaceAll(base, `"} `, `"}`+"\t"),
		strings.ReplaceAll(base, `"} `, `"}  `),
		strings.ReplaceAll(base, `"} `, `"} `+"\t"),
		strings.ReplaceAll(base, "\n", " 1735787045123\n"),
		strings.ReplaceAll(base, "\n", "  1735787045123\n"),
		strings.ReplaceAll(base, "\n", " 17x\n"),
		strings.ReplaceAll(base, "\n", " \n"),
		strings.ReplaceAll(base, "\n", "\t\n"),
		strings.ReplaceAll(base, "\n", " 1 2\n"),
		strings.ReplaceAll(base, "\n", "\r\n"),
		strings.TrimSuffix(base, "\n"),
		strings.TrimSuffix(base, "1\nup_two{} 2\n") + "1",
		strings.ReplaceAll(base, "\n", "\n\n"),
		strings.ReplaceAll(base, `"} `, `"} NaN `),
		strings.ReplaceAll(base, `"} `, `"} 9223372036854775794 `),
		strings.ReplaceAll(base, `"} `, `"} x`),
		strings.ReplaceAll(base, `"} `, `"} +Inf `),
		strings.ReplaceAll(base, `"} `, `"} 1_0 `),
		strings.ReplaceAll(base, `"} `, `"} 0x1p3 `),
		// Braces in the tail: the line's last '}' is not the key's.
		strings.ReplaceAll(base, "\n", " }\n"),
		strings.ReplaceAll(base, "\n", "}\n"),
		strings.ReplaceAll(base, `"} `, `"} 5 "} `),
		strings.ReplaceAll(base, `"} `, `"} {} `),
		strings.ReplaceAll(base, "\n", " {\n"),
		edit(func(ls []string) []string { ls[up] = "up 1{"; return ls }),
		edit(func(ls []string) []string { ls[up] = "up 1}"; return ls }),
		edit(func(ls []string) []string { ls[up] = "up 1 {}"; return ls }),
		edit(func(ls []string) []string { ls[up] = "up{} 1"; return ls }),
		edit(func(ls []string) []string { ls[up] = "up\t1"; return ls }),
		edit(func(ls []string) []string { ls[up] = "up1"; return ls }),
		edit(func(ls []string) []string { ls[up] = "up"; return ls }),
		edit(func(ls []string) []string { ls[up+1] = "up_two{}"; return ls }),
		edit(func(ls []string) []string { ls[up+1] = "up_two{} 2}"; return ls }),
		// A line that is the key's prefix, or the key cut short; two
		// lines joined; a line repeated (a family apart).
		edit(func(ls []string) []string { ls[first] = ls[first][:strings.LastIndexByte(ls[first], '}')]; return ls }),
		edit(func(ls []string) []string { ls[first] = ls[first][:strings.LastIndexByte(ls[first], '}')+1]; return ls }),
		edit(func(ls []string) []string { ls[first] = ls[first][:40]; return ls }),
		edit(func(ls []string) []string { ls[first] += ls[first+1]; ls[first+1] = ""; return ls }),
		edit(func(ls []string) []string { return append(ls, ls[first]) }),
		edit(func(ls []string) []string { ls[first], ls[first+1] = ls[first+1], ls[first]; return ls }),
		// Comment lines: other text, cut, longer, repeated, missing,
		// moved after samples, swapped, another type, '\r', a plain
		// comment, one at the very end without a line break.
		edit(func(ls []string) []string { ls[0] += " more"; return ls }),
		edit(func(ls []string) []string { ls[0] = ls[0][:len(ls[0])-1]; return ls }),
		edit(func(ls []string) []string { ls[0] = ls[0][:len("# HELP ")]; return ls }),
		edit(func(ls []string) []string { ls[1] += "\r"; return ls }),
		edit(func(ls []string) []string { ls[1] += "s"; return ls }),
		edit(func(ls []string) []string { ls[1] += " x"; return ls }),
		edit(func(ls []string) []string { return slices.Insert(ls, 1, ls[0]) }),
		edit(func(ls []string) []string { return slices.Insert(ls, 2, ls[1]) }),
		edit(func(ls []string) []string { return ls[2:] }),
		edit(func(ls []string) []string { return slices.Delete(ls, 1, 2) }),
		edit(func(ls []string) []string { ls[0], ls[1] = ls[1], ls[0]; return ls }),
		edit(func(ls []string) []string {
			t := ls[1]
			ls = slices.Delete(ls, 1, 2)
			return slices.Insert(ls, first+1, t)
		}),
		edit(func(ls []string) []string { ls[1] = strings.Replace(ls[1], " gauge", " counter", 1); return ls }),
		edit(func(ls []string) []string { ls[1] = strings.Replace(ls[1], " gauge", " summary", 1); return ls }),
		edit(func(ls []string) []string { return slices.Insert(ls, 2, "# a plain comment") }),
		edit(func(ls []string) []string { return slices.Insert(ls, 2, "#") }),
		edit(func(ls []string) []string { return ls[:first] }),
		strings.TrimSuffix(edit(func(ls []string) []string { return ls[:first] }), "\n"),
		edit(func(ls []string) []string {
			out := []string{}
			for _, l := range ls {
				if !strings.HasPrefix(l, "#") {
					out = append(out, l)
				}
			}
			return out
		}),
	}
	p := mustParser(t, FormatPrometheus, Options{Location: time.UTC})
	st := promStateOf(t, func() Parser { diffSequenceWith(t, p, FormatPrometheus, toBytes([]string{base})); return p }())
	for i, v := range vs {
		// The known scrape (three times: its keys kept and predicted), the
		// variant, the known scrape again.
		diffSequenceWith(t, p, FormatPrometheus, toBytes([]string{base, base, base, v, base}))
		if i == 0 && (st.quickLines == 0 || st.metaHits == 0) {
			t.Fatalf("the known scrape took neither shortcut: %d quick lines, %d comment lines found", st.quickLines, st.metaHits)
		}
	}
	t.Logf("%d quick lines, %d comment lines found, %d full parses", st.quickLines, st.metaHits, st.fullParses)
}

// TestPrometheusMetaSeqCleared: once the comment lines accepted are
// forgotten (st.meta emptied), the last payload's comment lines no longer
// vouch for a payload: it goes through expfmt again.
func TestPrometheusMetaSeqCleared(t *testing.T) {
	base := promHost(t, "h1", 2)
	var big strings.Builder
	for i := 0; i <= promFastMaxMeta/2; i++ {
		fmt.Fprintf(&big, "# HELP f%d x\n# TYPE f%d gauge\nf%d 1\n", i, i, i)
	}
	p := mustParser(t, FormatPrometheus, Options{Location: time.UTC})
	diffSequenceWith(t, p, FormatPrometheus, toBytes([]string{base, base, base}))
	st := promStateOf(t, p)
	if st.fullParses != 1 || st.metaHits == 0 {
		t.Fatalf("known scrape: %d full parses, %d comment lines found; want 1, >0", st.fullParses, st.metaHits)
	}
	diffSequenceWith(t, p, FormatPrometheus, toBytes([]string{big.String(), base}))
	if st.fullParses != 3 {
		t.Fatalf("after the comment lines were forgotten: %d full parses, want 3", st.fullParses)
	}
}

// TestPromQuickSplit: whenever promQuick reads a line as a row, the full
// path's split (splitPromSample) gives that row's key as the series part,
// and the same name, value and timestamp.
func TestPromQuickSplit(t *testing.T) {
	keys := []string{`m{a="x"}`, `m{a="} 5 }"}`, `m{}`, `up`, `m{a="{"}`}
	tails := []string{" 1", "\t1", "  1 2", " 1 2 ", " 1}", " }", "}", " 1 {}", " {", "{ 1", " 1{", "} 1", "", " ", " 1\r",
		" 1 }2", " 5 \"} 7", " 1\n", " 1\nnext 2", " 1 2\n", " 1 \n", "\t\t1\t2", " 1  2", " 1 2}", " 1 {2", " \n", "\n",
		" 1\t\n", " 1 2 3", " 1 2\t", " 1 2 \n", "\t1\t2\nx", " -1.5e3 17"}
	for _, k := range keys {
		r := &rowEntry{key: []byte(k)}
		for _, tail := range tails {
			line := k + tail
			nameLen, value, ts, lineLen, ok := r.promQuick([]byte(line))
			if !ok {
				continue
			}
			full := line[:lineLen]
			if lineLen < len(line) && line[lineLen] != '\n' {
				t.Fatalf("%q: line ends at %d", line, lineLen)
			}
			series, name, v, tsw, ok := splitPromSample([]byte(full))
			if !ok || string(series) != k || len(name) != nameLen || string(v) != string(value) || string(tsw) != string(ts) || (tsw == nil) != (ts == nil) {
				t.Fatalf("%q: promQuick gives name %q value %q ts %q; splitPromSample %v series %q name %q value %q ts %q",
					line, k[:nameLen], value, ts, ok, series, name, v, tsw)
			}
		}
	}
}

// TestPrometheusFastUndo: the fast path appends samples as it scans and
// takes them back when the payload turns out to need expfmt or first
// sight. Into a batch that already holds another payload's samples, each
// payload here (a known scrape with something at its end or in its middle
// that sends it elsewhere) must give exactly what expfmt gives, with
// shared label slices and without.
func TestPrometheusFastUndo(t *testing.T) {
	base := promHost(t, "h1", 2)
	lines := strings.Split(strings.TrimSuffix(base, "\n"), "\n")
	mid := len(lines) / 2
	other := strings.Join(strings.Split(strings.TrimSuffix(promHost(t, "h9", 3), "\n"), "\n")[:5], "\n") + "\n"
	vs := []string{
		base + "bad line\n",
		base + "up 1\n",
		base + "# TYPE hh histogram\nhh_bucket{le=\"+Inf\"} 2\nhh_sum 3\nhh_count 2\n",
		base + lines[1] + "\n",
		base + lines[2] + "\n",
		base + strings.Replace(lines[2], "Hostname=\"h1\"", "Hostname=\"h7\"", 1) + "\n",
		strings.Join(slices.Insert(slices.Clone(lines), mid, "up 1"), "\n") + "\n",
		strings.Join(slices.Insert(slices.Clone(lines), mid, "bad"), "\n") + "\n",
		strings.Join(slices.Insert(slices.Clone(lines), mid, strings.Replace(lines[2], "h1", "h8", 1)), "\n") + "\n",
		strings.ReplaceAll(base, `"} `, `"} NaN `) + "x 1 2 3\n",
		base + other,
		base,
	}
	for _, shared := range []bool{false, true} {
		p := mustParser(t, FormatPrometheus, Options{Location: time.UTC, SharedLabels: shared})
		for i, v := range vs {
			var got, want sdk.Batch
			for _, pl := range []string{base, base, v, base, v} {
				errGot := p.Parse([]byte(pl), testMsgTime, "m", &got)
				errWant := uncached(FormatPrometheus).Parse([]byte(pl), testMsgTime, "m", &want)
				if fmt.Sprint(errGot) != fmt.Sprint(errWant) {
					t.Fatalf("shared %v variant %d: error %v, want %v", shared, i, errGot, errWant)
				}
				if !sameBatch(&got, &want) {
					t.Fatalf("shared %v variant %d differs:\n%s\nwant:\n%s", shared, i, dumpBatch(&got), dumpBatch(&want))
				}
			}
		}
		q := p
		if s, ok := q.(sharedParser); ok {
			q = s.Parser
		}
		if st := promStateOf(t, q); st.firstSights == 0 || st.quickLines == 0 {
			t.Fatalf("shared %v: %d first sights, %d quick lines", shared, st.firstSights, st.quickLines)
		}
	}
}
