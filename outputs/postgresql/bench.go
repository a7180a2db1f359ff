package postgresql

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// SyntheticBatches builds scrape-shaped canonical telemetry for benchmarks:
// gpus GPUs (8 per host) x metrics canonical metrics x steps timestamps one
// second apart from start, cut into batches of at most batchSize points.
// Each batch interns its own series, as a pipeline stage would send them.
func SyntheticBatches(gpus, metrics, steps, batchSize int, start time.Time) []*sdk.Batch {
	metrics = min(metrics, len(gpumetrics.Canonical))
	labels := make([]sdk.Labels, gpus)
	for g := range labels {
		host := fmt.Sprintf("node%04d", g/8)
		labels[g] = sdk.Labels{
			{Key: sdk.LabelDevice, Value: fmt.Sprintf("nvidia%d", g%8)},
			{Key: sdk.LabelDriverVersion, Value: "550.54.15"},
			{Key: sdk.LabelGPUIndex, Value: fmt.Sprint(g % 8)},
			{Key: sdk.LabelGPUModel, Value: "NVIDIA H100 80GB HBM3"},
			{Key: sdk.LabelGPUUUID, Value: fmt.Sprintf("GPU-%08x-0000-4000-8000-%012x", g, g)},
			{Key: sdk.LabelHost, Value: host},
		}
	}
	var out []*sdk.Batch
	var b *sdk.Batch
	var idx *sdk.SeriesIndex
	for s := 0; s < steps; s++ {
		ts := start.Add(time.Duration(s) * time.Second).UnixNano()
		for g := 0; g < gpus; g++ {
			for m := 0; m < metrics; m++ {
				if b == nil || len(b.Points) >= batchSize {
					b = &sdk.Batch{Points: make([]sdk.Point, 0, batchSize)}
					idx = sdk.NewSeriesIndex(b)
					out = append(out, b)
				}
				b.Add(idx.ID(gpumetrics.Canonical[m].Name, labels[g]), ts, float64(s*7+g*3+m)+0.5)
			}
		}
	}
	return out
}

// CeilingWrite writes the final rows of batches (from CeilingRows) with a
// plain pgx CopyFrom per batch on one connection: the upper bound the output's
// Write is measured against. It returns the rows written.
func CeilingWrite(ctx context.Context, conn *pgx.Conn, schema string, rows [][][]any) (int64, error) {
	var n int64
	for _, r := range rows {
		k, err := CeilingCopy(ctx, conn, schema, r)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
