package wire

// The per-batch codec that the stream dictionaries (stream.go) replaced: every
// batch carried its whole string dictionary and series table. It is kept
// here, in a test file, only as the baseline the benchmarks compare the
// stream codec against.

import (
	"fmt"
	"unsafe"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// Encoder turns metric batches into wire batches. It keeps its string
// dictionary map between calls so steady-state encoding does not allocate
// for it. An Encoder is not safe for concurrent use; use one per goroutine
// (or a pool).
type Encoder struct {
	ids map[string]uint32
	// slots remembers, during one Encode, where the label refs of a label
	// slice were written, so series sharing a label slice (as decoded by a
	// Decoder with ShareLabels) cost a copy of refs instead of a dictionary
	// look-up per label. Direct-mapped on the slice's address; cleared after
	// every Encode so no pointer outlives the call.
	slots [labelSlots]labelSlot
}

type labelSlot struct {
	p   *metric.Label
	n   int32
	off int32 // index in dst.Series of the first label ref
}

// NewEncoder returns an empty Encoder.
func NewEncoder() *Encoder { return &Encoder{ids: make(map[string]uint32, 64)} }

func (e *Encoder) ref(dst *pluginpb.Batch, s string) uint32 {
	if id, ok := e.ids[s]; ok {
		return id
	}
	id := uint32(len(dst.Strings))
	dst.Strings = append(dst.Strings, s)
	e.ids[s] = id
	return id
}

// Encode writes b into dst (reusing dst's slices, whose old contents are
// dropped) under the given batch id and returns dst. A nil dst allocates a
// new message. b is only read; dst does not keep references into b except
// the strings it shares (strings are immutable) and Reject.Raw slices.
func (e *Encoder) Encode(dst *pluginpb.Batch, id uint64, b *metric.Batch) *pluginpb.Batch {
	if dst == nil {
		dst = &pluginpb.Batch{}
	}
	if e.ids == nil {
		e.ids = make(map[string]uint32, 64)
	}
	clear(e.ids)
	dst.Id = id
	dst.End = false
	dst.RunError = ""
	dst.Strings = dst.Strings[:0]
	dst.Series = dst.Series[:0]
	nlabels := 0
	for i := range b.Series {
		nlabels += len(b.Series[i].Labels)
	}
	if need := 2*len(b.Series) + 2*nlabels; cap(dst.Series) < need {
		dst.Series = make([]uint32, 0, need)
	}
	for i := range b.Series {
		s := &b.Series[i]
		n := len(s.Labels)
		dst.Series = append(dst.Series, e.ref(dst, s.Name), uint32(n))
		if n == 0 {
			continue
		}
		p := &s.Labels[0]
		slot := &e.slots[(uintptr(unsafe.Pointer(p))/unsafe.Sizeof(metric.Label{}))%labelSlots]
		if slot.p == p && int(slot.n) == n {
			// The same label slice as an earlier series: same refs.
			dst.Series = append(dst.Series, dst.Series[slot.off:int(slot.off)+2*n]...)
			continue
		}
		*slot = labelSlot{p: p, n: int32(n), off: int32(len(dst.Series))}
		for _, l := range s.Labels {
			dst.Series = append(dst.Series, e.ref(dst, l.Key), e.ref(dst, l.Value))
		}
	}
	clear(e.slots[:])
	n := len(b.Points)
	dst.PointSeries = grow(dst.PointSeries, n)
	dst.PointTime = grow(dst.PointTime, n)
	dst.PointValue = grow(dst.PointValue, n)
	ps, pt, pv := dst.PointSeries, dst.PointTime, dst.PointValue
	for i := range b.Points {
		p := &b.Points[i]
		ps[i] = p.Series
		pt[i] = p.Time
		pv[i] = p.Value
	}
	dst.Rejects = EncodeRejects(dst.Rejects[:0], b.Rejects)
	return dst
}

// Decoder turns wire batches into metric batches. It is not safe for
// concurrent use.
type Decoder struct {
	// ShareLabels makes series whose label refs are equal share one label
	// slice (in scrape-shaped batches the ~30 series of a GPU carry the
	// same labels): less to build and to keep, and an Encoder re-encoding
	// the batch copies refs instead of looking every label up. The decoded
	// labels must then be treated as read-only: set it only where no code
	// changes labels in place (the agent's side of the plugin protocol,
	// never a plugin's, whose processors may).
	ShareLabels bool
	sets        map[string]metric.Labels // ShareLabels: label refs -> labels, one Decode
}

// Decode fills dst (reset first, capacity kept) from src. The decoded
// batch's strings are the dictionary strings of src (one allocation per
// distinct string, made by proto.Unmarshal); all label sets share one
// backing slice. Decode validates every reference and column length and
// returns an error, leaving dst in an unspecified state, for a malformed
// batch.
func (d *Decoder) Decode(src *pluginpb.Batch, dst *metric.Batch) error {
	dst.Reset()
	strs := src.GetStrings()
	ser := src.GetSeries()
	// First pass: count series and labels, validating the table shape.
	nseries, nlabels := 0, 0
	for i := 0; i < len(ser); {
		if i+2 > len(ser) {
			return fmt.Errorf("wire: series table truncated at %d", i)
		}
		n := int(ser[i+1])
		if n > (len(ser)-i-2)/2 {
			return fmt.Errorf("wire: series %d: %d labels overrun the series table", nseries, n)
		}
		nseries++
		nlabels += n
		i += 2 + 2*n
	}
	str := func(ref uint32) (string, error) {
		if int(ref) >= len(strs) {
			return "", fmt.Errorf("wire: string ref %d out of range (%d strings)", ref, len(strs))
		}
		return strs[ref], nil
	}
	if cap(dst.Series) < nseries {
		dst.Series = make([]metric.Series, 0, nseries)
	}
	if d.ShareLabels && d.sets == nil {
		d.sets = make(map[string]metric.Labels)
	}
	defer clear(d.sets) // its keys point into src
	var slab []metric.Label
	if !d.ShareLabels {
		slab = make([]metric.Label, nlabels)
	}
	for i := 0; i < len(ser); {
		name, err := str(ser[i])
		if err != nil {
			return err
		}
		n := int(ser[i+1])
		var key string
		if d.ShareLabels && n > 0 {
			key = unsafe.String((*byte)(unsafe.Pointer(&ser[i+2])), 2*n*4)
			if ls, ok := d.sets[key]; ok {
				dst.Series = append(dst.Series, metric.Series{Name: name, Labels: ls})
				i += 2 + 2*n
				continue
			}
		}
		if len(slab) < n {
			// ShareLabels: allocate as distinct label sets appear.
			slab = make([]metric.Label, max(n, min(nlabels, 4096)))
		}
		ls := slab[:n:n]
		slab = slab[n:]
		for j := 0; j < n; j++ {
			k, err := str(ser[i+2+2*j])
			if err != nil {
				return err
			}
			v, err := str(ser[i+3+2*j])
			if err != nil {
				return err
			}
			ls[j] = metric.Label{Key: k, Value: v}
		}
		if n == 0 {
			ls = nil
		} else if d.ShareLabels {
			d.sets[key] = ls
		}
		dst.Series = append(dst.Series, metric.Series{Name: name, Labels: ls})
		i += 2 + 2*n
	}
	ps, pt, pv := src.GetPointSeries(), src.GetPointTime(), src.GetPointValue()
	if len(pt) != len(ps) || len(pv) != len(ps) {
		return fmt.Errorf("wire: point columns differ in length (series %d, time %d, value %d)", len(ps), len(pt), len(pv))
	}
	if cap(dst.Points) < len(ps) {
		dst.Points = make([]metric.Point, len(ps))
	} else {
		dst.Points = dst.Points[:len(ps)]
	}
	pts := dst.Points
	for i, s := range ps {
		if int(s) >= nseries {
			return fmt.Errorf("wire: point %d: series %d out of range (%d series)", i, s, nseries)
		}
		pts[i] = metric.Point{Series: s, Time: pt[i], Value: pv[i]}
	}
	dst.Rejects = DecodeRejects(dst.Rejects, src.GetRejects())
	return nil
}

// Decode is a convenience for (&Decoder{}).Decode into a new batch.
func Decode(src *pluginpb.Batch) (*metric.Batch, error) {
	b := &metric.Batch{}
	var d Decoder
	if err := d.Decode(src, b); err != nil {
		return nil, err
	}
	return b, nil
}
