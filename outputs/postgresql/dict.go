package postgresql

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"

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
	gpus      map[string]*gpuEntry
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
	refs   int32  // points referring to the series
	gpu    int32  // gpu_id; 0 = unresolved, -1 = rejected
	wl     int32  // workload_id; 0 = none
	col    int16  // canonical column, -1 = extra metric
	metric int32  // metric_id of an extra metric
	wlKey  string // workload key, "" = none
	wla    [3]string
	attrs  gpuAttrs
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

// parseSeries fills si from s's name and labels, or returns why the series
// cannot be stored. It does not check the text: values equal to cached ones
// are known good, and checkText checks the rest on a cache miss.
func (d *dictCache) parseSeries(s *sdk.Series, si *seriesInfo) string {
	a := &si.attrs
	*a = gpuAttrs{}
	si.wla = [3]string{}
	for _, l := range s.Labels {
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
			dst = &si.wla[0]
		case sdk.LabelPod:
			dst = &si.wla[1]
		case sdk.LabelNamespace:
			dst = &si.wla[2]
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
		return "series has no GPU identity (needs a gpu_uuid label, or host and gpu_index)"
	}
	if c, ok := d.canon[s.Name]; ok {
		si.col = c
	} else {
		si.col = -1
		if s.Name == "" {
			return "series has no metric name"
		}
	}
	si.wlKey = ""
	if si.wla != [3]string{} {
		si.wlKey = si.wla[0] + "\x1f" + si.wla[1] + "\x1f" + si.wla[2]
	}
	return ""
}

// checkText returns why a label value or the metric name of s cannot be
// stored as PostgreSQL text, or "".
func checkText(s *sdk.Series) string {
	for _, l := range s.Labels {
		switch l.Key {
		case sdk.LabelGPUUUID, sdk.LabelHost, sdk.LabelGPUIndex, sdk.LabelGPUModel, sdk.LabelDevice,
			sdk.LabelPCIBusID, sdk.LabelDriverVersion, sdk.LabelContainer, sdk.LabelPod, sdk.LabelNamespace:
			if why := badText(l.Value); why != "" {
				return fmt.Sprintf("label %s %s", l.Key, why)
			}
		}
	}
	if why := badText(s.Name); why != "" {
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
	d.mu.RLock()
	for i := range info {
		si := &info[i]
		if si.refs == 0 {
			continue
		}
		if why := d.parseSeries(&b.Series[i], si); why != "" {
			si.gpu = -2 // reject after unlocking
			continue
		}
		e := d.gpus[si.attrs.key]
		hit := e != nil && e.attrs.covers(&si.attrs)
		if !hit || (si.wlKey != "" && d.workloads[si.wlKey] == 0) || (si.col < 0 && d.names[b.Series[i].Name] == 0) {
			if why := checkText(&b.Series[i]); why != "" {
				si.gpu = -2
				continue
			}
		}
		if hit {
			si.gpu = e.id
		} else {
			if pendGPU == nil {
				pendGPU = map[string]*gpuAttrs{}
			}
			if p := pendGPU[si.attrs.key]; p != nil {
				p.merge(&si.attrs)
			} else {
				a := si.attrs
				pendGPU[a.key] = &a
			}
		}
		if si.wlKey != "" {
			if id, ok := d.workloads[si.wlKey]; ok {
				si.wl = id
			} else {
				if pendWL == nil {
					pendWL = map[string][3]string{}
				}
				pendWL[si.wlKey] = si.wla
			}
		}
		if si.col < 0 {
			name := b.Series[i].Name
			if id, ok := d.names[name]; ok {
				si.metric = id
			} else {
				if pendName == nil {
					pendName = map[string]struct{}{}
				}
				pendName[name] = struct{}{}
			}
		}
	}
	d.mu.RUnlock()
	for i := range info {
		if info[i].gpu == -2 {
			s := &b.Series[i]
			var tmp seriesInfo
			why := d.parseSeries(s, &tmp)
			if why == "" {
				why = checkText(s)
			}
			reject(i, why)
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
	d.mu.RLock()
	defer d.mu.RUnlock()
	for i := range info {
		si := &info[i]
		if si.refs == 0 || si.gpu < 0 {
			continue
		}
		if why, bad := badGPU[si.attrs.key]; bad {
			si.gpu = -2
			si.attrs.host = why // reuse the field for the reason
			continue
		}
		if si.gpu == 0 {
			si.gpu = d.gpus[si.attrs.key].id
		}
		if si.wlKey != "" && si.wl == 0 {
			if _, bad := badWL[si.wlKey]; !bad {
				si.wl = d.workloads[si.wlKey]
			}
		}
		if si.col < 0 && si.metric == 0 {
			if why, bad := badName[b.Series[i].Name]; bad {
				si.gpu = -2
				si.attrs.host = why
				continue
			}
			si.metric = d.names[b.Series[i].Name]
		}
	}
	for i := range info {
		if info[i].gpu == -2 {
			reject(i, "database refused the series: "+info[i].attrs.host)
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
