package parsers

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// seriesCache remembers, across the payloads that one parser state handles,
// the series built for each row identity, so that a row seen before (the
// same GPU and metric, scraped again) costs one map lookup instead of
// splitting and sorting its labels again and building a series key.
//
// Keys: the maps are keyed by a 128-bit hash of the identity bytes (two
// maphash sums under random seeds of this cache), not by the bytes
// themselves, so that a cluster's worth of series fits: an entry costs
// ~50 bytes of map plus the series, whose label template (~350 bytes for
// a DCGM series of 11 labels) is shared by every series with the same
// label set (a GPU's ~30 metrics), where a ~350-byte (CSV) or ~600-byte
// (JSON) key used to be stored twice. A series found by its key is checked
// against the stored name and labels (a collision gets a series of its own,
// uncached). The key of a row found again is kept (in an arena, see
// keepKey) while the keys kept take less than maxKeyBytes, and then a
// found row is checked against it: a predicted row costs a comparison, no
// hashing at all. Beyond that bound a row key is not stored, so it cannot
// be checked: two different rows would have to collide on 128 bits under
// seeds chosen at random per cache (probability ~n²/2¹²⁹ for n rows: below
// 10⁻²⁸ for a million), and rows of different lengths never match (the
// length is kept).
//
// Ownership: a seriesCache belongs to one parser state, which the parser's
// statePool hands to one Parse call at a time; it is not safe for
// concurrent use. Cached names, label templates and strings are never
// handed out mutable: a batch gets its own copy of each label slice
// (processors may change labels in place); the strings are shared. With
// Options.SharedLabels (shared) batches get the templates themselves, and
// their owners promise not to modify them.
//
// Size: the cache is emptied at the end of a payload once it holds more
// than maxCachedSeries series or row keys, or about maxCacheBytes (label
// templates, strings, entries), besides at most maxKeyBytes of kept row
// keys; it may grow beyond that during one large payload, never between
// payloads. Each state (one per concurrent Parse call, see statePool) has
// its own cache.
type seriesCache struct {
	in    interner                 // label and name strings
	rows  map[key128]*rowEntry     // row identity hash -> series
	canon map[key128]*cachedSeries // series key hash (name, labels) -> series
	sets  map[key128][]sdk.Label   // label set hash -> its template
	seeds [2]maphash.Seed
	bytes int    // approximate memory held by series and entries
	gen   uint64 // payload counter
	ckey  []byte
	slab  labelSlab // label slices for the batches (a chunk outlives payloads)
	// keyArena is the chunk the kept row keys are carved from; keyBytes
	// counts the bytes of the keys kept.
	keyArena  []byte
	keyBytes  int
	keyBudget int // maxKeyBytes (tests set less)
	// prev is the row the payload's previous line was (nil: unknown): its
	// next predicts this line's row (see row).
	prev *rowEntry
	// noRows turns the row cache off (row always misses): every row takes
	// the slow path. Tests compare against it.
	noRows bool
	// shared hands batches the cached label slices themselves, not
	// copies (Options.SharedLabels): they are never modified here.
	shared bool
}

// key128 is a 128-bit hash of identity bytes.
type key128 [2]uint64

// rowEntry is the series of a row identity, and the length of that
// identity (a further check against hash collisions), its hash, and the
// row that followed it in the last payload that had it (a prediction: a
// host's scrapes list their rows in the same order every time).
type rowEntry struct {
	e    *cachedSeries
	n    int
	h    key128
	next *rowEntry
	tpl  rowTemplate
	key  []byte // the identity key itself (nil: not kept, see maxKeyBytes)
	// aux is a fact a format derives from key once key is kept (key never
	// changes then), 0 until then: for prometheus, 1 + the length of the
	// metric name (see promQuick).
	aux int32
}

// rowTemplate is where the cut fields (timestamp, value) of a row lie,
// told by the lengths of the bytes around them: a before the first cut, b
// between the first and the second, c after the last; n is the number of
// cuts (0 to 2) and flags what the format needs to tell them apart. A
// row's identity key fixes all of these (it holds the bytes around the
// cuts and where they are), so every row with that key has the same
// template. The fast paths use the template of the row predicted to come
// next to find the cut fields of a line without splitting it (see
// seriesCache.rowAt); the key built from what they find is the proof.
//
// A rowTemplate is a plain value, owned by its rowEntry.
type rowTemplate struct {
	a, b, c int32
	n       uint8
	flags   uint8
}

// cachedSeries is one series: its name and labels (sorted, unique keys, no
// empty values; a template, never handed out), and its index in the batch
// of the payload numbered gen.
type cachedSeries struct {
	name   string
	labels []sdk.Label
	gen    uint64
	id     uint32
}

const (
	// maxCachedSeries bounds the series (and, separately, the row keys) a
	// cache holds: the 30,720 series of a 1,024-GPU cluster reporting 30
	// DCGM fields fit four times over.
	maxCachedSeries = 1 << 17
	// maxCacheBytes bounds the memory a cache holds (label templates,
	// strings, map entries): ~16 MiB for the 30,720 series above.
	maxCacheBytes = 64 << 20
	// rowEntryBytes and seriesEntryBytes are what a row key and a series
	// cost besides their strings and labels (map slots, the struct).
	rowEntryBytes    = 96
	seriesEntryBytes = 48 + 64
	// maxKeyBytes bounds the row keys a cache keeps (on top of
	// maxCacheBytes): a row whose key is kept is recognised by comparing
	// keys, without hashing (see seriesCache.row); beyond the bound rows
	// are recognised by their hash alone, as all were before. The 30,720
	// rows of the cluster above keep ~13 MiB (CSV, ~420-byte keys) or
	// ~17 MiB (JSON, ~570-byte keys).
	maxKeyBytes = 32 << 20
	// keyArenaChunk is the size of the chunks the kept keys are carved
	// from.
	keyArenaChunk = 64 << 10
	// labelSetEntryBytes is what a label set costs besides its labels.
	labelSetEntryBytes = 48
	// internBytes is what an interned string costs besides its bytes.
	internBytes = 48
)

func newSeriesCache(noRows bool) seriesCache {
	return seriesCache{
		in:        make(interner),
		rows:      make(map[key128]*rowEntry),
		canon:     make(map[key128]*cachedSeries),
		sets:      make(map[key128][]sdk.Label),
		seeds:     [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		noRows:    noRows,
		keyBudget: maxKeyBytes,
	}
}

// hash returns the 128-bit hash of b.
func (c *seriesCache) hash(b []byte) key128 {
	return key128{maphash.Bytes(c.seeds[0], b), maphash.Bytes(c.seeds[1], b)}
}

// beginPayload starts a payload: no series is in its batch yet. The row
// prediction goes on from the last row of the previous payload: a source
// that sends one row per payload (or a host's rows cut into messages)
// sends them in the same order every time.
func (c *seriesCache) beginPayload() {
	c.gen++
}

// endPayload empties the cache when it has grown too large. The rest of
// the label slab is kept for the next payload's batch: the slices already
// handed out are the batches' (each len == cap, disjoint), so batches may
// share a chunk without sharing a label.
func (c *seriesCache) endPayload() {
	if len(c.rows) > maxCachedSeries || len(c.canon) > maxCachedSeries || c.size() > maxCacheBytes {
		clear(c.rows)
		clear(c.canon)
		clear(c.sets)
		clear(c.in)
		c.bytes = 0
		c.prev = nil
		c.keyArena = nil
		c.keyBytes = 0
	}
}

// size is the approximate memory the cache holds.
func (c *seriesCache) size() int { return c.bytes + internBytes*len(c.in) }

// row returns the series of a row identity key, or nil. The row that
// followed the previous line's row last time is tried first: when the
// payload repeats an earlier one's order, that costs a comparison of the
// key with the stored one (or, for a row whose key is not stored, the
// hash and a comparison) instead of hashing and a map probe (the map of a
// cluster's rows does not fit a CPU cache).
func (c *seriesCache) row(key []byte) *cachedSeries {
	if c.noRows {
		return nil
	}
	prev := c.prev
	if prev != nil {
		if r := prev.next; r != nil {
			if r.is(c, key) {
				c.prev = r
				return r.e
			}
		}
	}
	r := c.lookup(key)
	if r == nil {
		c.prev = nil
		return nil
	}
	if prev != nil {
		prev.next = r
	}
	c.prev = r
	return r.e
}

// is reports whether key is r's. With r's key kept, that is a comparison
// (exact); without it the prediction is checked against the first 64 bits
// of the hash and the length only: one comparison with one known row,
// wrong with probability 2^-64 per line (once in ~600,000 years at a
// million lines a second), where a map lookup compares with every row and
// needs all 128 bits (see seriesCache). A row found again keeps its key.
func (r *rowEntry) is(c *seriesCache, key []byte) bool {
	if r.key != nil {
		return string(r.key) == string(key)
	}
	if r.n != len(key) || r.h[0] != maphash.Bytes(c.seeds[0], key) {
		return false
	}
	r.key = c.keepKey(key)
	return true
}

// matches reports whether the key that head, line and cuts make (head,
// then for each cut the uvarint length and the bytes of line before it,
// then the rest of line: the layout of every row key here) equals r's
// kept key, without building it. False when r's key is not kept.
func (r *rowEntry) matches(head, line []byte, cuts [][2]int) bool {
	k := r.key
	if k == nil || len(k) < len(head) || string(k[:len(head)]) != string(head) {
		return false
	}
	k = k[len(head):]
	var buf [binary.MaxVarintLen64]byte
	prev := 0
	for _, c := range cuts {
		n := binary.PutUvarint(buf[:], uint64(c[0]-prev))
		seg := line[prev:c[0]]
		if len(k) < n+len(seg) || string(k[:n]) != string(buf[:n]) || string(k[n:n+len(seg)]) != string(seg) {
			return false
		}
		k = k[n+len(seg):]
		prev = c[1]
	}
	return string(k) == string(line[prev:])
}

// follow makes r, predicted() and found by matches, the row of the line.
func (c *seriesCache) follow(r *rowEntry) { c.prev = r }

// lookup finds the row of key in the map, or nil. A row whose key is
// stored must equal it (a 128-bit collision is a miss).
func (c *seriesCache) lookup(key []byte) *rowEntry {
	r := c.rows[c.hash(key)]
	if r == nil || r.n != len(key) || (r.key != nil && string(r.key) != string(key)) {
		return nil
	}
	if r.key == nil {
		// Seen again: worth keeping (rows seen once, a cold cache's,
		// are not copied).
		r.key = c.keepKey(key)
	}
	return r
}

// predicted returns the row that followed the previous line's row last
// time (the one the next line probably is), or nil.
func (c *seriesCache) predicted() *rowEntry {
	if c.prev == nil {
		return nil
	}
	return c.prev.next
}

// rowAt is row for a key built from the cut fields that the template of
// r (predicted()) placed: r is tried first, then the map. Either match
// proves the placement (the key holds every byte of the line but the
// cuts, at their offsets). A miss leaves the prediction state as it was,
// for row.
func (c *seriesCache) rowAt(r *rowEntry, key []byte) *cachedSeries {
	if r.is(c, key) {
		c.prev = r
		return r.e
	}
	found := c.lookup(key)
	if found == nil {
		return nil
	}
	if c.prev != nil {
		c.prev.next = found
	}
	c.prev = found
	return found.e
}

// setRow remembers the series of a row identity key (the row of the line
// after the previous row or setRow call) and where its cut fields lie.
// The key itself is kept when the row is found again (see lookup).
func (c *seriesCache) setRow(key []byte, e *cachedSeries, tpl rowTemplate) {
	if c.noRows {
		return
	}
	h := c.hash(key)
	r, ok := c.rows[h]
	if !ok {
		r = &rowEntry{e: e, n: len(key), h: h, tpl: tpl}
		c.rows[h] = r
		c.bytes += rowEntryBytes
	}
	if c.prev != nil && r.n == len(key) {
		c.prev.next = r
	}
	c.prev = r
}

// keepKey returns a copy of key carved from the key arena, or nil once the
// keys kept would exceed maxKeyBytes.
func (c *seriesCache) keepKey(key []byte) []byte {
	if len(key) == 0 || c.keyBytes+len(key) > c.keyBudget {
		return nil
	}
	if cap(c.keyArena)-len(c.keyArena) < len(key) {
		c.keyArena = make([]byte, 0, max(keyArenaChunk, len(key)))
	}
	n := len(c.keyArena)
	c.keyArena = append(c.keyArena, key...)
	c.keyBytes += len(key)
	return c.keyArena[n : n+len(key) : n+len(key)]
}

// series returns the cached series (name, ls), adding it when new. ls must
// be sorted with unique keys; it is copied.
func (c *seriesCache) series(name string, ls []sdk.Label) *cachedSeries {
	k := appendSeriesKey(c.ckey[:0], name, ls)
	c.ckey = k
	h := c.hash(k)
	e := c.canon[h]
	if e != nil && e.name == name && slices.Equal(e.labels, ls) {
		return e
	}
	collision := e != nil
	e = &cachedSeries{name: name, labels: c.labelSet(ls)}
	if !collision {
		c.canon[h] = e
		c.bytes += seriesEntryBytes
	}
	return e
}

// labelSet returns the cached template of label set ls (nil when empty),
// adding a copy when new: the series of one GPU (its ~30 metrics) share
// one slice, which costs a thirtieth of the memory, and lets the batch's
// encoder check the labels once per GPU rather than once per series.
func (c *seriesCache) labelSet(ls []sdk.Label) []sdk.Label {
	if len(ls) == 0 {
		return nil
	}
	k := appendSeriesKey(c.ckey[:0], "", ls)
	c.ckey = k
	h := c.hash(k)
	if t, ok := c.sets[h]; ok && slices.Equal(t, ls) {
		return t
	}
	// Clipped: with SharedLabels an append by a batch's owner must
	// reallocate, never write into the template's spare capacity.
	t := slices.Clip(slices.Clone(ls))
	if _, ok := c.sets[h]; !ok {
		c.sets[h] = t
		c.bytes += labelSetEntryBytes + int(unsafe.Sizeof(sdk.Label{}))*len(ls)
	}
	return t
}

// appendSeriesKey appends an unambiguous key of (name, ls) to k.
func appendSeriesKey(k []byte, name string, ls []sdk.Label) []byte {
	k = appendLenString(k, name)
	for _, l := range ls {
		k = appendLenString(k, l.Key)
		k = appendLenString(k, l.Value)
	}
	return k
}

func appendLenString(k []byte, s string) []byte {
	n := len(s)
	for n >= 0x80 {
		k = append(k, byte(n)|0x80)
		n >>= 7
	}
	k = append(k, byte(n))
	return append(k, s...)
}

// add appends a point of series e to b, adding the series to b first when
// this payload has not used it yet. restBytes and lineLen (what is left of
// the payload, and the length of this row) size the label slab.
func (c *seriesCache) add(b *sdk.Batch, e *cachedSeries, ts int64, v float64, restBytes, lineLen int) {
	b.Add(c.id(b, e, restBytes/(lineLen+1)+1), ts, v)
}

// id returns the index of series e in b, adding it to b first when this
// payload has not used it yet (rows sizes the label slab: about how many
// more series are to come).
func (c *seriesCache) id(b *sdk.Batch, e *cachedSeries, rows int) uint32 {
	if e.gen != c.gen {
		e.gen = c.gen
		ls := e.labels
		if !c.shared {
			ls = c.slab.takeHint(e.labels, rows)
		}
		e.id = b.AddSeries(e.name, ls)
	}
	return e.id
}

// growBatch makes room in b for about rows more points and series, so that
// a fresh batch grows once rather than doubling its way up.
func growBatch(b *sdk.Batch, rows int) {
	rows = min(rows, 1<<16)
	if cap(b.Points)-len(b.Points) < rows {
		b.Points = slices.Grow(b.Points, rows)
	}
	if cap(b.Series)-len(b.Series) < rows {
		b.Series = slices.Grow(b.Series, rows)
	}
}

// statePool hands parser states (scratch buffers and caches) to Parse
// calls, one call per state at a time. Unlike a sync.Pool it never drops a
// state at a garbage collection, and it hands a lone caller the same state
// every time (a stack), wherever the caller's goroutine runs: with a
// sync.Pool a goroutine that moved to another P found no state there and
// built a new one, so one caller's series ended up in several caches, each
// cold. The pool holds as many states as there were concurrent calls at
// most, each with its own bounded cache. Safe for concurrent use.
type statePool[T any] struct {
	// last is the state put back last when no other was free: a lone
	// caller takes and returns it with one atomic swap each, without the
	// mutex. The states on free are the others.
	last atomic.Pointer[T]
	mu   sync.Mutex
	free []*T
	make func() *T
}

// get returns a free state, or a new one.
func (p *statePool[T]) get() *T {
	if st := p.last.Swap(nil); st != nil {
		return st
	}
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		st := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return st
	}
	p.mu.Unlock()
	return p.make()
}

// put returns a state that get handed out. A state left half-way by a
// panic must not be put back.
func (p *statePool[T]) put(st *T) {
	if p.last.CompareAndSwap(nil, st) {
		return
	}
	p.mu.Lock()
	p.free = append(p.free, st)
	p.mu.Unlock()
}
