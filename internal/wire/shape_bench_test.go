package wire

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// scrapeBatch is the shape the pipeline carries under scrape load: every
// series has one point (one scrape of gpus GPUs x metrics metrics, 6 GPU
// labels as gpu_normalize writes them).
func scrapeBatch(gpus, metrics int) *metric.Batch {
	b := &metric.Batch{}
	for g := 0; g < gpus; g++ {
		for m := 0; m < metrics; m++ {
			s := b.AddSeries(fmt.Sprintf("gpu_metric_%d", m), metric.Labels{
				{Key: metric.LabelDevice, Value: fmt.Sprintf("nvidia%d", g%8)},
				{Key: metric.LabelDriverVersion, Value: "535.129.03"},
				{Key: metric.LabelGPUIndex, Value: fmt.Sprint(g % 8)},
				{Key: metric.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
				{Key: metric.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08d-aaaa-bbbb-cccc-0000%08d", g, g)},
				{Key: metric.LabelHost, Value: fmt.Sprintf("dgx-node-%04d", g/8)},
			})
			b.Add(s, 1_700_000_000_000_000_000, float64(g*m)*0.5)
		}
	}
	return b
}

// BenchmarkScrapeShaped measures encode, decode and the full round trip
// (encode + proto.Marshal + proto.Unmarshal + decode) of a 9,840-sample
// batch in which every series has a single point (328 GPUs x 30 metrics):
// the shape of scrapes, where the series table, not the point columns,
// dominates the cost.
func BenchmarkScrapeShaped(b *testing.B) {
	src := scrapeBatch(328, 30)
	n := len(src.Points)
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
	}
	b.Run("encode", func(b *testing.B) {
		enc := NewEncoder()
		var msg pluginpb.Batch
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			enc.Encode(&msg, uint64(i), src)
		}
		report(b)
	})
	b.Run("decode", func(b *testing.B) {
		msg := NewEncoder().Encode(nil, 1, src)
		var dec Decoder
		out := &metric.Batch{}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := dec.Decode(msg, out); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("decode-shared", func(b *testing.B) {
		msg := NewEncoder().Encode(nil, 1, src)
		dec := Decoder{ShareLabels: true}
		out := &metric.Batch{}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := dec.Decode(msg, out); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("encode-shared", func(b *testing.B) {
		shared := &metric.Batch{}
		if err := (&Decoder{ShareLabels: true}).Decode(NewEncoder().Encode(nil, 1, src), shared); err != nil {
			b.Fatal(err)
		}
		enc := NewEncoder()
		var msg pluginpb.Batch
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			enc.Encode(&msg, uint64(i), shared)
		}
		report(b)
	})
	b.Run("roundtrip", func(b *testing.B) {
		enc := NewEncoder()
		var msg pluginpb.Batch
		var dec Decoder
		out := &metric.Batch{}
		var buf []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			enc.Encode(&msg, uint64(i), src)
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], &msg); err != nil {
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
		report(b)
		b.ReportMetric(float64(len(buf))/float64(n), "bytes/sample")
	})
}

// BenchmarkScrapeShapedStream compares, in one run, the per-batch form
// (Encoder/Decoder) with the stream form (StreamEncoder/StreamDecoder) for
// the steady state of a stream of scrape-shaped batches: one hop's round
// trip (encode, proto.Marshal, proto.Unmarshal, decode), decoded the
// plugin's way (own labels) and the agent's way (shared labels).
func BenchmarkScrapeShapedStream(b *testing.B) {
	src := scrapeBatch(328, 30)
	n := len(src.Points)
	type codec struct {
		encode func(*pluginpb.Batch) *pluginpb.Batch
		decode func(*pluginpb.Batch, *metric.Batch) error
	}
	perBatch := func(share bool) codec {
		enc, dec := NewEncoder(), &Decoder{ShareLabels: share}
		return codec{func(m *pluginpb.Batch) *pluginpb.Batch { return enc.Encode(m, 1, src) }, dec.Decode}
	}
	stream := func(share bool) codec {
		enc, dec := NewStreamEncoder(), &StreamDecoder{ShareLabels: share}
		return codec{func(m *pluginpb.Batch) *pluginpb.Batch { return enc.Encode(m, 1, src) }, dec.Decode}
	}
	for _, bc := range []struct {
		name string
		c    codec
	}{
		{"per-batch/own-labels", perBatch(false)},
		{"per-batch/shared-labels", perBatch(true)},
		{"stream/own-labels", stream(false)},
		{"stream/shared-labels", stream(true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var msg pluginpb.Batch
			out := &metric.Batch{}
			var buf []byte
			step := func() {
				bc.c.encode(&msg)
				var err error
				if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], &msg); err != nil {
					b.Fatal(err)
				}
				var in pluginpb.Batch
				if err := proto.Unmarshal(buf, &in); err != nil {
					b.Fatal(err)
				}
				if err := bc.c.decode(&in, out); err != nil {
					b.Fatal(err)
				}
			}
			step() // the stream's first batch defines the series
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			b.ReportMetric(float64(len(buf))/float64(n), "bytes/sample")
		})
	}
}

// BenchmarkScrapeShapedStreamParts splits the stream form's steady state
// into its parts: encode (series found by identity: the strings of a
// decoder's dictionary, as both sides of a hop see them), decode with own
// labels (the plugin side) and with shared labels (the agent side).
func BenchmarkScrapeShapedStreamParts(b *testing.B) {
	src := scrapeBatch(328, 30)
	n := len(src.Points)
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
	}
	enc := NewStreamEncoder()
	msg := enc.Encode(nil, 1, src)
	b.Run("encode", func(b *testing.B) {
		var m pluginpb.Batch
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			enc.Encode(&m, uint64(i), src)
		}
		report(b)
	})
	for _, share := range []bool{false, true} {
		b.Run(fmt.Sprintf("decode/share=%v", share), func(b *testing.B) {
			dec := &StreamDecoder{ShareLabels: share}
			out := &metric.Batch{}
			if err := dec.Decode(msg, out); err != nil {
				b.Fatal(err)
			}
			steady := NewStreamEncoder()
			steady.Encode(nil, 1, src)
			m := steady.Encode(nil, 2, src)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := dec.Decode(m, out); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}
