package wire

import (
	"fmt"
	"hash/maphash"
	"strings"
	"unsafe"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// Stream dictionaries.
//
// Every long-lived stream of the plugin protocol (Run, Process, Write; each
// direction separately) carries series, and their strings, once: the
// sender's StreamEncoder gives each distinct series (name + labels) a
// stream-local id the first time a batch carries it and puts its definition
// (new strings + label refs) in that batch only; later batches refer to it
// by id. The receiver's StreamDecoder mirrors the dictionary for the
// stream's life. Both die with the stream: a new stream (a restarted
// plugin) starts empty and every batch sent on it is encoded for it.
//
// Order: the receiver must decode batches in the order the sender encoded
// them, so a sender encodes and sends under one lock per stream (gRPC keeps
// a stream's messages in order) and a receiver decodes in its receive loop.
//
// Memory is bounded on both sides: when the sender's dictionary would pass
// MaxSeries series or MaxBytes (estimated) it starts over and marks the
// batch reset; the receiver clears its dictionary on reset and refuses to
// grow past twice the default limits.

const (
	// DefaultMaxSeries is the series a stream dictionary holds before the
	// sender starts over.
	DefaultMaxSeries = 1 << 20
	// DefaultMaxBytes is the estimated memory (string bytes plus per-label
	// and per-series overhead) a stream dictionary holds before the sender
	// starts over.
	DefaultMaxBytes = 128 << 20
)

const (
	labelCost  = int(unsafe.Sizeof(metric.Label{}))
	seriesCost = 64
	// labelSetCost is the encoder's per-copy index entry (map entry and
	// its share of the map's overhead).
	labelSetCost = 64
)

// StreamEncoder is the sending side of a stream dictionary. It is not safe
// for concurrent use: callers encode and send under one lock per stream so
// batches reach the receiver in encoding order.
//
// The dictionary keeps the strings of the series it defined (references,
// not copies: strings are immutable) and its own copy of their label
// slices, for the stream's life or until it starts over; a string that is
// a substring of a larger one keeps the larger one alive meanwhile. Series
// whose labels are made of the very same strings (one label slice, as a
// decoder shares them, or several, as a processor builds them per series)
// share one copy: the dictionary grows with the distinct label sets, not
// with series x labels.
// Series are found by identity first (the same string data as when they
// were defined: the common case when batches come from a decoder's or a
// parser's dictionary, a few ns) and by content otherwise.
type StreamEncoder struct {
	// MaxSeries and MaxBytes bound the dictionary (0: the defaults; at
	// most the defaults, which receivers enforce with a factor of two).
	// Set them before the first Encode.
	MaxSeries int
	MaxBytes  int

	seed   maphash.Seed
	strs   map[string]uint32 // stream string ids; keys are private copies
	ser    []encSeries       // by stream series id
	index  hashTable         // content hash -> ids
	iindex hashTable         // identity hash -> ids
	bytes  int
	resets int
	// slots is a direct-mapped cache, for one Encode, of the label
	// slices it looked up (a power of two long, sized for the batch);
	// touched lists the slots in use, cleared when Encode returns so the
	// encoder keeps nothing of the caller's batch.
	slots    []hashSlot
	touched  []uint32
	slotBits uint
	noLabels hashSlot
	slab     []metric.Label // free part of the current label chunk
	lsets    map[uint64]labelSet
}

// labelSet is a label copy of the dictionary, by the identity hash of the
// strings it was made of: series whose labels are other slices of the very
// same strings (a processor's per-series output of one GPU's labels) share
// it, whichever Encode defines them.
type labelSet struct {
	labels []metric.Label
	owner  uint32 // the entry that made it
}

type encSeries struct {
	name   string
	labels []metric.Label
	ih     uint32 // identity hash of name and labels, as indexed (low bits)
	// own: labels is this entry's alone (realias may overwrite it in
	// place); otherwise other entries share it (series defined in one
	// Encode from one label slice share one copy).
	own bool
}

// hashSlot remembers, during one Encode, the hashes of a label slice
// several series share (as decoded with ShareLabels): computed once per
// slice and batch.
type hashSlot struct {
	p     *metric.Label
	n     int32
	hasIH bool
	hasH  bool
	ih    uint64 // identity hash, if hasIH
	h     uint64 // content hash, if hasH
	// cp is the dictionary's copy of the slice, once an entry defined
	// (or realiased) in this Encode made one; owner is that entry.
	cp    []metric.Label
	owner uint32
	// vd is a dictionary label slice found made of the very strings of
	// the slice (in this Encode): candidates with it need a name check
	// only.
	vd *metric.Label
}

// same reports whether the dictionary's labels d are made of the very
// strings of ls, the slice of slot.
func (slot *hashSlot) same(d, ls []metric.Label) bool {
	if len(d) != len(ls) {
		return false
	}
	if len(d) == 0 || &d[0] == slot.vd {
		return true
	}
	if !sameLabelStrings(d, ls) {
		return false
	}
	slot.vd = &d[0]
	return true
}

// NewStreamEncoder returns an empty StreamEncoder for one stream.
func NewStreamEncoder() *StreamEncoder {
	return &StreamEncoder{seed: maphash.MakeSeed()}
}

// Resets reports how often the dictionary was full and started over.
func (e *StreamEncoder) Resets() int { return e.resets }

// Len reports the series in the dictionary.
func (e *StreamEncoder) Len() int { return len(e.ser) }

func (e *StreamEncoder) limits() (int, int) {
	ms, mb := e.MaxSeries, e.MaxBytes
	if ms <= 0 {
		ms = DefaultMaxSeries
	}
	if mb <= 0 {
		mb = DefaultMaxBytes
	}
	return ms, mb
}

func (e *StreamEncoder) clearTable() {
	e.strs = make(map[string]uint32, 64)
	e.index = hashTable{}
	e.iindex = hashTable{}
	e.ser = nil
	e.slab = nil
	e.lsets = make(map[uint64]labelSet)
	e.bytes = 0
}

func mix(h, x uint64) uint64 {
	h ^= x
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
}

func (e *StreamEncoder) labelsHash(ls []metric.Label) uint64 {
	h := uint64(len(ls))
	for i := range ls {
		h = mix(h, maphash.String(e.seed, ls[i].Key))
		h = mix(h, maphash.String(e.seed, ls[i].Value))
	}
	return h
}

// labelSlot returns the (per-Encode cached) hashes of ls, its identity
// hash filled in.
func (e *StreamEncoder) labelSlot(ls []metric.Label) *hashSlot {
	slot := e.slotOf(ls)
	if !slot.hasIH {
		h := uint64(len(ls))
		for i := range ls {
			h = mix(h, strID(ls[i].Key))
			h = mix(h, strID(ls[i].Value))
		}
		slot.ih, slot.hasIH = h, true
	}
	return slot
}

// slotOf returns the slot of ls in the per-Encode cache, taking it over
// (emptied) if it held another slice; its hashes are computed only when
// asked for (labelSlot): checking a candidate's labels (sameLabels) needs
// none, which saves hashing every label of the series whose label slices
// are their own (a label-copying processor's).
func (e *StreamEncoder) slotOf(ls []metric.Label) *hashSlot {
	if len(ls) == 0 {
		e.noLabels = hashSlot{hasIH: true, hasH: true}
		return &e.noLabels
	}
	p := &ls[0]
	// Label slices sit at addresses with common low and high bits (size
	// classes, spans): a multiplicative hash spreads them over the slots.
	i := (uint64(uintptr(unsafe.Pointer(p))) * 0x9e3779b97f4a7c15) >> (64 - e.slotBits)
	slot := &e.slots[i]
	if slot.p != p || int(slot.n) != len(ls) {
		if slot.p == nil {
			e.touched = append(e.touched, uint32(i))
		}
		*slot = hashSlot{p: p, n: int32(len(ls))}
	}
	return slot
}

// sizeSlots makes the label slot cache large enough for a batch of n
// series (a few series share a label slice; the cache only grows).
func (e *StreamEncoder) sizeSlots(n int) {
	bits := uint(labelSlotBits)
	for bits < maxLabelSlotBits && 1<<bits < n/4 {
		bits++
	}
	if bits > e.slotBits || e.slots == nil {
		e.slots = make([]hashSlot, 1<<bits)
		e.slotBits = bits
		e.touched = e.touched[:0]
	}
}

// clearSlots empties the slots Encode used.
func (e *StreamEncoder) clearSlots() {
	for _, i := range e.touched {
		e.slots[i] = hashSlot{}
	}
	e.touched = e.touched[:0]
	e.noLabels = hashSlot{}
}

func strID(s string) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.StringData(s))))<<8 ^ uint64(len(s))
}

func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

// sameStrings reports whether a and b are made of the very same strings.
func sameStrings(name string, labels []metric.Label, s *metric.Series) bool {
	if !sameString(name, s.Name) || len(labels) != len(s.Labels) {
		return false
	}
	for i := range labels {
		if !sameString(labels[i].Key, s.Labels[i].Key) || !sameString(labels[i].Value, s.Labels[i].Value) {
			return false
		}
	}
	return true
}

// sameLabelStrings reports whether a and b are made of the very same
// strings.
func sameLabelStrings(a, b []metric.Label) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameString(a[i].Key, b[i].Key) || !sameString(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func labelsEqual(a, b []metric.Label) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameLabels reports whether the dictionary's labels d and the input
// labels ls (of one length) are made of the very same strings, through
// the slot of ls, which remembers for this Encode the dictionary slice it
// was found equal to: when a host's GPUs interleave (a scrape lists each
// metric for every GPU), consecutive series have different label slices
// and run alone would compare every label of every series. A match is
// remembered in run too.
func (e *StreamEncoder) sameLabels(run *labelRun, d, ls []metric.Label) bool {
	if !e.slotOf(ls).same(d, ls) {
		return false
	}
	run.set(d, ls)
	return true
}

// labelRun is a dictionary label slice and an input label slice of one
// Encode known to be made of the very same strings (a local of Encode).
type labelRun struct {
	dict, in *metric.Label
	n        int
}

// set remembers that d and ls are made of the very same strings.
func (r *labelRun) set(d, ls []metric.Label) {
	if len(d) == 0 || len(d) != len(ls) {
		*r = labelRun{}
		return
	}
	*r = labelRun{dict: &d[0], in: &ls[0], n: len(d)}
}

// lookup finds s in the dictionary; on a miss it returns the hashes
// define needs.
func (e *StreamEncoder) lookup(s *metric.Series) (id uint32, ok bool, h, ih uint64) {
	slot := e.labelSlot(s.Labels)
	ih = mix(slot.ih, strID(s.Name))
	if t := &e.iindex; len(t.slots) > 0 {
		for i := ih & t.mask(); ; i = (i + 1) & t.mask() {
			sl := t.slots[i]
			if sl.id == 0 {
				break
			}
			if sl.h == uint32(ih) && sl.id != tombstone {
				if d := &e.ser[sl.id-1]; sameString(d.name, s.Name) && slot.same(d.labels, s.Labels) {
					return sl.id - 1, true, 0, ih
				}
			}
		}
	}
	if !slot.hasH {
		slot.h, slot.hasH = e.labelsHash(s.Labels), true
	}
	h = mix(slot.h, maphash.String(e.seed, s.Name))
	if t := &e.index; len(t.slots) > 0 {
		for i := h & t.mask(); ; i = (i + 1) & t.mask() {
			sl := t.slots[i]
			if sl.id == 0 {
				break
			}
			if sl.h == uint32(h) {
				if d := &e.ser[sl.id-1]; d.name == s.Name && labelsEqual(d.labels, s.Labels) {
					e.realias(sl.id-1, ih, s)
					return sl.id - 1, true, h, ih
				}
			}
		}
	}
	return 0, false, h, ih
}

// realias makes the dictionary entry id, found by content, refer to the
// strings of s (equal, but other string data), so the next batch made of
// the same strings finds it by identity: the agent, for one, first sends
// an input's batch and from then on what came back from a processor.
func (e *StreamEncoder) realias(id uint32, ih uint64, s *metric.Series) {
	d := &e.ser[id]
	if d.ih == uint32(ih) && sameStrings(d.name, d.labels, s) {
		return
	}
	e.iindex.remove(uint64(d.ih), id+1)
	d.name = s.Name
	if !sameLabelStrings(d.labels, s.Labels) {
		if d.own {
			copy(d.labels, s.Labels)
		} else {
			// Shared with other entries: never change it in place. An
			// entry gets at most one copy of its own this way.
			e.setLabels(id, s.Labels)
		}
	}
	d.ih = uint32(ih)
	e.iindex.insert(ih, id+1)
}

// setLabels points entry id's labels at the dictionary's copy of ls made
// in this Encode, making one if there is none yet; entries sharing a copy
// are marked not owning it.
func (e *StreamEncoder) setLabels(id uint32, ls []metric.Label) {
	d := &e.ser[id]
	n := len(ls)
	if n == 0 {
		d.labels, d.own = nil, true
		return
	}
	slot := e.labelSlot(ls)
	if slot.cp == nil {
		if set, ok := e.lsets[slot.ih]; ok && sameLabelStrings(set.labels, ls) {
			slot.cp, slot.owner = set.labels, set.owner
		}
	}
	if slot.cp != nil {
		d.labels, d.own = slot.cp, false
		if int(slot.owner) < len(e.ser) {
			e.ser[slot.owner].own = false
		}
		return
	}
	// Label copies come from chunks, in definition order: the entries of
	// series defined together sit together in memory.
	if len(e.slab) < n {
		e.slab = make([]metric.Label, max(n, 1024))
	}
	cp := e.slab[:n:n]
	e.slab = e.slab[n:]
	copy(cp, ls)
	e.bytes += n*labelCost + labelSetCost
	slot.cp, slot.owner = cp, id
	e.lsets[slot.ih] = labelSet{labels: cp, owner: id}
	d.labels, d.own = cp, true
}

// str returns the stream id of s, defining it in dst if it is new.
func (e *StreamEncoder) str(dst *pluginpb.Batch, s string) uint32 {
	if id, ok := e.strs[s]; ok {
		return id
	}
	id := uint32(len(e.strs))
	e.strs[s] = id
	dst.Strings = append(dst.Strings, s)
	e.bytes += len(s) + 32
	return id
}

func (e *StreamEncoder) define(dst *pluginpb.Batch, h, ih uint64, s *metric.Series) uint32 {
	id := int32(len(e.ser))
	n := len(s.Labels)
	dst.Series = append(dst.Series, e.str(dst, s.Name), uint32(n))
	for _, l := range s.Labels {
		dst.Series = append(dst.Series, e.str(dst, l.Key), e.str(dst, l.Value))
	}
	e.ser = append(e.ser, encSeries{name: s.Name, ih: uint32(ih), own: true})
	e.setLabels(uint32(id), s.Labels)
	e.index.insert(h, uint32(id)+1)
	e.iindex.insert(ih, uint32(id)+1)
	e.bytes += seriesCost
	return uint32(id)
}

func (e *StreamEncoder) full(s *metric.Series) bool {
	ms, mb := e.limits()
	cost := seriesCost + len(s.Name) + len(s.Labels)*labelCost
	for _, l := range s.Labels {
		cost += len(l.Key) + len(l.Value)
	}
	return len(e.ser) >= ms || e.bytes+cost > mb
}

// Encode writes b into dst (reusing dst's slices, whose old contents are
// dropped) under the given batch id and returns dst; a nil dst allocates a
// new message. Series new to the stream are defined in dst and enter the
// dictionary: dst must be sent on the stream, after every batch encoded
// before it and before any encoded after it. b is only read; dst keeps no
// references into b except Reject.Raw slices.
func (e *StreamEncoder) Encode(dst *pluginpb.Batch, id uint64, b *metric.Batch) *pluginpb.Batch {
	if dst == nil {
		dst = &pluginpb.Batch{}
	}
	if e.strs == nil {
		e.clearTable()
		if e.seed == (maphash.Seed{}) {
			e.seed = maphash.MakeSeed()
		}
	}
	dst.Id = id
	dst.End = false
	dst.RunError = ""
	reset := false
	e.sizeSlots(len(b.Series))
	defer e.clearSlots()
encode:
	dst.ResetDictionary = reset
	dst.Strings = dst.Strings[:0]
	dst.Series = dst.Series[:0]
	dst.StringBase = uint32(len(e.strs))
	dst.SeriesBase = uint32(len(e.ser))
	dst.SeriesIds = grow(dst.SeriesIds, len(b.Series))
	next := uint32(0) // the series after the previous one: a likely match
	// run remembers, for this Encode only, an input label slice found to be
	// made of the same strings as a dictionary label slice: consecutive
	// series sharing one slice (a GPU's series) are then checked by name
	// alone. Neither slice changes during Encode (b is only read; the
	// dictionary's label copies are never changed but to equal contents),
	// and nothing of it outlives the call: the caller may change its
	// slices between batches.
	var run labelRun
	for i := range b.Series {
		s := &b.Series[i]
		// Series tend to come in the order they were defined in (a host's
		// scrape, a passed-through batch): try the one after the previous
		// series first, by identity.
		if int(next) < len(e.ser) {
			d := &e.ser[next]
			if n := len(s.Labels); sameString(d.name, s.Name) && len(d.labels) == n &&
				(n == 0 || (n == run.n && &d.labels[0] == run.dict && &s.Labels[0] == run.in) || e.sameLabels(&run, d.labels, s.Labels)) {
				dst.SeriesIds[i] = next
				next++
				continue
			}
		}
		sid, ok, h, ih := e.lookup(s)
		if !ok {
			if !reset && e.full(s) {
				// Start over; a batch larger than the limits may overshoot
				// them by itself (the next new series resets again).
				e.clearTable()
				e.clearSlots()
				e.resets++
				reset = true
				goto encode
			}
			sid = e.define(dst, h, ih, s)
		}
		// Found or defined, the entry now has s's label strings.
		run.set(e.ser[sid].labels, s.Labels)
		dst.SeriesIds[i] = sid
		next = sid + 1
	}
	n := len(b.Points)
	dst.PointSeries = grow(dst.PointSeries, n)
	dst.PointTime = grow(dst.PointTime, n)
	dst.PointValue = grow(dst.PointValue, n)
	pts := b.Points
	ps, pt, pv := dst.PointSeries[:len(pts)], dst.PointTime[:len(pts)], dst.PointValue[:len(pts)]
	for i := range pts {
		p := &pts[i]
		ps[i] = p.Series
		pt[i] = p.Time
		pv[i] = p.Value
	}
	dst.Rejects = EncodeRejects(dst.Rejects[:0], b.Rejects)
	return dst
}

// StreamDecoder is the receiving side of a stream dictionary. It is not
// safe for concurrent use: decode a stream's batches in receive order, in
// one goroutine. A malformed batch, or one that refers to series or
// strings the stream never defined (a sender out of sync), fails with an
// error; it never panics.
type StreamDecoder struct {
	// ShareLabels makes every decoded batch use the dictionary's label
	// slice of a series (for the stream's life; series defined in one
	// batch with the same labels share one) instead of
	// a copy of its own: no per-batch label copying, and an Encoder
	// re-encoding the batch hashes each shared slice once. The decoded
	// labels are then read-only, in this batch and every later one: set
	// it only where no code changes labels in place (the agent's side of
	// the plugin protocol, never a plugin's, whose processors may).
	ShareLabels bool

	strs  []string
	ser   []metric.Series
	sets  map[uint64][]metric.Label // hash of label refs -> the dictionary's labels
	bytes int
}

// Len reports the series in the dictionary.
func (d *StreamDecoder) Len() int { return len(d.ser) }

// Decode fills dst (reset first, capacity kept) from src, first applying
// src's dictionary changes (reset, new strings, new series). Without
// ShareLabels each decoded series gets its own label slice (one backing
// slab per batch), which the batch's owner may change. Decode returns an
// error, leaving dst in an unspecified state, for a malformed batch; the
// dictionary changes of a batch are applied only when they are valid.
func (d *StreamDecoder) Decode(src *pluginpb.Batch, dst *metric.Batch) error {
	dst.Reset()
	if err := d.apply(src); err != nil {
		return err
	}
	ids := src.GetSeriesIds()
	if err := d.decodeSeries(ids, dst); err != nil {
		return err
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
	pts := dst.Points[:len(ps)]
	pt, pv = pt[:len(ps)], pv[:len(ps)]
	nseries := uint32(len(ids))
	for i, s := range ps {
		if s >= nseries {
			return fmt.Errorf("wire: point %d: series %d out of range (%d series)", i, s, nseries)
		}
		pts[i] = metric.Point{Series: s, Time: pt[i], Value: pv[i]}
	}
	dst.Rejects = DecodeRejects(dst.Rejects, src.GetRejects())
	return nil
}

// decodeSeries sets dst.Series to the dictionary's series ids (dst.Series
// is empty, its capacity reused). Runs of consecutive ids (series sent in
// the order they were defined in: the steady state of a scrape) are copied
// in one go.
func (d *StreamDecoder) decodeSeries(ids []uint32, dst *metric.Batch) error {
	ser := d.ser
	out := grow(dst.Series, len(ids))
	dst.Series = out
	if d.ShareLabels {
		for i := 0; i < len(ids); {
			id := ids[i]
			if int(id) >= len(ser) {
				return outOfSync(i, id, len(ser))
			}
			// The run of ids id, id+1, ...
			j := i + 1
			for j < len(ids) && ids[j] == ids[j-1]+1 && int(ids[j]) < len(ser) {
				j++
			}
			copy(out[i:j], ser[id:int(id)+j-i])
			i = j
		}
		return nil
	}
	nlabels := 0
	for i, id := range ids {
		if int(id) >= len(ser) {
			return outOfSync(i, id, len(ser))
		}
		nlabels += len(ser[id].Labels)
	}
	// Every series gets its own label slice, from one slab.
	slab := make([]metric.Label, nlabels)
	for i, id := range ids {
		s := &ser[id]
		o := &out[i]
		o.Name = s.Name
		if n := len(s.Labels); n > 0 {
			ls := slab[:n:n]
			slab = slab[n:]
			copy(ls, s.Labels)
			o.Labels = ls
		} else {
			o.Labels = s.Labels
		}
	}
	return nil
}

func outOfSync(i int, id uint32, n int) error {
	return fmt.Errorf("wire: series %d: stream series id %d is not defined on this stream (%d defined): the sender is out of sync", i, id, n)
}

// apply validates and applies src's dictionary changes.
func (d *StreamDecoder) apply(src *pluginpb.Batch) error {
	strs, ser, sets := d.strs, d.ser, d.sets
	bytes := d.bytes
	if src.GetResetDictionary() {
		strs, ser, sets, bytes = nil, nil, nil, 0
	}
	newStrs, defs := src.GetStrings(), src.GetSeries()
	if len(newStrs) == 0 && len(defs) == 0 {
		if src.GetResetDictionary() {
			d.strs, d.ser, d.sets, d.bytes = nil, nil, nil, 0
		}
		return nil
	}
	if int(src.GetStringBase()) != len(strs) {
		return fmt.Errorf("wire: new strings start at stream id %d, this stream has %d: the sender is out of sync", src.GetStringBase(), len(strs))
	}
	if int(src.GetSeriesBase()) != len(ser) {
		return fmt.Errorf("wire: new series start at stream id %d, this stream has %d: the sender is out of sync", src.GetSeriesBase(), len(ser))
	}
	nstr := len(strs) + len(newStrs)
	// Validate the definitions before changing anything.
	nseries, nlabels := 0, 0
	for i := 0; i < len(defs); {
		if i+2 > len(defs) {
			return fmt.Errorf("wire: series definitions truncated at %d", i)
		}
		n := int(defs[i+1])
		if n > (len(defs)-i-2)/2 {
			return fmt.Errorf("wire: new series %d: %d labels overrun the definitions", nseries, n)
		}
		if int(defs[i]) >= nstr {
			return fmt.Errorf("wire: new series %d: name string id %d out of range (%d strings)", nseries, defs[i], nstr)
		}
		for _, r := range defs[i+2 : i+2+2*n] {
			if int(r) >= nstr {
				return fmt.Errorf("wire: new series %d: label string id %d out of range (%d strings)", nseries, r, nstr)
			}
		}
		nseries++
		nlabels += n
		i += 2 + 2*n
	}
	for _, s := range newStrs {
		bytes += len(s) + 32
	}
	bytes += nseries*seriesCost + nlabels*labelCost
	if len(ser)+nseries > 2*DefaultMaxSeries || bytes > 2*DefaultMaxBytes {
		return fmt.Errorf("wire: the stream dictionary would grow to %d series, ~%d bytes, past twice the limits: the sender does not reset it", len(ser)+nseries, bytes)
	}
	// Copy the new strings out of the message (they must not keep it, or
	// a larger buffer it was decoded from, alive).
	for _, s := range newStrs {
		strs = append(strs, strings.Clone(s))
	}
	// Series with the same label refs (a host's GPU with many fields)
	// share one label slice, whichever batch defines them: the dictionary
	// is read-only.
	if sets == nil && nlabels > 0 {
		sets = make(map[uint64][]metric.Label)
	}
	var slab []metric.Label
	for i := 0; i < len(defs); {
		n := int(defs[i+1])
		s := metric.Series{Name: strs[defs[i]]}
		if n > 0 {
			refs := defs[i+2 : i+2+2*n]
			h := uint64(n)
			for _, r := range refs {
				h = mix(h, uint64(r))
			}
			if ls, ok := sets[h]; ok && labelsOf(ls, refs, strs) {
				s.Labels = ls
			} else {
				if len(slab) < n {
					slab = make([]metric.Label, max(n, min(nlabels, 1024)))
				}
				ls := slab[:n:n]
				slab = slab[n:]
				for j := 0; j < n; j++ {
					ls[j] = metric.Label{Key: strs[refs[2*j]], Value: strs[refs[2*j+1]]}
				}
				s.Labels = ls
				sets[h] = ls
				bytes += labelSetCost
			}
		}
		ser = append(ser, s)
		i += 2 + 2*n
	}
	d.strs, d.ser, d.sets, d.bytes = strs, ser, sets, bytes
	return nil
}

// labelsOf reports whether ls is made of the strings refs refers to
// (pairs of key and value string ids).
func labelsOf(ls []metric.Label, refs []uint32, strs []string) bool {
	if 2*len(ls) != len(refs) {
		return false
	}
	for j := range ls {
		if !sameString(ls[j].Key, strs[refs[2*j]]) || !sameString(ls[j].Value, strs[refs[2*j+1]]) {
			return false
		}
	}
	return true
}

// hashTable is an open-addressing (linear probing) multimap from a hash
// to series ids + 1 (0 marks an empty slot, tombstone a removed entry), at
// most half full counting tombstones. It keeps the low 32 bits of each
// hash (8 bytes an entry): they place the entry (tables stay far below 2^32
// slots) and filter candidates. Equal hashes get several slots; callers
// verify each candidate.
type hashTable struct {
	slots []hashEntry
	n     int
}

type hashEntry struct {
	h  uint32 // low 32 bits of the hash
	id uint32
}

func (t *hashTable) mask() uint64 { return uint64(len(t.slots) - 1) }

// tombstone marks a removed entry (ids are series ids + 1, far below it).
const tombstone = ^uint32(0)

// remove marks the entry (h, id) removed.
func (t *hashTable) remove(h uint64, id uint32) {
	if len(t.slots) == 0 {
		return
	}
	m := t.mask()
	for i := h & m; t.slots[i].id != 0; i = (i + 1) & m {
		if t.slots[i].h == uint32(h) && t.slots[i].id == id {
			t.slots[i].id = tombstone
			return
		}
	}
}

func (t *hashTable) insert(h uint64, id uint32) {
	if 2*(t.n+1) > len(t.slots) {
		// Rebuild without the tombstones, at most half full.
		old := t.slots
		live := 0
		for _, e := range old {
			if e.id != 0 && e.id != tombstone {
				live++
			}
		}
		size := 64
		for size < 4*(live+1) {
			size *= 2
		}
		t.slots = make([]hashEntry, size)
		t.n = 0
		for _, e := range old {
			if e.id != 0 && e.id != tombstone {
				t.insert(uint64(e.h), e.id)
			}
		}
	}
	m := t.mask()
	i := h & m
	for t.slots[i].id != 0 {
		i = (i + 1) & m
	}
	t.slots[i] = hashEntry{h: uint32(h), id: id}
	t.n++
}
