package postgresql

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/jackc/pgx/v5"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// gpuAttrs are a GPU's identifying and descriptive labels. The key
// identifies it: gpu_uuid, else "host:<host>/gpu:<gpu_index>".
type gpuAttrs struct {
	key, uuid, host, index, model, device, pci, driver string
}

// covers reports whether the stored attributes e already contain every
// non-empty attribute of a (so no update is needed).
func (e *gpuAttrs) covers(a *gpuAttrs) bool {
	return (a.uuid == "" || a.uuid == e.uuid) && (a.host == "" || a.host == e.host) &&
		(a.index == "" || a.index == e.index) && (a.model == "" || a.model == e.model) &&
		(a.device == "" || a.device == e.device) && (a.pci == "" || a.pci == e.pci) &&
		(a.driver == "" || a.driver == e.driver)
}

// merge fills e's empty attributes from a, and lets a's non-empty ones win.
func (e *gpuAttrs) merge(a *gpuAttrs) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&e.uuid, a.uuid)
	set(&e.host, a.host)
	set(&e.index, a.index)
	set(&e.model, a.model)
	set(&e.device, a.device)
	set(&e.pci, a.pci)
	set(&e.driver, a.driver)
}

type gpuEntry struct {
	id    int32
	attrs gpuAttrs
}

// dictCache caches the dictionary tables. Entries are only added after the
// database returned their id, so a cached id always exists in the database
// (ids are never deleted).
type dictCache struct {
	mu        sync.RWMutex
	gpus      map[string]*gpuEntry // entries are never replaced nor removed (labelSet.entry keeps them)
	gpuKeys   map[int32]string
	workloads map[string]int32
	names     map[string]int32
	canon     map[string]int16 // canonical metric name -> column
}

func (d *dictCache) init() {
	d.gpus = map[string]*gpuEntry{}
	d.gpuKeys = map[int32]string{}
	d.workloads = map[string]int32{}
	d.names = map[string]int32{}
	d.canon = make(map[string]int16, len(gpumetrics.Canonical))
	for i, m := range gpumetrics.Canonical {
		d.canon[m.Name] = int16(i)
	}
}

func (d *dictCache) gpuKey(id int32) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.gpuKeys[id]
}

// seriesInfo is what a series of a batch resolves to.
type seriesInfo struct {
	refs   int32     // points referring to the series
	gpu    int32     // gpu_id; 0 = unresolved, -1 = rejected
	wl     int32     // workload_id; 0 = none
	col    int16     // canonical column, -1 = extra metric
	metric int32     // metric_id of an extra metric
	ls     *labelSet // the series' parsed labels (set when resolved)
}

// badText says why s cannot be stored as PostgreSQL text, or "".
func badText(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return "contains a NUL byte"
		}
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	return ""
}

const whyNoIdentity = "series has no GPU identity (needs a gpu_uuid label, or host and gpu_index)"

// labelSet is what a label set resolves to, whatever the metric name: the
// GPU's attributes and key, the workload, and the canonical columns of the
// metric names seen with it. Its dictionary results (hit, gpuID, wlID)
// hold for one batch only (batch == the owning labelCache's epoch); they
// are read again from the dictionary in every batch, as for an uncached
// label set (the GPU's from the dictionary's entry, kept in entry once it
// exists, the workload's by key).
//
// Ownership: a labelSet belongs to the labelCache that made it, so to one
// scratch, so to one Write at a time; it is never shared between
// goroutines. Its strings are the label values of the slice it was parsed
// from (a LabelReader output may keep them).
type labelSet struct {
	// Read for every series (resolve) and point (build) of the set: kept
	// together, first.

	noID  bool // why != ""
	hasWL bool // wlKey != ""

	// Per batch, valid when batch is the cache's epoch (read under the
	// dictionary lock of that batch's resolve).
	hit   bool  // the dictionary holds the GPU with (at least) attrs
	wlOK  bool  // the workload key is in the dictionary
	gpuID int32 // its id, when hit
	wlID  int32 // workload id; 0 = not in the dictionary
	batch uint64

	// The wide row build last found for a point of this set (a memo of
	// scratch.rowIdx), valid when rowBatch is the cache's epoch.
	rowGPU   int32
	row      int32
	rowBatch uint64
	rowT     int64

	// The dictionary's entry for attrs.key once it has one (entries are
	// never replaced: see dictCache.gpus), so later batches skip the map;
	// its fields are read under the dictionary lock.
	entry *gpuEntry

	labels sdk.Labels // copy of the slice's contents when parsed (identity hits are verified against it; the strings are the slice's)
	attrs  gpuAttrs
	wla    [3]string // container, pod, namespace
	wlKey  string    // workload key, "" = none
	why    string    // why the labels cannot be stored (no GPU identity), or ""
	text   string    // checkLabelText(labels), valid when textOK
	textOK bool      // text is computed
	names  []nameCol // metric names seen with the labels, in arrival order
	next   int       // where in names column looks first
}

// nameCol is a metric name's canonical column (-1: an extra metric).
type nameCol struct {
	name string
	col  int16
}

// maxNamesPerSet bounds labelSet.names (names beyond it are looked up in
// the canonical map every time).
const maxNamesPerSet = 256

// parseLabels fills ls (a zero labelSet but for labels) from labels. It does
// not check the text: values equal to cached ones are known good, and
// labelText checks the rest on a cache miss.
func parseLabels(labels sdk.Labels, ls *labelSet) {
	a := &ls.attrs
	for _, l := range labels {
		var dst *string
		switch l.Key {
		case sdk.LabelGPUUUID:
			dst = &a.uuid
		case sdk.LabelHost:
			dst = &a.host
		case sdk.LabelGPUIndex:
			dst = &a.index
		case sdk.LabelGPUModel:
			dst = &a.model
		case sdk.LabelDevice:
			dst = &a.device
		case sdk.LabelPCIBusID:
			dst = &a.pci
		case sdk.LabelDriverVersion:
			dst = &a.driver
		case sdk.LabelContainer:
			dst = &ls.wla[0]
		case sdk.LabelPod:
			dst = &ls.wla[1]
		case sdk.LabelNamespace:
			dst = &ls.wla[2]
		default:
			continue
		}
		*dst = l.Value
	}
	switch {
	case a.uuid != "":
		a.key = a.uuid
	case a.host != "" && a.index != "":
		a.key = "host:" + a.host + "/gpu:" + a.index
	default:
		ls.why = whyNoIdentity
	}
	if ls.wla != [3]string{} {
		ls.wlKey = ls.wla[0] + "\x1f" + ls.wla[1] + "\x1f" + ls.wla[2]
	}
	ls.noID, ls.hasWL = ls.why != "", ls.wlKey != ""
}

// labelText is checkLabelText of ls's labels, computed once.
func (ls *labelSet) labelText() string {
	if !ls.textOK {
		ls.text, ls.textOK = checkLabelText(ls.labels), true
	}
	return ls.text
}

// column returns name's canonical column (-1: not canonical). The series
// of a label set arrive in the same order batch after batch, so the name
// after the last one found (ls.next) is tried first.
func (ls *labelSet) column(d *dictCache, name string) int16 {
	k := ls.next
	if k >= len(ls.names) {
		k = 0
	}
	if k < len(ls.names) && ls.names[k].name == name {
		ls.next = k + 1
		return ls.names[k].col
	}
	for j := range ls.names {
		if ls.names[j].name == name {
			ls.next = j + 1
			return ls.names[j].col
		}
	}
	col, ok := d.canon[name]
	if !ok {
		col = -1
	}
	if len(ls.names) < maxNamesPerSet {
		ls.names = append(ls.names, nameCol{name: name, col: col})
		ls.next = len(ls.names)
	}
	return col
}

// labelCacheGen is the size of a labelCache generation: it holds at most
// twice that many label slices and twice that many label sets.
const labelCacheGen = 4096

// labelCache maps label slices to their parsed labelSet, so that a label
// slice shared by the series of one GPU, and (for a LabelReader) from batch
// to batch, is parsed once; and equal label sets in fresh slices are parsed
// once too.
//
// By identity (address of the first label, and length): a hit is trusted
// only after the slice's contents were compared with its labelSet's copy,
// once per batch (epoch); a slice changed in place, or another slice at a
// reused address, is looked up again by contents. The direct-mapped table
// recent serves most identity lookups; the identity map cur/old the slices
// that collide in it. By contents (an unambiguous encoding of the labels):
// a hit is exact. Both maps are bounded by two generations: when the
// current one is full it becomes the old one, and hits in the old one move
// back to the current one; the table holds at most recentSlots more.
//
// It also maps metric names to canonical columns (cols, see nameSlots).
//
// Ownership: a labelCache belongs to one scratch, so to one Write at a
// time, and is not safe for concurrent use.
type labelCache struct {
	cur, old   map[*sdk.Label]identity
	ccur, cold map[string]*labelSet // by contents
	key        []byte               // content key being built
	epoch      uint64               // the current batch; advanced by next
	last       *labelSet            // the last one parsed: its names size the next one's
	recent     [recentSlots]recentSlice
	cols       [nameSlots]nameSlot // metric name -> canonical column, by the name's address
}

// nameSlots is the size of labelCache.cols, a table from a metric name to
// its canonical column, two-way set-associative, indexed by the address of
// the name's bytes: names that come through the plugin protocol are the
// stream dictionary's strings, the same from series to series and batch to
// batch. A slot is used only when its name is equal to the one looked up
// (equal lengths and bytes, or the same bytes), so a name at another
// address, colliding names or an empty slot only cost the fallback,
// labelSet.column.
const (
	nameSetBits = 9
	nameSlots   = 2 << nameSetBits
)

// nameSlot is a slot of labelCache.cols (owned by the labelCache, so by
// one Write at a time).
type nameSlot struct {
	name string    // kept: its bytes cannot be reused while the slot holds it
	next *nameSlot // the slot of the name that came after this one last (a hint: verified on use)
	col  int16
	ok   bool // the slot is filled (a zero slot must not match "")
}

// nameSetOf hashes the address and length of name (only compared, never
// dereferenced through the hash) to the first of the two slots of its set
// in labelCache.cols.
func nameSetOf(name string) int {
	h := uint64(uintptr(unsafe.Pointer(unsafe.StringData(name)))) ^ uint64(len(name))<<56
	return int((h*0x9E3779B97F4A7C15)>>(64-nameSetBits)) * 2
}

// column returns the canonical column of name (-1: not canonical), seen
// with the label set ls (see nameSlot).
func (c *labelCache) column(d *dictCache, ls *labelSet, name string) int16 {
	return c.nameSlot(d, ls, name).col
}

// nameSlot returns the slot of name: one of its set that holds an equal
// name, else its set's first slot, filled from ls.column (the slot's
// previous name moves to the second).
func (c *labelCache) nameSlot(d *dictCache, ls *labelSet, name string) *nameSlot {
	i := nameSetOf(name)
	set := c.cols[i : i+2 : i+2]
	if e := &set[0]; e.ok && sameString(e.name, name) {
		return e
	}
	if e := &set[1]; e.ok && sameString(e.name, name) {
		return e
	}
	col := ls.column(d, name)
	set[1] = set[0]
	set[0] = nameSlot{name: name, col: col, ok: true}
	return &set[0]
}

// recentSlots is the size of labelCache.recent, a direct-mapped table of
// label slices by address (and length) with the batch in which each was
// last verified against its set's copy of the contents. It serves most
// lookups without a map: the series of a few GPUs interleaved (a Prometheus
// scrape lists a host's GPUs metric by metric) within a batch, and the
// slices a LabelReader gets again batch after batch (verified once per
// batch, then trusted for the rest of it). A slot holds its slice and set
// alive, so the address cannot be reused while the slot refers to it; a
// slice changed in place fails the verification and is looked up again. It
// is sized for a few thousand GPUs; colliding slices fall back to the maps.
const (
	recentSlotBits = 12
	recentSlots    = 1 << recentSlotBits
)

// recentSlice is a slot of labelCache.recent (owned by the labelCache, so
// by one Write at a time).
type recentSlice struct {
	p       *sdk.Label
	n       int
	checked uint64 // batch (epoch) in which the slice was last found equal to ls.labels
	ls      *labelSet
}

// recentSlot hashes the address p (only compared, never dereferenced
// through the hash) to a slot of labelCache.recent.
func recentSlot(p *sdk.Label) int {
	return int((uint64(uintptr(unsafe.Pointer(p))) * 0x9E3779B97F4A7C15) >> (64 - recentSlotBits))
}

// identity is a label slice's labelSet and the batch in which the slice was
// last verified against it.
type identity struct {
	ls      *labelSet
	checked uint64
}

// next starts a batch: identities must be verified again.
func (c *labelCache) next() { c.epoch++ }

// get returns the labelSet of labels, verified in this batch.
func (c *labelCache) get(labels sdk.Labels) *labelSet {
	if len(labels) == 0 {
		ls := &labelSet{}
		parseLabels(nil, ls)
		return ls
	}
	k := &labels[0]
	r := &c.recent[recentSlot(k)]
	if r.p == k && r.n == len(labels) {
		if r.checked == c.epoch {
			return r.ls
		}
		if sameLabels(r.ls.labels, labels) {
			r.checked = c.epoch
			return r.ls
		}
	}
	ls := c.lookup(k, labels)
	*r = recentSlice{p: k, n: len(labels), checked: c.epoch, ls: ls}
	return ls
}

// lookup is get past the recent table.
func (c *labelCache) lookup(k *sdk.Label, labels sdk.Labels) *labelSet {
	id, ok := c.cur[k]
	if !ok {
		if id, ok = c.old[k]; ok {
			delete(c.old, k)
		}
	}
	if ok && len(id.ls.labels) == len(labels) {
		if id.checked == c.epoch {
			return id.ls
		}
		if sameLabels(id.ls.labels, labels) {
			id.checked = c.epoch
			c.putIdentity(k, id)
			return id.ls
		}
	}
	ls := c.byContents(labels)
	c.putIdentity(k, identity{ls: ls, checked: c.epoch})
	return ls
}

// sameLabels reports whether a and b hold equal labels (slices.Equal).
// Strings at the same address with the same length are equal without
// comparing their bytes (as Go's string comparison finds too, after a call):
// the labels of a slice verified again hold the very strings of the copy.
func sameLabels(a, b sdk.Labels) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if !sameString(x.Key, y.Key) || !sameString(x.Value, y.Value) {
			return false
		}
	}
	return true
}

func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// byContents returns the labelSet of labels' contents, parsing them when
// new.
func (c *labelCache) byContents(labels sdk.Labels) *labelSet {
	b := c.key[:0]
	for _, l := range labels {
		b = binary.AppendUvarint(b, uint64(len(l.Key)))
		b = append(b, l.Key...)
		b = binary.AppendUvarint(b, uint64(len(l.Value)))
		b = append(b, l.Value...)
	}
	c.key = b
	if ls, ok := c.ccur[string(b)]; ok {
		return ls
	}
	ls, ok := c.cold[string(b)]
	if ok {
		delete(c.cold, string(b))
	} else {
		ls = &labelSet{labels: slices.Clone(labels)}
		if c.last != nil {
			ls.names = make([]nameCol, 0, len(c.last.names))
		}
		c.last = ls
		parseLabels(labels, ls)
	}
	if c.ccur == nil || len(c.ccur) >= labelCacheGen {
		c.cold, c.ccur = c.ccur, make(map[string]*labelSet, min(labelCacheGen, 2*len(c.ccur)+64))
	}
	c.ccur[string(b)] = ls
	return ls
}

func (c *labelCache) putIdentity(k *sdk.Label, id identity) {
	if _, ok := c.cur[k]; !ok && (c.cur == nil || len(c.cur) >= labelCacheGen) {
		c.old, c.cur = c.cur, make(map[*sdk.Label]identity, min(labelCacheGen, 2*len(c.cur)+64))
	}
	c.cur[k] = id
}

// seriesWhy says why s cannot be stored: its labels have no GPU identity,
// it has no metric name, or its text cannot be stored; "" if none.
func (d *dictCache) seriesWhy(s *sdk.Series) string {
	var ls labelSet
	parseLabels(s.Labels, &ls)
	if ls.why != "" {
		return ls.why
	}
	if _, ok := d.canon[s.Name]; !ok && s.Name == "" {
		return "series has no metric name"
	}
	return checkText(s)
}

// checkText returns why a label value or the metric name of s cannot be
// stored as PostgreSQL text, or "".
func checkText(s *sdk.Series) string {
	if why := checkLabelText(s.Labels); why != "" {
		return why
	}
	return checkNameText(s.Name)
}

// checkLabelText returns why a stored label value cannot be stored as
// PostgreSQL text, or "".
func checkLabelText(labels sdk.Labels) string {
	for _, l := range labels {
		switch l.Key {
		case sdk.LabelGPUUUID, sdk.LabelHost, sdk.LabelGPUIndex, sdk.LabelGPUModel, sdk.LabelDevice,
			sdk.LabelPCIBusID, sdk.LabelDriverVersion, sdk.LabelContainer, sdk.LabelPod, sdk.LabelNamespace:
			if why := badText(l.Value); why != "" {
				return fmt.Sprintf("label %s %s", l.Key, why)
			}
		}
	}
	return ""
}

// checkNameText returns why a metric name cannot be stored as PostgreSQL
// text, or "".
func checkNameText(name string) string {
	if why := badText(name); why != "" {
		return "metric name " + why
	}
	return ""
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// upsertGPUs stores the GPUs in pend (key -> attributes) and caches their
// ids. Keys whose row the database refuses are returned with the reason.
func (o *Output) upsertGPUs(ctx context.Context, pend map[string]*gpuAttrs) (map[string]string, error) {
	keys := make([]string, 0, len(pend))
	for k := range pend {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a stable lock order between concurrent writers
	run := func(keys []string) error {
		n := len(keys)
		var (
			ks, uuids, hosts, models, devs, pcis, drvs = make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
			idx                                        = make([]*int32, n)
		)
		for i, k := range keys {
			a := pend[k]
			ks[i], uuids[i], hosts[i] = k, nullable(a.uuid), nullable(a.host)
			models[i], devs[i], pcis[i], drvs[i] = nullable(a.model), nullable(a.device), nullable(a.pci), nullable(a.driver)
			if v, err := strconv.ParseInt(a.index, 10, 32); err == nil {
				v32 := int32(v)
				idx[i] = &v32
			}
		}
		got, err := o.queryKeyIDs(ctx, o.sql.upsertGPUs, ks, uuids, hosts, idx, models, devs, pcis, drvs)
		if err != nil {
			return err
		}
		o.cache.mu.Lock()
		for _, r := range got {
			e := o.cache.gpus[r.k]
			if e == nil {
				e = &gpuEntry{}
				o.cache.gpus[r.k] = e
			}
			e.id = r.id
			e.attrs.merge(pend[r.k])
			e.attrs.key = r.k
			o.cache.gpuKeys[r.id] = r.k
		}
		o.cache.mu.Unlock()
		return nil
	}
	return o.runIsolating(keys, run)
}

// runIsolating runs fn on all keys; when the database refuses the data, it
// runs fn key by key and returns the refused keys with the reason.
func (o *Output) runIsolating(keys []string, fn func([]string) error) (map[string]string, error) {
	err := fn(keys)
	if err == nil {
		return nil, nil
	}
	if classify(err) != errData || len(keys) == 1 {
		if classify(err) == errData {
			return map[string]string{keys[0]: err.Error()}, nil
		}
		return nil, err
	}
	bad := map[string]string{}
	for _, k := range keys {
		if err := fn([]string{k}); err != nil {
			if classify(err) != errData {
				return nil, err
			}
			bad[k] = err.Error()
		}
	}
	return bad, nil
}

// upsertNamed stores names in a key->id dictionary table (workloads or
// metric_names) and caches the ids.
func (o *Output) upsertNamed(ctx context.Context, sql string, keys []string, args func([]string) []any, cache map[string]int32) (map[string]string, error) {
	sort.Strings(keys)
	return o.runIsolating(keys, func(keys []string) error {
		got, err := o.queryKeyIDs(ctx, sql, args(keys)...)
		if err != nil {
			return err
		}
		o.cache.mu.Lock()
		for _, r := range got {
			cache[r.k] = r.id
		}
		o.cache.mu.Unlock()
		return nil
	})
}

// resolve assigns gpu, workload and metric ids to every series of b that a
// point refers to, creating dictionary rows as needed. Series that cannot be
// stored get gpu = -1 and a reject in b.
func (o *Output) resolve(ctx context.Context, b *sdk.Batch, sc *scratch) error {
	info := sc.info
	pendGPU := map[string]*gpuAttrs(nil)
	pendWL := map[string][3]string(nil)
	pendName := map[string]struct{}(nil)
	reject := func(i int, why string) {
		info[i].gpu = -1
		s := &b.Series[i]
		b.Reject(fmt.Sprintf("outputs.postgresql: %s (%d points not stored)", why, info[i].refs),
			fmt.Sprintf("series %d", i), []byte(s.Name+s.Labels.String()))
	}

	d := &o.cache
	lc := &sc.labels
	lc.next()
	var (
		prevPtr *sdk.Label // the label slice of the previous series, and its set
		prevLen int
		ls      *labelSet
		// The name of the previous series (its bytes' address and length)
		// and its column: the series of a host's GPUs come name by name.
		prevName    *byte
		prevNameLen = -1
		prevCol     int16
		prevSlot    *nameSlot // its slot in the name table
		nreject     int       // series with gpu = -2
	)
	d.mu.RLock()
	for i := range info {
		si := &info[i]
		if si.refs == 0 {
			continue
		}
		s := &b.Series[i]
		if len(s.Labels) == 0 || &s.Labels[0] != prevPtr || len(s.Labels) != prevLen {
			ls = lc.get(s.Labels)
			prevPtr, prevLen = nil, 0
			if len(s.Labels) > 0 {
				prevPtr, prevLen = &s.Labels[0], len(s.Labels)
			}
		}
		if ls.noID {
			si.gpu = -2 // reject after unlocking
			nreject++
			continue
		}
		// The same bytes as the previous name: the same name, the same
		// column (whatever the label set).
		col := prevCol
		if unsafe.StringData(s.Name) != prevName || len(s.Name) != prevNameLen {
			// Else the name that came after the previous one last time
			// (series come in the same order batch after batch), else
			// the name table.
			var e *nameSlot
			if prevSlot != nil {
				e = prevSlot.next
			}
			if e == nil || !e.ok || !sameString(e.name, s.Name) {
				e = lc.nameSlot(d, ls, s.Name)
				if prevSlot != nil {
					prevSlot.next = e
				}
			}
			col, prevSlot = e.col, e
			prevName, prevNameLen, prevCol = unsafe.StringData(s.Name), len(s.Name), col
		}
		if col < 0 && s.Name == "" {
			si.gpu = -2
			nreject++
			continue
		}
		si.col, si.ls = col, ls
		if ls.batch != lc.epoch {
			ls.batch = lc.epoch
			e := ls.entry
			if e == nil {
				e = d.gpus[ls.attrs.key]
				ls.entry = e
			}
			ls.hit = e != nil && e.attrs.covers(&ls.attrs)
			if ls.hit {
				ls.gpuID = e.id
			}
			ls.wlID, ls.wlOK = 0, false
			if ls.hasWL {
				ls.wlID, ls.wlOK = d.workloads[ls.wlKey]
			}
		}
		var nameID int32
		nameOK := false
		if col < 0 {
			nameID, nameOK = d.names[s.Name]
		}
		if !ls.hit || (ls.hasWL && ls.wlID == 0) || (col < 0 && nameID == 0) {
			why := ls.labelText()
			if why == "" {
				why = checkNameText(s.Name)
			}
			if why != "" {
				si.gpu = -2
				nreject++
				continue
			}
		}
		if ls.hit {
			si.gpu = ls.gpuID
		} else {
			if pendGPU == nil {
				pendGPU = map[string]*gpuAttrs{}
			}
			if p := pendGPU[ls.attrs.key]; p != nil {
				p.merge(&ls.attrs)
			} else {
				a := ls.attrs
				pendGPU[a.key] = &a
			}
		}
		if ls.hasWL {
			if ls.wlOK {
				si.wl = ls.wlID
			} else {
				if pendWL == nil {
					pendWL = map[string][3]string{}
				}
				pendWL[ls.wlKey] = ls.wla
			}
		}
		if col < 0 {
			if nameOK {
				si.metric = nameID
			} else {
				if pendName == nil {
					pendName = map[string]struct{}{}
				}
				pendName[s.Name] = struct{}{}
			}
		}
	}
	d.mu.RUnlock()
	for i := 0; nreject > 0; i++ {
		if info[i].gpu == -2 {
			reject(i, d.seriesWhy(&b.Series[i]))
			nreject--
		}
	}

	var badGPU, badWL, badName map[string]string
	var err error
	if len(pendGPU) > 0 {
		if badGPU, err = o.upsertGPUs(ctx, pendGPU); err != nil {
			return fmt.Errorf("outputs.postgresql: store GPUs: %w", err)
		}
	}
	if len(pendWL) > 0 {
		keys := make([]string, 0, len(pendWL))
		for k := range pendWL {
			keys = append(keys, k)
		}
		badWL, err = o.upsertNamed(ctx, o.sql.upsertWorkloads, keys, func(keys []string) []any {
			c, p, n := make([]*string, len(keys)), make([]*string, len(keys)), make([]*string, len(keys))
			for i, k := range keys {
				w := pendWL[k]
				c[i], p[i], n[i] = nullable(w[0]), nullable(w[1]), nullable(w[2])
			}
			return []any{keys, c, p, n}
		}, d.workloads)
		if err != nil {
			return fmt.Errorf("outputs.postgresql: store workloads: %w", err)
		}
	}
	if len(pendName) > 0 {
		keys := make([]string, 0, len(pendName))
		for k := range pendName {
			keys = append(keys, k)
		}
		badName, err = o.upsertNamed(ctx, o.sql.upsertNames, keys, func(keys []string) []any { return []any{keys} }, d.names)
		if err != nil {
			return fmt.Errorf("outputs.postgresql: store metric names: %w", err)
		}
	}
	if pendGPU == nil && pendWL == nil && pendName == nil {
		return nil
	}
	var refused map[int]string // series -> the database's reason
	d.mu.RLock()
	for i := range info {
		si := &info[i]
		if si.refs == 0 || si.gpu < 0 {
			continue
		}
		ls := si.ls
		if why, bad := badGPU[ls.attrs.key]; bad {
			si.gpu = -2
			if refused == nil {
				refused = map[int]string{}
			}
			refused[i] = why
			continue
		}
		if si.gpu == 0 {
			si.gpu = d.gpus[ls.attrs.key].id
		}
		if ls.wlKey != "" && si.wl == 0 {
			if _, bad := badWL[ls.wlKey]; !bad {
				si.wl = d.workloads[ls.wlKey]
			}
		}
		if si.col < 0 && si.metric == 0 {
			if why, bad := badName[b.Series[i].Name]; bad {
				si.gpu = -2
				if refused == nil {
					refused = map[int]string{}
				}
				refused[i] = why
				continue
			}
			si.metric = d.names[b.Series[i].Name]
		}
	}
	d.mu.RUnlock()
	for i := range info {
		if info[i].gpu == -2 {
			reject(i, "database refused the series: "+refused[i])
		}
	}
	return nil
}

// keyID is one (key, id) row of a dictionary upsert's RETURNING clause.
type keyID struct {
	k  string
	id int32
}

// queryKeyIDs runs a dictionary upsert and collects its (key, id) rows.
func (o *Output) queryKeyIDs(ctx context.Context, sql string, args ...any) ([]keyID, error) {
	rows, err := o.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (keyID, error) {
		var r keyID
		err := row.Scan(&r.k, &r.id)
		return r, err
	})
}
