// Package metric holds the data types shared by plugin authors (through
// package sdk, which re-exports them) and the agent's wire codec. Plugin
// authors should use the names in package sdk.
package metric

import (
	"sort"
	"strings"
	"time"
)

// Canonical label keys for GPU telemetry (see CANONICAL_METRICS.md).
const (
	LabelHost          = "host"
	LabelGPUUUID       = "gpu_uuid"
	LabelGPUIndex      = "gpu_index"
	LabelGPUModel      = "gpu_model"
	LabelDevice        = "device"
	LabelPCIBusID      = "pci_bus_id"
	LabelDriverVersion = "driver_version"
	LabelContainer     = "container"
	LabelPod           = "pod"
	LabelNamespace     = "namespace"
)

// Label is one key/value pair of a series.
type Label struct {
	Key   string
	Value string
}

// Labels is a set of labels kept sorted by key, without duplicate keys.
type Labels []Label

// Get returns the value of key and whether it is present.
func (ls Labels) Get(key string) (string, bool) {
	// Label sets are small: a linear scan beats binary search below ~16.
	for i := range ls {
		if ls[i].Key == key {
			return ls[i].Value, true
		}
	}
	return "", false
}

// Sort sorts ls by key in place and returns it.
func (ls Labels) Sort() Labels {
	sort.Slice(ls, func(i, j int) bool { return ls[i].Key < ls[j].Key })
	return ls
}

// String renders ls as {k="v",...}.
func (ls Labels) String() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(l.Key)
		sb.WriteString(`="`)
		sb.WriteString(l.Value)
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}

// Series identifies a time series: a metric name and its labels.
type Series struct {
	Name   string
	Labels Labels
}

// Point is one sample of a series.
type Point struct {
	// Series is an index into Batch.Series.
	Series uint32
	// Time is the sample time in nanoseconds since the Unix epoch (UTC).
	Time int64
	// Value is the sample value.
	Value float64
}

// Sample is a self-contained view of one point, for code that prefers it.
type Sample struct {
	Name   string
	Labels Labels
	Time   time.Time
	Value  float64
}

// Reject records input that could not be processed: a row that did not
// parse, a value out of range, a row an output refused. The agent counts
// every reject in collector_errors_total and writes it to the dead-letter
// store, so nothing disappears silently.
type Reject struct {
	// Reason says what was wrong, for an operator.
	Reason string
	// Position locates the input, e.g. "message 1234 line 17".
	Position string
	// Raw is the offending input (possibly truncated by the agent).
	Raw []byte
}

// Batch is a columnar batch of samples plus the rejects found on its way.
//
// Ownership: a Batch passed to Processor.Process or Output.Write belongs to
// the callee until the call returns; a processor may change it in place and
// return it. A Batch handed to Accumulator.Emit belongs to the agent from then
// on. Batches are not safe for concurrent use.
type Batch struct {
	Series  []Series
	Points  []Point
	Rejects []Reject
}

// Len returns the number of points.
func (b *Batch) Len() int { return len(b.Points) }

// AddSeries appends a series and returns its index. It does not look for an
// equal series already in the batch; use SeriesIndex for that.
func (b *Batch) AddSeries(name string, labels Labels) uint32 {
	b.Series = append(b.Series, Series{Name: name, Labels: labels})
	return uint32(len(b.Series) - 1)
}

// Add appends a point of series s.
func (b *Batch) Add(s uint32, t int64, v float64) {
	b.Points = append(b.Points, Point{Series: s, Time: t, Value: v})
}

// AddSample appends one self-contained sample (convenient, not the fastest).
func (b *Batch) AddSample(s Sample) {
	b.Add(b.AddSeries(s.Name, s.Labels), s.Time.UnixNano(), s.Value)
}

// Sample returns point i as a self-contained Sample.
func (b *Batch) Sample(i int) Sample {
	p := b.Points[i]
	s := b.Series[p.Series]
	return Sample{Name: s.Name, Labels: s.Labels, Time: time.Unix(0, p.Time).UTC(), Value: p.Value}
}

// Reject appends a reject record.
func (b *Batch) Reject(reason, position string, raw []byte) {
	b.Rejects = append(b.Rejects, Reject{Reason: reason, Position: position, Raw: raw})
}

// Reset empties b, keeping its capacity.
func (b *Batch) Reset() {
	b.Series = b.Series[:0]
	b.Points = b.Points[:0]
	b.Rejects = b.Rejects[:0]
}

// Compact drops series that no point refers to and renumbers the points.
// Processors that drop points may call it to keep batches small.
func (b *Batch) Compact() {
	if len(b.Series) == 0 {
		return
	}
	remap := make([]int32, len(b.Series))
	for i := range remap {
		remap[i] = -1
	}
	n := int32(0)
	for _, p := range b.Points {
		if remap[p.Series] < 0 {
			remap[p.Series] = 0 // mark used
		}
	}
	for i := range b.Series {
		if remap[i] == 0 {
			remap[i] = n
			b.Series[n] = b.Series[i]
			n++
		}
	}
	for i := range b.Points {
		b.Points[i].Series = uint32(remap[b.Points[i].Series])
	}
	clear(b.Series[n:])
	b.Series = b.Series[:n]
}

// SeriesIndex interns series into a batch so equal series share one entry.
// The zero value is not usable; create it with NewSeriesIndex.
type SeriesIndex struct {
	b   *Batch
	ids map[string]uint32
	key []byte
}

// NewSeriesIndex returns an index that adds series to b.
func NewSeriesIndex(b *Batch) *SeriesIndex {
	return &SeriesIndex{b: b, ids: make(map[string]uint32)}
}

// ID returns the index of the series (name, labels) in the batch, adding it if
// new. labels must be sorted; the index keeps a reference to labels when it
// adds the series.
func (x *SeriesIndex) ID(name string, labels Labels) uint32 {
	k := x.key[:0]
	k = append(k, name...)
	for _, l := range labels {
		k = append(k, 0)
		k = append(k, l.Key...)
		k = append(k, 1)
		k = append(k, l.Value...)
	}
	x.key = k
	if id, ok := x.ids[string(k)]; ok {
		return id
	}
	id := x.b.AddSeries(name, labels)
	x.ids[string(k)] = id
	return id
}
