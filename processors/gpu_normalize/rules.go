package gpunormalize

import (
	"math"
	"strings"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// conversion is a unit conversion: value*mul/div. One of mul and div is 1,
// so the result is the correctly rounded product or quotient (55/100 is
// exactly 0.55, not 55*0.01 = 0.5500000000000000444).
type conversion struct{ mul, div float64 }

var (
	convOne     = conversion{1, 1}
	convPercent = conversion{1, 100}     // % -> ratio
	convMiB     = conversion{1048576, 1} // MiB -> bytes
	convMHz     = conversion{1e6, 1}     // MHz -> Hz
	convMilli   = conversion{1, 1000}    // mJ -> J, mW -> W
	convNano    = conversion{1, 1e9}     // ns -> s
)

// scaleConversion turns an operator's scale factor into a conversion:
// factors below 1 whose reciprocal is an integer (0.01, 0.001, 1e-9) divide
// by that integer, so they round exactly like the built-in rules.
func scaleConversion(scale float64) conversion {
	if scale > 0 && scale < 1 {
		r := math.Round(1 / scale)
		if r >= 2 && 1/r == scale {
			return conversion{1, r}
		}
	}
	return conversion{scale, 1}
}

// builtinRow is one row of CANONICAL_METRICS.md.
type builtinRow struct {
	canonical string
	dcgm      []string // DCGM field names (dcgm-exporter, dcgm-csv, gpu-tel-json)
	smi       []string // nvidia-smi --query-gpu field names, without the " [unit]" suffix
	conv      conversion
}

// builtinRows returns the canonical table. DCGM and nvidia-smi report the
// same units for every row, so one conversion serves both. Where a field was
// renamed upstream both names are listed (DCGM_FI_DEV_CLOCKS_EVENT_REASONS,
// clocks_throttle_reasons.active).
func builtinRows() []builtinRow {
	return []builtinRow{
		{"gpu_utilization_ratio", []string{"DCGM_FI_DEV_GPU_UTIL"}, []string{"utilization.gpu"}, convPercent},
		{"gpu_memory_copy_utilization_ratio", []string{"DCGM_FI_DEV_MEM_COPY_UTIL"}, []string{"utilization.memory"}, convPercent},
		{"gpu_encoder_utilization_ratio", []string{"DCGM_FI_DEV_ENC_UTIL"}, []string{"utilization.encoder"}, convPercent},
		{"gpu_decoder_utilization_ratio", []string{"DCGM_FI_DEV_DEC_UTIL"}, []string{"utilization.decoder"}, convPercent},
		{"gpu_memory_used_bytes", []string{"DCGM_FI_DEV_FB_USED"}, []string{"memory.used"}, convMiB},
		{"gpu_memory_free_bytes", []string{"DCGM_FI_DEV_FB_FREE"}, []string{"memory.free"}, convMiB},
		{"gpu_memory_reserved_bytes", []string{"DCGM_FI_DEV_FB_RESERVED"}, []string{"memory.reserved"}, convMiB},
		{"gpu_memory_total_bytes", []string{"DCGM_FI_DEV_FB_TOTAL"}, []string{"memory.total"}, convMiB},
		{"gpu_power_watts", []string{"DCGM_FI_DEV_POWER_USAGE"}, []string{"power.draw"}, convOne},
		{"gpu_power_instant_watts", []string{"DCGM_FI_DEV_POWER_USAGE_INSTANT"}, []string{"power.draw.instant"}, convOne},
		{"gpu_power_limit_watts", []string{"DCGM_FI_DEV_ENFORCED_POWER_LIMIT"}, []string{"enforced.power.limit"}, convOne},
		{"gpu_energy_joules_total", []string{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"}, nil, convMilli},
		{"gpu_temperature_celsius", []string{"DCGM_FI_DEV_GPU_TEMP"}, []string{"temperature.gpu"}, convOne},
		{"gpu_memory_temperature_celsius", []string{"DCGM_FI_DEV_MEMORY_TEMP"}, []string{"temperature.memory"}, convOne},
		{"gpu_sm_clock_hertz", []string{"DCGM_FI_DEV_SM_CLOCK"}, []string{"clocks.current.sm"}, convMHz},
		{"gpu_memory_clock_hertz", []string{"DCGM_FI_DEV_MEM_CLOCK"}, []string{"clocks.current.memory"}, convMHz},
		{"gpu_graphics_clock_hertz", nil, []string{"clocks.current.graphics"}, convMHz},
		{"gpu_video_clock_hertz", []string{"DCGM_FI_DEV_VIDEO_CLOCK"}, []string{"clocks.current.video"}, convMHz},
		{"gpu_pcie_tx_bytes_per_second", []string{"DCGM_FI_PROF_PCIE_TX_BYTES"}, nil, convOne},
		{"gpu_pcie_rx_bytes_per_second", []string{"DCGM_FI_PROF_PCIE_RX_BYTES"}, nil, convOne},
		{"gpu_pcie_replays_total", []string{"DCGM_FI_DEV_PCIE_REPLAY_COUNTER"}, nil, convOne},
		{"gpu_ecc_corrected_errors_total", []string{"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"}, []string{"ecc.errors.corrected.volatile.total"}, convOne},
		{"gpu_ecc_uncorrected_errors_total", []string{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"}, []string{"ecc.errors.uncorrected.volatile.total"}, convOne},
		{"gpu_remapped_rows_correctable_total", []string{"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"}, []string{"remapped_rows.correctable"}, convOne},
		{"gpu_remapped_rows_uncorrectable_total", []string{"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"}, []string{"remapped_rows.uncorrectable"}, convOne},
		{"gpu_xid_last_error", []string{"DCGM_FI_DEV_XID_ERRORS"}, nil, convOne},
		{"gpu_graphics_engine_active_ratio", []string{"DCGM_FI_PROF_GR_ENGINE_ACTIVE"}, nil, convOne},
		{"gpu_sm_active_ratio", []string{"DCGM_FI_PROF_SM_ACTIVE"}, nil, convOne},
		{"gpu_sm_occupancy_ratio", []string{"DCGM_FI_PROF_SM_OCCUPANCY"}, nil, convOne},
		{"gpu_tensor_pipe_active_ratio", []string{"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"}, nil, convOne},
		{"gpu_dram_active_ratio", []string{"DCGM_FI_PROF_DRAM_ACTIVE"}, nil, convOne},
		{"gpu_nvlink_bandwidth_bytes_total", []string{"DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"}, nil, convOne},
		{"gpu_fan_speed_ratio", []string{"DCGM_FI_DEV_FAN_SPEED"}, []string{"fan.speed"}, convPercent},
		{"gpu_performance_state", []string{"DCGM_FI_DEV_PSTATE"}, []string{"pstate"}, convOne},
		{"gpu_clock_event_reasons", []string{"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"},
			[]string{"clocks_event_reasons.active", "clocks_throttle_reasons.active"}, convOne},
		{"gpu_power_violation_seconds_total", []string{"DCGM_FI_DEV_POWER_VIOLATION"}, nil, convNano},
		{"gpu_thermal_violation_seconds_total", []string{"DCGM_FI_DEV_THERMAL_VIOLATION"}, nil, convNano},
	}
}

// rule says what becomes of a source metric name.
type rule struct {
	name     string // output name
	conv     conversion
	sentinel bool // apply DCGM blank-sentinel checks to the source value
	drop     bool // drop every sample of the field
	unknown  bool // no row matched: derived name
}

// buildRules returns the name table keyed by lower-case source name:
// canonical names (identity, no sentinel checks, so normalizing twice
// changes nothing), the built-in DCGM and nvidia-smi fields, then the
// operator's mappings, which override anything before them.
func buildRules(mappings []Mapping) map[string]rule {
	rows := builtinRows()
	rules := make(map[string]rule, 4*len(rows)+len(mappings))
	for _, m := range gpumetrics.Canonical {
		rules[m.Name] = rule{name: m.Name, conv: convOne}
	}
	for _, r := range rows {
		for _, f := range r.dcgm {
			rules[strings.ToLower(f)] = rule{name: r.canonical, conv: r.conv, sentinel: true}
		}
		for _, f := range r.smi {
			rules[strings.ToLower(f)] = rule{name: r.canonical, conv: r.conv, sentinel: true}
		}
	}
	for _, m := range mappings {
		r := rule{name: m.Name, conv: convOne, sentinel: true, drop: m.Drop}
		if m.Scale != nil {
			r.conv = scaleConversion(*m.Scale)
		}
		rules[sourceKey(m.Source)] = r
	}
	return rules
}

// sourceKey is the lookup form of a source metric name: lower case, without
// an nvidia-smi unit suffix such as " [MiB]".
func sourceKey(name string) string {
	name = strings.TrimSpace(name)
	if strings.HasSuffix(name, "]") {
		if i := strings.LastIndex(name, " ["); i > 0 {
			name = strings.TrimSpace(name[:i])
		}
	}
	return strings.ToLower(name)
}

// derivedName is the output name of a field with no rule: the lower-case
// source name with every character outside [a-z0-9_:] replaced by '_';
// nvidia-smi style names (they contain a '.') get the prefix "nvidia_smi_".
// So DCGM_FI_PROF_NVLINK_TX_BYTES becomes dcgm_fi_prof_nvlink_tx_bytes and
// pcie.link.gen.current becomes nvidia_smi_pcie_link_gen_current. The result
// derives to itself, so normalizing twice changes nothing.
func derivedName(name string) string {
	k := sourceKey(name)
	var sb strings.Builder
	if strings.IndexByte(k, '.') >= 0 {
		sb.WriteString("nvidia_smi_")
	} else if k == "" || (k[0] >= '0' && k[0] <= '9') {
		sb.WriteByte('_')
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == ':' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

// labelSource says which canonical label a source label key feeds, and with
// what priority (lower wins when a series has several).
type labelSource struct {
	target   string
	priority int
}

// Priority of the `instance` fallback for host and of operator renames.
const (
	priorityLabelMap = -1
	priorityInstance = 100
)

// builtinLabels maps lower-case source label keys to canonical labels.
func builtinLabels() map[string]labelSource {
	aliases := []struct {
		target string
		keys   []string
	}{
		{sdk.LabelHost, []string{"host", "hostname"}},
		{sdk.LabelGPUUUID, []string{"gpu_uuid", "uuid"}},
		{sdk.LabelGPUIndex, []string{"gpu_index", "gpu", "gpu_id", "index"}},
		{sdk.LabelGPUModel, []string{"gpu_model", "modelname", "model_name", "name"}},
		{sdk.LabelDevice, []string{"device"}},
		{sdk.LabelPCIBusID, []string{"pci_bus_id", "pci.bus_id"}},
		{sdk.LabelDriverVersion, []string{"driver_version", "dcgm_fi_driver_version"}},
		{sdk.LabelContainer, []string{"container"}},
		{sdk.LabelPod, []string{"pod"}},
		{sdk.LabelNamespace, []string{"namespace"}},
	}
	m := make(map[string]labelSource, 24)
	for _, a := range aliases {
		for p, k := range a.keys {
			m[k] = labelSource{target: a.target, priority: p}
		}
	}
	return m
}

// isCanonicalLabel reports whether k is a canonical label key.
func isCanonicalLabel(k string) bool {
	switch k {
	case sdk.LabelHost, sdk.LabelGPUUUID, sdk.LabelGPUIndex, sdk.LabelGPUModel, sdk.LabelDevice,
		sdk.LabelPCIBusID, sdk.LabelDriverVersion, sdk.LabelContainer, sdk.LabelPod, sdk.LabelNamespace:
		return true
	}
	return false
}
