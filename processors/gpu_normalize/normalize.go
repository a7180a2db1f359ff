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
// state costs one map lookup per source series in a batch and a tight loop
// over the points, with no allocation.
package gpunormalize

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
// processor's cache and with other batches: treat them as read-only.
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
	// cache and canonIDs are keyed by 128-bit hashes of the series keys
	// (two maphash sums under random seeds), not by the ~300-byte keys:
	// ~600 bytes less per series. A canonical id found is checked against
	// canon; a source key cannot be (it is not stored): two source series
	// would have to collide on 128 bits under random seeds (~n²/2¹²⁹).
	cache    map[hkey]cacheEntry // source series key hash -> resolution
	canonIDs map[hkey]int32      // output series key hash -> canonical id
	seeds    [2]maphash.Seed
	canon    []sdk.Series // by canonical id
	stamp    []stamp      // by canonical id: position in the current batch
	gen      uint32
	key      []byte
	ckey     []byte
	info     []seriesInfo // by source series index, current batch
	used     []bool       // by output series index, current batch
	loggedUn map[string]struct{}

	stats counters
}

// hkey is a 128-bit hash of a series key.
type hkey [2]uint64

func (n *Normalize) hash(k []byte) hkey {
	return hkey{maphash.Bytes(n.seeds[0], k), maphash.Bytes(n.seeds[1], k)}
}

type cacheEntry struct {
	canon    int32 // -1: drop the series
	conv     conversion
	sentinel bool
}

type stamp struct {
	gen uint32
	idx uint32
}

type seriesInfo struct {
	out      int32 // output series index, -1: dropped field
	sentinel bool
	conv     conversion
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
	n.cache = make(map[hkey]cacheEntry, 1024)
	n.canonIDs = make(map[hkey]int32, 1024)
	n.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	n.canon = n.canon[:0]
	n.stamp = n.stamp[:0]
	n.gen = 0
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
	if len(n.cache) > n.CacheSize {
		n.log.Debug("series cache over its bound, emptied", "entries", len(n.cache), "cache_size", n.CacheSize)
		n.resetCache()
		n.stats.cacheResets.Add(1)
	}
	n.gen++
	if n.gen == 0 { // wrapped: old stamps could look current
		clear(n.stamp)
		n.gen = 1
	}

	// Per series: resolve, and rewrite b.Series in place. Output series j
	// is written only after every source series <= j was read (j <= i).
	nIn := len(b.Series)
	if cap(n.info) < nIn {
		n.info = make([]seriesInfo, nIn)
	}
	info := n.info[:nIn]
	nOut := 0
	for i := range nIn {
		e := n.lookup(&b.Series[i])
		if e.canon < 0 {
			info[i] = seriesInfo{out: -1}
			continue
		}
		st := &n.stamp[e.canon]
		if st.gen != n.gen {
			st.gen, st.idx = n.gen, uint32(nOut)
			b.Series[nOut] = n.canon[e.canon]
			nOut++
		}
		info[i] = seriesInfo{out: int32(st.idx), sentinel: e.sentinel, conv: e.conv}
	}
	clear(b.Series[nOut:nIn])
	b.Series = b.Series[:nOut]

	// Per point: one tight loop.
	if cap(n.used) < nOut {
		n.used = make([]bool, nOut)
	}
	used := n.used[:nOut]
	clear(used)
	var nonFinite, sentinel, dropped, rejected uint64
	pts := b.Points
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
		if si.sentinel && isSentinel(v) {
			sentinel++
			continue
		}
		pts[w] = sdk.Point{Series: uint32(si.out), Time: p.Time, Value: v * si.conv.mul / si.conv.div}
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

// lookup returns the resolution of a source series, from the cache or
// computed and cached.
func (n *Normalize) lookup(s *sdk.Series) cacheEntry {
	k := append(n.key[:0], s.Name...)
	k = append(k, 0xff)
	for _, l := range s.Labels {
		k = append(k, l.Key...)
		k = append(k, 0)
		k = append(k, l.Value...)
		k = append(k, 1)
	}
	n.key = k
	h := n.hash(k)
	if e, ok := n.cache[h]; ok {
		return e
	}
	e := n.resolve(s)
	n.cache[h] = e
	return e
}

// resolve computes the resolution of a source series.
func (n *Normalize) resolve(s *sdk.Series) cacheEntry {
	r, ok := n.rules[sourceKey(s.Name)]
	if !ok {
		n.stats.unknownSeries.Add(1)
		if _, logged := n.loggedUn[s.Name]; !logged && len(n.loggedUn) < 1024 {
			n.loggedUn[s.Name] = struct{}{}
			n.log.Debug("field has no rule", "field", s.Name, "dropped", n.DropUnknown)
		}
		if n.DropUnknown {
			return cacheEntry{canon: -1}
		}
		r = rule{name: derivedName(s.Name), conv: convOne, sentinel: true, unknown: true}
	}
	if r.drop {
		return cacheEntry{canon: -1}
	}
	labels := n.resolveLabels(s.Labels)
	ck := n.ckey[:0]
	ck = append(ck, r.name...)
	ck = append(ck, 0xff)
	for _, l := range labels {
		ck = append(ck, l.Key...)
		ck = append(ck, 0)
		ck = append(ck, l.Value...)
		ck = append(ck, 1)
	}
	n.ckey = ck
	h := n.hash(ck)
	id, ok := n.canonIDs[h]
	if ok && (n.canon[id].Name != r.name || !slices.Equal(n.canon[id].Labels, labels)) {
		ok = false // a collision: a canonical series of its own, not indexed
		h = hkey{}
	}
	if !ok {
		id = int32(len(n.canon))
		if h != (hkey{}) {
			n.canonIDs[h] = id
		}
		n.canon = append(n.canon, sdk.Series{Name: r.name, Labels: labels})
		n.stamp = append(n.stamp, stamp{})
	}
	return cacheEntry{canon: id, conv: r.conv, sentinel: r.sentinel}
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
