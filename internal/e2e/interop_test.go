package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// originalSample is the original service's payload: one DCGM sample per
// message, as JSON (DESIGN section 5).
type originalSample struct {
	Timestamp  string            `json:"timestamp"`
	MetricName string            `json:"metric_name"`
	GPUID      int               `json:"gpu_id"`
	Device     string            `json:"device"`
	UUID       string            `json:"uuid"`
	ModelName  string            `json:"model_name"`
	Hostname   string            `json:"hostname"`
	Container  string            `json:"container"`
	Pod        string            `json:"pod"`
	Namespace  string            `json:"namespace"`
	Value      float64           `json:"value"`
	LabelsRaw  map[string]string `json:"labels_raw"`
}

// originalSamples converts the DCGM export into original-service samples,
// independently of the streamer's converter (labels_raw as an object here;
// the streamer sends the CSV's string).
func originalSamples(t *testing.T, path string) []originalSample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	hdr, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range hdr {
		col[h] = i
	}
	var out []originalSample
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		gpu, err1 := strconv.Atoi(rec[col["gpu_id"]])
		v, err2 := strconv.ParseFloat(rec[col["value"]], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("row %v: %v %v", rec, err1, err2)
		}
		out = append(out, originalSample{
			Timestamp: rec[col["timestamp"]], MetricName: rec[col["metric_name"]], GPUID: gpu,
			Device: rec[col["device"]], UUID: rec[col["uuid"]], ModelName: rec[col["modelName"]],
			Hostname: rec[col["Hostname"]], Container: rec[col["container"]], Pod: rec[col["pod"]],
			Namespace: rec[col["namespace"]], Value: v, LabelsRaw: parseLabelSet(t, rec[col["labels_raw"]]),
		})
	}
	return out
}

// parseLabelSet parses `k="v",k2="v2"` (a Prometheus label set without
// braces).
func parseLabelSet(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			t.Fatalf("label set %q: no '='", s)
		}
		k := s[:eq]
		q, err := strconv.QuotedPrefix(s[eq+1:])
		if err != nil {
			t.Fatalf("label set %q: %v", s, err)
		}
		out[k], _ = strconv.Unquote(q)
		s = strings.TrimPrefix(s[eq+1+len(q):], ",")
	}
	return out
}

// TestOriginalPublisherInterop: a publisher written directly against the
// generated mq.v1 API (mq/mqpb, not our mq/client), behaving like the
// original service's publisher (one JSON sample per message, no
// content-type metadata, the publisher's message timestamp, one
// PublishRequest after another on one stream), feeds our broker; the
// samples land in PostgreSQL. The other direction (our input against a
// broker that does only what the original did: one message per response,
// no redelivery, ignored acks) is covered by inputs/mq_service's
// server_test.go.
func TestOriginalPublisherInterop(t *testing.T) {
	// No content-type: the input's data_format decides (gpu-tel-json).
	e, mq, c := startPipeline(t, CollectorConfig{DataFormat: "gpu-tel-json"})
	samples := originalSamples(t, dcgmFile)
	if len(samples) != dcgmRows {
		t.Fatalf("%d samples from the export, want %d", len(samples), dcgmRows)
	}

	conn, err := grpc.NewClient(mq.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(e.Ctx, time.Minute)
	defer cancel()
	pub := mqpb.NewPublisherServiceClient(conn)
	if h, err := pub.HealthCheck(ctx, &mqpb.HealthCheckRequest{Service: "mq.v1.PublisherService"}); err != nil ||
		h.GetStatus() != mqpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v, %v", h, err)
	}
	stream, err := pub.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error, 1)
	go func() {
		for i := range samples {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- fmt.Errorf("response %d: %w", i, err)
				return
			}
			if !resp.GetSuccess() || resp.GetMessageId() == "" {
				recvErr <- fmt.Errorf("response %d: %v", i, resp)
				return
			}
		}
		recvErr <- nil
	}()
	for i, s := range samples {
		payload, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&mqpb.PublishRequest{Message: &mqpb.Message{
			Id: fmt.Sprintf("orig-%d", i), Topic: "gpu-telemetry", Payload: payload,
			Timestamp: timestamppb.Now(), Metadata: map[string]string{"source": "dcgm-exporter"},
		}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := <-recvErr; err != nil {
		t.Fatal(err)
	}

	e.WaitCount(30*time.Second, dcgmRows, `SELECT count(*) FROM gpu_metrics`)
	checkDCGMExport(t, e)
	st := mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != dcgmRows || st.Acked != dcgmRows {
		t.Errorf("broker: %+v; want %d published and acked", st, dcgmRows)
	}
	checkNoErrors(t, c)
}
