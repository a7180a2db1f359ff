// Package dedup is the dedup processor: it drops a point whose (series,
// sample time) it already passed within a time window, however late the
// copy arrives, so that redelivered messages do not reach the outputs twice.
// Optionally it also suppresses points whose value did not change.
//
// Series identity is the metric name plus its sorted labels, hashed into
// 128 bits with two randomly seeded hashes (hash/maphash); a (series, time)
// entry is kept as a 128-bit key, so two different points are confused with
// probability about 2^-128 per pair. A label slice handed in batch after
// batch is cached with its series' states (labelSet), checked on each hit.
package dedup

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Name is the plugin type name: [[processors.dedup]].
const Name = "dedup"

// Description is the one-line description of the plugin.
const Description = "Drop points whose series and time were already seen within a window; optionally suppress unchanged values"

// SampleConfig is the documented sample TOML table of the plugin.
//
//go:embed sample.conf
var SampleConfig string

// Defaults.
const (
	DefaultWindow         = 10 * time.Minute
	DefaultMaxEntries     = 2_000_000
	DefaultSuppressMaxAge = 5 * time.Minute
)

// bucketsPerWindow is how finely the window is cut for pruning: entries live
// at most window*(1+1/bucketsPerWindow) of sample time.
const bucketsPerWindow = 16

// Dedup is the dedup processor and its configuration, decoded from the
// plugin's TOML table. Create it with New.
//
// State: per series (keyed by its 128-bit hash) the sorted sample times seen
// within the window, and the suppression state; per time bucket (1/16 of
// the window) the number of remembered times, to evict the oldest when
// max_entries is reached. A point costs one check against its series' times
// (usually only the newest), and a series one map lookup per batch, or
// none when its label set (labelSet) is cached.
//
// Concurrency: Process calls are serialised by an internal mutex (the
// plugin does not implement sdk.Concurrent: order matters to it, so the
// agent calls it serially). Stats may be called at any time.
type Dedup struct {
	// Window is how far back, in sample time from the newest sample time
	// seen, a copy is recognised (default 10m).
	Window sdk.Duration `toml:"window"`
	// MaxEntries caps the remembered (series, time) entries (default
	// 2,000,000); over it the oldest time buckets are evicted.
	MaxEntries int `toml:"max_entries"`
	// SuppressUnchanged drops a point whose value equals the series'
	// previous value, until SuppressMaxAge has passed since the last point
	// passed on for that series (default false).
	SuppressUnchanged bool `toml:"suppress_unchanged"`
	// SuppressMaxAge is the longest run of suppressed points: a point is
	// passed on at least this often per series (default 5m).
	SuppressMaxAge sdk.Duration `toml:"suppress_max_age"`

	log hclog.Logger
	now func() time.Time

	mu        sync.Mutex
	ready     bool
	seedA     maphash.Seed
	seedB     maphash.Seed
	window    int64
	width     int64 // bucket width, ns
	maxAge    int64
	series    map[uint64]*seriesState // by key.a (fast 64-bit map); state.key verifies
	clash     map[key]*seriesState    // series whose key.a clashed with another's
	buckets   []bucketCount           // ascending by bucket number
	entries   int
	wm        int64 // newest sample time seen (clamped to now+window)
	hasWM     bool
	floor     int64                    // times below it were forgotten (pruned or evicted): copies pass
	swept     int64                    // floor at the last sweep
	states    []*seriesState           // by series index, current batch
	hashes    []key                    // by series index, current batch
	setOf     []*labelSet              // by series index, current batch
	sets      map[*sdk.Label]*labelSet // by the backing array of a label slice
	setTab    setTab                   // index of sets, for the lookups
	batch     uint64                   // Process calls so far
	setsSwept uint64                   // batch of the last sweep of sets
	setsOff   int                      // batches left with sets off (see adaptSets)
	setsPause int                      // how many batches sets went off for last time
	keyBuf    []byte
	remap     []int32
	stats     counters
}

// key is a 128-bit series hash.
type key struct{ a, b uint64 }

// seriesState is one series' state. Owned by its Dedup (and pointed at by
// its label sets), used under its mutex.
type seriesState struct {
	key   key
	times timeStore // sample times seen, ascending, >= roughly floor
	set   *labelSet // the label set it was last found under (see adaptSets)
	gone  bool      // forgotten: no longer in the series table
	// suppress_unchanged
	hasLast bool
	bits    uint64 // value bits of the newest point
	emitted int64  // time of the last point passed on
	seen    int64  // time of the newest point (passed on or suppressed)
}

type bucketCount struct {
	bn int64 // bucket number: time / width
	n  int   // times remembered in it
}

type counters struct {
	seen, out, duplicates, expired, evicted, suppressed, rejected, stateResets atomic.Uint64
	entries                                                                    atomic.Int64
}

// Stats are the processor's counters since it started.
type Stats struct {
	// Seen is the number of points received.
	Seen uint64
	// Out is the number of points passed on.
	Out uint64
	// Duplicates counts points dropped because their (series, time) was
	// already seen within the window.
	Duplicates uint64
	// Expired counts points older than the window (or than evicted
	// entries): passed on unchecked.
	Expired uint64
	// Evicted counts entries forgotten because of max_entries.
	Evicted uint64
	// Suppressed counts points dropped by suppress_unchanged.
	Suppressed uint64
	// Rejected counts points that referred to a missing series.
	Rejected uint64
	// SuppressStateResets counts how often the per-series state of
	// suppress_unchanged was emptied because it exceeded max_entries.
	SuppressStateResets uint64
	// Entries is the number of (series, time) entries remembered now.
	Entries int64
}

// New returns a processor with the default configuration.
func New() *Dedup {
	return &Dedup{
		Window:         sdk.Duration(DefaultWindow),
		MaxEntries:     DefaultMaxEntries,
		SuppressMaxAge: sdk.Duration(DefaultSuppressMaxAge),
		log:            hclog.NewNullLogger(),
		now:            time.Now,
	}
}

// SetLogger sets the logger (the default discards everything).
func (d *Dedup) SetLogger(l hclog.Logger) {
	if l == nil {
		l = hclog.NewNullLogger()
	}
	d.log = l
}

// Validate checks the configuration (sdk.Validator).
func (d *Dedup) Validate() error {
	var errs []error
	if d.Window.D() <= 0 {
		errs = append(errs, fmt.Errorf("window must be above 0, got %s", d.Window.D()))
	}
	if d.MaxEntries <= 0 {
		errs = append(errs, fmt.Errorf("max_entries must be above 0, got %d", d.MaxEntries))
	}
	if d.SuppressMaxAge.D() <= 0 {
		errs = append(errs, fmt.Errorf("suppress_max_age must be above 0, got %s", d.SuppressMaxAge.D()))
	}
	return errors.Join(errs...)
}

// Init prepares the state (sdk.Initializer). Process calls it itself when
// the caller did not.
func (d *Dedup) Init(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return sdk.Permanent(fmt.Errorf("dedup: %w", err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.init()
	return nil
}

func (d *Dedup) init() {
	if d.log == nil {
		d.log = hclog.NewNullLogger()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.Window <= 0 {
		d.Window = sdk.Duration(DefaultWindow)
	}
	if d.MaxEntries <= 0 {
		d.MaxEntries = DefaultMaxEntries
	}
	if d.SuppressMaxAge <= 0 {
		d.SuppressMaxAge = sdk.Duration(DefaultSuppressMaxAge)
	}
	d.seedA, d.seedB = maphash.MakeSeed(), maphash.MakeSeed()
	d.window = int64(d.Window)
	d.width = max(d.window/bucketsPerWindow, 1)
	d.maxAge = int64(d.SuppressMaxAge)
	d.series = make(map[uint64]*seriesState)
	d.clash = make(map[key]*seriesState)
	d.sets = make(map[*sdk.Label]*labelSet)
	d.floor = math.MinInt64
	d.swept = math.MinInt64
	d.ready = true
}

// Stats returns the counters.
func (d *Dedup) Stats() Stats {
	c := &d.stats
	return Stats{
		Seen: c.seen.Load(), Out: c.out.Load(), Duplicates: c.duplicates.Load(), Expired: c.expired.Load(),
		Evicted: c.evicted.Load(), Suppressed: c.suppressed.Load(), Rejected: c.rejected.Load(),
		SuppressStateResets: c.stateResets.Load(), Entries: c.entries.Load(),
	}
}

// floorDiv is a/b rounded towards minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// seriesKey hashes a series' identity: name and labels. The name and the
// labels are hashed apart (each with both seeds) and combined: lab is the
// labels' hash, which consecutive series sharing one label slice (a GPU's
// fields) reuse (see labelsKey).
func (d *Dedup) seriesKey(name string, lab key) key {
	return key{maphash.String(d.seedA, name) ^ lab.a, maphash.String(d.seedB, name) ^ lab.b}
}

// labelsKey hashes a label set: each key and value, a 0 after a key, a 1
// after a value.
func (d *Dedup) labelsKey(ls sdk.Labels) key {
	k := d.keyBuf[:0]
	for _, l := range ls {
		k = append(k, l.Key...)
		k = append(k, 0)
		k = append(k, l.Value...)
		k = append(k, 1)
	}
	d.keyBuf = k
	return key{maphash.Bytes(d.seedA, k), maphash.Bytes(d.seedB, k)}
}

// sameSlice reports whether a and b are the same slice: same backing
// array, same length. Within one Process call (the batch is the callee's,
// nobody writes it meanwhile) the same slice has the same contents.
func sameSlice(a, b sdk.Labels) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// Process drops duplicate (and, when configured, unchanged) points of b in
// place and returns it (sdk.Processor). A batch left with no points and no
// rejects is dropped: Process returns nil, which the agent treats as
// delivered.
func (d *Dedup) Process(ctx context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dedup: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ready {
		d.init()
	}
	d.batch++
	nIn := len(b.Series)
	if cap(d.hashes) < nIn {
		d.hashes = make([]key, nIn)
		d.states = make([]*seriesState, nIn)
		d.setOf = make([]*labelSet, nIn)
	}
	hashes, states, setOf := d.hashes[:nIn], d.states[:nIn], d.setOf[:nIn]
	var prevLabels sdk.Labels
	var set *labelSet
	hits, fresh := 0, 0
	var lab key
	for i := range b.Series {
		s := &b.Series[i]
		if i == 0 || !sameSlice(s.Labels, prevLabels) {
			prevLabels = s.Labels
			if d.setsOff == 0 {
				set, lab = d.labelSetOf(s.Labels)
			} else {
				set, lab = nil, d.labelsKey(s.Labels)
			}
		}
		setOf[i] = set
		if set != nil {
			if states[i] = set.find(s.Name); states[i] != nil {
				hits++
				continue
			}
		}
		hashes[i] = d.seriesKey(s.Name, lab)
	}
	// Apart from the hashing, the lookups (cache misses, most of them) of
	// consecutive series overlap.
	for i, st := range states {
		if st != nil {
			continue
		}
		if st = d.lookup(hashes[i]); st != nil {
			states[i] = st
			if set := setOf[i]; set != nil {
				if prev := st.set; prev != nil && prev != set && prev.used == prev.made {
					fresh++ // under a new slice, the last one served one batch
				}
				st.set = set
				set.remember(b.Series[i].Name, st)
			}
		}
	}
	d.adaptSets(hits, fresh)
	horizon := d.nowNanos() + d.window // the watermark never moves past it

	var dups, expired, evicted, suppressed, rejected uint64
	pts := b.Points
	w := 0
	for i := range pts {
		p := pts[i]
		if int(p.Series) >= nIn {
			rejected++
			b.Reject(fmt.Sprintf("dedup: point refers to series %d, batch has %d", p.Series, nIn), "", nil)
			continue
		}
		t := p.Time
		if t < d.floor || (d.hasWM && t < d.wm-d.window) {
			expired++
			pts[w] = p
			w++
			continue
		}
		st := states[p.Series]
		if st == nil {
			h := hashes[p.Series]
			if st = d.lookup(h); st == nil { // the same series may sit at another index
				st = d.add(h)
			}
			states[p.Series] = st
		}
		if !st.insert(t) {
			dups++
			continue
		}
		d.count(t)
		if !d.hasWM || t > d.wm {
			d.wm, d.hasWM = min(t, max(horizon, d.wm)), true
		}
		for d.entries > d.MaxEntries {
			evicted += d.dropOldest()
		}
		if d.SuppressUnchanged && d.suppress(st, t, p.Value) {
			suppressed++
			continue
		}
		pts[w] = p
		w++
	}
	clear(states) // drop references until the next batch
	clear(setOf)
	b.Points = pts[:w]
	d.prune()
	if len(d.sets) > 2*len(d.series)+1024 { // fresh label slices every batch
		d.sweepSets(d.batch)
	}
	d.compact(b)

	c := &d.stats
	c.seen.Add(uint64(len(pts)))
	c.out.Add(uint64(w))
	c.entries.Store(int64(d.entries))
	if dups+expired+evicted+suppressed+rejected > 0 {
		c.duplicates.Add(dups)
		c.expired.Add(expired)
		c.evicted.Add(evicted)
		c.suppressed.Add(suppressed)
		c.rejected.Add(rejected)
		d.log.Debug("batch deduplicated", "points", len(pts), "duplicates", dups, "expired", expired,
			"evicted_entries", evicted, "suppressed", suppressed, "rejected", rejected)
	}
	if evicted > 0 {
		d.log.Warn("max_entries reached: oldest entries evicted, their copies will pass", "max_entries", d.MaxEntries,
			"evicted", evicted)
	}
	if len(b.Points) == 0 && len(b.Rejects) == 0 {
		return nil, nil
	}
	return []*sdk.Batch{b}, nil
}

func (d *Dedup) nowNanos() int64 { return d.now().UnixNano() }

// lookup returns the state of series h, or nil.
func (d *Dedup) lookup(h key) *seriesState {
	s := d.series[h.a]
	if s == nil || s.key == h {
		return s
	}
	return d.clash[h]
}

// add creates the state of series h (absent).
func (d *Dedup) add(h key) *seriesState {
	s := &seriesState{key: h}
	if _, taken := d.series[h.a]; taken {
		d.clash[h] = s
	} else {
		d.series[h.a] = s
	}
	return s
}

// forget removes the state s.
func (d *Dedup) forget(s *seriesState) {
	s.gone, s.times, s.set = true, timeStore{}, nil // a label set may still point at it
	if d.series[s.key.a] == s {
		delete(d.series, s.key.a)
	} else {
		delete(d.clash, s.key)
	}
}

// insert records t and reports whether it is new.
func (s *seriesState) insert(t int64) bool { return s.times.insert(t) }

// count adds one remembered time to t's bucket.
func (d *Dedup) count(t int64) {
	bn := floorDiv(t, d.width)
	d.entries++
	if n := len(d.buckets); n > 0 && d.buckets[n-1].bn == bn { // the common case
		d.buckets[n-1].n++
		return
	}
	i, found := slices.BinarySearchFunc(d.buckets, bn, func(c bucketCount, bn int64) int { return cmp.Compare(c.bn, bn) })
	if found {
		d.buckets[i].n++
		return
	}
	d.buckets = slices.Insert(d.buckets, i, bucketCount{bn: bn, n: 1})
}

// dropOldest forgets the oldest bucket: times below its end are forgotten
// (their copies pass from now on; the series' slices are trimmed at the
// next sweep). It returns the number of entries forgotten.
func (d *Dedup) dropOldest() uint64 {
	c := d.buckets[0]
	d.buckets = slices.Delete(d.buckets, 0, 1)
	d.entries -= c.n
	if end := (c.bn + 1) * d.width; end > d.floor {
		d.floor = end
	}
	return uint64(c.n)
}

// prune forgets buckets wholly older than the window and, when the floor
// moved, sweeps the series: trims their times, removes idle ones.
func (d *Dedup) prune() {
	if !d.hasWM {
		return
	}
	limit := d.wm - d.window
	for len(d.buckets) > 0 && (d.buckets[0].bn+1)*d.width <= limit {
		d.dropOldest()
	}
	if d.floor == d.swept && len(d.series) <= 2*d.MaxEntries {
		return
	}
	d.swept = d.floor
	defer d.sweepSets(d.setsSwept)
	stale := d.wm - max(d.window, d.maxAge)
	sweep := func(s *seriesState) {
		s.times.dropBelow(d.floor)
		if s.times.len() == 0 && (!s.hasLast || s.seen < stale) {
			d.forget(s)
		}
	}
	for _, s := range d.clash {
		sweep(s)
	}
	for _, s := range d.series {
		sweep(s)
	}
	if len(d.series) > 2*d.MaxEntries { // suppression state of many idle series
		for _, s := range d.clash {
			if s.times.len() == 0 {
				d.forget(s)
			}
		}
		for _, s := range d.series {
			if s.times.len() == 0 {
				d.forget(s)
			}
		}
		d.stats.stateResets.Add(1)
		d.log.Warn("suppress_unchanged state over its bound: idle series forgotten", "max_entries", d.MaxEntries)
	}
}

// suppress reports whether the point (time t, value v) repeats the series'
// previous value within suppress_max_age, and updates the state. Points
// older than the series' newest pass and change nothing.
func (d *Dedup) suppress(s *seriesState, t int64, v float64) bool {
	bits := math.Float64bits(v)
	switch {
	case !s.hasLast:
	case t < s.seen:
		return false // out of order: pass, keep the state
	case bits == s.bits && t-s.emitted < d.maxAge:
		s.seen = t
		return true
	}
	s.hasLast, s.bits, s.emitted, s.seen = true, bits, t, t
	return false
}

// compact removes series no point refers to any more.
func (d *Dedup) compact(b *sdk.Batch) {
	n := len(b.Series)
	if cap(d.remap) < n {
		d.remap = make([]int32, n)
	}
	remap := d.remap[:n]
	for i := range remap {
		remap[i] = -1
	}
	for _, p := range b.Points {
		remap[p.Series] = 0
	}
	j := int32(0)
	for i := range remap {
		if remap[i] == 0 {
			remap[i] = j
			if int(j) != i { // most batches keep every series: no copy
				b.Series[j] = b.Series[i]
			}
			j++
		}
	}
	if int(j) == n {
		return
	}
	for i := range b.Points {
		b.Points[i].Series = uint32(remap[b.Points[i].Series])
	}
	clear(b.Series[j:])
	b.Series = b.Series[:j]
}

// ReadsLabelsOnly implements sdk.LabelReader: Dedup never writes into the
// label slices it receives (it reads them, or builds new ones), so the sdk
// may hand it slices shared between batches instead of a copy per series.
func (*Dedup) ReadsLabelsOnly() bool { return true }

// ReleasesBatches implements sdk.BatchReleaser: it changes a batch in place and returns it, keeping nothing of its
// arrays once the call returned, so the sdk may decode later batches into
// them.
func (*Dedup) ReleasesBatches() bool { return true }
