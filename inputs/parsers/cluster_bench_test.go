package parsers

import (
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/bench"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// clusterPayloads returns the payloads `make bench` publishes for a
// 1,024-GPU cluster (128 hosts x 8 GPUs x 30 DCGM fields = 30,720 distinct
// series) over rounds rounds, in publishing order: every series comes back
// only after all the others, which is what a series cache must hold.
func clusterPayloads(gen func(bench.Cluster, string) []*mqpb.Message, rounds int) [][]byte {
	c := bench.Cluster{GPUs: 1024, Fields: len(bench.Fields), Rounds: rounds, Start: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	var out [][]byte
	for _, m := range gen(c, "t") {
		out = append(out, m.GetPayload())
	}
	return out
}

// BenchmarkCluster parses the bench's shape: one host's 240 records per
// dcgm-csv message (one record per gpu-tel-json message), 30,720 series
// cycling. Before the cache was sized for a cluster, every pass missed.
func BenchmarkCluster(b *testing.B) {
	b.Run("dcgm-csv", func(b *testing.B) { benchPayloads(b, FormatDCGMCSV, clusterPayloads(bench.DCGMCSV, 2), false) })
	b.Run("gpu-tel-json", func(b *testing.B) {
		benchPayloads(b, FormatGPUTelJSON, clusterPayloads(bench.GPUTelJSON, 1), false)
	})
	b.Run("scrape", func(b *testing.B) { benchPayloads(b, FormatPrometheus, clusterPayloads(bench.Scrape, 1), false) })
	// A collector's first round of a cluster's scrapes: every host's
	// first scrape, through a fresh parser (see firstSight).
	b.Run("scrape/first-round", func(b *testing.B) {
		benchPayloads(b, FormatPrometheus, clusterPayloads(bench.Scrape, 1), true)
	})
	// As inputs.mq_service uses the parsers: label slices shared with the
	// batches, not copied per payload.
	shared := Options{Location: time.UTC, SharedLabels: true}
	b.Run("dcgm-csv/shared-labels", func(b *testing.B) {
		benchPayloadsOpts(b, FormatDCGMCSV, shared, clusterPayloads(bench.DCGMCSV, 2), false)
	})
	b.Run("scrape/shared-labels", func(b *testing.B) {
		benchPayloadsOpts(b, FormatPrometheus, shared, clusterPayloads(bench.Scrape, 1), false)
	})
}
