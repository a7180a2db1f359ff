package postgresql

import (
	"context"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// Table names inside the configured schema.
const (
	tableGPUs      = "gpus"
	tableWorkloads = "workloads"
	tableMetrics   = "metric_names"
	tableSamples   = "gpu_samples"
	tableExtra     = "gpu_samples_extra"
	tableVersion   = "schema_version"
	viewMetrics    = "gpu_metrics"

	// SchemaVersion is the version recorded in schema_version.
	SchemaVersion = 1
)

// Columns returns the columns of gpu_samples in COPY order: gpu_id, time,
// workload_id, then one per canonical metric (gpumetrics.Canonical order).
func Columns() []string {
	cols := []string{"gpu_id", "time", "workload_id"}
	for _, m := range gpumetrics.Canonical {
		cols = append(cols, m.Name)
	}
	return cols
}

var extraColumns = []string{"gpu_id", "metric_id", "time", "value", "workload_id"}

// statements are the SQL texts for one schema, built once at Init.
type statements struct {
	schema                                   string
	gpus, workloads, metrics, samples, extra string // qualified, quoted
	upsertGPUs, upsertWorkloads, upsertNames string
	copySamples, copyExtra                   string
	stageSamples, stageExtra                 string // CREATE TEMP TABLE IF NOT EXISTS
	// txWrite's queries, by path (0: plain COPY, 1: merge) and tables (1:
	// samples, 2: extra, 3: both): each COPY with the statements before it
	// (txCopy; "" = no such table), and the statements after the last
	// COPY, COMMIT included (txEnd). See txPlans.
	txCopy                           [2][4][2]string
	txEnd                            [2][4]string
	copyStageSamples, copyStageExtra string
	mergeSamples, mergeExtra         string
}

func qualify(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

func buildStatements(schema string) statements {
	s := statements{
		schema:    schema,
		gpus:      qualify(schema, tableGPUs),
		workloads: qualify(schema, tableWorkloads),
		metrics:   qualify(schema, tableMetrics),
		samples:   qualify(schema, tableSamples),
		extra:     qualify(schema, tableExtra),
	}
	cols := Columns()
	colList := strings.Join(cols, ", ")
	s.copySamples = fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", s.samples, colList)
	s.copyExtra = fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", s.extra, strings.Join(extraColumns, ", "))

	var def strings.Builder
	def.WriteString("gpu_id integer, time timestamptz, workload_id integer")
	for _, m := range gpumetrics.Canonical {
		fmt.Fprintf(&def, ", %s double precision", m.Name)
	}
	// One staging table per connection, emptied at every commit. The name
	// carries the column count so a binary with a longer canonical list
	// never reuses a shorter table.
	stage := fmt.Sprintf("tc_stage_samples_%d", len(cols))
	s.stageSamples = fmt.Sprintf("CREATE TEMP TABLE IF NOT EXISTS %s (%s) ON COMMIT DELETE ROWS", stage, def.String())
	s.stageExtra = "CREATE TEMP TABLE IF NOT EXISTS tc_stage_extra (gpu_id integer, metric_id integer, time timestamptz, value double precision, workload_id integer) ON COMMIT DELETE ROWS"
	s.copyStageSamples = fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", stage, colList)
	s.copyStageExtra = fmt.Sprintf("COPY tc_stage_extra (%s) FROM STDIN (FORMAT binary)", strings.Join(extraColumns, ", "))

	// Merge: a later batch fills the columns an earlier one left NULL; a
	// redelivered batch changes nothing (and writes nothing: the WHERE
	// skips rows that would not change).
	var set, changed []string
	for _, c := range cols[2:] {
		set = append(set, fmt.Sprintf("%s = COALESCE(EXCLUDED.%s, t.%s)", c, c, c))
		changed = append(changed, fmt.Sprintf("(EXCLUDED.%s IS NOT NULL AND EXCLUDED.%s IS DISTINCT FROM t.%s)", c, c, c))
	}
	s.mergeSamples = fmt.Sprintf("INSERT INTO %s AS t (%s) SELECT %s FROM %s ORDER BY gpu_id, time ON CONFLICT (gpu_id, time) DO UPDATE SET %s WHERE %s",
		s.samples, colList, colList, stage, strings.Join(set, ", "), strings.Join(changed, " OR "))
	s.mergeExtra = fmt.Sprintf(`INSERT INTO %s AS t (gpu_id, metric_id, time, value, workload_id)
SELECT gpu_id, metric_id, time, value, workload_id FROM tc_stage_extra ORDER BY gpu_id, metric_id, time
ON CONFLICT (gpu_id, metric_id, time) DO UPDATE SET value = EXCLUDED.value, workload_id = COALESCE(EXCLUDED.workload_id, t.workload_id)
WHERE t.value IS DISTINCT FROM EXCLUDED.value OR (EXCLUDED.workload_id IS NOT NULL AND EXCLUDED.workload_id IS DISTINCT FROM t.workload_id)`, s.extra)

	s.upsertGPUs = fmt.Sprintf(`INSERT INTO %s AS g (gpu_key, gpu_uuid, host, gpu_index, gpu_model, device, pci_bus_id, driver_version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[])
ON CONFLICT (gpu_key) DO UPDATE SET
  gpu_uuid = COALESCE(EXCLUDED.gpu_uuid, g.gpu_uuid),
  host = COALESCE(EXCLUDED.host, g.host),
  gpu_index = COALESCE(EXCLUDED.gpu_index, g.gpu_index),
  gpu_model = COALESCE(EXCLUDED.gpu_model, g.gpu_model),
  device = COALESCE(EXCLUDED.device, g.device),
  pci_bus_id = COALESCE(EXCLUDED.pci_bus_id, g.pci_bus_id),
  driver_version = COALESCE(EXCLUDED.driver_version, g.driver_version),
  updated_at = now()
RETURNING gpu_key, gpu_id`, s.gpus)
	s.upsertWorkloads = fmt.Sprintf(`INSERT INTO %s AS w (workload_key, container, pod, namespace)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (workload_key) DO UPDATE SET workload_key = EXCLUDED.workload_key
RETURNING workload_key, workload_id`, s.workloads)
	s.upsertNames = fmt.Sprintf(`INSERT INTO %s AS m (name) SELECT * FROM unnest($1::text[])
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING name, metric_id`, s.metrics)
	s.txPlans()
	return s
}

// migrations[i] brings the schema from version i to i+1. Append only.
func migrations(s statements) []string {
	var cols strings.Builder
	for _, m := range gpumetrics.Canonical {
		fmt.Fprintf(&cols, ",\n  %s double precision", m.Name)
	}
	v1 := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
  gpu_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  gpu_key text NOT NULL UNIQUE,
  gpu_uuid text,
  host text,
  gpu_index integer,
  gpu_model text,
  device text,
  pci_bus_id text,
  driver_version text,
  first_seen timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE %[1]s IS 'One row per GPU. gpu_key is gpu_uuid, else host:<host>/gpu:<gpu_index>. Descriptive columns keep their latest non-empty value.';
CREATE TABLE IF NOT EXISTS %[2]s (
  workload_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  workload_key text NOT NULL UNIQUE,
  container text,
  pod text,
  namespace text
);
CREATE TABLE IF NOT EXISTS %[3]s (
  metric_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS %[4]s (
  gpu_id integer NOT NULL,
  time timestamptz NOT NULL,
  workload_id integer%[6]s,
  PRIMARY KEY (gpu_id, time)
) PARTITION BY RANGE (time);
COMMENT ON TABLE %[4]s IS 'One row per (gpu_id, time), one column per canonical metric; NULL = not measured. Query the gpu_metrics view.';
CREATE TABLE IF NOT EXISTS %[5]s (
  gpu_id integer NOT NULL,
  metric_id integer NOT NULL,
  time timestamptz NOT NULL,
  value double precision NOT NULL,
  workload_id integer,
  PRIMARY KEY (gpu_id, metric_id, time)
) PARTITION BY RANGE (time);
COMMENT ON TABLE %[5]s IS 'Metrics outside the canonical list, one row per sample.';
`, s.gpus, s.workloads, s.metrics, s.samples, s.extra, cols.String())
	return []string{v1}
}

// viewSQL unpivots gpu_samples and appends gpu_samples_extra. Its column
// list is the contract; new columns may only be appended.
func viewSQL(s statements) string {
	var vals []string
	for _, m := range gpumetrics.Canonical {
		vals = append(vals, fmt.Sprintf("('%s', s.%s)", m.Name, m.Name))
	}
	return fmt.Sprintf(`CREATE OR REPLACE VIEW %[1]s AS
SELECT s.time, g.host, g.gpu_uuid, g.gpu_index, g.gpu_model, v.metric, v.value,
       g.device, g.pci_bus_id, g.driver_version, w.container, w.pod, w.namespace, s.gpu_id
FROM %[2]s s
JOIN %[3]s g ON g.gpu_id = s.gpu_id
LEFT JOIN %[4]s w ON w.workload_id = s.workload_id
CROSS JOIN LATERAL (VALUES %[5]s) AS v(metric, value)
WHERE v.value IS NOT NULL
UNION ALL
SELECT e.time, g.host, g.gpu_uuid, g.gpu_index, g.gpu_model, m.name, e.value,
       g.device, g.pci_bus_id, g.driver_version, w.container, w.pod, w.namespace, e.gpu_id
FROM %[6]s e
JOIN %[3]s g ON g.gpu_id = e.gpu_id
JOIN %[7]s m ON m.metric_id = e.metric_id
LEFT JOIN %[4]s w ON w.workload_id = e.workload_id;
COMMENT ON VIEW %[1]s IS 'One row per sample: time, host, gpu_uuid, gpu_index, gpu_model, metric, value (+ device, pci_bus_id, driver_version, container, pod, namespace, gpu_id).'`,
		qualify(s.schema, viewMetrics), s.samples, s.gpus, s.workloads, strings.Join(vals, ", "), s.extra, s.metrics)
}

func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

// migrate creates or upgrades the schema. A session advisory lock makes
// concurrent collectors take turns; everything is idempotent.
func (o *Output) migrate(ctx context.Context, c *pgx.Conn) (err error) {
	key := lockKey("telemetry-collector schema", o.Schema)
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("outputs.postgresql: schema lock: %w", err)
	}
	defer func() {
		if _, uerr := c.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key); uerr != nil && err == nil {
			err = fmt.Errorf("outputs.postgresql: schema unlock: %w", uerr)
		}
	}()
	s := o.sql
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("outputs.postgresql: schema: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{o.Schema}.Sanitize()); err != nil {
		return fmt.Errorf("outputs.postgresql: create schema %q: %w", o.Schema, err)
	}
	ver := qualify(o.Schema, tableVersion)
	if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), description text)`, ver)); err != nil {
		return fmt.Errorf("outputs.postgresql: schema: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM "+ver).Scan(&current); err != nil {
		return fmt.Errorf("outputs.postgresql: schema version: %w", err)
	}
	steps := migrations(s)
	if current > len(steps) {
		return fmt.Errorf("outputs.postgresql: schema %q is at version %d, newer than this collector knows (%d): upgrade the collector", o.Schema, current, len(steps))
	}
	for v := current; v < len(steps); v++ {
		if _, err := tx.Exec(ctx, steps[v]); err != nil {
			return fmt.Errorf("outputs.postgresql: schema migration to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+ver+" (version, description) VALUES ($1, $2)", v+1, "telemetry-collector"); err != nil {
			return fmt.Errorf("outputs.postgresql: schema version: %w", err)
		}
		o.log.Info("schema migrated", "schema", o.Schema, "version", v+1)
	}
	// Canonical metrics are append only: add columns this binary knows and
	// the table lacks, then (re)create the view.
	for _, m := range gpumetrics.Canonical {
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s double precision", s.samples, m.Name)); err != nil {
			return fmt.Errorf("outputs.postgresql: add column %s: %w", m.Name, err)
		}
	}
	if _, err := tx.Exec(ctx, viewSQL(s)); err != nil {
		return fmt.Errorf("outputs.postgresql: create view gpu_metrics: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("outputs.postgresql: schema: %w", err)
	}
	return nil
}

// partitionCache remembers the time ranges covered by each partitioned
// table's partitions, in unix microseconds, sorted by start.
type partitionCache struct {
	mu     sync.Mutex
	ranges map[string][]prange
}

type prange struct{ from, to int64 }

func (p *partitionCache) init() { p.ranges = map[string][]prange{} }

// covered reports whether t lies in a known partition of tbl.
func (p *partitionCache) covered(tbl string, t int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return coveredIn(p.ranges[tbl], t)
}

func coveredIn(rs []prange, t int64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].to > t })
	return i < len(rs) && rs[i].from <= t
}

func (p *partitionCache) set(tbl string, rs []prange) {
	p.mu.Lock()
	p.ranges[tbl] = rs
	p.mu.Unlock()
}

func (p *partitionCache) forget() {
	p.mu.Lock()
	clear(p.ranges)
	p.mu.Unlock()
}

var boundRE = regexp.MustCompile(`FROM \('([^']+)'\) TO \('([^']+)'\)`)

const pgTimeLayout = "2006-01-02 15:04:05.999999-07"

type partInfo struct {
	name string
	r    prange
}

// loadPartitions reads tbl's partitions and their bounds from the catalog
// (the session time zone is UTC, see poolConfig).
func (o *Output) loadPartitions(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, tbl string) ([]partInfo, error) {
	rows, err := q.Query(ctx, `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass`, qualify(o.Schema, tbl))
	if err != nil {
		return nil, err
	}
	var out []partInfo
	for rows.Next() {
		var name, bound string
		if err := rows.Scan(&name, &bound); err != nil {
			return nil, err
		}
		m := boundRE.FindStringSubmatch(bound)
		if m == nil {
			continue // DEFAULT or unbounded partition made by hand: leave it be
		}
		from, err1 := time.Parse(pgTimeLayout, m[1])
		to, err2 := time.Parse(pgTimeLayout, m[2])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, partInfo{name: name, r: prange{from.UnixMicro(), to.UnixMicro()}})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].r.from < out[j].r.from })
	return out, nil
}

func rangesOf(ps []partInfo) []prange {
	rs := make([]prange, len(ps))
	for i, p := range ps {
		rs[i] = p.r
	}
	return rs
}

// ensurePartitions makes sure partitions of tbl cover every time in ts (unix
// microseconds). Missing ones are created aligned to partition_interval
// (from the Unix epoch, UTC), clipped so they never overlap partitions made
// with another interval. Creation is serialised by an advisory lock.
func (o *Output) ensurePartitions(ctx context.Context, tbl string, ts []int64) error {
	var missing []int64
	for _, t := range ts {
		if !o.parts.covered(tbl, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return o.changePartitions(ctx, tbl, func(tx pgx.Tx, ps []partInfo) ([]prange, error) {
		rs := rangesOf(ps)
		iv := o.PartitionInterval.D().Microseconds()
		parent := qualify(o.Schema, tbl)
		for _, t := range missing {
			if coveredIn(rs, t) {
				continue
			}
			from := floorDiv(t, iv) * iv
			to := from + iv
			// Clip against neighbours.
			i := sort.Search(len(rs), func(i int) bool { return rs[i].to > t })
			if i > 0 && rs[i-1].to > from {
				from = rs[i-1].to
			}
			if i < len(rs) && rs[i].from < to {
				to = rs[i].from
			}
			ft, tt := time.UnixMicro(from).UTC(), time.UnixMicro(to).UTC()
			name := partitionName(tbl, ft, tt)
			sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
				qualify(o.Schema, name), parent, ft.Format(pgTimeLayout), tt.Format(pgTimeLayout))
			if _, err := tx.Exec(ctx, sql); err != nil {
				return nil, fmt.Errorf("outputs.postgresql: create partition %s: %w", name, err)
			}
			o.log.Debug("partition created", "table", tbl, "name", name)
			rs = append(rs, prange{from, to})
			sort.Slice(rs, func(i, j int) bool { return rs[i].from < rs[j].from })
		}
		return rs, nil
	})
}

func partitionName(tbl string, from, to time.Time) string {
	day := 24 * time.Hour
	if from.Truncate(day).Equal(from) && to.Sub(from)%day == 0 {
		return fmt.Sprintf("%s_p%s", tbl, from.Format("20060102"))
	}
	return fmt.Sprintf("%s_p%s", tbl, from.Format("20060102_150405"))
}

// dropExpired drops tbl's partitions that end at or before horizon.
func (o *Output) dropExpired(ctx context.Context, tbl string, horizon time.Time) error {
	return o.changePartitions(ctx, tbl, func(tx pgx.Tx, ps []partInfo) ([]prange, error) {
		h := horizon.UnixMicro()
		var keep []partInfo
		for _, p := range ps {
			if p.r.to <= h {
				if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+qualify(o.Schema, p.name)); err != nil {
					return nil, fmt.Errorf("outputs.postgresql: drop partition %s: %w", p.name, err)
				}
				o.log.Info("retention: partition dropped", "table", tbl, "name", p.name)
				continue
			}
			keep = append(keep, p)
		}
		return rangesOf(keep), nil
	})
}

// changePartitions runs change on tbl's partitions (as they are in the
// database) inside a transaction holding the partition advisory lock, so
// collectors never create or drop partitions concurrently; on commit the
// ranges change returns become the cached set.
func (o *Output) changePartitions(ctx context.Context, tbl string, change func(tx pgx.Tx, ps []partInfo) ([]prange, error)) error {
	conn, err := o.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("telemetry-collector partitions", o.Schema, tbl)); err != nil {
		return err
	}
	ps, err := o.loadPartitions(ctx, tx, tbl)
	if err != nil {
		return err
	}
	rs, err := change(tx, ps)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	o.parts.set(tbl, rs)
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// txPlans fills txCopy and txEnd. A transaction of txWrite runs, per table
// with rows (samples, then extra), COPY into the table (plain path) or
// CREATE TEMP TABLE IF NOT EXISTS, COPY into it and INSERT ... ON CONFLICT
// (merge path), between BEGIN and COMMIT; the statements between two COPYs
// go in one simple-protocol query with the second (a query may run several
// statements, and end with a COPY), the last ones with COMMIT. So the same
// statements run in the same order in 2 or 3 round trips instead of 3 to 9.
func (s *statements) txPlans() {
	tables := [2]struct{ copyTable, create, copyStage, merge string }{
		{s.copySamples, s.stageSamples, s.copyStageSamples, s.mergeSamples},
		{s.copyExtra, s.stageExtra, s.copyStageExtra, s.mergeExtra},
	}
	for path := 0; path < 2; path++ {
		for set := 1; set < 4; set++ {
			lead := []string{"BEGIN"}
			for i, t := range tables {
				if set&(1<<i) == 0 {
					continue
				}
				if path == 0 {
					s.txCopy[path][set][i] = strings.Join(append(lead, t.copyTable), "; ")
					lead = nil
				} else {
					s.txCopy[path][set][i] = strings.Join(append(lead, t.create, t.copyStage), "; ")
					lead = []string{t.merge}
				}
			}
			s.txEnd[path][set] = strings.Join(append(lead, "COMMIT"), "; ")
		}
	}
}
