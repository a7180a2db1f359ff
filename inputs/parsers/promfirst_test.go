package parsers

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// firstHits returns how many payloads the first-sight path of p emitted
// (p must be idle).
func firstHits(p Parser) int {
	pt := p.(*prometheusText)
	n := 0
	if st := pt.pool.last.Load(); st != nil {
		n += st.firstHits
	}
	for _, st := range pt.pool.free {
		n += st.firstHits
	}
	return n
}

// promDiff parses pl with got and with each of wants, and fails on any
// difference in the error, the samples, the series or the rejects.
func promDiff(t testing.TB, what string, pl []byte, got Parser, wants ...Parser) {
	t.Helper()
	var gb sdk.Batch
	gerr := got.Parse(pl, testMsgTime, "m", &gb)
	for _, w := range wants {
		var wb sdk.Batch
		werr := w.Parse(pl, testMsgTime, "m", &wb)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%s: payload %q: error %v, want %v", what, pl, gerr, werr)
		}
		if !sameBatch(&gb, &wb) {
			t.Fatalf("%s: payload %q differs:\n%s\nwant:\n%s", what, pl, dumpBatch(&gb), dumpBatch(&wb))
		}
	}
	if gerr == nil {
		checkBatch(t, &gb)
	}
}

// promGen generates Prometheus text payloads: mostly the plain shapes the
// first-sight path reads, with, when odd is set, every kind of line it
// must leave to expfmt mixed in.
type promGen struct {
	r   *rand.Rand
	odd bool
}

func (g *promGen) pick(ss ...string) string { return ss[g.r.Intn(len(ss))] }

func (g *promGen) chance(p float64) bool { return g.r.Float64() < p }

// oddOr returns an odd alternative (with probability p, when odd) or the
// plain s.
func (g *promGen) oddOr(p float64, s string, alts ...string) string {
	if g.odd && g.chance(p) {
		return g.pick(alts...)
	}
	return s
}

func (g *promGen) name() string {
	n := g.pick("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_GPU_TEMP", "up", "node:cpu_seconds", "_x", "process_open_fds",
		"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "a1", "go_gc_duration_seconds_sum", "x_count", "http_requests_total")
	return g.oddOr(0.03, n, "1abc", "a-b", "a.b", "ü", `"quoted.name"`, "")
}

func (g *promGen) labelName(i int) string {
	n := g.pick("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION",
		"container", "namespace", "pod", "pod_uid", "_a", "le", "quantile", "job", "instance", "L9")
	if g.chance(0.2) {
		n = fmt.Sprintf("l%d", i)
	}
	return g.oddOr(0.02, n, "__name__", "9a", "a-b", `"q"`, "a b", "")
}

func (g *promGen) labelValue() string {
	v := g.pick("0", "1", "nvidia0", "GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c", "NVIDIA H100 80GB HBM3", "",
		"580.95.05", "cuda-75454ffb9f-8ljq7", `a\"b`, `c:\\dir`, `two\nlines`, `\\n`, `\"`, "} 5", "a,b=c", "ü日本",
		"{", "#", " lead", "trail ", "\t", "x\r", "\x00")
	if g.chance(0.3) {
		v = fmt.Sprintf("%s%d", v, g.r.Intn(1000))
	}
	return g.oddOr(0.02, v, `bad\t`, `bad\`, "\xff\xfe", "a\xc3", `\x`)
}

func (g *promGen) value() string {
	v := g.pick("0", "1", "2310", "40.979000", "-3.5", "1e3", "1.5E-7", "NaN", "+Inf", "-Inf", "Inf", "inf", "nan",
		".5", "5.", "-0", "+5", "0.1", "123456789012345678", "9223372036854775794", "2147483647", "140737488355328",
		"1e-400", "4.9e-324", "0.30000000000000004", "00012")
	if g.chance(0.3) {
		v = fmt.Sprint(g.r.Float64() * 1e6)
	}
	return g.oddOr(0.02, v, "1e400", "0x1p3", "0x10", "1_0", "abc", "", "١", "1,5", "NaN\r")
}

func (g *promGen) timestamp() string {
	if g.chance(0.7) {
		return ""
	}
	ts := g.pick("1735787045123", "0", "-5", "+7", "1", "9223372036854775807")
	return g.oddOr(0.05, ts, "12.5", "x", "9223372036854775808", "0x10", "1_000", "1 2")
}

func (g *promGen) sep() string { return g.oddOr(0.05, " ", "\t", "  ", " \t") }

// sample returns a sample line of family name (without its line end).
func (g *promGen) sample(name string) string {
	var sb strings.Builder
	sb.WriteString(name)
	if n := g.r.Intn(13); n > 0 || g.chance(0.1) {
		sb.WriteString(g.oddOr(0.01, "{", " {", "\t{"))
		used := map[string]bool{}
		for i := 0; i < n; i++ {
			k := g.labelName(i)
			if used[k] && !(g.odd && g.chance(0.3)) {
				continue // a duplicate only when odd
			}
			used[k] = true
			if i > 0 {
				sb.WriteString(g.oddOr(0.02, ",", ", ", " ,"))
			}
			sb.WriteString(k)
			sb.WriteString(g.oddOr(0.01, "=", " =", "= "))
			sb.WriteString(`"` + g.labelValue() + `"`)
		}
		if n > 0 && g.chance(0.05) {
			sb.WriteByte(',')
		}
		sb.WriteString(g.oddOr(0.01, "}", " }", "}}", ""))
	}
	sb.WriteString(g.sep())
	sb.WriteString(g.value())
	if ts := g.timestamp(); ts != "" {
		sb.WriteString(g.sep())
		sb.WriteString(ts)
	}
	sb.WriteString(g.oddOr(0.02, "", " ", "\t", "\r"))
	return sb.String()
}

// payload returns a payload of a few families.
func (g *promGen) payload() string {
	var sb strings.Builder
	nl := g.oddOr(0.05, "\n", "\r\n")
	line := func(s string) {
		sb.WriteString(s)
		sb.WriteString(nl)
	}
	var names []string
	for f, n := 0, 1+g.r.Intn(6); f < n; f++ {
		name := g.name()
		if slices.Contains(names, name) && !(g.odd && g.chance(0.3)) {
			name = fmt.Sprintf("%s_%d", name, f) // the same family twice only when odd
		}
		names = append(names, name)
		if g.chance(0.1) {
			line(g.pick("", "#", "# ", "# a comment", "# HELPING hand", "#\tTYPEs", "# help x", "#TYPEX"))
		}
		if g.odd && g.chance(0.05) {
			line(g.pick("#HELP "+name+" h", "#  TYPE "+name+" gauge", "# HELP", "# TYPE "+name, "# HELP "+name,
				"# HELP "+name+" ", "# TYPE\t"+name+" gauge", "  ", "\t", " "+name+" 1"))
		}
		help := "# HELP " + name + " " + g.pick("SM clock frequency (in MHz).", `back\\slash`, `new\nline`, `q\"uote`, "ü", "x")
		if g.odd && g.chance(0.05) {
			help = "# HELP " + name + " " + g.pick(`bad\q`, `end\`, "  lead")
		}
		typ := "# TYPE " + name + " " + g.pick("gauge", "counter", "untyped", "GAUGE", "Counter")
		if g.odd && g.chance(0.1) {
			typ = "# TYPE " + name + " " + g.pick("histogram", "summary", "bogus", "gaugehistogram", "gauge ", "gauge\r")
		}
		if g.chance(0.8) {
			line(help)
		}
		if g.chance(0.8) {
			line(typ)
		}
		if g.odd && g.chance(0.03) {
			line(g.pick(help, typ)) // a second HELP or TYPE
		}
		for i, m := 0, g.r.Intn(8); i < m; i++ {
			line(g.sample(name))
			if g.chance(0.05) {
				line("")
			}
		}
		if g.odd && g.chance(0.03) {
			line(typ) // TYPE after samples
		}
		if g.odd && g.chance(0.05) && len(names) > 1 {
			line(g.sample(names[g.r.Intn(len(names))])) // a family apart
		}
	}
	if g.odd && g.chance(0.05) {
		line("# TYPE h histogram")
		line(`h_bucket{le="1"} 1`)
		line(`h_bucket{le="+Inf"} 2`)
		line("h_sum 3")
		line("h_count 2")
	}
	if g.odd && g.chance(0.05) {
		line("# TYPE s summary")
		line(`s{quantile="0.5"} 1`)
		line("s_sum 3")
		line("s_count 2")
	}
	out := sb.String()
	if g.chance(0.05) {
		out = strings.TrimSuffix(out, nl)
	}
	return out
}

// mutate returns pl with some of its sample lines given other values,
// timestamps or label values (new series beside known ones).
func (g *promGen) mutate(pl string) string {
	lines := strings.SplitAfter(pl, "\n")
	for i, l := range lines {
		if len(l) == 0 || l[0] == '#' || !g.chance(0.3) {
			continue
		}
		switch g.r.Intn(3) {
		case 0:
			if sp := strings.LastIndexAny(l, " \t"); sp > 0 {
				end := ""
				if strings.HasSuffix(l, "\n") {
					end = "\n"
				}
				lines[i] = l[:sp+1] + g.value() + end
			}
		case 1:
			lines[i] = strings.Replace(l, `="`, `="z`, 1)
		case 2:
			lines[i] = strings.Replace(l, `"0"`, `"7"`, 1)
		}
	}
	return strings.Join(lines, "")
}

// TestPromFirstSight compares the first-sight path with the expfmt path
// over generated payloads: each payload, parsed by a fresh parser (every
// series new), by the same parser again (the fast path), mutated (known
// and new series mixed), and in sequence through one long-lived parser,
// must give what a parser without the first-sight path and one without
// any cache give. Plain payloads must take the first-sight path.
func TestPromFirstSight(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 500
	}
	g := &promGen{r: rand.New(rand.NewSource(1))}
	long := mustParser(t, FormatPrometheus, Options{})
	longRef := newPrometheusExpfmtFirst()
	plainTaken, oddTaken, oddTotal := 0, 0, 0
	for i := 0; i < n; i++ {
		g.odd = i%2 == 1
		pl := []byte(g.payload())
		fresh := newPrometheus()
		ref := newPrometheusExpfmtFirst()
		what := fmt.Sprintf("payload %d (odd %v)", i, g.odd)
		promDiff(t, what, pl, fresh, ref, uncached(FormatPrometheus))
		hit := firstHits(fresh) == 1
		if !g.odd {
			// Plain payloads with at least one sample must be read here;
			// those without sample lines go to expfmt.
			var sb sdk.Batch
			if err := uncached(FormatPrometheus).Parse(pl, testMsgTime, "m", &sb); err == nil && promHasSample(pl) && !hit {
				t.Fatalf("%s: plain payload not taken by the first-sight path:\n%s", what, pl)
			}
			if hit {
				plainTaken++
			}
		} else {
			oddTotal++
			if hit {
				oddTaken++
			}
		}
		promDiff(t, what+" again", pl, fresh, ref, uncached(FormatPrometheus))
		mut := []byte(g.mutate(string(pl)))
		promDiff(t, what+" mutated", mut, fresh, ref, uncached(FormatPrometheus))
		promDiff(t, what+" sequence", pl, long, longRef, uncached(FormatPrometheus))
		promDiff(t, what+" sequence mutated", mut, long, longRef, uncached(FormatPrometheus))
	}
	t.Logf("first-sight path: %d of %d plain payloads, %d of %d odd ones", plainTaken, n/2, oddTaken, oddTotal)
	if oddTaken == 0 || oddTaken == oddTotal {
		t.Fatalf("odd payloads taken %d of %d: the generator does not test the fallback", oddTaken, oddTotal)
	}
}

// promHasSample reports whether pl has a line that is not empty and not a
// comment.
func promHasSample(pl []byte) bool {
	for off := 0; off < len(pl); {
		var line []byte
		line, off = nextLine(pl, off)
		if len(line) > 0 && line[0] != '#' {
			return true
		}
	}
	return false
}

// TestPromFirstSightShapes: lines at the edge of the plain shapes, each in
// a payload of its own and after a plain line, must give what expfmt gives;
// take says whether the first-sight path must read it.
func TestPromFirstSightShapes(t *testing.T) {
	for _, c := range []struct {
		pl   string
		take bool
	}{
		{"up 1\n", true},
		{"up 1", true},
		{"up{} 1\n", true},
		{"up{a=\"1\",} 1\n", true},
		{"up{a=\"\"} 1\n", true},
		{"up{a=\"x\\\\y\\\"z\\n\"} 1 -5\n", true},
		{"up\t1\t2\n", true},
		{"up 1\n\n\nup2 2\n", true},
		{"# random\nup 1\n", true},
		{"#\nup 1\n", true},
		{"# HELPx up\nup 1\n", true},
		{"# TYPE up COUNTER\n# HELP up x\\\\\\n\\\"\nup 1\n", true},
		{"# HELP up x\n# HELP up y\nup 1\n", false}, // second HELP
		{"# TYPE up gauge\n# TYPE up gauge\nup 1\n", false},
		{"up 1\n# TYPE up gauge\n", false}, // TYPE after samples
		{"up 1\nother 2\nup 3\n", false},   // family apart
		{"up 1\nup 1\n", true},             // the same sample twice
		{"up{a=\"1\",a=\"2\"} 1\n", false}, // duplicate label
		{"up{a=\"\",a=\"2\"} 1\n", false},
		{"up{__name__=\"x\"} 1\n", false},
		{"up{a=\"\\t\"} 1\n", false},
		{"up{a=\"\xff\"} 1\n", false},
		{"up{a=\"1\"}1\n", false}, // no blank before the value
		{"up {a=\"1\"} 1\n", false},
		{"up{ a=\"1\"} 1\n", false},
		{"up{a =\"1\"} 1\n", false},
		{"up{a=\"1\" } 1\n", false},
		{"up{a=\"1\"}} 1\n", false},
		{"up{a=\"}\"} 1\n", true},
		{"up{\"a\"=\"1\"} 1\n", false},
		{"{\"up\"} 1\n", false},
		{"up 1 \n", false},
		{"up 1\r\n", false},
		{" up 1\n", false},
		{"up 1e400\n", false},
		{"up 0x1p3\n", false},
		{"up 1_0\n", false},
		{"up NaN\nup2 +Inf\nup3 -Inf\nup4 1.5e-3\n", true},
		{"up 1 12.5\n", false},
		{"up 1 9223372036854775808\n", false},
		{"up 1 +7\n", true},
		{"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n", false},
		{"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n", false},
		{"# TYPE up gauge histogram\nup 1\n", false},
		{"# HELP up\nup 1\n", false},
		{"# HELP up bad \\q\nup 1\n", false},
		{"#HELP up x\nup 1\n", false},
		{"# HELP up x\n", false}, // no sample (taken after a plain line)
		{"DCGM_FI_X 9223372036854775794\nDCGM_FI_Y 2147483632\nx 2147483632\n", true},
	} {
		for _, pl := range []string{c.pl, "plain{a=\"b\"} 1\n" + c.pl} {
			p := newPrometheus()
			promDiff(t, "shape", []byte(pl), p, newPrometheusExpfmtFirst(), uncached(FormatPrometheus))
			want := c.take || (pl != c.pl && c.pl == "# HELP up x\n")
			if got := firstHits(p) == 1; got != want {
				t.Errorf("%q: first-sight path taken %v, want %v", pl, got, want)
			}
			promDiff(t, "shape again", []byte(pl), p, newPrometheusExpfmtFirst(), uncached(FormatPrometheus))
		}
	}
}

// TestPromFirstSightRealScrape: the real dcgm-exporter scrape (and the
// copy under /work/shared/data when there is one), parsed by a fresh
// parser, takes the first-sight path and gives what expfmt gives; the
// next sight takes the fast path (not the first-sight one).
func TestPromFirstSightRealScrape(t *testing.T) {
	scrapes := [][]byte{readTestdata(t, "dcgm-exporter-metrics.txt")}
	if b, err := os.ReadFile("/work/shared/data/dcgm/lke-ai-conformance_README_dcgm-exporter-metrics.txt"); err == nil {
		scrapes = append(scrapes, b)
	}
	for i, pl := range scrapes {
		p := newPrometheus()
		promDiff(t, fmt.Sprint("scrape ", i), pl, p, newPrometheusExpfmtFirst(), uncached(FormatPrometheus))
		if firstHits(p) != 1 {
			t.Fatalf("scrape %d: first-sight path not taken", i)
		}
		promDiff(t, fmt.Sprint("scrape again ", i), pl, p, uncached(FormatPrometheus))
		if firstHits(p) != 1 {
			t.Fatalf("scrape %d: second sight not on the fast path", i)
		}
		var b sdk.Batch
		if err := p.Parse(pl, testMsgTime, "m", &b); err != nil || b.Len() < 20 {
			t.Fatalf("scrape %d: %v, %d samples", i, err, b.Len())
		}
	}
}

// FuzzPromFirstSight cuts the input at NUL bytes into payloads and parses
// them in sequence (each twice) through a parser with the first-sight
// path, comparing each result with a parser without it and with one
// without any cache.
func FuzzPromFirstSight(f *testing.F) {
	f.Add(readTestdata(f, "dcgm-exporter-metrics.txt"))
	f.Add([]byte("# HELP up x\\n\n# TYPE up counter\nup{a=\"\\\"\",b=\"\"} 1 5\n\x00up{a=\"\\\"\",b=\"\"} 2\nup{a=\"2\"} NaN\n"))
	f.Add([]byte("up 1\nup2{a=\"1\",} -Inf\n\x00# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 2\n"))
	g := &promGen{r: rand.New(rand.NewSource(2))}
	for i := 0; i < 8; i++ {
		g.odd = i%2 == 1
		pl := g.payload()
		f.Add([]byte(pl + "\x00" + g.mutate(pl)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.SplitN(data, []byte{0}, 4)
		p := newPrometheus()
		ref := newPrometheusExpfmtFirst()
		for _, pl := range parts {
			promDiff(t, "fuzz", pl, p, ref, uncached(FormatPrometheus))
			promDiff(t, "fuzz again", pl, p, ref, uncached(FormatPrometheus))
		}
	})
}
