package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/telemetry-collector/telemetry-collector/mq/broker"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/grpc"
)

type message struct {
	payload string
	records int
}

func splitAll(t *testing.T, s splitter, in string, batch int) []message {
	t.Helper()
	var out []message
	err := s(strings.NewReader(in), batch, func(p []byte, n int) error {
		out = append(out, message{string(p), n})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSplitCSVRealFiles(t *testing.T) {
	for _, tc := range []struct {
		file    string
		records int
		batch   int
	}{
		{"testdata/dcgm_metrics.csv", 2470, 100},
		{"testdata/dcgm_metrics.csv", 2470, 1},
		{"testdata/dcgm_metrics.csv", 2470, 0},
		{"testdata/nvidia-smi-query-gpu.csv", 40, 7},
		{"testdata/nvidia-smi-query-gpu.csv", 40, 100},
	} {
		t.Run(fmt.Sprintf("%s/batch=%d", tc.file, tc.batch), func(t *testing.T) {
			in := readFile(t, tc.file)
			header := in[:strings.IndexByte(in, '\n')+1]
			msgs := splitAll(t, splitCSV, in, tc.batch)
			wantMsgs := 1
			if tc.batch > 0 {
				wantMsgs = (tc.records + tc.batch - 1) / tc.batch
			}
			if len(msgs) != wantMsgs {
				t.Fatalf("%d messages, want %d", len(msgs), wantMsgs)
			}
			total := 0
			var body strings.Builder
			body.WriteString(header)
			for i, m := range msgs {
				if !strings.HasPrefix(m.payload, header) {
					t.Fatalf("message %d does not start with the header", i)
				}
				rows, err := csv.NewReader(strings.NewReader(m.payload)).ReadAll()
				if err != nil {
					t.Fatalf("message %d is not valid CSV: %v", i, err)
				}
				if len(rows)-1 != m.records {
					t.Fatalf("message %d: %d rows, reported %d records", i, len(rows)-1, m.records)
				}
				if tc.batch > 0 && m.records > tc.batch {
					t.Fatalf("message %d has %d records > batch %d", i, m.records, tc.batch)
				}
				total += m.records
				body.WriteString(strings.TrimPrefix(m.payload, header))
			}
			if total != tc.records {
				t.Fatalf("%d records, want %d", total, tc.records)
			}
			if body.String() != in {
				t.Fatal("messages without their repeated headers do not reproduce the file")
			}
		})
	}
}

func TestSplitCSVQuotedNewlines(t *testing.T) {
	in := "a,b\n1,\"x\ny\"\n\n2,\"say \"\"hi\"\"\nthere\"\r\n3,z"
	msgs := splitAll(t, splitCSV, in, 1)
	want := []string{"a,b\n1,\"x\ny\"\n", "a,b\n2,\"say \"\"hi\"\"\nthere\"\r\n", "a,b\n3,z\n"}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages %+v, want %d", len(msgs), msgs, len(want))
	}
	for i := range want {
		if msgs[i].payload != want[i] || msgs[i].records != 1 {
			t.Fatalf("message %d = %q, want %q", i, msgs[i].payload, want[i])
		}
	}
	if got := splitAll(t, splitCSV, "only,header\n", 10); len(got) != 0 {
		t.Fatalf("header-only file gave %d messages", len(got))
	}
}

func parseProm(t *testing.T, payload string) map[string]int {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(payload))
	if err != nil {
		t.Fatalf("message is not valid exposition: %v\n%s", err, payload)
	}
	out := map[string]int{}
	for name, f := range fams {
		if name != "untyped_metric" && f.GetHelp() == "" {
			t.Fatalf("family %s lost its HELP/TYPE", name)
		}
		out[name] = len(f.GetMetric())
	}
	return out
}

func TestSplitPrometheus(t *testing.T) {
	in := readFile(t, "testdata/dcgm-exporter-metrics.txt")
	all := parseProm(t, in)
	for _, batch := range []int{0, 1, 4, 100} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			msgs := splitAll(t, splitPrometheus, in, batch)
			if batch == 0 && len(msgs) != 1 {
				t.Fatalf("--batch 0 gave %d messages, want 1", len(msgs))
			}
			got := map[string]int{}
			for i, m := range msgs {
				if batch > 0 && m.records > batch {
					t.Fatalf("message %d has %d samples > %d", i, m.records, batch)
				}
				n := 0
				for name, c := range parseProm(t, m.payload) {
					got[name] += c
					n += c
				}
				if n != m.records {
					t.Fatalf("message %d parses to %d samples, reported %d", i, n, m.records)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(all) {
				t.Fatalf("samples per family = %v, want %v", got, all)
			}
		})
	}
}

func TestSplitPrometheusRepeatsHeadersAndKeepsHistograms(t *testing.T) {
	in := `# HELP g A gauge.
# TYPE g gauge
g{a="1"} 1
g{a="2"} 2
g{a="3"} 3
# HELP h A histogram.
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="+Inf"} 2
h_sum 3
h_count 2
untyped_metric 7
`
	msgs := splitAll(t, splitPrometheus, in, 2)
	var recs []int
	for _, m := range msgs {
		recs = append(recs, m.records)
		parseProm(t, m.payload)
	}
	if fmt.Sprint(recs) != "[2 1 4 1]" {
		t.Fatalf("records per message = %v, want [2 1 4 1]", recs)
	}
	if !strings.HasPrefix(msgs[1].payload, "# HELP g A gauge.\n# TYPE g gauge\ng{a=\"3\"} 3\n") {
		t.Fatalf("second message does not repeat the family header: %q", msgs[1].payload)
	}
}

func TestSplitJSON(t *testing.T) {
	in := readFile(t, "testdata/nvml-samples.jsonl")
	for _, batch := range []int{1, 30, 0} {
		msgs := splitAll(t, splitJSON, in, batch)
		total := 0
		for _, m := range msgs {
			lines := strings.Split(strings.TrimSuffix(m.payload, "\n"), "\n")
			if len(lines) != m.records {
				t.Fatalf("batch %d: %d lines, reported %d", batch, len(lines), m.records)
			}
			for _, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Fatalf("invalid JSON line %q", l)
				}
			}
			total += m.records
		}
		if total != 100 {
			t.Fatalf("batch %d: %d records, want 100", batch, total)
		}
	}
	arr := "[\n {\"a\": 1,\n  \"b\": [1, 2]},\n {\"a\": 2}\n]\n"
	msgs := splitAll(t, splitJSON, arr, 1)
	if len(msgs) != 2 || msgs[0].payload != "{\"a\":1,\"b\":[1,2]}\n" || msgs[1].payload != "{\"a\":2}\n" {
		t.Fatalf("array split = %+v", msgs)
	}
	// Malformed lines are not judged: they travel as they are.
	msgs = splitAll(t, splitJSON, "{\"a\":1}\nnot json\n", 10)
	if len(msgs) != 1 || msgs[0].records != 2 || !strings.Contains(msgs[0].payload, "not json") {
		t.Fatalf("malformed line handling = %+v", msgs)
	}
}

func TestConvertDCGM(t *testing.T) {
	f, err := os.Open("testdata/dcgm_metrics.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []map[string]any
	bad, err := convertDCGM(f, 1, nil, nil, func(p []byte, n int) error {
		if n != 1 {
			t.Fatalf("batch 1 gave %d records", n)
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", p, err)
		}
		objs = append(objs, m)
		return nil
	})
	if err != nil || bad != 0 {
		t.Fatalf("convert: bad=%d err=%v", bad, err)
	}
	if len(objs) != 2470 {
		t.Fatalf("%d objects, want 2470", len(objs))
	}
	o := objs[1]
	want := map[string]any{"timestamp": "2025-07-18T20:42:34Z", "metric_name": "DCGM_FI_DEV_GPU_UTIL", "gpu_id": 1.0,
		"device": "nvidia1", "uuid": "GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", "model_name": "NVIDIA H100 80GB HBM3",
		"hostname": "mtv5-dgx1-hgpu-031", "container": "", "pod": "", "namespace": "", "value": 100.0}
	for k, v := range want {
		if o[k] != v {
			t.Fatalf("%s = %#v, want %#v (object %v)", k, o[k], v, o)
		}
	}
	if !strings.Contains(o["labels_raw"].(string), `UUID="GPU-bc7a12ab`) {
		t.Fatalf("labels_raw = %v", o["labels_raw"])
	}
	// A malformed value is published as a string, not dropped; time shift applies.
	sh := &shifter{runStart: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	in := "timestamp,metric_name,gpu_id,value\n2025-07-18T20:42:34Z,X,zero,n/a\n2025-07-18T20:42:44Z,X,0,1.5\n"
	var out []string
	if _, err := convertDCGM(strings.NewReader(in), 1, sh.shift, nil, func(p []byte, _ int) error {
		out = append(out, strings.TrimSpace(string(p)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || !strings.Contains(out[0], `"gpu_id":"zero"`) || !strings.Contains(out[0], `"value":"n/a"`) ||
		!strings.Contains(out[0], `"timestamp":"2030-01-01T00:00:00Z"`) || !strings.Contains(out[1], `"timestamp":"2030-01-01T00:00:10Z"`) {
		t.Fatalf("converted = %v", out)
	}
}

func startBroker(t *testing.T) (string, *grpc.ClientConn) {
	t.Helper()
	b, err := broker.New(broker.Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(broker.ServerOptions()...)
	b.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	conn, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); srv.Stop(); conn.Close(); _ = b.Close() })
	return lis.Addr().String(), conn
}

func TestEndToEnd(t *testing.T) {
	addr, conn := startBroker(t)
	for _, tc := range []struct {
		name, topic string
		args        []string
		msgs, recs  int
		format      string
	}{
		{"dcgm csv", "a", []string{"--format", "dcgm-csv", "testdata/dcgm_metrics.csv"}, 25, 2470, "dcgm-csv"},
		{"converted", "b", []string{"--format", "gpu-tel-json", "--from", "dcgm-csv", "--batch", "1000", "testdata/dcgm_metrics.csv"}, 3, 2470, "gpu-tel-json"},
		{"prometheus whole file", "c", []string{"--format", "prometheus", "--batch", "0", "testdata/dcgm-exporter-metrics.txt"}, 1, 25, "prometheus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := append([]string{"--address", addr, "--topic", tc.topic}, tc.args...)
			if code := run(context.Background(), args, io.Discard, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), fmt.Sprintf("published %d messages, %d records", tc.msgs, tc.recs)) {
				t.Fatalf("summary: %s", stderr.String())
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := mqpb.NewSubscriberServiceClient(conn).Subscribe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&mqpb.SubscribeRequest{Topic: tc.topic, ConsumerId: "test", BatchSize: 100}); err != nil {
				t.Fatal(err)
			}
			msgs, recs := 0, 0
			for msgs < tc.msgs {
				r, err := st.Recv()
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range r.GetMessages() {
					msgs++
					n, _ := strconv.Atoi(m.GetMetadata()["records"])
					recs += n
					if m.GetMetadata()["content-type"] != tc.format {
						t.Fatalf("content-type = %q", m.GetMetadata()["content-type"])
					}
				}
			}
			if recs != tc.recs {
				t.Fatalf("records = %d, want %d", recs, tc.recs)
			}
		})
	}
}

func TestUnreachableBrokerFails(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--address", addr, "--format", "gpu-tel-json", "testdata/nvml-samples.jsonl"}, io.Discard, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "FAILED") {
		t.Fatalf("exit %d with unreachable broker: %s", code, stderr.String())
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--format", "csv", "x"},
		{"--format", "dcgm-csv"},
		{"--format", "prometheus", "--from", "dcgm-csv", "x"},
		{"--format", "dcgm-csv", "--time-shift", "x"},
	} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
}
