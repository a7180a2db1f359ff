// Package gpunormalize is the gpu_normalize processor: it turns GPU samples
// from DCGM (dcgm-exporter, dcgm-csv, gpu-tel-json) and nvidia-smi
// --query-gpu into the canonical vocabulary of CANONICAL_METRICS.md (package
// sdk/gpumetrics): canonical metric names in base SI units, canonical labels
// only, no sample for values that are not numbers (NaN, ±Inf, DCGM blank
// sentinels).
//
// The work is per series, not per point: each source series (name plus
// labels) is resolved once into an output series, a unit conversion and a
// sentinel check, and the result is cached across batches, so the steady
// state costs a few map lookups per source series in a batch (by exact ids;
// see the Normalize fields) and a tight loop over the points, with no
// allocation.
package gpunormalize

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Name is the plugin type name: [[processors.gpu_normalize]].
const Name = "gpu_normalize"

// Description is the one-line description of the plugin.
const Description = "Convert DCGM and nvidia-smi GPU samples into the canonical metric names, units and labels"

// SampleConfig is the documented sample TOML table of the plugin.
//
//go:embed sample.conf
var SampleConfig string

// DefaultCacheSize is the default bound of the cross-batch series cache.
const DefaultCacheSize = 65536

// Mapping adds or overrides the rule for one source metric name
// ([[processors.gpu_normalize.mapping]]).
type Mapping struct {
	// Source is the source metric name, matched case-insensitively and
	// without an nvidia-smi unit suffix ("memory.used [MiB]" = "memory.used").
	Source string `toml:"source"`
	// Name is the output metric name. Required unless Drop is set.
	Name string `toml:"name"`
	// Scale multiplies the source value (default 1). It must be a finite
	// number above 0. A factor whose reciprocal is an integer (0.01, 0.001)
	// divides by that integer, which rounds exactly.
	Scale *float64 `toml:"scale"`
	// Drop drops every sample of the field.
	Drop bool `toml:"drop"`
}

// Normalize is the gpu_normalize processor and its configuration, decoded
// from the plugin's TOML table. Create it with New (the zero value lacks the
// defaults and a logger).
//
// Concurrency: Process calls are serialised by an internal mutex (the plugin
// does not implement sdk.Concurrent, so the agent calls it serially anyway).
// Stats may be called at any time from any goroutine.
//
// Ownership: the label sets of the output series are shared with the
// processor's cache, with other batches and with the other output series
// of the same source label set: treat them as read-only. The processor
// keeps no reference to the received batches or their label slices (it
// stores copies of the labels, and slice addresses only as hints that it
// checks against the copies).
type Normalize struct {
	// DropUnknown drops fields that have no rule instead of keeping them
	// under a derived name.
	DropUnknown bool `toml:"drop_unknown"`
	// KeepLabels lists source label keys (case-insensitive) kept as they are
	// besides the canonical labels, e.g. ["job"]. The output key is spelled
	// as written here.
	KeepLabels []string `toml:"keep_labels"`
	// LabelMap renames source label keys (case-insensitive) to output keys,
	// e.g. {node = "host"}. A mapped label wins over the built-in sources of
	// the same canonical label.
	LabelMap map[string]string `toml:"label_map"`
	// Mapping adds or overrides metric rules.
	Mapping []Mapping `toml:"mapping"`
	// CacheSize bounds the cross-batch cache of resolved source series
	// (default DefaultCacheSize). When a batch starts with the cache over
	// the bound, the cache is emptied and rebuilt.
	CacheSize int `toml:"cache_size"`

	log hclog.Logger

	mu       sync.Mutex
	compiled bool
	rules    map[string]rule
	labels   map[string]labelSource // lower-case source key -> target
	keep     map[string]string      // lower-case source key -> output key
	// The cache is built in layers, each keyed by exact ids, never by an
	// unverified hash:
	//   - nameIDs: source metric name (content) -> names[id] (its rule);
	//   - aliases: identity of a source label slice (address and length of
	//     its backing array, as the sdk shares one slice per label set
	//     batch after batch) -> sets[id]; a hint only: a set is compared
	//     with the slice's contents before use, once per batch and slice;
	//   - setIDs: 64-bit hash of the label contents -> sets[id], compared
	//     too (the fallback for callers passing fresh slices);
	//   - cache: (label set id, name id) -> canonical id: each label set
	//     has a window of cache indexed by name id (the fields of a GPU
	//     share a label set: a dense table), names too far past the
	//     window for its use are in sparse;
	//   - canonIDs: (output name id, output label set id) -> canonical id.
	nameIDs  map[string]int32
	names    []nameInfo
	outNames map[string]int32 // output metric name -> id
	aliases  aliasTable       // labelsKey of a source label slice -> set id
	setIDs   map[uint64]int32 // label contents hash -> set id
	sets     []labelSet
	outIDs   map[uint64]int32 // output label contents hash -> outSets index
	outSets  []sdk.Labels
	cache    []int32          // label set windows: 0 none, 1 drop, else canonical id + 2
	sparse   map[uint64]int32 // set id << 32 | name id -> canonical id, -1: drop
	cached   int              // entries in cache and sparse
	canonIDs map[uint64]int32 // output name id << 32 | outSets index -> canonical id
	seed     maphash.Seed
	canon    []stamp  // by canonical id: its position in the current batch
	canonKey []uint64 // by canonical id: its canonIDs key
	outName  []string // by output name id
	gen      uint32
	key      []byte
	info     []seriesInfo // by source series index, current batch
	used     []bool       // by output series index, current batch
	lastName string       // memo of the batch's previous series
	lastNID  int32
	lastKey  uint64
	lastSet  int32
	// Whether this batch uses aliases: not while a caller passes fresh
	// label slices (the previous batch found its sets by hash, not by
	// address), except every 16th batch, to notice when that changes.
	useAliases          bool
	aliasHits, hashHits int
	loggedUn            map[string]struct{}

	stats counters
}

// nameInfo is the resolution of a source metric name.
type nameInfo struct {
	conv     conversion
	sentinel bool
	drop     bool  // a mapping drops it, or drop_unknown and no rule
	unknown  bool  // no rule
	out      int32 // output name id (outNames), -1 when drop
}

// labelSet is a source label set: a copy of the labels (to verify a slice
// found by its address against) and the resolved output label set.
type labelSet struct {
	labels sdk.Labels // a copy: the source slice may change after a batch
	out    int32      // outSets index, -1: not resolved yet
	vgen   uint32     // gen in which vkey was last verified to hold labels
	vkey   uint64     // labelsKey verified in vgen
	base   int        // window in Normalize.cache: [base, base+size)
	size   int32
	count  int32 // entries in the window
}

// stamp is the position of an output series in the current batch (valid
// when gen is the batch's).
type stamp struct {
	gen uint32
	idx uint32
}

type seriesInfo struct {
	out  int32 // output series index, -1: dropped field
	name int32 // names index
}

type counters struct {
	samples, out, nonFinite, sentinel, droppedField, rejected atomic.Uint64
	unknownSeries, cacheResets                                atomic.Uint64
}

// Stats are the processor's counters since it started.
type Stats struct {
	// Samples is the number of points received.
	Samples uint64
	// Out is the number of points passed on.
	Out uint64
	// NonFinite counts points dropped because the value was NaN or ±Inf.
	NonFinite uint64
	// Sentinel counts points dropped because the value was a DCGM blank
	// sentinel (the source had no value).
	Sentinel uint64
	// DroppedField counts points of fields dropped by drop_unknown or a
	// mapping with drop = true.
	DroppedField uint64
	// Rejected counts points that referred to a series the batch did not
	// have; each became a reject in the batch.
	Rejected uint64
	// UnknownSeries counts source series resolved with no rule (kept under
	// a derived name or dropped).
	UnknownSeries uint64
	// CacheResets counts how often the series cache was emptied because it
	// exceeded cache_size.
	CacheResets uint64
}

// New returns a processor with the default configuration.
func New() *Normalize {
	return &Normalize{CacheSize: DefaultCacheSize, log: hclog.NewNullLogger()}
}

// SetLogger sets the logger (the default discards everything).
func (n *Normalize) SetLogger(l hclog.Logger) {
	if l == nil {
		l = hclog.NewNullLogger()
	}
	n.log = l
}

// validName reports whether s matches [a-zA-Z_(colon)][a-zA-Z0-9_(colon)]*,
// colons allowed only when colon is set (metric names, not label keys).
func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		case c == ':' && colon:
		default:
			return false
		}
	}
	return true
}

// Validate checks the configuration (sdk.Validator).
func (n *Normalize) Validate() error {
	var errs []error
	if n.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("cache_size must not be negative, got %d", n.CacheSize))
	}
	sources := make(map[string]int)
	for i, m := range n.Mapping {
		at := fmt.Sprintf("mapping[%d]", i)
		key := sourceKey(m.Source)
		switch {
		case key == "":
			errs = append(errs, fmt.Errorf("%s: source is empty", at))
		default:
			if j, dup := sources[key]; dup {
				errs = append(errs, fmt.Errorf("%s: source %q already mapped by mapping[%d]", at, m.Source, j))
			}
			sources[key] = i
		}
		switch {
		case m.Drop && m.Name != "":
			errs = append(errs, fmt.Errorf("%s (%s): drop = true and name %q are exclusive", at, m.Source, m.Name))
		case !m.Drop && m.Name == "":
			errs = append(errs, fmt.Errorf("%s (%s): name is empty (set drop = true to drop the field)", at, m.Source))
		case !m.Drop && !validName(m.Name, true):
			errs = append(errs, fmt.Errorf("%s (%s): name %q is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", at, m.Source, m.Name))
		}
		if m.Scale != nil {
			s := *m.Scale
			switch {
			case m.Drop:
				errs = append(errs, fmt.Errorf("%s (%s): scale is meaningless with drop = true", at, m.Source))
			case math.IsNaN(s) || math.IsInf(s, 0) || s <= 0:
				errs = append(errs, fmt.Errorf("%s (%s): scale must be a finite number above 0, got %v", at, m.Source, s))
			}
		}
	}
	targets := make(map[string]bool)
	for k, v := range n.LabelMap {
		switch {
		case strings.TrimSpace(k) == "":
			errs = append(errs, errors.New("label_map: empty source label key"))
		case !validName(v, false):
			errs = append(errs, fmt.Errorf("label_map: %q -> %q: target is not a valid label name", k, v))
		}
		targets[v] = true
	}
	seenKeep := make(map[string]bool)
	for _, k := range n.KeepLabels {
		lk := strings.ToLower(k)
		switch {
		case !validName(k, false):
			errs = append(errs, fmt.Errorf("keep_labels: %q is not a valid label name", k))
		case isCanonicalLabel(lk):
			errs = append(errs, fmt.Errorf("keep_labels: %q is a canonical label, always kept", k))
		case targets[k]:
			errs = append(errs, fmt.Errorf("keep_labels: %q is also a label_map target", k))
		case seenKeep[lk]:
			errs = append(errs, fmt.Errorf("keep_labels: %q listed twice", k))
		}
		seenKeep[lk] = true
	}
	return errors.Join(errs...)
}

// Init compiles the configuration (sdk.Initializer). Process calls it
// itself when the caller did not.
func (n *Normalize) Init(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return sdk.Permanent(fmt.Errorf("gpu_normalize: %w", err))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.compile()
	return nil
}

// compile builds the lookup tables; n.mu must be held.
func (n *Normalize) compile() {
	if n.log == nil {
		n.log = hclog.NewNullLogger()
	}
	if n.CacheSize <= 0 {
		n.CacheSize = DefaultCacheSize
	}
	n.rules = buildRules(n.Mapping)
	n.labels = builtinLabels()
	for k, v := range n.LabelMap {
		n.labels[strings.ToLower(strings.TrimSpace(k))] = labelSource{target: v, priority: priorityLabelMap}
	}
	n.keep = make(map[string]string, len(n.KeepLabels))
	for _, k := range n.KeepLabels {
		n.keep[strings.ToLower(k)] = k
	}
	n.loggedUn = make(map[string]struct{})
	n.resetCache()
	n.compiled = true
}

func (n *Normalize) resetCache() {
	n.nameIDs = make(map[string]int32)
	clear(n.names)
	n.names = n.names[:0]
	n.outNames = make(map[string]int32)
	n.aliases.reset()
	n.setIDs = make(map[uint64]int32)
	clear(n.sets)
	n.sets = n.sets[:0]
	n.outIDs = make(map[uint64]int32)
	clear(n.outSets)
	n.outSets = n.outSets[:0]
	n.cache = n.cache[:0]
	n.sparse = make(map[uint64]int32)
	n.cached = 0
	n.canonIDs = make(map[uint64]int32, 1024)
	n.seed = maphash.MakeSeed()
	n.canon = n.canon[:0]
	n.canonKey = n.canonKey[:0]
	clear(n.outName)
	n.outName = n.outName[:0]
	n.gen = 0
	n.lastName, n.lastNID, n.lastKey, n.lastSet = "", -1, 0, -1
}

// Stats returns the counters.
func (n *Normalize) Stats() Stats {
	c := &n.stats
	return Stats{
		Samples: c.samples.Load(), Out: c.out.Load(), NonFinite: c.nonFinite.Load(),
		Sentinel: c.sentinel.Load(), DroppedField: c.droppedField.Load(), Rejected: c.rejected.Load(),
		UnknownSeries: c.unknownSeries.Load(), CacheResets: c.cacheResets.Load(),
	}
}

// isSentinel reports whether v is one of DCGM's "blank" markers: the 32-bit
// integer ones (0x7ffffff0..0x7fffffff), the 64-bit ones (0x7ffffffffffffff0
// and up, which all round to 2^63 as float64) and the float ones
// (140737488355328.0 = 2^47 and the few values just above).
func isSentinel(v float64) bool {
	if v < 2147483632 {
		return false
	}
	return v <= 2147483647 || (v >= 0x1p47 && v < 0x1p47+16) || v >= 0x1p63
}

// Process normalizes b in place and returns it (sdk.Processor). A batch left
// with no points and no rejects is dropped (nil is returned).
func (n *Normalize) Process(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gpu_normalize: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.compiled {
		n.compile()
	}
	if n.cached > n.CacheSize {
		n.log.Debug("series cache over its bound, emptied", "entries", n.cached, "cache_size", n.CacheSize)
		n.resetCache()
		n.stats.cacheResets.Add(1)
	}
	n.gen++
	if n.gen == 0 { // wrapped: old stamps could look current
		clear(n.canon)
		for i := range n.sets {
			n.sets[i].vgen = 0
		}
		n.gen = 1
	}
	n.useAliases = n.hashHits < 64 || n.aliasHits >= n.hashHits/8 || n.gen%16 == 0
	n.aliasHits, n.hashHits = 0, 0
	if n.aliases.n > 2*len(n.sets)+1024 {
		// A caller passing fresh label slices: forget their addresses.
		n.aliases.reset()
	}
	n.lastName, n.lastNID, n.lastKey, n.lastSet = "", -1, 0, -1

	// Per series: resolve, and rewrite b.Series in place. Output series j
	// is written only after every source series <= j was read (j <= i).
	nIn := len(b.Series)
	if cap(n.info) < nIn {
		n.info = make([]seriesInfo, nIn)
	}
	info := n.info[:nIn]
	nOut := 0
	for i := range nIn {
		canon, name, set := n.lookup(&b.Series[i])
		if canon < 0 {
			info[i] = seriesInfo{out: -1}
			continue
		}
		st := &n.canon[canon]
		if st.gen != n.gen {
			st.gen, st.idx = n.gen, uint32(nOut)
			// The output series is (output name, output labels) of the
			// source's name and label set, as its canonical id says.
			o := &b.Series[nOut]
			o.Name, o.Labels = n.outName[n.names[name].out], n.outSets[n.sets[set].out]
			nOut++
		}
		info[i] = seriesInfo{out: int32(st.idx), name: name}
	}
	clear(b.Series[nOut:nIn])
	n.lastName = "" // keep nothing of the batch
	b.Series = b.Series[:nOut]

	// Per point: one tight loop.
	if cap(n.used) < nOut {
		n.used = make([]bool, nOut)
	}
	used := n.used[:nOut]
	clear(used)
	var nonFinite, sentinel, dropped, rejected uint64
	pts := b.Points
	names := n.names
	w := 0
	for k := range pts {
		p := pts[k]
		if int(p.Series) >= nIn {
			rejected++
			b.Reject(fmt.Sprintf("gpu_normalize: point refers to series %d, batch has %d", p.Series, nIn), "", nil)
			continue
		}
		si := &info[p.Series]
		if si.out < 0 {
			dropped++
			continue
		}
		v := p.Value
		if v-v != 0 { // NaN or ±Inf
			nonFinite++
			continue
		}
		nm := &names[si.name]
		if nm.sentinel && isSentinel(v) {
			sentinel++
			continue
		}
		pts[w] = sdk.Point{Series: uint32(si.out), Time: p.Time, Value: v * nm.conv.mul / nm.conv.div}
		used[si.out] = true
		w++
	}
	b.Points = pts[:w]

	// Drop output series whose points were all dropped.
	j := 0
	for k := range used {
		if used[k] {
			j++
		}
	}
	if j < nOut {
		remap := n.info[:nOut] // reuse: info is not needed any more
		j = 0
		for k := range nOut {
			if used[k] {
				remap[k].out = int32(j)
				b.Series[j] = b.Series[k]
				j++
			}
		}
		for k := range b.Points {
			b.Points[k].Series = uint32(remap[b.Points[k].Series].out)
		}
		clear(b.Series[j:])
		b.Series = b.Series[:j]
	}

	c := &n.stats
	c.samples.Add(uint64(len(pts)))
	c.out.Add(uint64(w))
	if nonFinite+sentinel+dropped+rejected > 0 {
		c.nonFinite.Add(nonFinite)
		c.sentinel.Add(sentinel)
		c.droppedField.Add(dropped)
		c.rejected.Add(rejected)
		n.log.Debug("samples without a value dropped", "non_finite", nonFinite, "sentinel", sentinel,
			"dropped_field", dropped, "rejected", rejected)
	}
	if len(b.Points) == 0 && len(b.Rejects) == 0 {
		return nil, nil
	}
	return []*sdk.Batch{b}, nil
}

// labelsKey returns the identity of a label slice (the address of its
// backing array and its length) as one word, or 0 when it does not fit
// (an address over 48 bits, 65,536 labels or more, no labels).
func labelsKey(ls sdk.Labels) uint64 {
	if len(ls) == 0 || len(ls) >= 1<<16 {
		return 0
	}
	p := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(ls))))
	if p>>48 != 0 {
		return 0
	}
	return p<<16 | uint64(len(ls))
}

// lookup returns the canonical id of a source series (-1: dropped) and the
// id of its name, from the cache or resolved and cached.
func (n *Normalize) lookup(s *sdk.Series) (canon, name, set int32) {
	name = n.lastNID
	if name < 0 || s.Name != n.lastName {
		name = n.nameID(s.Name)
		n.lastName, n.lastNID = s.Name, name
	}
	set = n.lastSet
	if k := labelsKey(s.Labels); k == 0 || k != n.lastKey || set < 0 {
		set = n.setID(s.Labels, k)
		n.lastKey, n.lastSet = k, set
	}
	if st := &n.sets[set]; uint32(name) < uint32(st.size) {
		if v := n.cache[st.base+int(name)]; v != 0 {
			return v - 2, name, set
		}
	}
	if len(n.sparse) > 0 {
		if c, ok := n.sparse[uint64(set)<<32|uint64(uint32(name))]; ok {
			return c, name, set
		}
	}
	c := n.resolve(s, set, name)
	n.store(set, name, c)
	return c, name, set
}

// store caches the canonical id c (-1: dropped) of the series (set, name):
// in the set's window, grown (moved to the end of n.cache, twice as large)
// while at least half of it would be used, else in n.sparse.
func (n *Normalize) store(set, name, c int32) {
	n.cached++
	st := &n.sets[set]
	if name >= st.size {
		need := name + 1
		if need > 2*st.count+4 {
			n.sparse[uint64(set)<<32|uint64(uint32(name))] = c
			return
		}
		size := max(need, 2*st.size)
		base := len(n.cache)
		n.cache = slices.Grow(n.cache, int(size))
		n.cache = append(n.cache, n.cache[st.base:st.base+int(st.size)]...)
		n.cache = append(n.cache, make([]int32, size-st.size)...)
		st.base, st.size = base, size
	}
	n.cache[st.base+int(name)] = c + 2
	st.count++
}

// nameID returns the id of a source metric name, adding it if new.
func (n *Normalize) nameID(name string) int32 {
	if id, ok := n.nameIDs[name]; ok {
		return id
	}
	nm := nameInfo{out: -1}
	r, ok := n.rules[sourceKey(name)]
	switch {
	case !ok && n.DropUnknown:
		nm.unknown, nm.drop = true, true
	case !ok:
		r = rule{name: derivedName(name), conv: convOne, sentinel: true, unknown: true}
		nm.unknown = true
	case r.drop:
		nm.drop = true
	}
	if !nm.drop {
		nm.conv, nm.sentinel = r.conv, r.sentinel
		out, ok := n.outNames[r.name]
		if !ok {
			out = int32(len(n.outName))
			n.outNames[r.name] = out
			n.outName = append(n.outName, r.name)
		}
		nm.out = out
	}
	id := int32(len(n.names))
	n.names = append(n.names, nm)
	n.nameIDs[strings.Clone(name)] = id
	return id
}

// setID returns the id of the source label set ls (k = labelsKey(ls)),
// adding it if new. A set found by the slice's address is compared with
// the slice once per batch; one found by a hash is compared always.
func (n *Normalize) setID(ls sdk.Labels, k uint64) int32 {
	if !n.useAliases {
		k = 0
	}
	if k != 0 {
		if id, ok := n.aliases.get(k); ok {
			st := &n.sets[id]
			if st.vgen == n.gen && st.vkey == k {
				n.aliasHits++
				return id
			}
			if sameLabels(st.labels, ls) {
				st.vgen, st.vkey = n.gen, k
				n.aliasHits++
				return id
			}
		}
	}
	h := n.labelsHash(ls)
	id, ok := n.setIDs[h]
	if ok && !sameLabels(n.sets[id].labels, ls) {
		ok = false // a collision: a set of its own, not indexed by hash
		h = 0
	}
	if ok {
		n.hashHits++
	} else {
		id = int32(len(n.sets))
		n.sets = append(n.sets, labelSet{labels: slices.Clone(ls), out: -1})
		if h != 0 {
			n.setIDs[h] = id
		}
	}
	if k != 0 {
		n.aliases.put(k, id)
		n.sets[id].vgen, n.sets[id].vkey = n.gen, k
	}
	return id
}

// sameLabels reports whether a and b hold the same labels in the same
// order. Strings with the same data pointer and length are equal without
// reading them (the sdk's label slices share their strings).
func sameLabels(a, b sdk.Labels) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if len(x.Key) != len(y.Key) || len(x.Value) != len(y.Value) {
			return false
		}
		if unsafe.StringData(x.Key) != unsafe.StringData(y.Key) && x.Key != y.Key {
			return false
		}
		if unsafe.StringData(x.Value) != unsafe.StringData(y.Value) && x.Value != y.Value {
			return false
		}
	}
	return true
}

// labelsHash returns a 64-bit hash of the contents of ls (never 0).
func (n *Normalize) labelsHash(ls sdk.Labels) uint64 {
	k := n.key[:0]
	for _, l := range ls {
		k = append(k, l.Key...)
		k = append(k, 0)
		k = append(k, l.Value...)
		k = append(k, 1)
	}
	n.key = k
	return maphash.Bytes(n.seed, k) | 1
}

// resolve computes the canonical id of the source series s, whose label
// set and name ids are given.
func (n *Normalize) resolve(s *sdk.Series, set, name int32) int32 {
	nm := &n.names[name]
	if nm.unknown {
		n.stats.unknownSeries.Add(1)
		if _, logged := n.loggedUn[s.Name]; !logged && len(n.loggedUn) < 1024 {
			n.loggedUn[s.Name] = struct{}{}
			n.log.Debug("field has no rule", "field", s.Name, "dropped", n.DropUnknown)
		}
	}
	if nm.drop {
		return -1
	}
	st := &n.sets[set]
	if st.out < 0 {
		labels := n.resolveLabels(st.labels)
		h := n.labelsHash(labels)
		id, ok := n.outIDs[h]
		if ok && !slices.Equal(n.outSets[id], labels) {
			ok = false // a collision: not indexed by hash
			h = 0
		}
		if !ok {
			id = int32(len(n.outSets))
			n.outSets = append(n.outSets, labels)
			if h != 0 {
				n.outIDs[h] = id
			}
		}
		st.out = id
	}
	ck := uint64(nm.out)<<32 | uint64(st.out)
	id, ok := n.canonIDs[ck]
	if ok && (int(id) >= len(n.canon) || n.canonKey[id] != ck) {
		ok = false // the index is wrong: a canonical series of its own
	}
	if !ok {
		id = int32(len(n.canon))
		n.canonIDs[ck] = id
		n.canon = append(n.canon, stamp{})
		n.canonKey = append(n.canonKey, ck)
	}
	return id
}

// resolveLabels maps source labels to the output label set, sorted.
func (n *Normalize) resolveLabels(in sdk.Labels) sdk.Labels {
	type pick struct {
		value    string
		priority int
	}
	picks := make(map[string]pick, 8)
	var out sdk.Labels
	offer := func(target, value string, priority int) {
		if value == "" {
			return
		}
		if p, ok := picks[target]; !ok || priority < p.priority {
			picks[target] = pick{value, priority}
		}
	}
	for _, l := range in {
		if l.Value == "" {
			continue
		}
		lk := strings.ToLower(l.Key)
		if src, ok := n.labels[lk]; ok {
			offer(src.target, l.Value, src.priority)
		} else if lk == "instance" {
			offer(sdk.LabelHost, hostOf(l.Value), priorityInstance)
		}
		if k, ok := n.keep[lk]; ok {
			if _, dup := picks[k]; !dup {
				picks[k] = pick{l.Value, 0}
			}
		}
	}
	out = make(sdk.Labels, 0, len(picks))
	for k, p := range picks {
		out = append(out, sdk.Label{Key: k, Value: p.value})
	}
	return out.Sort()
}

// hostOf returns a Prometheus instance ("host:port", "[v6]:port") without
// its port.
func hostOf(instance string) string {
	if h, _, err := net.SplitHostPort(instance); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(instance, "["), "]")
}

// ReadsLabelsOnly implements sdk.LabelReader: Normalize never writes into the
// label slices it receives (it reads them, or builds new ones), so the sdk
// may hand it slices shared between batches instead of a copy per series.
func (*Normalize) ReadsLabelsOnly() bool { return true }

// ReleasesBatches implements sdk.BatchReleaser: it changes a batch in place and returns it, keeping nothing of its
// arrays once the call returned, so the sdk may decode later batches into
// them.
func (*Normalize) ReleasesBatches() bool { return true }

// aliasTable maps label slice identities (labelsKey, never 0) to label set
// ids: an open-addressing table (linear probing, no deletion, emptied as a
// whole), a key and its value in one slot. It is a Normalize's, used under
// its mutex.
type aliasTable struct {
	slots []aliasSlot // len a power of 2, at most half full
	shift uint        // 64 - log2(len(slots))
	n     int
}

type aliasSlot struct {
	key uint64 // 0: empty
	val int32
}

// reset empties the table and frees its slots.
func (t *aliasTable) reset() {
	*t = aliasTable{}
}

func (t *aliasTable) index(k uint64) int {
	return int((k * 0x9e3779b97f4a7c15) >> t.shift)
}

func (t *aliasTable) get(k uint64) (int32, bool) {
	if t.n == 0 {
		return 0, false
	}
	mask := len(t.slots) - 1
	for i := t.index(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			return s.val, true
		}
		if s.key == 0 {
			return 0, false
		}
	}
}

func (t *aliasTable) put(k uint64, v int32) {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		size := max(64, 2*len(old))
		t.slots = make([]aliasSlot, size)
		t.shift = uint(64 - bits.TrailingZeros(uint(size)))
		t.n = 0
		for _, s := range old {
			if s.key != 0 {
				t.put(s.key, s.val)
			}
		}
	}
	mask := len(t.slots) - 1
	for i := t.index(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			s.val = v
			return
		}
		if s.key == 0 {
			s.key, s.val = k, v
			t.n++
			return
		}
	}
}
