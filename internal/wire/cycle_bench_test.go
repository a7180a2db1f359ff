package wire

import (
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// Scrape cycle shape: cycleGPUs GPUs x cycleMetrics metrics = 30,720
// distinct series, one point per series, cycled through batches of
// cycleBatch points (3 batches per cycle), each GPU's 30 series sharing
// one label slice of 6-11 labels.
const (
	cycleGPUs    = 1024
	cycleMetrics = 30
	cycleBatch   = 10_240
)

// cycleBatches returns the batches of one cycle through all series, in a
// processor's shape: one label slice per GPU, shared by its series.
func cycleBatches() []*metric.Batch {
	names := make([]string, cycleMetrics)
	for m := range names {
		names[m] = fmt.Sprintf("gpu_metric_%d", m)
	}
	var out []*metric.Batch
	b := &metric.Batch{}
	for g := 0; g < cycleGPUs; g++ {
		ls := metric.Labels{
			{Key: metric.LabelContainer, Value: fmt.Sprintf("trainer-%d", g%5)},
			{Key: metric.LabelDevice, Value: fmt.Sprintf("nvidia%d", g%8)},
			{Key: metric.LabelDriverVersion, Value: "535.129.03"},
			{Key: metric.LabelGPUIndex, Value: fmt.Sprint(g % 8)},
			{Key: metric.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
			{Key: metric.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08d-aaaa-bbbb-cccc-0000%08d", g, g)},
			{Key: metric.LabelHost, Value: fmt.Sprintf("dgx-node-%04d", g/8)},
			{Key: metric.LabelNamespace, Value: fmt.Sprintf("team-%d", g%3)},
			{Key: metric.LabelPCIBusID, Value: fmt.Sprintf("00000000:%02X:00.0", g%8)},
			{Key: metric.LabelPod, Value: fmt.Sprintf("job-%d-worker-%d", g/64, g%64)},
			{Key: "rack", Value: fmt.Sprintf("r%d", g/128)},
		}
		// 6 to 11 labels (dropping optional ones keeps the keys sorted).
		switch k := g % 6; k {
		case 0: // 6: the GPU labels only
			ls = metric.Labels{ls[1], ls[2], ls[3], ls[4], ls[5], ls[6]}
		case 1:
			ls = append(metric.Labels{ls[0]}, ls[1:7]...)
		case 2:
			ls = append(append(metric.Labels{ls[0]}, ls[1:7]...), ls[7])
		case 3:
			ls = append(append(metric.Labels{ls[0]}, ls[1:9]...), ls[9])
		case 4:
			ls = ls[:10]
		}
		for m := 0; m < cycleMetrics; m++ {
			b.Add(b.AddSeries(names[m], ls), 1_700_000_000_000_000_000+int64(g), float64(g*m)*0.5)
			if len(b.Points) == cycleBatch {
				out = append(out, b)
				b = &metric.Batch{}
			}
		}
	}
	if len(b.Points) > 0 {
		out = append(out, b)
	}
	return out
}

// reportPerSample reports ns/sample and allocs/sample over the timed loop.
func reportPerSample(b *testing.B, samples int, m0 *runtime.MemStats) {
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(samples), "allocs/sample")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(samples), "B/sample")
}

// BenchmarkScrapeCycle measures the steady state of a stream that cycles
// 30,720 series through 10,240-point batches (each series one point per
// batch, all defined earlier on the stream): encode from a processor's
// label slices and from a shared-labels decoder's dictionary slices,
// decode with own and with shared labels (a fresh batch each time, as the
// protocol's callers hand decoded batches on), and one hop's round trip.
func BenchmarkScrapeCycle(b *testing.B) {
	src := cycleBatches()
	// The stream's messages, steady state (second cycle), after the wire.
	up := NewStreamEncoder()
	for _, s := range src {
		up.Encode(nil, 1, s)
	}
	msgs := make([]*pluginpb.Batch, len(src))
	for i, s := range src {
		msgs[i] = send(b, up.Encode(nil, 1, s))
	}
	// A shared-labels decoder's batches: the agent re-encoding them.
	sharedDec := &StreamDecoder{ShareLabels: true}
	first := NewStreamEncoder()
	shared := make([]*metric.Batch, len(src))
	for _, s := range src {
		if err := sharedDec.Decode(send(b, first.Encode(nil, 1, s)), &metric.Batch{}); err != nil {
			b.Fatal(err)
		}
	}
	for i, s := range src {
		shared[i] = &metric.Batch{}
		if err := sharedDec.Decode(send(b, first.Encode(nil, 1, s)), shared[i]); err != nil {
			b.Fatal(err)
		}
	}
	run := func(name string, prime func(i int), step func(i int)) {
		b.Run(name, func(b *testing.B) {
			for i := range src {
				prime(i)
			}
			samples := 0
			var m0 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(src)
				step(k)
				samples += len(src[k].Points)
			}
			b.StopTimer()
			reportPerSample(b, samples, &m0)
		})
	}
	for _, in := range []struct {
		name    string
		batches []*metric.Batch
	}{{"processor-slices", src}, {"dict-slices", shared}} {
		enc := NewStreamEncoder()
		var m pluginpb.Batch
		encode := func(i int) { enc.Encode(&m, uint64(i), in.batches[i]) }
		run("encode/"+in.name, encode, encode)
	}
	{
		// The same series in another order than they were defined in
		// (metric-major batches on a stream defined GPU-major): every
		// series is looked up.
		enc := NewStreamEncoder()
		for _, s := range src {
			enc.Encode(nil, 1, s)
		}
		reordered := make([]*metric.Batch, len(src))
		for i, s := range src {
			r := &metric.Batch{}
			for m := 0; m < cycleMetrics; m++ {
				for k := m; k < len(s.Series); k += cycleMetrics {
					r.Add(r.AddSeries(s.Series[k].Name, s.Series[k].Labels), s.Points[k].Time, s.Points[k].Value)
				}
			}
			reordered[i] = r
		}
		var m pluginpb.Batch
		encode := func(i int) { enc.Encode(&m, uint64(i), reordered[i]) }
		run("encode/reordered", encode, encode)
	}
	{
		// A scrape's order, defined so on the stream: each metric for the 8
		// GPUs of a host in turn, so consecutive series have different
		// label slices though they come in definition order.
		var all []metric.Series
		for _, s := range src {
			all = append(all, s.Series...)
		}
		var inter []*metric.Batch
		r := &metric.Batch{}
		for host := 0; host < cycleGPUs/8; host++ {
			for m := 0; m < cycleMetrics; m++ {
				for g := host * 8; g < host*8+8; g++ {
					ser := all[g*cycleMetrics+m]
					r.Add(r.AddSeries(ser.Name, ser.Labels), 1_700_000_000_000_000_000, float64(g))
					if len(r.Points) == cycleBatch {
						inter = append(inter, r)
						r = &metric.Batch{}
					}
				}
			}
		}
		if len(r.Points) > 0 {
			inter = append(inter, r)
		}
		enc := NewStreamEncoder()
		for _, s := range inter {
			enc.Encode(nil, 1, s)
		}
		var m pluginpb.Batch
		encode := func(i int) { enc.Encode(&m, uint64(i), inter[i%len(inter)]) }
		run("encode/interleaved-gpus", encode, encode)
	}
	for _, share := range []bool{false, true} {
		var dec *StreamDecoder
		prime := func(i int) {
			if i == 0 {
				// Define the series as the stream did.
				dec = &StreamDecoder{ShareLabels: share}
				e := NewStreamEncoder()
				for _, s := range src {
					if err := dec.Decode(send(b, e.Encode(nil, 1, s)), &metric.Batch{}); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		run(fmt.Sprintf("decode/share=%v", share), prime, func(i int) {
			// A fresh batch: the decoded batch is handed on.
			if err := dec.Decode(msgs[i], &metric.Batch{}); err != nil {
				b.Fatal(err)
			}
		})
	}
	{
		// One hop, agent side to plugin side: encode (dictionary slices),
		// marshal, unmarshal, decode with shared labels into a fresh batch.
		enc, dec := NewStreamEncoder(), &StreamDecoder{ShareLabels: true}
		var m pluginpb.Batch
		var buf []byte
		step := func(i int) {
			enc.Encode(&m, uint64(i), shared[i])
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], &m); err != nil {
				b.Fatal(err)
			}
			var in pluginpb.Batch
			if err := proto.Unmarshal(buf, &in); err != nil {
				b.Fatal(err)
			}
			if err := dec.Decode(&in, &metric.Batch{}); err != nil {
				b.Fatal(err)
			}
		}
		run("hop/shared", step, step)
	}
}
