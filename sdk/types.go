// Package sdk is the public API for telemetry-collector plugin authors.
//
// A plugin is a Go value that implements one of Input, Processor or Output.
// It is configured from its TOML table (decoded strictly: unknown keys are
// errors), optionally initialised (Initializer), validated (Validator) and
// closed (Closer). Serve runs one or more plugins in a plugin process; the
// agent talks to it over gRPC. Plugin authors never see protobuf types: they
// work with the plain Go types in this package.
//
// Data moves in batches. A Batch is columnar: a table of series (metric name
// plus labels) and a slice of points that refer to a series by index. This
// keeps per-sample cost low in and between plugin processes.
package sdk

import "github.com/telemetry-collector/telemetry-collector/sdk/metric"

// The data types; see package metric for their documentation.
type (
	// Label is one key/value pair of a series.
	Label = metric.Label
	// Labels is a set of labels sorted by key, without duplicate keys.
	Labels = metric.Labels
	// Series identifies a time series: a metric name and its labels.
	Series = metric.Series
	// Point is one sample of a series: series index, unix-nano time, value.
	Point = metric.Point
	// Sample is a self-contained view of one point.
	Sample = metric.Sample
	// Reject records input that could not be processed.
	Reject = metric.Reject
	// Batch is a columnar batch of samples plus rejects.
	Batch = metric.Batch
	// SeriesIndex interns series into a batch.
	SeriesIndex = metric.SeriesIndex
)

// Canonical label keys for GPU telemetry (see CANONICAL_METRICS.md).
const (
	LabelHost          = metric.LabelHost
	LabelGPUUUID       = metric.LabelGPUUUID
	LabelGPUIndex      = metric.LabelGPUIndex
	LabelGPUModel      = metric.LabelGPUModel
	LabelDevice        = metric.LabelDevice
	LabelPCIBusID      = metric.LabelPCIBusID
	LabelDriverVersion = metric.LabelDriverVersion
	LabelContainer     = metric.LabelContainer
	LabelPod           = metric.LabelPod
	LabelNamespace     = metric.LabelNamespace
)

// NewSeriesIndex returns an index that interns series into b.
func NewSeriesIndex(b *Batch) *SeriesIndex { return metric.NewSeriesIndex(b) }
