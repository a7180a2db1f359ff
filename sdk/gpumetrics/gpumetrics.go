// Package gpumetrics is the canonical GPU metric vocabulary of
// CANONICAL_METRICS.md: metric names in base SI units and the label keys that
// identify a GPU. gpu_normalize produces these names; the PostgreSQL output
// stores each of them in a column of its own.
package gpumetrics

// Kind is gauge or counter.
type Kind string

// Metric kinds.
const (
	Gauge   Kind = "gauge"
	Counter Kind = "counter"
)

// Metric is one canonical metric.
type Metric struct {
	Name string
	Unit string
	Kind Kind
}

// Canonical lists every canonical metric, in the order of CANONICAL_METRICS.md.
// The order is part of the PostgreSQL output's schema: append only.
var Canonical = []Metric{
	{"gpu_utilization_ratio", "ratio", Gauge},
	{"gpu_memory_copy_utilization_ratio", "ratio", Gauge},
	{"gpu_encoder_utilization_ratio", "ratio", Gauge},
	{"gpu_decoder_utilization_ratio", "ratio", Gauge},
	{"gpu_memory_used_bytes", "bytes", Gauge},
	{"gpu_memory_free_bytes", "bytes", Gauge},
	{"gpu_memory_reserved_bytes", "bytes", Gauge},
	{"gpu_memory_total_bytes", "bytes", Gauge},
	{"gpu_power_watts", "W", Gauge},
	{"gpu_power_instant_watts", "W", Gauge},
	{"gpu_power_limit_watts", "W", Gauge},
	{"gpu_energy_joules_total", "J", Counter},
	{"gpu_temperature_celsius", "°C", Gauge},
	{"gpu_memory_temperature_celsius", "°C", Gauge},
	{"gpu_sm_clock_hertz", "Hz", Gauge},
	{"gpu_memory_clock_hertz", "Hz", Gauge},
	{"gpu_graphics_clock_hertz", "Hz", Gauge},
	{"gpu_video_clock_hertz", "Hz", Gauge},
	{"gpu_pcie_tx_bytes_per_second", "B/s", Gauge},
	{"gpu_pcie_rx_bytes_per_second", "B/s", Gauge},
	{"gpu_pcie_replays_total", "count", Counter},
	{"gpu_ecc_corrected_errors_total", "count", Counter},
	{"gpu_ecc_uncorrected_errors_total", "count", Counter},
	{"gpu_remapped_rows_correctable_total", "count", Counter},
	{"gpu_remapped_rows_uncorrectable_total", "count", Counter},
	{"gpu_xid_last_error", "code", Gauge},
	{"gpu_graphics_engine_active_ratio", "ratio", Gauge},
	{"gpu_sm_active_ratio", "ratio", Gauge},
	{"gpu_sm_occupancy_ratio", "ratio", Gauge},
	{"gpu_tensor_pipe_active_ratio", "ratio", Gauge},
	{"gpu_dram_active_ratio", "ratio", Gauge},
	{"gpu_nvlink_bandwidth_bytes_total", "bytes", Counter},
	{"gpu_fan_speed_ratio", "ratio", Gauge},
	{"gpu_performance_state", "P-state", Gauge},
	{"gpu_clock_event_reasons", "bitmask", Gauge},
	{"gpu_power_violation_seconds_total", "s", Counter},
	{"gpu_thermal_violation_seconds_total", "s", Counter},
}

// Index returns the position of name in Canonical, or -1.
func Index(name string) int {
	for i := range Canonical {
		if Canonical[i].Name == name {
			return i
		}
	}
	return -1
}
