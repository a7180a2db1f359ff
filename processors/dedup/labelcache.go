package dedup

import (
	"unsafe"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// labelSet caches, for one label slice a caller keeps handing in (a
// LabelReader's labels are the sdk's stream dictionary's, the same slice
// batch after batch), the labels' hash and the states of the series seen
// with it, by name: such a series costs no hashing and no lookup in the
// series table.
//
// A hit is checked, never trusted: the labels must still equal the copy
// taken when the set was made (same keys and values; a slice rewritten in
// place is a miss), the name must equal the cached one, and the state must
// not have been forgotten. Owned by its Dedup, used under its mutex.
type labelSet struct {
	labels sdk.Labels // a copy of the label headers (the strings are shared)
	lab    key        // labelsKey(labels)
	names  []string
	states []*seriesState // parallel to names
	index  map[string]int // names' positions, once there are many
	next   int            // where the next name is expected (series come in the same order)
	used   uint64         // the batch it was last used in (Dedup.batch)
	made   uint64         // the batch it was made in
}

// manyNames is the count of names from which a labelSet indexes them (a
// scan of fewer, only when series come in a new order, is cheaper than the
// index's memory).
const manyNames = 64

// labelSetOf returns the cached set of ls, made or remade as needed, and
// the labels' hash. It returns no set when ls has no labels (the cache is
// keyed by the slice's backing array), or when sets are on trial again
// (see adaptSets) and ls is not among the eighth of slices they are tried
// with.
func (d *Dedup) labelSetOf(ls sdk.Labels) (*labelSet, key) {
	if len(ls) == 0 {
		return nil, d.labelsKey(ls)
	}
	set := d.findSet(&ls[0])
	if set != nil && set.used == d.batch && len(ls) == len(set.labels) {
		// Checked (or made) in this batch already, against a slice with
		// the same address and length: this one (sameSlice), unchanged
		// since (nobody writes the batch during the call).
		return set, set.lab
	}
	if set != nil && set.matches(ls) {
		set.used = d.batch
		return set, set.lab
	}
	lab := d.labelsKey(ls)
	if d.setsPause > 0 && lab.a%8 != 0 {
		return nil, lab
	}
	set = &labelSet{labels: append(sdk.Labels(nil), ls...), lab: lab, used: d.batch, made: d.batch}
	d.sets[&ls[0]] = set
	d.indexSet(&ls[0], set)
	return set, lab
}

// setSlot is one slot of Dedup.setTab: a label slice's first element (the
// key of Dedup.sets; holding it keeps the backing array, so the address
// cannot be reused for another slice while the slot lives) and its set.
// Owned by its Dedup's setTab, used under the Dedup's mutex.
type setSlot struct {
	at  *sdk.Label
	set *labelSet
}

// setTab is an index of Dedup.sets, the map consulted for every series a
// batch brings under a new label slice (under make bench's scrape shape,
// dcgm-exporter's order, by field then GPU: every series): open addressing
// with linear probing, at most half full, slots placed by the address's
// Fibonacci hash, no deletions (the sweeps rebuild it). It holds exactly the
// entries of Dedup.sets: indexSet after every store into the map,
// reindexSets after deletions. Owned by its Dedup, used under its mutex.
type setTab struct {
	slots []setSlot // len a power of two (or 0)
	shift uint8     // 64 - log2(len(slots))
}

// slot is the home slot of p: a hash of its address (Go's heap objects do
// not move, and p is a heap object: Process's batch leaks to the heap).
func (t *setTab) slot(p *sdk.Label) uint64 {
	return uint64(uintptr(unsafe.Pointer(p))) * 0x9e3779b97f4a7c15 >> t.shift
}

// findSet is d.sets[p], from the index.
func (d *Dedup) findSet(p *sdk.Label) *labelSet {
	t := &d.setTab
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.slot(p); ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.at == p {
			return sl.set
		}
		if sl.at == nil {
			return nil
		}
	}
}

// indexSet records d.sets[p] = set (already stored in the map) in the
// index, growing it to stay at most half full.
func (d *Dedup) indexSet(p *sdk.Label, set *labelSet) {
	t := &d.setTab
	if 2*len(d.sets) > len(t.slots) {
		d.reindexSets()
		return
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.slot(p); ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.at == p || sl.at == nil {
			sl.at, sl.set = p, set
			return
		}
	}
}

// reindexSets rebuilds the index from d.sets, sized for it (at least 4
// slots per set, so that it takes a few stores before it grows again).
func (d *Dedup) reindexSets() {
	t := &d.setTab
	if len(d.sets) == 0 {
		t.slots, t.shift = nil, 0
		return
	}
	bits := 4
	for 1<<bits < 4*len(d.sets) {
		bits++
	}
	t.slots, t.shift = make([]setSlot, 1<<bits), uint8(64-bits)
	mask := uint64(len(t.slots) - 1)
	for p, set := range d.sets {
		i := t.slot(p)
		for t.slots[i].at != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = setSlot{p, set}
	}
}

// matches reports whether ls still holds what the set was made from.
func (s *labelSet) matches(ls sdk.Labels) bool {
	if len(ls) != len(s.labels) {
		return false
	}
	if sameHeaders(ls, s.labels) { // the usual case: nobody wrote into ls
		return true
	}
	for i := range ls {
		if ls[i] != s.labels[i] {
			return false
		}
	}
	return true
}

// sameHeaders reports whether a and b (of equal length) hold the same
// label headers: every key and value has the same data pointer and length
// in both, so their contents are equal (strings are immutable). Compared
// as one block of memory (one call, vectorised) instead of string by
// string. A false answer says nothing: equal strings may lie apart.
func sameHeaders(a, b sdk.Labels) bool {
	if len(a) == 0 {
		return true
	}
	n := len(a) * int(unsafe.Sizeof(sdk.Label{}))
	return unsafe.String((*byte)(unsafe.Pointer(&a[0])), n) == unsafe.String((*byte)(unsafe.Pointer(&b[0])), n)
}

// find returns the live state cached for name, or nil.
func (s *labelSet) find(name string) *seriesState {
	j := s.next
	if j >= len(s.names) || s.names[j] != name {
		var ok bool
		if j, ok = s.position(name); !ok {
			return nil
		}
	}
	s.next = j + 1
	if st := s.states[j]; !st.gone {
		return st
	}
	return nil
}

func (s *labelSet) position(name string) (int, bool) {
	if s.index != nil {
		j, ok := s.index[name]
		return j, ok
	}
	for j, n := range s.names {
		if n == name {
			return j, true
		}
	}
	return 0, false
}

// remember caches st as the state of series name.
func (s *labelSet) remember(name string, st *seriesState) {
	if j, ok := s.position(name); ok {
		s.states[j] = st
		return
	}
	s.names = append(s.names, name)
	s.states = append(s.states, st)
	if s.index != nil {
		s.index[name] = len(s.names) - 1
	} else if len(s.names) > manyNames {
		s.index = make(map[string]int, len(s.names))
		for j, n := range s.names {
			s.index[n] = j
		}
	}
}

// sweepSets forgets the sets not used since batch since (their slices
// went out of use: a stream restarted, or a caller hands in fresh labels
// every batch) and drops forgotten states from the others.
func (d *Dedup) sweepSets(since uint64) {
	deleted := false
	defer func() {
		if deleted {
			d.reindexSets()
		}
	}()
	for p, set := range d.sets {
		if set.used < since {
			delete(d.sets, p)
			deleted = true
			continue
		}
		live := 0
		for j, st := range set.states {
			if !st.gone {
				set.names[live], set.states[live] = set.names[j], st
				live++
			}
		}
		if live < len(set.states) {
			clear(set.names[live:])
			clear(set.states[live:])
			set.names, set.states, set.next = set.names[:live], set.states[:live], 0
			if set.index != nil {
				set.index = nil
				if live > manyNames {
					set.index = make(map[string]int, live)
					for j, n := range set.names {
						set.index[n] = j
					}
				}
			}
		}
	}
	d.setsSwept = d.batch
}

// adaptSets turns the label sets off for a while when a batch shows that
// the caller does not share label slices between batches: known series
// arrive under slices never seen while the slice they came under before was
// used in one batch only (counted in fresh), more often than cached sets
// hit. Sets would then cost allocations and save nothing. (A stream that
// restarts also brings known series under new slices, but their old slices
// served many batches: not counted.) Sets are tried again after 16 batches,
// then after twice as many each time they fail again (up to 1024 batches);
// a batch where they pay resets that.
func (d *Dedup) adaptSets(hits, fresh int) {
	if d.setsOff > 0 {
		d.setsOff--
		return
	}
	enough := 64
	if d.setsPause > 0 {
		enough = 8 // on trial with an eighth of the slices
	}
	if fresh < enough || fresh <= hits {
		if hits > 2*fresh {
			d.setsPause = 0
		}
		return
	}
	d.setsPause = min(max(2*d.setsPause, 16), 1024)
	d.setsOff = d.setsPause
	d.sets = make(map[*sdk.Label]*labelSet) // clear would keep its table
	d.reindexSets()
	for _, st := range d.series {
		st.set = nil
	}
	for _, st := range d.clash {
		st.set = nil
	}
}
