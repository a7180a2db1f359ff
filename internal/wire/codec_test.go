package wire

import (
	"fmt"
	"reflect"
	"strings"
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

func TestEncoderReuseAndDedup(t *testing.T) {
	enc := NewEncoder()
	b1 := gpuBatch(1000, 8, 30)
	m := enc.Encode(nil, 1, b1)
	// 30 names + 4 keys + 8 indexes + 1 model + 8 uuids + 1 host
	if want := 30 + 4 + 8 + 1 + 8 + 1; len(m.Strings) != want {
		t.Fatalf("dictionary has %d strings, want %d", len(m.Strings), want)
	}
	b2 := &metric.Batch{}
	b2.Add(b2.AddSeries("other", metric.Labels{{Key: "k", Value: "v"}}), 5, 6)
	m = enc.Encode(m, 2, b2)
	if !reflect.DeepEqual(m.Strings, []string{"other", "k", "v"}) || len(m.PointValue) != 1 {
		t.Fatalf("reused encode kept stale data: %v %v", m.Strings, m.PointValue)
	}
	got, err := Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(b2)) {
		t.Fatalf("got %+v", got)
	}
}

func TestDecodeInternsStrings(t *testing.T) {
	b := gpuBatch(1000, 2, 3)
	raw, _ := proto.Marshal(NewEncoder().Encode(nil, 1, b))
	var msg pluginpb.Batch
	if err := proto.Unmarshal(raw, &msg); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(&msg)
	if err != nil {
		t.Fatal(err)
	}
	// Every host label must share the one dictionary string's memory.
	h0 := got.Series[0].Labels[3].Value
	for _, s := range got.Series {
		h := s.Labels[3].Value
		if h != h0 || unsafeData(h) != unsafeData(h0) {
			t.Fatalf("host label not interned")
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		var d Decoder
		out := &metric.Batch{}
		_ = d.Decode(&msg, out)
	})
	// batch + series slice + label slab + points slice (+ slack); not per point.
	if allocs > 6 {
		t.Fatalf("decode made %v allocations", allocs)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	cases := map[string]*pluginpb.Batch{
		"truncated series":  {Strings: []string{"a"}, Series: []uint32{0}},
		"labels overrun":    {Strings: []string{"a"}, Series: []uint32{0, 3, 0, 0}},
		"name ref":          {Strings: []string{"a"}, Series: []uint32{1, 0}},
		"label ref":         {Strings: []string{"a"}, Series: []uint32{0, 1, 0, 9}},
		"point series":      {Strings: []string{"a"}, Series: []uint32{0, 0}, PointSeries: []uint32{1}, PointTime: []int64{1}, PointValue: []float64{1}},
		"column lengths":    {Strings: []string{"a"}, Series: []uint32{0, 0}, PointSeries: []uint32{0}, PointTime: []int64{1}},
		"points, no series": {PointSeries: []uint32{0}, PointTime: []int64{1}, PointValue: []float64{1}},
		"huge label counts": {Strings: []string{"a"}, Series: []uint32{0, 1 << 31}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(m); err == nil || !strings.HasPrefix(err.Error(), "wire: ") {
				t.Fatalf("want wire error, got %v", err)
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
