package parsers

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Benchmarks report ns/sample and allocs/sample on realistic payloads:
//
//   - file: a whole file as one payload;
//   - msg100: the file cut as the streamer cuts it (header + 100 rows, or
//     100 NDJSON objects, per message), parsed message by message into a
//     reused batch. The same series repeat on every pass, as they do when a
//     cluster is scraped every second: this is the steady state, which is to
//     be (almost) allocation-free per sample;
//   - cold: the same messages through a new parser each pass, so every
//     series is seen for the first time.
//
// Run with: go test -run XXX -bench . -benchmem ./inputs/parsers

// benchPayloads parses every payload of payloads once per iteration, each
// into a reset batch, and reports ns/sample and allocs/sample.
func benchPayloads(b *testing.B, format string, payloads [][]byte, cold bool) {
	b.Helper()
	benchPayloadsOpts(b, format, Options{Location: time.UTC}, payloads, cold)
}

// benchPayloadsOpts is benchPayloads with parser options.
func benchPayloadsOpts(b *testing.B, format string, opts Options, payloads [][]byte, cold bool) {
	b.Helper()
	p, err := New(format, opts)
	if err != nil {
		b.Fatal(err)
	}
	var batch sdk.Batch
	samples, size := 0, 0
	for _, pl := range payloads {
		batch.Reset()
		if err := p.Parse(pl, testMsgTime, "b", &batch); err != nil {
			b.Fatal(err)
		}
		if len(batch.Rejects) != 0 {
			b.Fatalf("%d rejects: %+v", len(batch.Rejects), batch.Rejects[0])
		}
		samples += batch.Len()
		size += len(pl)
	}
	if samples == 0 {
		b.Fatal("no samples")
	}
	pass := func() {
		if cold {
			p, _ = New(format, opts)
		}
		for _, pl := range payloads {
			batch.Reset()
			if err := p.Parse(pl, testMsgTime, "b", &batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pass()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*samples), "ns/sample")
	// testing.AllocsPerRun cannot run inside a benchmark's timing; measure
	// a few extra passes.
	b.ReportMetric(testing.AllocsPerRun(3, pass)/float64(samples), "allocs/sample")
}

// splitCSVMessages cuts a CSV file as the streamer does: the header line
// on top of every message of at most rows data lines.
func splitCSVMessages(data []byte, rows int) [][]byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	header := lines[0]
	var out [][]byte
	var cur []byte
	n := 0
	for _, l := range lines[1:] {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if n == 0 {
			cur = append([]byte(nil), header...)
		}
		cur = append(cur, l...)
		n++
		if n == rows {
			out = append(out, cur)
			n = 0
		}
	}
	if n > 0 {
		out = append(out, cur)
	}
	return out
}

// dcgmToTelJSON converts the DCGM CSV export into gpu-tel-json objects the
// way the streamer's --from dcgm-csv does (gpu_id and value as numbers when
// they parse, strings through encoding/json), one object per element.
func dcgmToTelJSON(tb testing.TB, data []byte) [][]byte {
	tb.Helper()
	cr := csv.NewReader(bytes.NewReader(data))
	recs, err := cr.ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	keys := []string{"timestamp", "metric_name", "gpu_id", "device", "uuid", "model_name", "hostname", "container", "pod", "namespace", "value", "labels_raw"}
	var out [][]byte
	for _, r := range recs[1:] {
		var obj []byte
		obj = append(obj, '{')
		for i, k := range keys {
			if i > 0 {
				obj = append(obj, ',')
			}
			obj = strconv.AppendQuote(obj, k)
			obj = append(obj, ':')
			v := r[i]
			if k == "gpu_id" {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					obj = strconv.AppendInt(obj, n, 10)
					continue
				}
			}
			if k == "value" {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					obj = strconv.AppendFloat(obj, f, 'g', -1, 64)
					continue
				}
			}
			enc, _ := json.Marshal(v)
			obj = append(obj, enc...)
		}
		obj = append(obj, '}')
		out = append(out, obj)
	}
	return out
}

// ndjsonMessages joins objects n per message, one per line.
func ndjsonMessages(objs [][]byte, n int) [][]byte {
	var out [][]byte
	for i := 0; i < len(objs); i += n {
		var m []byte
		for _, o := range objs[i:min(i+n, len(objs))] {
			m = append(m, o...)
			m = append(m, '\n')
		}
		out = append(out, m)
	}
	return out
}

func BenchmarkDCGMCSV(b *testing.B) {
	data := readTestdata(b, "dcgm_metrics.csv")
	msgs := splitCSVMessages(data, 100)
	b.Run("file", func(b *testing.B) { benchPayloads(b, FormatDCGMCSV, [][]byte{data}, false) })
	b.Run("msg100", func(b *testing.B) { benchPayloads(b, FormatDCGMCSV, msgs, false) })
	b.Run("cold", func(b *testing.B) { benchPayloads(b, FormatDCGMCSV, msgs, true) })
	// As inputs.mq_service uses the parsers (Options.SharedLabels): no
	// copy of each series's labels per batch, so no garbage at all; the
	// parser's own cost.
	shared := Options{Location: time.UTC, SharedLabels: true}
	b.Run("msg100/shared-labels", func(b *testing.B) { benchPayloadsOpts(b, FormatDCGMCSV, shared, msgs, false) })
}

func BenchmarkNvidiaSMICSV(b *testing.B) {
	data := readTestdata(b, "nvidia-smi-query-gpu.csv")
	b.Run("file", func(b *testing.B) { benchPayloads(b, FormatNvidiaSMICSV, [][]byte{data}, false) })
	b.Run("msg1", func(b *testing.B) { benchPayloads(b, FormatNvidiaSMICSV, splitCSVMessages(data, 1), false) })
	b.Run("cold", func(b *testing.B) { benchPayloads(b, FormatNvidiaSMICSV, [][]byte{data}, true) })
}

func BenchmarkPrometheus(b *testing.B) {
	data := readTestdata(b, "dcgm-exporter-metrics.txt")
	b.Run("scrape", func(b *testing.B) { benchPayloads(b, FormatPrometheus, [][]byte{data}, false) })
	b.Run("cold", func(b *testing.B) { benchPayloads(b, FormatPrometheus, [][]byte{data}, true) })
}

func BenchmarkGPUTelJSON(b *testing.B) {
	objs := dcgmToTelJSON(b, readTestdata(b, "dcgm_metrics.csv"))
	ndjson := ndjsonMessages(objs, 100)
	b.Run("single", func(b *testing.B) { benchPayloads(b, FormatGPUTelJSON, objs[:100], false) })
	b.Run("ndjson100", func(b *testing.B) { benchPayloads(b, FormatGPUTelJSON, ndjson, false) })
	b.Run("array", func(b *testing.B) {
		arr := append([]byte("["), bytes.Join(objs[:100], []byte(",\n"))...)
		benchPayloads(b, FormatGPUTelJSON, [][]byte{append(arr, ']')}, false)
	})
	b.Run("cold", func(b *testing.B) { benchPayloads(b, FormatGPUTelJSON, ndjson, true) })
	shared := Options{Location: time.UTC, SharedLabels: true}
	b.Run("single/shared-labels", func(b *testing.B) { benchPayloadsOpts(b, FormatGPUTelJSON, shared, objs[:100], false) })
	b.Run("telObj", func(b *testing.B) {
		benchPayloads(b, FormatGPUTelJSON, [][]byte{[]byte(strings.Repeat(telObj+"\n", 1000))}, false)
	})
}

// BenchmarkExpfmtFloor measures expfmt's TextParser alone on the scrape:
// the floor under the prometheus parser, which must use it.
func BenchmarkExpfmtFloor(b *testing.B) {
	data := readTestdata(b, "dcgm-exporter-metrics.txt")
	samples := 0
	fams, err := parseText(data)
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range fams {
		samples += len(mf.GetMetric())
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := parseText(data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*samples), "ns/sample")
	b.ReportMetric(testing.AllocsPerRun(3, func() { _, _ = parseText(data) })/float64(samples), "allocs/sample")
}
