package gpunormalize

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// parse reads testdata/file with the parser of format.
func parse(t *testing.T, format, file string) *sdk.Batch {
	t.Helper()
	payload, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsers.New(format, parsers.Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	b := &sdk.Batch{}
	if err := p.Parse(payload, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), file, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// normalized runs b through a fresh processor and checks the invariants.
func normalized(t *testing.T, b *sdk.Batch) (*sdk.Batch, *Normalize) {
	t.Helper()
	n := New()
	res, err := n.Process(context.Background(), b)
	if err != nil || len(res) != 1 {
		t.Fatalf("Process: %v %v", res, err)
	}
	checkBatch(t, b)
	return b, n
}

// TestRealDCGMExport: the real DCGM export (dcgm-csv, 10 fields x 247
// GPU readings of several DGX hosts) comes out fully canonical.
func TestRealDCGMExport(t *testing.T) {
	b := parse(t, parsers.FormatDCGMCSV, "dcgm_metrics_20250718_134233.csv")
	if len(b.Points) != 2470 || len(b.Rejects) != 0 {
		t.Fatalf("parsed %d samples, %d rejects; want 2470, 0", len(b.Points), len(b.Rejects))
	}
	b, n := normalized(t, b)
	if len(b.Points) != 2470 {
		t.Fatalf("%d samples out, want 2470 (stats %+v)", len(b.Points), n.Stats())
	}
	for _, s := range b.Series {
		if gpumetrics.Index(s.Name) < 0 {
			t.Errorf("%s is not canonical", s.Name)
		}
		for _, l := range s.Labels {
			if !isCanonicalLabel(l.Key) {
				t.Errorf("%s has label %s", s.Name, l.Key)
			}
		}
		for _, k := range []string{sdk.LabelHost, sdk.LabelGPUUUID, sdk.LabelGPUIndex, sdk.LabelGPUModel, sdk.LabelDevice, sdk.LabelDriverVersion} {
			if v, ok := s.Labels.Get(k); !ok || v == "" {
				t.Errorf("%s%s lacks %s", s.Name, s.Labels, k)
			}
		}
		if h, _ := s.Labels.Get(sdk.LabelHost); !strings.HasPrefix(h, "mtv5-dgx1-hgpu-") {
			t.Errorf("host %q", h)
		}
	}
	type gpuTime struct {
		uuid string
		t    int64
	}
	mem := map[gpuTime]float64{}
	maxPower, ratios := 0.0, 0
	for _, p := range b.Points {
		s := b.Series[p.Series]
		uuid, _ := s.Labels.Get(sdk.LabelGPUUUID)
		switch s.Name {
		case "gpu_memory_used_bytes", "gpu_memory_free_bytes":
			mem[gpuTime{uuid, p.Time}] += p.Value
		case "gpu_power_watts":
			maxPower = max(maxPower, p.Value)
		case "gpu_utilization_ratio", "gpu_memory_copy_utilization_ratio":
			if p.Value < 0 || p.Value > 1 {
				t.Errorf("%s = %v out of 0..1", s.Name, p.Value)
			}
			ratios++
		}
	}
	if len(mem) != 247 {
		t.Errorf("%d (gpu, time) memory pairs, want 247", len(mem))
	}
	for k, v := range mem {
		if v != 81007*1048576 {
			t.Errorf("%v: used+free = %v bytes, want %v (81,007 MiB)", k, v, 81007*1048576)
		}
	}
	if maxPower != 689.457 {
		t.Errorf("max power %v W, want 689.457", maxPower)
	}
	if ratios != 2*247 {
		t.Errorf("%d utilization samples, want %d", ratios, 2*247)
	}
}

// TestRealNvidiaSMI: the real nvidia-smi --query-gpu capture of one H100.
func TestRealNvidiaSMI(t *testing.T) {
	b, n := normalized(t, parse(t, parsers.FormatNvidiaSMICSV, "nvidia-smi-query-gpu.csv"))
	want := map[string]float64{ // first row, converted by hand
		"gpu_memory_total_bytes":         81559 * 1048576,
		"gpu_memory_reserved_bytes":      480 * 1048576,
		"gpu_memory_free_bytes":          81079 * 1048576,
		"gpu_power_watts":                73.97,
		"gpu_power_instant_watts":        73.80,
		"gpu_power_limit_watts":          700,
		"gpu_sm_clock_hertz":             345e6,
		"gpu_memory_clock_hertz":         2619e6,
		"gpu_graphics_clock_hertz":       345e6,
		"gpu_video_clock_hertz":          765e6,
		"gpu_temperature_celsius":        48,
		"gpu_memory_temperature_celsius": 51,
		"gpu_performance_state":          0,
		"gpu_clock_event_reasons":        1,
		"gpu_utilization_ratio":          0,
	}
	first := b.Points[0].Time
	got := map[string]float64{}
	for _, p := range b.Points {
		if p.Time != first {
			continue
		}
		s := b.Series[p.Series]
		got[s.Name] = p.Value
		if uuid, _ := s.Labels.Get(sdk.LabelGPUUUID); uuid != "GPU-75646445-1f40-4f29-9273-53c0002830cf" {
			t.Errorf("%s%s: gpu_uuid %q", s.Name, s.Labels, uuid)
		}
		if bus, _ := s.Labels.Get(sdk.LabelPCIBusID); bus != "00000000:00:06.0" {
			t.Errorf("%s%s: pci_bus_id %q", s.Name, s.Labels, bus)
		}
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	if _, ok := got["gpu_fan_speed_ratio"]; ok {
		t.Error("fan.speed is [N/A]: no sample expected")
	}
	t.Logf("first row: %d samples, %d unknown series; stats %+v", len(got), n.Stats().UnknownSeries, n.Stats())
}

// TestRealDCGMExporterScrape: a real dcgm-exporter scrape with Kubernetes
// labels, through the prometheus parser.
func TestRealDCGMExporterScrape(t *testing.T) {
	b, _ := normalized(t, parse(t, parsers.FormatPrometheus, "dcgm-exporter-metrics.txt"))
	byName := map[string]sdk.Series{}
	values := map[string]float64{}
	for _, p := range b.Points {
		s := b.Series[p.Series]
		byName[s.Name] = s
		values[s.Name] = p.Value
	}
	const labels = `{container="cuda",device="nvidia0",driver_version="580.95.05",gpu_index="0",gpu_model="NVIDIA RTX 4000 Ada Generation",gpu_uuid="GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c",host="lke529760-766837-0a634ab30000",namespace="default",pci_bus_id="00000000:00:02.0",pod="cuda-75454ffb9f-8ljq7"}`
	checks := map[string]float64{
		"gpu_sm_clock_hertz":               2310e6,
		"gpu_memory_temperature_celsius":   0,
		"gpu_power_watts":                  40.979,
		"gpu_energy_joules_total":          455497.156,
		"gpu_memory_free_bytes":            20015 * 1048576,
		"gpu_memory_reserved_bytes":        457 * 1048576,
		"gpu_xid_last_error":               0,
		"gpu_graphics_engine_active_ratio": 0.004656,
		"gpu_pcie_tx_bytes_per_second":     78398480,
		"dcgm_fi_dev_row_remap_failure":    0, // unknown, kept
		"dcgm_fi_dev_vgpu_license_status":  0, // unknown, kept
	}
	for name, v := range checks {
		s, ok := byName[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if values[name] != v {
			t.Errorf("%s = %v, want %v", name, values[name], v)
		}
		if s.Labels.String() != labels {
			t.Errorf("%s labels %s", name, s.Labels)
		}
	}
}
