package parsers

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// fuzzParse runs one payload through a parser and checks that it neither
// panics nor breaks the batch invariants, and that an error leaves no
// points.
func fuzzParse(t *testing.T, format string, payload []byte) {
	p, err := New(format, Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	var b sdk.Batch
	err = p.Parse(payload, testMsgTime, "f", &b)
	if err != nil {
		if b.Len() != 0 {
			t.Fatalf("error %v with %d points", err, b.Len())
		}
	} else {
		checkBatch(t, &b)
	}
	// Parsers cache what they learn from a payload (series, header
	// layouts): the same payload again, through the same parser, must give
	// the same result.
	var again sdk.Batch
	err2 := p.Parse(payload, testMsgTime, "f", &again)
	if (err == nil) != (err2 == nil) {
		t.Fatalf("second parse: error %v, first %v", err2, err)
	}
	if !sameBatch(&b, &again) {
		t.Fatalf("second parse differs:\n%s\nfirst:\n%s", dumpBatch(&again), dumpBatch(&b))
	}
	// Parsers with a row cache must agree with the same parser without it.
	if format == FormatDCGMCSV || format == FormatGPUTelJSON || format == FormatPrometheus {
		var want sdk.Batch
		errWant := uncached(format).Parse(payload, testMsgTime, "f", &want)
		if fmt.Sprint(err) != fmt.Sprint(errWant) || !sameBatch(&b, &want) {
			t.Fatalf("cached parse differs from uncached (error %v, want %v):\n%s\nwant:\n%s", err, errWant, dumpBatch(&b), dumpBatch(&want))
		}
	}
}

// fuzzSequence cuts payload at NUL bytes into up to four payloads and
// parses them in the order a source sends them: the first until its rows
// are known and predicted (so that the template fast paths are tried on
// the next ones), then the others, twice, then the first again, comparing
// every result with a parser whose caches are off.
func fuzzSequence(t *testing.T, format string, payload []byte) {
	parts := bytes.SplitN(payload, []byte{0}, 4)
	seq := [][]byte{parts[0], parts[0], parts[0]}
	seq = append(seq, parts[1:]...)
	seq = append(seq, parts[1:]...)
	seq = append(seq, parts[0])
	diffSequence(t, format, seq)
}

func seedFromFile(f *testing.F, name string, maxLines int) {
	data := readTestdata(f, name)
	n := 0
	for i, c := range data {
		if c == '\n' {
			n++
			if n == maxLines {
				data = data[:i+1]
				break
			}
		}
	}
	f.Add(data)
}

func FuzzDCGMCSV(f *testing.F) {
	seedFromFile(f, "dcgm_metrics.csv", 4)
	f.Add([]byte(dcgmHeader + "\n\"x\",\"A\",\"0\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"abc\",\"a=\"\"1\"\"\"\n"))
	f.Add([]byte("metric_name,value\nA,1\nB,N/A\n"))
	row := `"2025-07-18T20:42:34Z","A","0","nvidia0","GPU-1","H100","host1","","","","1","job=""j"""`
	f.Add([]byte(dcgmHeader + "\n" + row + "\n\x00" + dcgmHeader + "\n" + strings.Replace(row, `"1"`, `"12.5"`, 1) + "\n" +
		"\x00" + dcgmHeader + "\n" + strings.Replace(row, `"0"`, `"1"`, 1) + "\n"))
	f.Add([]byte("value,metric_name,timestamp\n1,A,2025-07-18T20:42:34Z\nx,B,\n\x00value,metric_name,timestamp\n22,A,1752871354\n"))
	f.Add([]byte("timestamp,metric_name,value,pod\n1,A,1,p\r\r\n1,A,1,p\r\r\n1,A,1,p\r\n1,A,2,p\n1,A,2,p\r\x00" +
		"timestamp,metric_name,value,pod\n1,A,1,p\r\r\n1,A,1,p\r\r\n1,A,1,p\r\n\"1,A,2,p\n1,A,2,p\r\"\n"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzParse(t, FormatDCGMCSV, payload)
		fuzzSequence(t, FormatDCGMCSV, payload)
	})
}

func FuzzNvidiaSMICSV(f *testing.F) {
	seedFromFile(f, "nvidia-smi-query-gpu.csv", 3)
	f.Add([]byte("timestamp, index, power.draw [W], pstate\n2026/11/26 20:58:55.944, 0, 1 W, P0\n"))
	f.Add([]byte("index, x, x\n0, Active, 0x1\n"))
	f.Fuzz(func(t *testing.T, payload []byte) { fuzzParse(t, FormatNvidiaSMICSV, payload) })
}

func FuzzPrometheus(f *testing.F) {
	seedFromFile(f, "dcgm-exporter-metrics.txt", 9)
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"))
	f.Add([]byte("# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\nbad line\nx 1 123\n"))
	// Hosts' first scrapes after another host's (see TestPrometheusFirstSight).
	f.Add([]byte(promHost(f, "h1", 2) + "\x00" + promHost(f, "h2", 2) + "\x00" +
		strings.ReplaceAll(promHost(f, "h3", 2), `gpu="1"`, `gpu="1",x=""`) + "up 1\n\x00" + promHost(f, "h4", 3) + "up{a=\"b\"} 2\n"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzParse(t, FormatPrometheus, payload)
		fuzzSequence(t, FormatPrometheus, payload)
	})
}

func FuzzGPUTelJSON(f *testing.F) {
	f.Add([]byte(telObj))
	f.Add([]byte("[" + telWith("A", "1", "0") + "," + telWith("B", `"2"`, `"1"`) + "]"))
	f.Add([]byte(telWith("A", "1", "0") + "\n{\"metric_name\":\n" + telWith("C", "3", "0") + "\n"))
	f.Add([]byte(telObj + "\x00" + strings.Replace(telObj, "689.457", `"12 W"`, 1) + "\x00" + strings.Replace(telObj, `"gpu_id":0`, `"gpu_id":1`, 1)))
	f.Add([]byte(telWith("A", "1", "0") + "\n" + telWith("B", "2", "0") + "\n\x00" + telWith("A", "null", "0") + "\n" + telWith("B", `"x"`, "0") + "\n"))
	f.Add([]byte(`{"value":1,"timestamp":1752871354,"metric_name":"A"}` + "\x00" + `{"value":22,"timestamp":"1752871354","metric_name":"A"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzParse(t, FormatGPUTelJSON, payload)
		fuzzSequence(t, FormatGPUTelJSON, payload)
	})
}
