package wire

import (
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// TestShareLabels: a Decoder with ShareLabels decodes the same batch as one
// without, equal label sets share one slice (different ones do not), and an
// Encoder given shared slices writes exactly the refs it writes for
// unshared ones.
func TestShareLabels(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *metric.Batch
	}{
		{"scrape", scrapeBatch(600, 30)}, // more label sets than encoder slots
		{"repeated series", gpuBatch(5000, 8, 30)},
		{"mixed", func() *metric.Batch {
			b := scrapeBatch(3, 4)
			b.AddSeries("no_labels", nil)
			b.Add(uint32(len(b.Series)-1), 5, 1)
			b.AddSeries("one", metric.Labels{{Key: "host", Value: "dgx-node-0000"}})
			b.Add(uint32(len(b.Series)-1), 6, 2)
			return b
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := NewEncoder().Encode(nil, 7, tc.b)
			raw, err := proto.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			var in pluginpb.Batch
			if err := proto.Unmarshal(raw, &in); err != nil {
				t.Fatal(err)
			}
			plain, shared := &metric.Batch{}, &metric.Batch{}
			if err := (&Decoder{}).Decode(&in, plain); err != nil {
				t.Fatal(err)
			}
			dec := Decoder{ShareLabels: true}
			for pass := 0; pass < 2; pass++ { // the Decoder is reusable
				if err := dec.Decode(&in, shared); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(plain, shared) {
					t.Fatal("ShareLabels decodes differently")
				}
			}
			if len(dec.sets) != 0 {
				t.Fatalf("decoder keeps %d label sets after Decode", len(dec.sets))
			}
			first := map[string]*metric.Label{}
			for i, s := range shared.Series {
				if len(s.Labels) == 0 {
					continue
				}
				k := s.Labels.String()
				p, ok := first[k]
				if !ok {
					first[k] = &s.Labels[0]
					continue
				}
				if p != &s.Labels[0] {
					t.Fatalf("series %d: equal labels %s not shared", i, k)
				}
			}
			// Re-encoding: shared and unshared input give the same message.
			enc := NewEncoder()
			a := proto.Clone(enc.Encode(nil, 7, plain)).(*pluginpb.Batch)
			b := enc.Encode(nil, 7, shared)
			if !proto.Equal(a, b) {
				t.Fatal("encoding shared labels differs from encoding unshared ones")
			}
			if !proto.Equal(a, msg) {
				t.Fatal("re-encoding differs from the original encoding")
			}
		})
	}
}

// TestShareLabelsBadRefs: a malformed batch is still refused with sharing.
func TestShareLabelsBadRefs(t *testing.T) {
	msg := NewEncoder().Encode(nil, 1, scrapeBatch(2, 2))
	msg.Series[len(msg.Series)-1] = 9999
	if err := (&Decoder{ShareLabels: true}).Decode(msg, &metric.Batch{}); err == nil {
		t.Fatal("out-of-range label ref accepted")
	}
}

func ExampleDecoder_shareLabels() {
	b := scrapeBatch(1, 2) // one GPU, two metrics: equal labels
	var out metric.Batch
	d := Decoder{ShareLabels: true}
	if err := d.Decode(NewEncoder().Encode(nil, 1, b), &out); err != nil {
		panic(err)
	}
	fmt.Println(len(out.Series), &out.Series[0].Labels[0] == &out.Series[1].Labels[0])
	// Output: 2 true
}
