package gpunormalize

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// in is one source sample for tests.
type in struct {
	name   string
	labels []string // key, value, key, value...
	value  float64
}

// out is one expected output sample.
type out struct {
	name   string
	labels string // Labels.String()
	value  float64
}

func labelsOf(kv ...string) sdk.Labels {
	ls := make(sdk.Labels, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, sdk.Label{Key: kv[i], Value: kv[i+1]})
	}
	return ls.Sort()
}

// batchOf builds a batch with one series per sample, time = index.
func batchOf(samples ...in) *sdk.Batch {
	b := &sdk.Batch{}
	for i, s := range samples {
		b.Add(b.AddSeries(s.name, labelsOf(s.labels...)), int64(1000+i), s.value)
	}
	return b
}

// run normalizes b and returns the samples as outs, sorted by time.
func run(t *testing.T, n *Normalize, b *sdk.Batch) []out {
	t.Helper()
	res, err := n.Process(context.Background(), b)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	var got []out
	for _, rb := range res {
		checkBatch(t, rb)
		for _, p := range rb.Points {
			s := rb.Series[p.Series]
			got = append(got, out{s.Name, s.Labels.String(), p.Value})
		}
	}
	return got
}

// checkBatch checks the batch invariants: every point refers to a series,
// every series is referred to, labels are sorted and unique.
func checkBatch(t *testing.T, b *sdk.Batch) {
	t.Helper()
	used := make([]bool, len(b.Series))
	for _, p := range b.Points {
		if int(p.Series) >= len(b.Series) {
			t.Fatalf("point refers to series %d of %d", p.Series, len(b.Series))
		}
		used[p.Series] = true
	}
	seen := map[string]bool{}
	for i, s := range b.Series {
		if !used[i] {
			t.Errorf("series %d %s%s has no point", i, s.Name, s.Labels)
		}
		k := s.Name + s.Labels.String()
		if seen[k] {
			t.Errorf("series %s twice in the batch", k)
		}
		seen[k] = true
		for j := 1; j < len(s.Labels); j++ {
			if s.Labels[j-1].Key >= s.Labels[j].Key {
				t.Errorf("labels of %s not sorted/unique: %s", s.Name, s.Labels)
			}
		}
	}
}

var gpuLabels = []string{"gpu", "0", "UUID", "GPU-1"}

const gpuOut = `{gpu_index="0",gpu_uuid="GPU-1"}`

// TestCanonicalTable checks every row of CANONICAL_METRICS.md for the DCGM
// and the nvidia-smi source, with values converted by hand.
func TestCanonicalTable(t *testing.T) {
	cases := []struct {
		source string
		value  float64
		want   string
		wantV  float64
	}{
		// DCGM
		{"DCGM_FI_DEV_GPU_UTIL", 55, "gpu_utilization_ratio", 0.55},
		{"DCGM_FI_DEV_MEM_COPY_UTIL", 12, "gpu_memory_copy_utilization_ratio", 0.12},
		{"DCGM_FI_DEV_ENC_UTIL", 3, "gpu_encoder_utilization_ratio", 0.03},
		{"DCGM_FI_DEV_DEC_UTIL", 100, "gpu_decoder_utilization_ratio", 1},
		{"DCGM_FI_DEV_FB_USED", 1024, "gpu_memory_used_bytes", 1073741824},
		{"DCGM_FI_DEV_FB_FREE", 81079, "gpu_memory_free_bytes", 85017493504},
		{"DCGM_FI_DEV_FB_RESERVED", 480, "gpu_memory_reserved_bytes", 503316480},
		{"DCGM_FI_DEV_FB_TOTAL", 81559, "gpu_memory_total_bytes", 85520809984},
		{"DCGM_FI_DEV_POWER_USAGE", 689.457, "gpu_power_watts", 689.457},
		{"DCGM_FI_DEV_POWER_USAGE_INSTANT", 700.25, "gpu_power_instant_watts", 700.25},
		{"DCGM_FI_DEV_ENFORCED_POWER_LIMIT", 700, "gpu_power_limit_watts", 700},
		{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 455497156, "gpu_energy_joules_total", 455497.156},
		{"DCGM_FI_DEV_GPU_TEMP", 48, "gpu_temperature_celsius", 48},
		{"DCGM_FI_DEV_MEMORY_TEMP", 51, "gpu_memory_temperature_celsius", 51},
		{"DCGM_FI_DEV_SM_CLOCK", 1980, "gpu_sm_clock_hertz", 1.98e9},
		{"DCGM_FI_DEV_MEM_CLOCK", 2619, "gpu_memory_clock_hertz", 2.619e9},
		{"DCGM_FI_DEV_VIDEO_CLOCK", 765, "gpu_video_clock_hertz", 7.65e8},
		{"DCGM_FI_PROF_PCIE_TX_BYTES", 78398480, "gpu_pcie_tx_bytes_per_second", 78398480},
		{"DCGM_FI_PROF_PCIE_RX_BYTES", 45987793, "gpu_pcie_rx_bytes_per_second", 45987793},
		{"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 3, "gpu_pcie_replays_total", 3},
		{"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 2, "gpu_ecc_corrected_errors_total", 2},
		{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 1, "gpu_ecc_uncorrected_errors_total", 1},
		{"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 4, "gpu_remapped_rows_correctable_total", 4},
		{"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 5, "gpu_remapped_rows_uncorrectable_total", 5},
		{"DCGM_FI_DEV_XID_ERRORS", 79, "gpu_xid_last_error", 79},
		{"DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.004656, "gpu_graphics_engine_active_ratio", 0.004656},
		{"DCGM_FI_PROF_SM_ACTIVE", 0.5, "gpu_sm_active_ratio", 0.5},
		{"DCGM_FI_PROF_SM_OCCUPANCY", 0.25, "gpu_sm_occupancy_ratio", 0.25},
		{"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.125, "gpu_tensor_pipe_active_ratio", 0.125},
		{"DCGM_FI_PROF_DRAM_ACTIVE", 0.003074, "gpu_dram_active_ratio", 0.003074},
		{"DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 1e12, "gpu_nvlink_bandwidth_bytes_total", 1e12},
		{"DCGM_FI_DEV_FAN_SPEED", 30, "gpu_fan_speed_ratio", 0.3},
		{"DCGM_FI_DEV_PSTATE", 2, "gpu_performance_state", 2},
		{"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", 4, "gpu_clock_event_reasons", 4},
		{"DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 1, "gpu_clock_event_reasons", 1},
		{"DCGM_FI_DEV_POWER_VIOLATION", 1500000000, "gpu_power_violation_seconds_total", 1.5},
		{"DCGM_FI_DEV_THERMAL_VIOLATION", 250000000, "gpu_thermal_violation_seconds_total", 0.25},
		// nvidia-smi --query-gpu (bare names as the parser emits them)
		{"utilization.gpu", 87, "gpu_utilization_ratio", 0.87},
		{"utilization.memory", 7, "gpu_memory_copy_utilization_ratio", 0.07},
		{"utilization.encoder", 0, "gpu_encoder_utilization_ratio", 0},
		{"utilization.decoder", 1, "gpu_decoder_utilization_ratio", 0.01},
		{"memory.used", 0, "gpu_memory_used_bytes", 0},
		{"memory.free", 81079, "gpu_memory_free_bytes", 85017493504},
		{"memory.reserved", 480, "gpu_memory_reserved_bytes", 503316480},
		{"memory.total", 81559, "gpu_memory_total_bytes", 85520809984},
		{"power.draw", 73.97, "gpu_power_watts", 73.97},
		{"power.draw.instant", 73.8, "gpu_power_instant_watts", 73.8},
		{"enforced.power.limit", 700, "gpu_power_limit_watts", 700},
		{"temperature.gpu", 48, "gpu_temperature_celsius", 48},
		{"temperature.memory", 49, "gpu_memory_temperature_celsius", 49},
		{"clocks.current.sm", 345, "gpu_sm_clock_hertz", 3.45e8},
		{"clocks.current.memory", 2619, "gpu_memory_clock_hertz", 2.619e9},
		{"clocks.current.graphics", 1980, "gpu_graphics_clock_hertz", 1.98e9},
		{"clocks.current.video", 765, "gpu_video_clock_hertz", 7.65e8},
		{"ecc.errors.corrected.volatile.total", 6, "gpu_ecc_corrected_errors_total", 6},
		{"ecc.errors.uncorrected.volatile.total", 7, "gpu_ecc_uncorrected_errors_total", 7},
		{"remapped_rows.correctable", 8, "gpu_remapped_rows_correctable_total", 8},
		{"remapped_rows.uncorrectable", 9, "gpu_remapped_rows_uncorrectable_total", 9},
		{"fan.speed", 45, "gpu_fan_speed_ratio", 0.45},
		{"pstate", 0, "gpu_performance_state", 0},
		{"clocks_event_reasons.active", 1, "gpu_clock_event_reasons", 1},
		{"clocks_throttle_reasons.active", 4, "gpu_clock_event_reasons", 4},
		// the header form, with its unit suffix
		{"memory.used [MiB]", 2, "gpu_memory_used_bytes", 2097152},
		{"utilization.gpu [%]", 50, "gpu_utilization_ratio", 0.5},
		// names matched case-insensitively
		{"dcgm_fi_dev_gpu_util", 10, "gpu_utilization_ratio", 0.1},
	}
	produced := map[string]bool{}
	for _, c := range cases {
		t.Run(c.source, func(t *testing.T) {
			got := run(t, New(), batchOf(in{c.source, gpuLabels, c.value}))
			want := []out{{c.want, gpuOut, c.wantV}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %v: got %v, want %v", c.source, c.value, got, want)
			}
			produced[c.want] = true
		})
	}
	for _, m := range gpumetrics.Canonical {
		if !produced[m.Name] {
			t.Errorf("no case produces canonical metric %s", m.Name)
		}
		// Canonical names pass through unchanged, with no conversion.
		got := run(t, New(), batchOf(in{m.Name, gpuLabels, 123.5}))
		if want := []out{{m.Name, gpuOut, 123.5}}; !reflect.DeepEqual(got, want) {
			t.Errorf("pass-through of %s: got %v, want %v", m.Name, got, want)
		}
	}
}

func TestLabels(t *testing.T) {
	cases := []struct {
		name   string
		config func(*Normalize)
		labels []string
		want   string
	}{
		{"dcgm-csv", nil, []string{
			"DCGM_FI_DRIVER_VERSION", "535.129.03", "Hostname", "mtv5-dgx1-hgpu-031",
			"UUID", "GPU-5fd4", "__name__", "DCGM_FI_DEV_GPU_UTIL", "device", "nvidia0", "gpu", "0",
			"instance", "mtv5-dgx1-hgpu-031:9400", "job", "dgx_dcgm_exporter", "modelName", "NVIDIA H100 80GB HBM3",
			"container", "", "pod", "", "namespace", ""},
			`{device="nvidia0",driver_version="535.129.03",gpu_index="0",gpu_model="NVIDIA H100 80GB HBM3",gpu_uuid="GPU-5fd4",host="mtv5-dgx1-hgpu-031"}`},
		{"dcgm-exporter kubernetes", nil, []string{
			"gpu", "0", "UUID", "GPU-a839", "pci_bus_id", "00000000:00:02.0", "device", "nvidia0",
			"modelName", "NVIDIA RTX 4000 Ada Generation", "Hostname", "lke5", "DCGM_FI_DRIVER_VERSION", "580.95.05",
			"container", "cuda", "namespace", "default", "pod", "cuda-7545", "pod_uid", "", "err_code", "0"},
			`{container="cuda",device="nvidia0",driver_version="580.95.05",gpu_index="0",gpu_model="NVIDIA RTX 4000 Ada Generation",gpu_uuid="GPU-a839",host="lke5",namespace="default",pci_bus_id="00000000:00:02.0",pod="cuda-7545"}`},
		{"gpu-tel-json", nil, []string{"gpu_id", "3", "uuid", "GPU-9", "model_name", "H100", "hostname", "node7"},
			`{gpu_index="3",gpu_model="H100",gpu_uuid="GPU-9",host="node7"}`},
		{"nvidia-smi", nil, []string{"index", "0", "uuid", "GPU-7564", "name", "NVIDIA H100 80GB HBM3",
			"pci.bus_id", "00000000:00:06.0", "driver_version", "580.159.04"},
			`{driver_version="580.159.04",gpu_index="0",gpu_model="NVIDIA H100 80GB HBM3",gpu_uuid="GPU-7564",pci_bus_id="00000000:00:06.0"}`},
		{"keys case-insensitive", nil, []string{"HOSTNAME", "h1", "Uuid", "GPU-x", "GPU", "1", "ModelName", "m", "Pod", "p"},
			`{gpu_index="1",gpu_model="m",gpu_uuid="GPU-x",host="h1",pod="p"}`},
		{"instance without port", nil, []string{"instance", "node1:9400", "gpu", "0"},
			`{gpu_index="0",host="node1"}`},
		{"instance ipv6", nil, []string{"instance", "[fe80::1]:9400"}, `{host="fe80::1"}`},
		{"instance with no port", nil, []string{"instance", "node2"}, `{host="node2"}`},
		{"hostname wins over instance", nil, []string{"instance", "10.0.0.1:9400", "hostname", "node3"}, `{host="node3"}`},
		{"empty hostname falls back to instance", nil, []string{"instance", "10.0.0.1:9400", "Hostname", ""}, `{host="10.0.0.1"}`},
		{"canonical labels pass through", nil, []string{"host", "h", "gpu_uuid", "u", "gpu_index", "2", "gpu_model", "m",
			"device", "nvidia2", "pci_bus_id", "p", "driver_version", "d", "container", "c", "pod", "po", "namespace", "n"},
			`{container="c",device="nvidia2",driver_version="d",gpu_index="2",gpu_model="m",gpu_uuid="u",host="h",namespace="n",pci_bus_id="p",pod="po"}`},
		{"canonical beats alias", nil, []string{"gpu_index", "5", "gpu", "6"}, `{gpu_index="5"}`},
		{"others dropped", nil, []string{"job", "j", "__name__", "x", "foo", "bar"}, `{}`},
		{"keep_labels", func(n *Normalize) { n.KeepLabels = []string{"job", "Instance"} },
			[]string{"job", "j", "instance", "n:1", "foo", "bar"}, `{Instance="n:1",host="n",job="j"}`},
		{"keep_labels empty value dropped", func(n *Normalize) { n.KeepLabels = []string{"job"} },
			[]string{"job", "", "gpu", "1"}, `{gpu_index="1"}`},
		{"label_map wins over built-in", func(n *Normalize) { n.LabelMap = map[string]string{"Node": "host"} },
			[]string{"node", "k8s-node-1", "Hostname", "container-hostname"}, `{host="k8s-node-1"}`},
		{"label_map to a new key", func(n *Normalize) { n.LabelMap = map[string]string{"rack": "rack_id"} },
			[]string{"RACK", "r12", "gpu", "0"}, `{gpu_index="0",rack_id="r12"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := New()
			if c.config != nil {
				c.config(n)
			}
			if err := n.Init(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := run(t, n, batchOf(in{"DCGM_FI_DEV_GPU_TEMP", c.labels, 40}))
			if want := []out{{"gpu_temperature_celsius", c.want, 40}}; !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestValuesWithoutNumber(t *testing.T) {
	cases := []struct {
		name     string
		source   string
		value    float64
		kept     bool
		stat     func(Stats) uint64
		statName string
	}{
		{"NaN", "DCGM_FI_DEV_GPU_TEMP", math.NaN(), false, func(s Stats) uint64 { return s.NonFinite }, "NonFinite"},
		{"+Inf", "power.draw", math.Inf(1), false, func(s Stats) uint64 { return s.NonFinite }, "NonFinite"},
		{"-Inf", "gpu_power_watts", math.Inf(-1), false, func(s Stats) uint64 { return s.NonFinite }, "NonFinite"},
		{"int32 blank", "DCGM_FI_DEV_MEMORY_TEMP", 2147483632, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"int32 not supported", "DCGM_FI_DEV_MEMORY_TEMP", 2147483634, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"int32 max", "DCGM_FI_DEV_FAN_SPEED", 2147483647, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"int64 blank", "DCGM_FI_DEV_MEMORY_TEMP", 9223372036854775792, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"int64 not supported (real README)", "DCGM_FI_DEV_MEMORY_TEMP", 9223372036854775794, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"fp64 blank", "DCGM_FI_PROF_SM_ACTIVE", 140737488355328.0, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"fp64 not supported", "DCGM_FI_PROF_SM_ACTIVE", 140737488355330.0, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"unknown field blank", "DCGM_FI_DEV_SOMETHING_NEW", 2147483632, false, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"just below int32 blank", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 2147483631, true, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"just above int32 range", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 2147483648, true, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"below fp64 blank", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 140737488355327.0, true, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"well above fp64 blank", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 2e14, true, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"canonical not sentinel-checked", "gpu_memory_used_bytes", 2147483640, true, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
		{"zero is a value", "DCGM_FI_DEV_GPU_UTIL", 0, true, func(s Stats) uint64 { return s.Sentinel }, "Sentinel"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := New()
			b := batchOf(in{c.source, gpuLabels, c.value}, in{"DCGM_FI_DEV_GPU_TEMP", []string{"gpu", "9"}, 30})
			got := run(t, n, b)
			wantLen, wantStat := 1, uint64(1)
			if c.kept {
				wantLen, wantStat = 2, 0
			}
			if len(got) != wantLen {
				t.Fatalf("got %v, want %d samples", got, wantLen)
			}
			if s := c.stat(n.Stats()); s != wantStat {
				t.Errorf("%s = %d, want %d", c.statName, s, wantStat)
			}
			if len(b.Rejects) != 0 {
				t.Errorf("a value that is not a number is no reject: %v", b.Rejects)
			}
			if !c.kept && len(b.Series) != 1 {
				t.Errorf("series of the dropped sample left in the batch: %v", b.Series)
			}
		})
	}
}

func TestUnknownFields(t *testing.T) {
	cases := []struct {
		source      string
		dropUnknown bool
		want        []out
	}{
		{"DCGM_FI_PROF_NVLINK_TX_BYTES", false, []out{{"dcgm_fi_prof_nvlink_tx_bytes", gpuOut, 1234}}},
		{"pcie.link.gen.current", false, []out{{"nvidia_smi_pcie_link_gen_current", gpuOut, 1234}}},
		{"power.draw.average [W]", false, []out{{"nvidia_smi_power_draw_average", gpuOut, 1234}}},
		{"compute-cap", false, []out{{"compute_cap", gpuOut, 1234}}},
		{"1weird", false, []out{{"_1weird", gpuOut, 1234}}},
		{"DCGM_FI_PROF_NVLINK_TX_BYTES", true, nil},
		{"pcie.link.gen.current", true, nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/drop=%v", c.source, c.dropUnknown), func(t *testing.T) {
			n := New()
			n.DropUnknown = c.dropUnknown
			b := batchOf(in{c.source, gpuLabels, 1234})
			got := run(t, n, b)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			s := n.Stats()
			if s.UnknownSeries != 1 {
				t.Errorf("UnknownSeries = %d, want 1", s.UnknownSeries)
			}
			if c.dropUnknown && s.DroppedField != 1 {
				t.Errorf("DroppedField = %d, want 1", s.DroppedField)
			}
		})
	}
}

func TestMappings(t *testing.T) {
	scale := func(f float64) *float64 { return &f }
	n := New()
	n.Mapping = []Mapping{
		{Source: "DCGM_FI_DEV_FOO", Name: "gpu_foo_ratio", Scale: scale(0.01)},
		{Source: "dcgm_fi_dev_power_usage", Name: "gpu_power_milliwatts", Scale: scale(1000)},
		{Source: "DCGM_FI_DEV_GPU_UTIL", Drop: true},
		{Source: "pcie.link.width.current [x]", Name: "gpu_pcie_link_width"},
		{Source: "DCGM_FI_DEV_BAR", Name: "gpu_bar_seconds", Scale: scale(3e-9)},
	}
	if err := n.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := run(t, n, batchOf(
		in{"DCGM_FI_DEV_FOO", gpuLabels, 42},
		in{"DCGM_FI_DEV_POWER_USAGE", gpuLabels, 1.5},
		in{"DCGM_FI_DEV_GPU_UTIL", gpuLabels, 50},
		in{"pcie.link.width.current", gpuLabels, 16},
		in{"DCGM_FI_DEV_BAR", gpuLabels, 1e9},
		in{"DCGM_FI_DEV_FOO", gpuLabels, 2147483640}, // sentinel checks apply to mapped fields
	))
	want := []out{
		{"gpu_foo_ratio", gpuOut, 0.42},
		{"gpu_power_milliwatts", gpuOut, 1500},
		{"gpu_pcie_link_width", gpuOut, 16},
		{"gpu_bar_seconds", gpuOut, 1e9 * 3e-9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if s := n.Stats(); s.DroppedField != 1 || s.Sentinel != 1 {
		t.Errorf("stats %+v, want DroppedField 1, Sentinel 1", s)
	}
}

func TestValidate(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		name    string
		n       *Normalize
		wantErr []string // substrings; nil: valid
	}{
		{"defaults", New(), nil},
		{"good", &Normalize{KeepLabels: []string{"job"}, LabelMap: map[string]string{"node": "host"},
			Mapping: []Mapping{{Source: "A", Name: "a", Scale: f(2)}, {Source: "B", Drop: true}}}, nil},
		{"empty source", &Normalize{Mapping: []Mapping{{Name: "a"}}}, []string{"source is empty"}},
		{"empty name", &Normalize{Mapping: []Mapping{{Source: "A"}}}, []string{"name is empty"}},
		{"bad name", &Normalize{Mapping: []Mapping{{Source: "A", Name: "gpu-foo"}}}, []string{"not a valid metric name"}},
		{"drop with name", &Normalize{Mapping: []Mapping{{Source: "A", Name: "a", Drop: true}}}, []string{"exclusive"}},
		{"zero scale", &Normalize{Mapping: []Mapping{{Source: "A", Name: "a", Scale: f(0)}}}, []string{"scale must be"}},
		{"negative scale", &Normalize{Mapping: []Mapping{{Source: "A", Name: "a", Scale: f(-1)}}}, []string{"scale must be"}},
		{"NaN scale", &Normalize{Mapping: []Mapping{{Source: "A", Name: "a", Scale: f(math.NaN())}}}, []string{"scale must be"}},
		{"Inf scale", &Normalize{Mapping: []Mapping{{Source: "A", Name: "a", Scale: f(math.Inf(1))}}}, []string{"scale must be"}},
		{"duplicate source", &Normalize{Mapping: []Mapping{{Source: "A", Name: "a"}, {Source: "a [W]", Name: "b"}}}, []string{"already mapped"}},
		{"keep canonical", &Normalize{KeepLabels: []string{"Host"}}, []string{"canonical label"}},
		{"keep invalid", &Normalize{KeepLabels: []string{"a-b"}}, []string{"not a valid label name"}},
		{"keep twice", &Normalize{KeepLabels: []string{"job", "JOB"}}, []string{"listed twice"}},
		{"label_map bad target", &Normalize{LabelMap: map[string]string{"node": ""}}, []string{"not a valid label name"}},
		{"label_map empty key", &Normalize{LabelMap: map[string]string{" ": "x"}}, []string{"empty source label key"}},
		{"negative cache", &Normalize{CacheSize: -1}, []string{"cache_size"}},
		{"all problems reported", &Normalize{CacheSize: -1, Mapping: []Mapping{{Source: "", Name: ""}}},
			[]string{"cache_size", "source is empty", "name is empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.n.Validate()
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.wantErr)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if ierr := c.n.Init(context.Background()); ierr == nil || !sdk.IsPermanent(ierr) {
				t.Errorf("Init with a bad configuration: got %v, want a permanent error", ierr)
			}
		})
	}
}

// TestDecodeConfig decodes the sample config and a full one strictly.
func TestDecodeConfig(t *testing.T) {
	decode := func(t *testing.T, text string) *Normalize {
		t.Helper()
		var doc struct {
			Processors map[string][]toml.Primitive `toml:"processors"`
		}
		md, err := toml.Decode(text, &doc)
		if err != nil {
			t.Fatal(err)
		}
		tables := doc.Processors[Name]
		if len(tables) != 1 {
			t.Fatalf("want one [[processors.%s]] table, got %d", Name, len(tables))
		}
		n := New()
		if err := md.PrimitiveDecode(tables[0], n); err != nil {
			t.Fatal(err)
		}
		if un := md.Undecoded(); len(un) > 0 {
			t.Fatalf("undecoded keys: %v", un)
		}
		if err := n.Validate(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	decode(t, SampleConfig)
	// The sample with every option uncommented.
	var lines []string
	for _, l := range strings.Split(SampleConfig, "\n") {
		if strings.HasPrefix(l, "  # ") || strings.HasPrefix(l, "  #   ") {
			l = strings.Replace(l, "# ", "", 1)
		}
		lines = append(lines, l)
	}
	n := decode(t, strings.Join(lines, "\n"))
	if n.DropUnknown || len(n.KeepLabels) != 1 || n.LabelMap["node"] != "host" || len(n.Mapping) != 2 ||
		!n.Mapping[1].Drop || n.CacheSize != 65536 {
		t.Errorf("decoded %+v", n)
	}
}

// TestIdempotent normalizes mixed input twice: the second pass changes
// nothing, with the same processor (cache warm) and a fresh one.
func TestIdempotent(t *testing.T) {
	mk := func() *sdk.Batch {
		return batchOf(
			in{"DCGM_FI_DEV_FB_USED", []string{"gpu", "0", "UUID", "GPU-1", "Hostname", "h", "job", "j"}, 100},
			in{"DCGM_FI_DEV_GPU_UTIL", []string{"gpu", "0", "UUID", "GPU-1", "instance", "h:9400"}, 50},
			in{"power.draw", []string{"index", "1", "uuid", "GPU-2", "name", "H100"}, 70.5},
			in{"DCGM_FI_PROF_NVLINK_TX_BYTES", []string{"gpu", "0"}, 5},
			in{"pcie.link.gen.current", []string{"index", "1"}, 5},
			in{"gpu_sm_clock_hertz", []string{"gpu_index", "1"}, 1e9},
		)
	}
	n := New()
	first := run(t, n, mk())
	if len(first) != 6 {
		t.Fatalf("first pass: %v", first)
	}
	for _, p := range []*Normalize{n, New()} {
		b := &sdk.Batch{}
		for i, o := range first {
			var kv []string
			for _, l := range parseLabels(o.labels) {
				kv = append(kv, l.Key, l.Value)
			}
			b.Add(b.AddSeries(o.name, labelsOf(kv...)), int64(1000+i), o.value)
		}
		if second := run(t, p, b); !reflect.DeepEqual(second, first) {
			t.Errorf("second pass changed the data:\n%v\n%v", first, second)
		}
	}
}

// parseLabels parses Labels.String() output (test values have no quotes).
func parseLabels(s string) sdk.Labels {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	var ls sdk.Labels
	if s == "" {
		return ls
	}
	for _, kv := range strings.Split(s, `",`) {
		k, v, _ := strings.Cut(kv, "=")
		ls = append(ls, sdk.Label{Key: k, Value: strings.Trim(v, `"`)})
	}
	return ls
}

// TestMergeAndCompact: source series that differ only by dropped labels
// become one output series; series whose points all vanished are removed;
// a point referring to a missing series is a reject.
func TestMergeAndCompact(t *testing.T) {
	b := &sdk.Batch{}
	s1 := b.AddSeries("DCGM_FI_DEV_GPU_TEMP", labelsOf("gpu", "0", "job", "a"))
	s2 := b.AddSeries("DCGM_FI_DEV_GPU_TEMP", labelsOf("gpu", "0", "job", "b"))
	s3 := b.AddSeries("DCGM_FI_DEV_MEMORY_TEMP", labelsOf("gpu", "0"))
	s4 := b.AddSeries("DCGM_FI_DEV_POWER_USAGE", labelsOf("gpu", "0"))
	b.Add(s1, 1, 40)
	b.Add(s3, 1, 9223372036854775794)
	b.Add(s2, 2, 41)
	b.Add(s4, 2, 300)
	b.Add(7, 3, 1)
	n := New()
	res, err := n.Process(context.Background(), b)
	if err != nil || len(res) != 1 || res[0] != b {
		t.Fatalf("Process = %v, %v", res, err)
	}
	checkBatch(t, b)
	if len(b.Series) != 2 {
		t.Fatalf("series: %v", b.Series)
	}
	want := []out{{"gpu_temperature_celsius", `{gpu_index="0"}`, 40}, {"gpu_temperature_celsius", `{gpu_index="0"}`, 41},
		{"gpu_power_watts", `{gpu_index="0"}`, 300}}
	var got []out
	for _, p := range b.Points {
		got = append(got, out{b.Series[p.Series].Name, b.Series[p.Series].Labels.String(), p.Value})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(b.Rejects) != 1 || !strings.Contains(b.Rejects[0].Reason, "series 7") {
		t.Errorf("rejects: %v", b.Rejects)
	}
	s := n.Stats()
	if s.Samples != 5 || s.Out != 3 || s.Sentinel != 1 || s.Rejected != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestEmptyResultDropsBatch(t *testing.T) {
	n := New()
	n.DropUnknown = true
	res, err := n.Process(context.Background(), batchOf(in{"foo", nil, 1}))
	if err != nil || res != nil {
		t.Fatalf("got %v, %v; want nil, nil", res, err)
	}
	res, err = n.Process(context.Background(), &sdk.Batch{})
	if err != nil || res != nil {
		t.Fatalf("empty batch: got %v, %v", res, err)
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New().Process(ctx, batchOf(in{"DCGM_FI_DEV_GPU_TEMP", nil, 1})); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}

// TestCacheBound: with a tiny cache the processor keeps resetting it and
// the output stays right.
func TestCacheBound(t *testing.T) {
	n := New()
	n.CacheSize = 4
	for round := range 5 {
		var samples []in
		for g := range 10 {
			samples = append(samples, in{"DCGM_FI_DEV_FB_USED", []string{"gpu", fmt.Sprint(g + round)}, float64(g)})
		}
		got := run(t, n, batchOf(samples...))
		for g, o := range got {
			want := out{"gpu_memory_used_bytes", fmt.Sprintf(`{gpu_index="%d"}`, g+round), float64(g) * 1048576}
			if o != want {
				t.Fatalf("round %d: got %v, want %v", round, o, want)
			}
		}
	}
	if s := n.Stats(); s.CacheResets < 4 {
		t.Errorf("CacheResets = %d, want >= 4", s.CacheResets)
	}
	if len(n.cache) > n.CacheSize+10 {
		t.Errorf("cache holds %d entries", len(n.cache))
	}
}

// TestNoAllocSteadyState: once the cache is warm, a batch costs one
// allocation (the returned slice), whatever its size.
func TestNoAllocSteadyState(t *testing.T) {
	tmpl := syntheticBatch(16, 30)
	b := &sdk.Batch{Series: make([]sdk.Series, len(tmpl.Series)), Points: make([]sdk.Point, len(tmpl.Points))}
	n := New()
	reset := func() {
		b.Series = b.Series[:len(tmpl.Series)]
		copy(b.Series, tmpl.Series)
		b.Points = b.Points[:len(tmpl.Points)]
		copy(b.Points, tmpl.Points)
	}
	reset()
	if _, err := n.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		reset()
		if _, err := n.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations per warm batch of %d samples, want 1", allocs, len(tmpl.Points))
	}
}

// TestConcurrentProcess: concurrent calls are safe (run with -race).
func TestConcurrentProcess(t *testing.T) {
	n := New()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				b := batchOf(in{"DCGM_FI_DEV_GPU_UTIL", []string{"gpu", fmt.Sprint(w), "job", fmt.Sprint(i % 3)}, 50})
				res, err := n.Process(context.Background(), b)
				if err != nil || len(res) != 1 || len(b.Points) != 1 || b.Points[0].Value != 0.5 ||
					b.Series[0].Name != "gpu_utilization_ratio" {
					t.Errorf("worker %d: %v %v %+v", w, res, err, b)
					return
				}
				_ = n.Stats()
			}
		}()
	}
	wg.Wait()
	if s := n.Stats(); s.Samples != 200 || s.Out != 200 {
		t.Errorf("stats %+v", s)
	}
}

func TestScaleConversion(t *testing.T) {
	cases := []struct {
		scale float64
		want  conversion
	}{
		{0.01, conversion{1, 100}},
		{0.001, conversion{1, 1000}},
		{1e-9, conversion{1, 1e9}},
		{1048576, conversion{1048576, 1}},
		{0.3, conversion{0.3, 1}},
		{1, conversion{1, 1}},
	}
	for _, c := range cases {
		if got := scaleConversion(c.scale); got != c.want {
			t.Errorf("scaleConversion(%v) = %v, want %v", c.scale, got, c.want)
		}
	}
}

func TestRowsReferToCanonicalNames(t *testing.T) {
	var names []string
	for _, r := range builtinRows() {
		if gpumetrics.Index(r.canonical) < 0 {
			t.Errorf("row %s is not a canonical metric", r.canonical)
		}
		names = append(names, r.canonical)
	}
	sort.Strings(names)
	if len(names) != len(gpumetrics.Canonical) {
		t.Errorf("%d rows for %d canonical metrics", len(names), len(gpumetrics.Canonical))
	}
}

// TestLeavesReceivedLabelsAlone backs ReadsLabelsOnly: whatever Process does
// to a batch, the label slices it received keep their contents (the sdk may
// share them between batches).
func TestLeavesReceivedLabelsAlone(t *testing.T) {
	n := New()
	if err := n.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	shared := sdk.Labels{{Key: "Hostname", Value: "h1"}, {Key: "UUID", Value: "GPU-1"}, {Key: "gpu", Value: "0"}, {Key: "instance", Value: "h1:9400"}}
	canonical := sdk.Labels{{Key: "gpu_uuid", Value: "GPU-2"}, {Key: "host", Value: "h2"}}
	before := append(sdk.Labels(nil), shared...)
	beforeC := append(sdk.Labels(nil), canonical...)
	b := &sdk.Batch{}
	b.Add(b.AddSeries("DCGM_FI_DEV_GPU_UTIL", shared), 1, 50)
	b.Add(b.AddSeries("DCGM_FI_DEV_POWER_USAGE", shared), 1, 300)
	b.Add(b.AddSeries("gpu_power_watts", canonical), 1, 200)
	if _, err := n.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if !n.ReadsLabelsOnly() || shared.String() != before.String() || canonical.String() != beforeC.String() {
		t.Fatalf("received labels changed: %v -> %v, %v -> %v", before, shared, beforeC, canonical)
	}
}
