package gpunormalize_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	gpunormalize "github.com/telemetry-collector/telemetry-collector/processors/gpu_normalize"
	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/sdktest"
)

// TestThroughPlugin: through the plugin protocol (where the sdk hands the
// processor, a LabelReader, the stream dictionary's label slices, shared
// by a GPU's fields and from batch to batch), the stream shape gives the
// same output as the processor called directly with fresh copies.
func TestThroughPlugin(t *testing.T) {
	reg := sdk.Registration{Name: gpunormalize.Name, Kind: sdk.KindProcessor, Description: gpunormalize.Description,
		SampleConfig: gpunormalize.SampleConfig, New: func() any { return gpunormalize.New() }}
	p := sdktest.Processor(t, reg, ``)
	direct := gpunormalize.New()
	fields := []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP",
		"DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_XID_ERRORS", "UNKNOWN_FIELD"}
	type sample struct {
		name, labels string
		value        float64
	}
	flatten := func(out []*sdk.Batch) []sample {
		var got []sample
		for _, b := range out {
			for _, pt := range b.Points {
				s := b.Series[pt.Series]
				got = append(got, sample{s.Name, s.Labels.String(), pt.Value})
			}
		}
		return got
	}
	for round := range 6 {
		for part := range 3 {
			mk := func() *sdk.Batch {
				b := &sdk.Batch{}
				for f, field := range fields {
					for g := range 12 {
						if (f*12+g)%3 != part {
							continue
						}
						ls := sdk.Labels{
							{Key: "Hostname", Value: fmt.Sprintf("node-%d", g/4)},
							{Key: "UUID", Value: fmt.Sprintf("GPU-%04d", g)},
							{Key: "gpu", Value: fmt.Sprint(g % 4)},
							{Key: "modelName", Value: "NVIDIA H100 80GB HBM3"},
						}
						v := float64(round*100 + f*12 + g)
						if g == 5 && round == 2 {
							v = 2147483647 // a DCGM blank sentinel
						}
						b.Add(b.AddSeries(field, ls), int64(round), v)
					}
				}
				return b
			}
			got, err := p.Process(context.Background(), mk())
			if err != nil {
				t.Fatal(err)
			}
			want, err := direct.Process(context.Background(), mk())
			if err != nil {
				t.Fatal(err)
			}
			if g, w := flatten(got), flatten(want); !slices.Equal(g, w) || len(w) == 0 {
				t.Fatalf("round %d part %d: through the plugin %v, directly %v", round, part, g, w)
			}
		}
	}
}
