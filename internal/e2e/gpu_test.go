package e2e

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// The DCGM export testdata/dcgm_metrics.csv (a copy of
// shared/data/dcgm/dcgm_metrics_20250718_134233.csv), checked by hand
// (python csv module, independent of our parsers): 2,470 rows, 10 DCGM
// fields x 247 GPUs (one value of each field per GPU), 31 hosts, all
// "NVIDIA H100 80GB HBM3", 4 timestamps 2025-07-18T20:42:34Z..37Z, no two
// rows with the same (uuid, field, timestamp), every value numeric,
// FB_USED + FB_FREE = 81007 MiB for every GPU, max POWER_USAGE 689.457 W
// (GPU-417bc14b-0721-a915-5c8b-6c7e4c6132b8, gpu 2 of mtv5-dgx1-hgpu-024).
const (
	dcgmFile       = "testdata/dcgm_metrics.csv"
	dcgmRows       = 2470
	dcgmGPUs       = 247
	dcgmHosts      = 31
	dcgmFBTotalMiB = 81007
	mib            = 1 << 20
)

// dcgmPerMetric is what each DCGM field of the export becomes.
var dcgmPerMetric = []string{
	"gpu_utilization_ratio", "gpu_memory_copy_utilization_ratio", "gpu_power_watts",
	"gpu_temperature_celsius", "gpu_memory_used_bytes", "gpu_memory_free_bytes",
	"gpu_decoder_utilization_ratio", "gpu_encoder_utilization_ratio",
	"gpu_sm_clock_hertz", "gpu_memory_clock_hertz",
}

func canonicalNames() []string {
	out := make([]string, len(gpumetrics.Canonical))
	for i, m := range gpumetrics.Canonical {
		out[i] = m.Name
	}
	return out
}

// startPipeline starts a broker and a collector wired to it.
func startPipeline(t *testing.T, cfg CollectorConfig) (*Env, *MQ, *Collector) {
	t.Helper()
	e := New(t)
	mq := e.StartMQ(MQOptions{})
	cfg.MQAddress = mq.Addr
	c := e.StartCollector(cfg)
	return e, mq, c
}

// approx compares floats to 1e-9 relative.
func approx(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// checkDCGMExport asserts what the DCGM export must become in gpu_metrics.
func checkDCGMExport(t *testing.T, e *Env) {
	t.Helper()
	if n := e.Count(`SELECT count(*) FROM gpu_metrics WHERE metric <> ALL($1)`, canonicalNames()); n != 0 {
		t.Errorf("%d samples with a non-canonical metric name", n)
	}
	for _, m := range dcgmPerMetric {
		if n := e.Count(`SELECT count(*) FROM gpu_metrics WHERE metric = $1`, m); n != dcgmGPUs {
			t.Errorf("%s: %d samples, want %d (one per GPU)", m, n, dcgmGPUs)
		}
	}
	for _, c := range []struct {
		sql  string
		want int64
	}{
		{`SELECT count(DISTINCT gpu_uuid) FROM gpu_metrics`, dcgmGPUs},
		{`SELECT count(DISTINCT host) FROM gpu_metrics`, dcgmHosts},
		{`SELECT count(*) FROM gpu_metrics WHERE gpu_model <> 'NVIDIA H100 80GB HBM3' OR gpu_model IS NULL`, 0},
		{`SELECT count(*) FROM gpu_metrics WHERE gpu_index IS NULL OR gpu_index NOT BETWEEN 0 AND 7`, 0},
		{`SELECT count(*) FROM gpu_metrics WHERE time NOT BETWEEN '2025-07-18T20:42:34Z' AND '2025-07-18T20:42:37Z'`, 0},
		{`SELECT count(*) FROM (SELECT DISTINCT gpu_uuid, metric, time FROM gpu_metrics) d`, dcgmRows},
		// Utilization is a ratio 0..1 (the export has 0..100 %), and the
		// export has busy GPUs at 100 %.
		{`SELECT count(*) FROM gpu_metrics WHERE metric LIKE '%utilization_ratio' AND (value < 0 OR value > 1)`, 0},
		{`SELECT count(*) FROM gpu_metrics WHERE metric = 'gpu_utilization_ratio' AND value = 1`, countUtil100},
	} {
		if n := e.Count(c.sql); n != c.want {
			t.Errorf("%s = %d, want %d", c.sql, n, c.want)
		}
	}
	// Memory: used + free = 81007 MiB for every (GPU, time), in bytes.
	var pairs, good int64
	if err := e.DB.QueryRow(e.Ctx, `
		SELECT count(*), count(*) FILTER (WHERE s = $1)
		FROM (SELECT gpu_uuid, time, sum(value) AS s, count(*) AS n FROM gpu_metrics
		      WHERE metric IN ('gpu_memory_used_bytes', 'gpu_memory_free_bytes')
		      GROUP BY gpu_uuid, time) x WHERE n = 2`, float64(dcgmFBTotalMiB*mib)).Scan(&pairs, &good); err != nil {
		t.Fatal(err)
	}
	if pairs != dcgmGPUs || good != dcgmGPUs {
		t.Errorf("memory used+free: %d (gpu,time) pairs, %d of them = %d bytes; want %d and %d", pairs, good, dcgmFBTotalMiB*mib, dcgmGPUs, dcgmGPUs)
	}
	// Hand-checked values.
	var host, uuid string
	var idx int
	var watts float64
	if err := e.DB.QueryRow(e.Ctx, `SELECT host, gpu_uuid, gpu_index, value FROM gpu_metrics
		WHERE metric = 'gpu_power_watts' ORDER BY value DESC LIMIT 1`).Scan(&host, &uuid, &idx, &watts); err != nil {
		t.Fatal(err)
	}
	if watts != 689.457 || host != "mtv5-dgx1-hgpu-024" || uuid != "GPU-417bc14b-0721-a915-5c8b-6c7e4c6132b8" || idx != 2 {
		t.Errorf("max power: %v W on %s %s gpu %d; want 689.457 W on mtv5-dgx1-hgpu-024 GPU-417bc14b-0721-a915-5c8b-6c7e4c6132b8 gpu 2", watts, host, uuid, idx)
	}
	// GPU 0 of mtv5-dgx1-hgpu-031: the first rows of the file.
	const g0 = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
	for _, c := range []struct {
		metric, at string
		want       float64
	}{
		{"gpu_power_watts", "2025-07-18T20:42:34Z", 156.596},
		{"gpu_temperature_celsius", "2025-07-18T20:42:35Z", 63},
		{"gpu_memory_used_bytes", "2025-07-18T20:42:35Z", 73420 * mib},
		{"gpu_memory_free_bytes", "2025-07-18T20:42:35Z", 7587 * mib},
		{"gpu_sm_clock_hertz", "2025-07-18T20:42:37Z", 1980e6},
		{"gpu_memory_clock_hertz", "2025-07-18T20:42:37Z", 2619e6},
		{"gpu_utilization_ratio", "2025-07-18T20:42:34Z", 0},
	} {
		var got float64
		var h string
		if err := e.DB.QueryRow(e.Ctx, `SELECT value, host FROM gpu_metrics WHERE gpu_uuid = $1 AND metric = $2 AND time = $3`,
			g0, c.metric, c.at).Scan(&got, &h); err != nil {
			t.Errorf("%s of %s at %s: %v", c.metric, g0, c.at, err)
			continue
		}
		if !approx(got, c.want) || h != "mtv5-dgx1-hgpu-031" {
			t.Errorf("%s of %s at %s = %v on %s, want %v on mtv5-dgx1-hgpu-031", c.metric, g0, c.at, got, h, c.want)
		}
	}
	// GPU 1 of the same host was at 100 % utilization: 1.0.
	if v := e.Float(`SELECT value FROM gpu_metrics WHERE gpu_uuid = 'GPU-bc7a12ab-4998-fdc5-0785-2678a929a142' AND metric = 'gpu_utilization_ratio'`); v != 1 {
		t.Errorf("utilization of GPU-bc7a12ab (100 %% in the export) = %v, want 1", v)
	}
}

// countUtil100 is how many GPUs report DCGM_FI_DEV_GPU_UTIL = 100 in the
// export (counted with awk -F'","' '$2=="DCGM_FI_DEV_GPU_UTIL" && $11=="100"').
const countUtil100 = 27

// checkNoErrors asserts the collector counted no error.
func checkNoErrors(t *testing.T, c *Collector) {
	t.Helper()
	if n := c.Metrics().Sum("collector_errors_total"); n != 0 {
		t.Errorf("collector_errors_total = %v, want 0: %v", n, c.Metrics().Matching("collector_errors_total"))
	}
}

// TestDCGMExport streams the export as dcgm-csv, checks it, streams it
// again and checks that nothing changed and the broker holds nothing
// unacknowledged.
func TestDCGMExport(t *testing.T) {
	start := time.Now()
	e, mq, c := startPipeline(t, CollectorConfig{})
	ready := time.Since(start)
	sum := e.Stream(StreamOptions{Address: mq.Addr, Format: "dcgm-csv", Batch: 100}, dcgmFile)
	if msgs, recs, err := ParseSummary(sum); err != nil || msgs != 25 || recs != dcgmRows {
		t.Fatalf("streamer: %q (%v), want 25 messages, %d records", sum, err, dcgmRows)
	}
	e.WaitCount(30*time.Second, dcgmRows, `SELECT count(*) FROM gpu_metrics`)
	landed := time.Since(start)
	checkDCGMExport(t, e)
	st := mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != 25 || st.Acked != 25 || st.Nacked != 0 || st.DeadLettered != 0 {
		t.Errorf("broker after one pass: %+v; want 25 published, 25 acked, none nacked or dead-lettered", st)
	}

	// Again: storage is idempotent.
	e.Stream(StreamOptions{Address: mq.Addr, Format: "dcgm-csv", Batch: 100}, dcgmFile)
	st = mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != 50 || st.Acked != 50 || st.Nacked != 0 || st.DeadLettered != 0 {
		t.Errorf("broker after two passes: %+v; want 50 published, 50 acked", st)
	}
	if n := e.Count(`SELECT count(*) FROM gpu_metrics`); n != dcgmRows {
		t.Errorf("after the second pass gpu_metrics holds %d samples, want %d", n, dcgmRows)
	}
	if n := e.Count(`SELECT count(*) - count(DISTINCT (gpu_uuid, metric, time)) FROM gpu_metrics`); n != 0 {
		t.Errorf("%d duplicate (gpu_uuid, metric, time) samples", n)
	}
	checkDCGMExport(t, e)
	checkNoErrors(t, c)
	m := c.Metrics()
	if v := m.Sum("collector_samples_processed_total", "plugin", "inputs.mq_service"); v != 2*dcgmRows {
		t.Errorf("input emitted %v samples, want %d", v, 2*dcgmRows)
	}
	t.Logf("ready after %v, %d samples landed after %v, total %v", ready, dcgmRows, landed, time.Since(start))
}

// TestDCGMAsGPUTelJSON streams the same export as the original service's
// messages: one JSON sample per message (streamer --from dcgm-csv --format
// gpu-tel-json --batch 1).
func TestDCGMAsGPUTelJSON(t *testing.T) {
	e, mq, c := startPipeline(t, CollectorConfig{})
	sum := e.Stream(StreamOptions{Address: mq.Addr, Format: "gpu-tel-json", From: "dcgm-csv", Batch: 1}, dcgmFile)
	if msgs, recs, err := ParseSummary(sum); err != nil || msgs != dcgmRows || recs != dcgmRows {
		t.Fatalf("streamer: %q (%v), want %d messages of one record", sum, err, dcgmRows)
	}
	e.WaitCount(30*time.Second, dcgmRows, `SELECT count(*) FROM gpu_metrics`)
	checkDCGMExport(t, e)
	st := mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != dcgmRows || st.Acked != dcgmRows || st.Nacked != 0 {
		t.Errorf("broker: %+v; want %d published and acked", st, dcgmRows)
	}
	checkNoErrors(t, c)
}

// The nvidia-smi capture testdata/nvidia-smi-query-gpu.csv (a copy of
// shared/data/h100/nvidia-smi-query-gpu.csv): 40 rows of 49 columns, one
// GPU (index 0, GPU-75646445-1f40-4f29-9273-53c0002830cf), no host column.
// Counted by hand: 8 columns identify the GPU (timestamp, index, uuid, name,
// serial, pci.bus_id, driver_version, vbios_version); fan.speed and
// retired_pages.pending are "[N/A]" in every row; compute_mode is text
// ("Default"); clocks_event_reasons.active appears twice (one series);
// that leaves 37 measurements per row: 23 canonical (pstate, 2
// temperatures, 4 utilizations, 4 memory, power.draw, power.draw.instant,
// enforced.power.limit, 4 current clocks, clocks_event_reasons.active, 2 ECC
// totals, 2 remapped rows) and 14 kept under derived names
// (power.draw.average, power.limit, power.max_limit, clocks.max.sm,
// clocks.max.memory, 3 per-reason clock events, pcie.link.gen.current,
// pcie.link.width.current, mig.mode.current, persistence_mode, compute_cap,
// protected_memory.used).
const (
	smiFile          = "testdata/nvidia-smi-query-gpu.csv"
	smiRows          = 40
	smiCanonicalPer  = 23
	smiDerivedPer    = 14
	smiGPU           = "GPU-75646445-1f40-4f29-9273-53c0002830cf"
	smiFirstRowTime  = "2026-11-26T20:58:55.944Z" // nvidia-smi printed UTC (the capture's README)
	smiUtil2RowTime  = "2026-11-26T20:59:02.500Z"
	smiLastRowTime   = "2026-11-26T20:59:06.078Z"
	smiSamplesPerRow = smiCanonicalPer + smiDerivedPer
)

func TestNvidiaSMI(t *testing.T) {
	e, mq, c := startPipeline(t, CollectorConfig{})
	e.Stream(StreamOptions{Address: mq.Addr, Format: "nvidia-smi-csv", Batch: 10}, smiFile)
	const want = smiRows * smiSamplesPerRow // 1,480
	e.WaitCount(30*time.Second, want, `SELECT count(*) FROM gpu_metrics`)
	check := func() {
		t.Helper()
		for _, c := range []struct {
			sql  string
			want int64
		}{
			{`SELECT count(*) FROM gpu_metrics WHERE metric = ANY($1)`, smiRows * smiCanonicalPer},
			{`SELECT count(DISTINCT metric) FROM gpu_metrics`, smiSamplesPerRow},
			{`SELECT count(DISTINCT time) FROM gpu_metrics`, smiRows},
			{`SELECT count(*) FROM gpu_metrics WHERE gpu_uuid <> '` + smiGPU + `' OR gpu_index <> 0 OR gpu_model <> 'NVIDIA H100 80GB HBM3'`, 0},
			{`SELECT count(*) FROM gpu_metrics WHERE time NOT BETWEEN '` + smiFirstRowTime + `' AND '` + smiLastRowTime + `'`, 0},
			{`SELECT count(*) - count(DISTINCT (metric, time)) FROM gpu_metrics`, 0},
			// Never a sample for [N/A] or text, nor the serial number.
			{`SELECT count(*) FROM gpu_metrics WHERE metric ~ '(fan|retired|compute_mode|serial)'`, 0},
		} {
			var args []any
			if strings.Contains(c.sql, "$1") {
				args = append(args, canonicalNames())
			}
			if n := e.Count(c.sql, args...); n != c.want {
				t.Errorf("%s = %d, want %d", c.sql, n, c.want)
			}
		}
		for _, c := range []struct {
			metric, at string
			want       float64
		}{
			{"gpu_power_watts", smiFirstRowTime, 73.97},
			{"gpu_power_instant_watts", smiFirstRowTime, 73.80},
			{"gpu_power_limit_watts", smiFirstRowTime, 700},
			{"gpu_memory_total_bytes", smiFirstRowTime, 81559 * mib},
			{"gpu_memory_reserved_bytes", smiFirstRowTime, 480 * mib},
			{"gpu_memory_used_bytes", smiFirstRowTime, 0},
			{"gpu_memory_free_bytes", smiFirstRowTime, 81079 * mib},
			{"gpu_sm_clock_hertz", smiFirstRowTime, 345e6},
			{"gpu_graphics_clock_hertz", smiFirstRowTime, 345e6},
			{"gpu_memory_clock_hertz", smiFirstRowTime, 2619e6},
			{"gpu_video_clock_hertz", smiFirstRowTime, 765e6},
			{"gpu_performance_state", smiFirstRowTime, 0},   // "P0"
			{"gpu_clock_event_reasons", smiFirstRowTime, 1}, // 0x0000000000000001
			{"gpu_temperature_celsius", smiFirstRowTime, 48},
			{"gpu_memory_temperature_celsius", smiFirstRowTime, 51},
			{"gpu_utilization_ratio", smiUtil2RowTime, 0.02}, // "2 %"
			{"gpu_memory_used_bytes", smiUtil2RowTime, 785 * mib},
			{"gpu_memory_free_bytes", smiUtil2RowTime, 80295 * mib},
			{"gpu_power_watts", smiUtil2RowTime, 94.08},
			{"gpu_sm_clock_hertz", smiUtil2RowTime, 1980e6},
			{"gpu_clock_event_reasons", smiUtil2RowTime, 0},
			{"nvidia_smi_pcie_link_gen_current", smiFirstRowTime, 5},
			{"nvidia_smi_pcie_link_width_current", smiFirstRowTime, 16},
			{"persistence_mode", smiFirstRowTime, 1},            // "Enabled"; no "." in the name: no nvidia_smi_ prefix (gpu_normalize README)
			{"nvidia_smi_mig_mode_current", smiFirstRowTime, 0}, // "Disabled"
		} {
			var got float64
			if err := e.DB.QueryRow(e.Ctx, `SELECT value FROM gpu_metrics WHERE metric = $1 AND time = $2`, c.metric, c.at).Scan(&got); err != nil {
				t.Errorf("%s at %s: %v", c.metric, c.at, err)
			} else if !approx(got, c.want) {
				t.Errorf("%s at %s = %v, want %v", c.metric, c.at, got, c.want)
			}
		}
	}
	check()
	if t.Failed() {
		t.Logf("samples per metric:\n%s", e.Table(`SELECT metric, count(*), min(value), max(value) FROM gpu_metrics GROUP BY 1 ORDER BY 1`))
	}
	// Again, whole file in one message this time: the same samples.
	e.Stream(StreamOptions{Address: mq.Addr, Format: "nvidia-smi-csv", WholeFile: true}, smiFile)
	st := mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != 5 || st.Acked != 5 {
		t.Errorf("broker: %+v; want 4+1 messages published and acked", st)
	}
	if n := e.Count(`SELECT count(*) FROM gpu_metrics`); n != want {
		t.Errorf("after re-streaming: %d samples, want %d", n, want)
	}
	check()
	checkNoErrors(t, c)
}

// The dcgm-exporter scrape testdata/dcgm-exporter-metrics.txt (a copy of
// shared/data/dcgm/lke-ai-conformance_README_dcgm-exporter-metrics.txt): 25
// families of one sample each, one GPU, no timestamps (the message time is
// the sample time). 23 map to canonical metrics; DCGM_FI_DEV_ROW_REMAP_FAILURE
// and DCGM_FI_DEV_VGPU_LICENSE_STATUS are kept under derived names.
// DCGM_FI_DEV_MEMORY_TEMP is 0 here (not a blank sentinel).
const (
	promFile       = "testdata/dcgm-exporter-metrics.txt"
	promSamples    = 25
	promCanonical  = 23
	promGPU        = "GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c"
	promHost       = "lke529760-766837-0a634ab30000"
	promModel      = "NVIDIA RTX 4000 Ada Generation"
	promPod        = "cuda-75454ffb9f-8ljq7"
	promFixedStamp = "2025-01-02T03:04:05Z"
)

func TestPrometheusScrape(t *testing.T) {
	e, mq, c := startPipeline(t, CollectorConfig{})
	before := time.Now().Add(-time.Second)
	e.Stream(StreamOptions{Address: mq.Addr, Format: "prometheus", WholeFile: true}, promFile)
	e.WaitCount(30*time.Second, promSamples, `SELECT count(*) FROM gpu_metrics`)
	after := time.Now().Add(time.Second)
	for _, c := range []struct {
		sql  string
		want int64
	}{
		{`SELECT count(*) FROM gpu_metrics WHERE metric = ANY($1)`, promCanonical},
		{`SELECT count(*) FROM gpu_metrics WHERE metric IN ('dcgm_fi_dev_row_remap_failure', 'dcgm_fi_dev_vgpu_license_status')`, 2},
		{`SELECT count(*) FROM gpu_metrics WHERE gpu_uuid = '` + promGPU + `' AND host = '` + promHost + `' AND gpu_index = 0
			AND gpu_model = '` + promModel + `' AND pod = '` + promPod + `' AND namespace = 'default' AND container = 'cuda'
			AND pci_bus_id = '00000000:00:02.0' AND driver_version = '580.95.05' AND device = 'nvidia0'`, promSamples},
		{`SELECT count(DISTINCT time) FROM gpu_metrics`, 1},
	} {
		var args []any
		if strings.Contains(c.sql, "$1") {
			args = append(args, canonicalNames())
		}
		if n := e.Count(c.sql, args...); n != c.want {
			t.Errorf("%s = %d, want %d", c.sql, n, c.want)
		}
	}
	if ts := time.Unix(0, int64(e.Float(`SELECT extract(epoch FROM min(time))::float8 * 1e9 FROM gpu_metrics`))); ts.Before(before) || ts.After(after) {
		t.Errorf("sample time %v, want the publish time (between %v and %v)", ts, before, after)
	}
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{"gpu_sm_clock_hertz", 2310e6},
		{"gpu_memory_clock_hertz", 9001e6},
		{"gpu_memory_temperature_celsius", 0},
		{"gpu_temperature_celsius", 48},
		{"gpu_power_watts", 40.979},
		{"gpu_energy_joules_total", 455497.156}, // 455497156 mJ
		{"gpu_memory_free_bytes", 20015 * mib},
		{"gpu_memory_used_bytes", 1 * mib},
		{"gpu_memory_reserved_bytes", 457 * mib},
		{"gpu_graphics_engine_active_ratio", 0.004656},
		{"gpu_dram_active_ratio", 0.003074},
		{"gpu_pcie_tx_bytes_per_second", 78398480},
		{"gpu_pcie_rx_bytes_per_second", 45987793},
		{"gpu_xid_last_error", 0},
	} {
		if got := e.Float(`SELECT value FROM gpu_metrics WHERE metric = $1`, c.metric); !approx(got, c.want) {
			t.Errorf("%s = %v, want %v", c.metric, got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("samples:\n%s", e.Table(`SELECT metric, value, time FROM gpu_metrics ORDER BY 1`))
	}

	// A scrape without timestamps is stamped with its message's time, so
	// re-streaming the file is a new scrape (25 more samples at a new
	// instant). The same message delivered twice (a publisher's retry: same
	// payload and message timestamp) must not add anything.
	payload, err := os.ReadFile(promFile)
	if err != nil {
		t.Fatal(err)
	}
	stamp, _ := time.Parse(time.RFC3339, promFixedStamp)
	msg := func(id string) *mqpb.Message {
		return &mqpb.Message{Id: id, Topic: "gpu-telemetry", Payload: payload, Timestamp: timestamppb.New(stamp),
			Metadata: map[string]string{"content-type": "prometheus"}}
	}
	e.Publish(mq.Addr, msg("scrape-1"))
	e.Publish(mq.Addr, msg("scrape-1-retry"))
	st := mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != 3 || st.Acked != 3 {
		t.Errorf("broker: %+v; want 3 published and acked", st)
	}
	e.WaitCount(20*time.Second, 2*promSamples, `SELECT count(*) FROM gpu_metrics`)
	if n := e.Count(`SELECT count(*) FROM gpu_metrics WHERE time = $1`, stamp); n != promSamples {
		t.Errorf("%d samples at the fixed message time, want %d", n, promSamples)
	}
	if n := e.Count(`SELECT count(*) - count(DISTINCT (metric, time)) FROM gpu_metrics`); n != 0 {
		t.Errorf("%d duplicate samples", n)
	}
	checkNoErrors(t, c)
}
