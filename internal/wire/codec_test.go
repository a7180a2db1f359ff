package wire

import (
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// gpuBatch builds a batch shaped like GPU scrapes: gpus x metrics series,
// scraped repeatedly until n points exist.
func gpuBatch(n, gpus, metrics int) *metric.Batch {
	b := &metric.Batch{}
	for g := 0; g < gpus; g++ {
		for m := 0; m < metrics; m++ {
			b.AddSeries(fmt.Sprintf("gpu_metric_%d", m), metric.Labels{
				{Key: metric.LabelGPUIndex, Value: fmt.Sprint(g)},
				{Key: metric.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
				{Key: metric.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08d-aaaa-bbbb-cccc-0000%08d", g, g)},
				{Key: metric.LabelHost, Value: "gpu-node-017"},
			})
		}
	}
	ns := len(b.Series)
	t0 := int64(1_700_000_000_000_000_000)
	for i := 0; i < n; i++ {
		b.Add(uint32(i%ns), t0+int64(i/ns)*1e9, float64(i)*0.5)
	}
	return b
}

func roundTrip(t *testing.T, b *metric.Batch) *metric.Batch {
	t.Helper()
	enc := NewEncoder()
	msg := enc.Encode(nil, 42, b)
	raw, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var got pluginpb.Batch
	if err := proto.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Id != 42 {
		t.Fatalf("id = %d", got.Id)
	}
	out := &metric.Batch{}
	var d Decoder
	if err := d.Decode(&got, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func normalize(b *metric.Batch) *metric.Batch {
	c := *b
	if len(c.Series) == 0 {
		c.Series = nil
	}
	if len(c.Points) == 0 {
		c.Points = nil
	}
	if len(c.Rejects) == 0 {
		c.Rejects = nil
	}
	for i := range c.Rejects {
		if len(c.Rejects[i].Raw) == 0 {
			c.Rejects[i].Raw = nil
		}
	}
	return &c
}

func TestRoundTrip(t *testing.T) {
	withRejects := gpuBatch(100, 2, 5)
	withRejects.Reject("bad value", "message 7 line 3", []byte("x,y,z"))
	withRejects.Reject("no raw", "", nil)
	onlyRejects := &metric.Batch{}
	onlyRejects.Reject("unparseable", "message 1", []byte{0, 1, 2})
	noLabels := &metric.Batch{}
	noLabels.Add(noLabels.AddSeries("up", nil), 1, 1)
	noLabels.Add(noLabels.AddSeries("", metric.Labels{{Key: "", Value: ""}}), -5, -0.25)
	cases := map[string]*metric.Batch{
		"empty":        {},
		"gpu scrape":   gpuBatch(10_000, 8, 30),
		"with rejects": withRejects,
		"only rejects": onlyRejects,
		"no labels":    noLabels,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			got := roundTrip(t, b)
			if !reflect.DeepEqual(normalize(got), normalize(b)) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, b)
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	h := Handshake()
	if h.ProtocolVersion != ProtocolVersion || ProtocolVersion != 2 || h.MagicCookieKey == "" || h.MagicCookieValue == "" {
		t.Fatalf("bad handshake %+v", h)
	}
}

// BenchmarkRoundTrip measures encode + proto.Marshal + proto.Unmarshal +
// decode of a 10,000-point GPU-scrape batch (8 GPUs x 30 metrics).
func BenchmarkRoundTrip(b *testing.B) {
	const n = 10_000
	src := gpuBatch(n, 8, 30)
	enc := NewEncoder()
	var msg pluginpb.Batch
	var dec Decoder
	out := &metric.Batch{}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc.Encode(&msg, uint64(i), src)
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], &msg)
		if err != nil {
			b.Fatal(err)
		}
		var in pluginpb.Batch
		if err := proto.Unmarshal(buf, &in); err != nil {
			b.Fatal(err)
		}
		if err := dec.Decode(&in, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/point")
	b.ReportMetric(float64(len(buf))/n, "bytes/point")
}

func BenchmarkEncode(b *testing.B) {
	const n = 10_000
	src := gpuBatch(n, 8, 30)
	enc := NewEncoder()
	var msg pluginpb.Batch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		enc.Encode(&msg, uint64(i), src)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/point")
}

func BenchmarkDecode(b *testing.B) {
	const n = 10_000
	msg := NewEncoder().Encode(nil, 1, gpuBatch(n, 8, 30))
	var dec Decoder
	out := &metric.Batch{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := dec.Decode(msg, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/point")
}
