// Package bench is the end-to-end throughput benchmark behind `make bench`:
// it generates GPU telemetry workloads as mq.v1 messages, publishes them to a
// real mq-service, lets a real collector (every plugin out of process) store
// them in a throwaway PostgreSQL, and compares the rate with the ceiling of
// writing the same final rows straight into the same tables with pgx.
//
// The generators live here (plain code, unit-tested); the benchmark itself is
// a test behind the build tag "bench" (bench_test.go), run by `make bench`:
//
//	go test -tags bench -run TestBench -v -count=1 -timeout 60m ./internal/bench
//
// Nothing here keeps state between calls; every function is safe for
// concurrent use. Messages (the compact form the benchmark publishes from)
// documents its own rules.
package bench

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// Fields are the 30 DCGM fields every generated GPU reports, all known to
// processors.gpu_normalize (so every sample lands in a canonical column).
var Fields = []string{
	"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
	"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_POWER_USAGE",
	"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP",
	"DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_VIDEO_CLOCK", "DCGM_FI_PROF_PCIE_TX_BYTES",
	"DCGM_FI_PROF_PCIE_RX_BYTES", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
	"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
	"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
	"DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
	"DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_POWER_VIOLATION",
	"DCGM_FI_DEV_THERMAL_VIOLATION",
}

// GPUsPerHost is the number of GPUs of every generated host (a DGX).
const GPUsPerHost = 8

// Cluster is the shape of a generated cluster: GPUs (a multiple of
// GPUsPerHost), Fields per GPU (at most len(Fields)) and Rounds scrapes one
// second apart from Start.
type Cluster struct {
	GPUs   int
	Fields int
	Rounds int
	Start  time.Time
}

// Samples is the number of samples the cluster produces.
func (c Cluster) Samples() int { return c.GPUs * c.Fields * c.Rounds }

// RoundsFor returns the rounds needed for at least samples samples.
func (c Cluster) RoundsFor(samples int) int {
	per := c.GPUs * c.Fields
	return (samples + per - 1) / per
}

func (c Cluster) hosts() int { return c.GPUs / GPUsPerHost }

func hostName(h int) string { return fmt.Sprintf("dgx-node-%04d", h) }

func uuid(g int) string { return fmt.Sprintf("GPU-5fd4f087-86f3-7a43-b711-%012x", g) }

// value is a deterministic, varying value for (round, gpu, field).
func value(r, g, f int) float64 { return float64((r*7+g*13+f*31)%997) + 0.25 }

// Content types (metadata["content-type"]) of the workloads.
const (
	ContentPrometheus = "prometheus"
	ContentDCGMCSV    = "dcgm-csv"
	ContentGPUTelJSON = "gpu-tel-json"
)

func message(topic, contentType string, seq int, t time.Time, payload []byte, records int) *mqpb.Message {
	return &mqpb.Message{
		Id:        fmt.Sprintf("bench-%s-%d", contentType, seq),
		Topic:     topic,
		Payload:   payload,
		Timestamp: timestamppb.New(t),
		Metadata:  map[string]string{"content-type": contentType, "records": strconv.Itoa(records)},
	}
}

// emitFunc receives a workload's payloads in publishing order: the round
// r (rounds in increasing order), its time t and the payload, which is the
// generator's scratch buffer, valid only during the call.
type emitFunc func(r int, t time.Time, payload []byte)

// generate returns the messages of gen as individual *mqpb.Message values
// (each its own id, payload copy, metadata map and timestamp).
func generate(gen func(Cluster, emitFunc), contentType string, records int, c Cluster, topic string) []*mqpb.Message {
	var out []*mqpb.Message
	gen(c, func(r int, t time.Time, payload []byte) {
		out = append(out, message(topic, contentType, len(out), t, slices.Clone(payload), records))
	})
	return out
}

// Scrape generates dcgm-exporter /metrics scrapes in the Prometheus text
// format: one message per host per round (its 8 GPUs x Fields samples,
// every family with its # HELP and # TYPE lines, labels as dcgm-exporter
// writes them, no timestamps: the message timestamp is the scrape time).
func Scrape(c Cluster, topic string) []*mqpb.Message {
	return generate(scrape, ContentPrometheus, GPUsPerHost*c.Fields, c, topic)
}

func scrape(c Cluster, emit emitFunc) {
	var b []byte
	for r := 0; r < c.Rounds; r++ {
		t := c.Start.Add(time.Duration(r) * time.Second)
		for h := 0; h < c.hosts(); h++ {
			b = b[:0]
			host := hostName(h)
			for f := 0; f < c.Fields; f++ {
				name := Fields[f]
				b = fmt.Appendf(b, "# HELP %s %s.\n# TYPE %s gauge\n", name, name, name)
				for i := 0; i < GPUsPerHost; i++ {
					g := h*GPUsPerHost + i
					b = fmt.Appendf(b, "%s{gpu=\"%d\",UUID=\"%s\",pci_bus_id=\"00000000:%02X:00.0\",device=\"nvidia%d\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"%s\",DCGM_FI_DRIVER_VERSION=\"535.129.03\"} ",
						name, i, uuid(g), 0x18+i*0x10, i, host)
					b = strconv.AppendFloat(b, value(r, g, f), 'f', -1, 64)
					b = append(b, '\n')
				}
			}
			emit(r, t, b)
		}
	}
}

const dcgmHeader = "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw\n"

func appendDCGMRow(b []byte, t time.Time, r, h, i, f int) []byte {
	g := h*GPUsPerHost + i
	host := hostName(h)
	name := Fields[f]
	b = fmt.Appendf(b, "\"%s\",\"%s\",\"%d\",\"nvidia%d\",\"%s\",\"NVIDIA H100 80GB HBM3\",\"%s\",\"\",\"\",\"\",\"",
		t.UTC().Format(time.RFC3339), name, i, i, uuid(g), host)
	b = strconv.AppendFloat(b, value(r, g, f), 'f', -1, 64)
	b = fmt.Appendf(b, "\",\"DCGM_FI_DRIVER_VERSION=\"\"535.129.03\"\",Hostname=\"\"%s\"\",UUID=\"\"%s\"\",__name__=\"\"%s\"\",device=\"\"nvidia%d\"\",gpu=\"\"%d\"\",instance=\"\"%s:9400\"\",job=\"\"dgx_dcgm_exporter\"\",modelName=\"\"NVIDIA H100 80GB HBM3\"\"\"\n",
		host, uuid(g), name, i, i, host)
	return b
}

// DCGMCSV generates the DCGM CSV export (the columns of the real
// dcgm_metrics_*.csv, one metric per record, labels_raw included): one
// message per host per round holding the header and that host's 8 GPUs x
// Fields records, ordered as the real export orders them (by metric, then
// GPU). A message is one host's export, as each host publishes its own.
func DCGMCSV(c Cluster, topic string) []*mqpb.Message {
	return generate(dcgmCSV, ContentDCGMCSV, GPUsPerHost*c.Fields, c, topic)
}

func dcgmCSV(c Cluster, emit emitFunc) {
	var b []byte
	for r := 0; r < c.Rounds; r++ {
		t := c.Start.Add(time.Duration(r) * time.Second)
		for h := 0; h < c.hosts(); h++ {
			b = append(b[:0], dcgmHeader...)
			for f := 0; f < c.Fields; f++ {
				for i := 0; i < GPUsPerHost; i++ {
					b = appendDCGMRow(b, t, r, h, i, f)
				}
			}
			emit(r, t, b)
		}
	}
}

// GPUTelJSON generates the original service's payload: one JSON object
// (timestamp, metric_name, gpu_id, device, uuid, model_name, hostname,
// container, pod, namespace, value, labels_raw) per message, one sample per
// message, in the real export's order within a host.
func GPUTelJSON(c Cluster, topic string) []*mqpb.Message {
	return generate(gpuTelJSON, ContentGPUTelJSON, 1, c, topic)
}

func gpuTelJSON(c Cluster, emit emitFunc) {
	var b []byte
	for r := 0; r < c.Rounds; r++ {
		t := c.Start.Add(time.Duration(r) * time.Second)
		ts := strconv.Quote(t.UTC().Format(time.RFC3339))
		for h := 0; h < c.hosts(); h++ {
			host := hostName(h)
			for f := 0; f < c.Fields; f++ {
				name := Fields[f]
				for i := 0; i < GPUsPerHost; i++ {
					g := h*GPUsPerHost + i
					b = fmt.Appendf(b[:0], `{"timestamp":%s,"metric_name":"%s","gpu_id":%d,"device":"nvidia%d","uuid":"%s","model_name":"NVIDIA H100 80GB HBM3","hostname":"%s","container":"","pod":"","namespace":"","value":`,
						ts, name, i, i, uuid(g), host)
					b = strconv.AppendFloat(b, value(r, g, f), 'f', -1, 64)
					b = fmt.Appendf(b, `,"labels_raw":"DCGM_FI_DRIVER_VERSION=\"535.129.03\",Hostname=\"%s\",UUID=\"%s\",__name__=\"%s\",device=\"nvidia%d\",gpu=\"%d\",instance=\"%s:9400\",job=\"dgx_dcgm_exporter\",modelName=\"NVIDIA H100 80GB HBM3\""}`,
						host, uuid(g), name, i, i, host)
					emit(r, t, b)
				}
			}
		}
	}
}

// Workload is one benchmark workload. Generate returns its messages as
// individual *mqpb.Message values; Build returns the same messages in the
// compact form the benchmark publishes from (Messages).
type Workload struct {
	Name     string
	Generate func(c Cluster, topic string) []*mqpb.Message

	gen         func(Cluster, emitFunc) // the payloads, in order
	contentType string
	records     func(Cluster) int // samples per message
}

func perHost(c Cluster) int { return GPUsPerHost * c.Fields }

func one(Cluster) int { return 1 }

// Workloads are the benchmark's workloads, in the order `make bench` runs them.
var Workloads = []Workload{
	{Name: "scrape", Generate: Scrape, gen: scrape, contentType: ContentPrometheus, records: perHost},
	{Name: "dcgm-csv", Generate: DCGMCSV, gen: dcgmCSV, contentType: ContentDCGMCSV, records: perHost},
	{Name: "gpu-tel-json", Generate: GPUTelJSON, gen: gpuTelJSON, contentType: ContentGPUTelJSON, records: one},
}

// pollInterval spaces the scrapes of the collector's /metrics: serving one
// costs the agent about a millisecond of CPU, so the next scrape is due when
// half the time the rest should take at the rate so far has passed, between
// 5ms (to catch the last commit precisely) and 100ms.
func pollInterval(stored float64, want int64, elapsed time.Duration) time.Duration {
	const lo, hi = 5 * time.Millisecond, 100 * time.Millisecond
	if stored <= 0 {
		return hi
	}
	rest := time.Duration(float64(elapsed) * (float64(want) - stored) / stored / 2)
	return min(max(rest, lo), hi)
}
