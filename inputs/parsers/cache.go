package parsers

import (
	"slices"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// seriesCache remembers, across the payloads that one parser state handles,
// the series built for each row identity, so that a row seen before (the
// same GPU and metric, scraped again) costs one map lookup instead of
// splitting and sorting its labels again and building a series key.
//
// Ownership: a seriesCache belongs to one parser state, which the parser's
// sync.Pool hands to one Parse call at a time; it is not safe for
// concurrent use. Cached names, label templates and strings are never
// handed out mutable: a batch gets its own copy of each label slice
// (processors may change labels in place); the strings are shared.
//
// Size: the cache is emptied at the end of a payload once it holds more
// than maxCachedSeries entries or about maxCacheBytes of keys (it may grow
// beyond that during one large payload, never between payloads). Each state
// of the pool (about one per concurrent Parse call) has its own cache.
type seriesCache struct {
	in    interner                 // label and name strings
	rows  map[string]*cachedSeries // row identity key -> series
	canon map[string]*cachedSeries // series key (name, labels) -> series
	bytes int                      // approximate memory held by keys
	gen   uint64                   // payload counter
	ckey  []byte
	slab  labelSlab // label slices of the current payload's batch
	// noRows turns the row cache off (row always misses): every row takes
	// the slow path. Tests compare against it.
	noRows bool
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
	maxCachedSeries = 1 << 15
	maxCacheBytes   = 16 << 20
)

func newSeriesCache(noRows bool) seriesCache {
	return seriesCache{in: make(interner), rows: make(map[string]*cachedSeries), canon: make(map[string]*cachedSeries), noRows: noRows}
}

// beginPayload starts a payload: no series is in its batch yet.
func (c *seriesCache) beginPayload() {
	c.gen++
	c.slab = labelSlab{}
}

// endPayload drops the label slab (it belongs to the batch now) and empties
// the cache when it has grown too large.
func (c *seriesCache) endPayload() {
	c.slab = labelSlab{}
	if len(c.rows)+len(c.canon) > 2*maxCachedSeries || c.bytes > maxCacheBytes {
		clear(c.rows)
		clear(c.canon)
		clear(c.in)
		c.bytes = 0
	}
}

// row returns the series of a row identity key, or nil.
func (c *seriesCache) row(key []byte) *cachedSeries {
	if c.noRows {
		return nil
	}
	return c.rows[string(key)]
}

// setRow remembers the series of a row identity key.
func (c *seriesCache) setRow(key []byte, e *cachedSeries) {
	if c.noRows {
		return
	}
	if _, ok := c.rows[string(key)]; !ok {
		c.rows[string(key)] = e
		c.bytes += len(key) + 64
	}
}

// series returns the cached series (name, ls), adding it when new. ls must
// be sorted with unique keys; it is copied.
func (c *seriesCache) series(name string, ls []sdk.Label) *cachedSeries {
	k := appendSeriesKey(c.ckey[:0], name, ls)
	c.ckey = k
	if e := c.canon[string(k)]; e != nil {
		return e
	}
	e := &cachedSeries{name: name}
	if len(ls) > 0 {
		e.labels = slices.Clone(ls)
	}
	c.canon[string(k)] = e
	c.bytes += len(k) + 32*len(ls) + 96
	return e
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
		e.id = b.AddSeries(e.name, c.slab.takeHint(e.labels, rows))
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
