package postgresql

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// Batches with fewer wide rows than this skip the plain-COPY attempt: they
// are typically long-form fragments that collide with rows already stored,
// and a failed COPY costs a round trip and a rollback.
const minCopyRows = 16

// wideRow is one (gpu, time) row of gpu_samples; its values live in
// scratch.vals[off:off+ncol], their presence in scratch.present.
type wideRow struct {
	gpu, wl int32
	t       int64 // unix microseconds
	off     int32 // row number in vals/present
}

type extraRow struct {
	gpu, metric, wl int32
	t               int64
	v               float64
}

type rowKey struct {
	gpu int32
	t   int64
}

// rowTable maps a row key to its row number in scratch.rows (the index
// build looks rows up in, once per new key of a label set): open addressing
// with linear probing over slots that hold the whole key, so a lookup is
// exact. Ownership: part of a scratch, used by one Write at a time; reset
// empties it, keeping its slots.
type rowTable struct {
	slots []rowSlot // a power of two long, at most half full
	n     int       // filled slots
}

// rowSlot is a slot of rowTable (owned by its scratch).
type rowSlot struct {
	gpu  int32
	row1 int32 // row number + 1; 0 = empty
	t    int64
}

// rowHash mixes a row key; the rows of a scrape differ in gpu alone.
func rowHash(k rowKey) uint64 {
	h := (uint64(k.t)*0x9E3779B97F4A7C15 ^ uint64(uint32(k.gpu))) * 0xBF58476D1CE4E5B9
	return h ^ h>>31
}

// find returns the row of k, or adds k as row next and returns next with
// added set.
func (rt *rowTable) find(k rowKey, next int32) (row int32, added bool) {
	if 2*(rt.n+1) > len(rt.slots) {
		rt.grow()
	}
	mask := uint64(len(rt.slots) - 1)
	for i := rowHash(k) & mask; ; i = (i + 1) & mask {
		s := &rt.slots[i]
		if s.row1 == 0 {
			*s = rowSlot{gpu: k.gpu, row1: next + 1, t: k.t}
			rt.n++
			return next, true
		}
		if s.gpu == k.gpu && s.t == k.t {
			return s.row1 - 1, false
		}
	}
}

func (rt *rowTable) grow() {
	old := rt.slots
	rt.slots = make([]rowSlot, max(1024, 2*len(old)))
	mask := uint64(len(rt.slots) - 1)
	for _, s := range old {
		if s.row1 == 0 {
			continue
		}
		i := rowHash(rowKey{s.gpu, s.t}) & mask
		for rt.slots[i].row1 != 0 {
			i = (i + 1) & mask
		}
		rt.slots[i] = s
	}
}

func (rt *rowTable) reset() {
	if rt.n > 0 {
		clear(rt.slots)
		rt.n = 0
	}
}

type extraKey struct {
	gpu, metric int32
	t           int64
}

// scratch is one Write's working memory, kept between Writes (see
// Output.getScratch): a scratch belongs to one Write from getScratch to
// putScratch, and nothing of it is shared with another goroutine. The label
// cache stays with it from Write to Write; everything else is emptied by
// reset and reused (row buffers, COPY encodings, maps).
type scratch struct {
	labels   labelCache
	info     []seriesInfo
	rows     []wideRow
	vals     []float64
	present  []uint64
	rowIdx   rowTable
	extra    []extraRow
	extraIdx map[extraKey]int32
	buf      []byte
	ebuf     []byte
	parts    []int64
}

func newScratch() *scratch {
	return &scratch{extraIdx: make(map[extraKey]int32)}
}

func (sc *scratch) reset() {
	clear(sc.info)
	sc.info = sc.info[:0]
	sc.rows = sc.rows[:0]
	sc.vals = sc.vals[:0]
	sc.present = sc.present[:0]
	sc.rowIdx.reset()
	sc.extra = sc.extra[:0]
	clear(sc.extraIdx)
	sc.buf = sc.buf[:0]
	sc.ebuf = sc.ebuf[:0]
	sc.parts = sc.parts[:0]
}

// getScratch returns a free scratch, or a new one. The free list keeps up
// to maxFreeScratch of them (unlike a sync.Pool, which drops them at garbage
// collections), so their buffers and label caches are reused rather than
// allocated, zeroed and refilled. Safe for concurrent use.
func (o *Output) getScratch() *scratch {
	o.scratchMu.Lock()
	defer o.scratchMu.Unlock()
	if n := len(o.scratchFree); n > 0 {
		sc := o.scratchFree[n-1]
		o.scratchFree[n-1] = nil
		o.scratchFree = o.scratchFree[:n-1]
		return sc
	}
	return newScratch()
}

// putScratch empties sc and returns it to the free list (or drops it when
// the list is full); the caller must not use it any more.
func (o *Output) putScratch(sc *scratch) {
	sc.reset()
	o.scratchMu.Lock()
	if len(o.scratchFree) < o.maxFreeScratch() {
		o.scratchFree = append(o.scratchFree, sc)
	}
	o.scratchMu.Unlock()
}

// maxFreeScratch is how many idle scratches are kept: one per concurrent
// Write the pool can serve.
func (o *Output) maxFreeScratch() int { return max(o.MaxConnections, 2) }

var ncol = len(gpumetrics.Canonical)

func words() int { return (ncol + 63) / 64 }

// Write implements sdk.Output. One Write is one transaction; it returns nil
// only after COMMIT. Rows the database refuses are isolated, appended to
// b.Rejects, and the rest is written.
func (o *Output) Write(ctx context.Context, b *sdk.Batch) error {
	if o.pool == nil || o.closed.Load() {
		return sdk.Permanent(errors.New("outputs.postgresql: Write before Init or after Close"))
	}
	sc := o.getScratch()
	defer o.putScratch(sc)
	if err := o.build(ctx, b, sc); err != nil {
		return o.wrap(err)
	}
	if len(sc.rows) == 0 && len(sc.extra) == 0 {
		return nil
	}
	return o.store(ctx, b, sc)
}

// wrap masks passwords and marks permanent errors.
func (o *Output) wrap(err error) error {
	if err == nil {
		return nil
	}
	if sdk.IsPermanent(err) {
		return o.mask(err)
	}
	if classify(err) == errPermanent {
		return sdk.Permanent(o.mask(err))
	}
	return o.mask(err)
}

// build turns b's points into wide rows and extra rows in sc.
func (o *Output) build(ctx context.Context, b *sdk.Batch, sc *scratch) error {
	ns := len(b.Series)
	if cap(sc.info) < ns {
		sc.info = make([]seriesInfo, ns)
	}
	sc.info = sc.info[:ns]
	badIdx := 0
	for _, p := range b.Points {
		if int(p.Series) < ns {
			sc.info[p.Series].refs++
		} else {
			badIdx++
		}
	}
	if badIdx > 0 {
		for i, p := range b.Points {
			if int(p.Series) >= ns {
				b.Reject(fmt.Sprintf("outputs.postgresql: point refers to series %d of %d", p.Series, ns),
					fmt.Sprintf("point %d", i), []byte(strconv.FormatFloat(p.Value, 'g', -1, 64)))
			}
		}
	}
	if err := o.resolve(ctx, b, sc); err != nil {
		return err
	}

	var horizon int64 = math.MinInt64
	if o.Retention > 0 {
		horizon = o.now().Add(-o.Retention.D()).UnixMicro()
	}
	w := words()
	if cap(sc.rows) == 0 {
		n := len(b.Points)/8 + 1
		sc.rows = make([]wideRow, 0, n)
		sc.vals = make([]float64, 0, n*ncol)
		sc.present = make([]uint64, 0, n*w)
	}
	last := rowKey{gpu: -1}
	lastRow := int32(-1)
	info := sc.info
	epoch := sc.labels.epoch
	for i, p := range b.Points {
		if int(p.Series) >= ns {
			continue
		}
		si := &info[p.Series]
		if si.gpu <= 0 {
			continue // rejected with its series
		}
		t := floorDiv(p.Time, 1000)
		if t < horizon {
			s := &b.Series[p.Series]
			b.Reject(fmt.Sprintf("outputs.postgresql: sample older than the retention (%s)", o.Retention),
				fmt.Sprintf("point %d", i), renderSample(s, p))
			continue
		}
		if si.col < 0 {
			k := extraKey{si.gpu, si.metric, t}
			if r, ok := sc.extraIdx[k]; ok {
				sc.extra[r].v = p.Value
				if si.wl != 0 {
					sc.extra[r].wl = si.wl
				}
			} else {
				sc.extraIdx[k] = int32(len(sc.extra))
				sc.extra = append(sc.extra, extraRow{gpu: si.gpu, metric: si.metric, wl: si.wl, t: t, v: p.Value})
			}
			continue
		}
		k := rowKey{si.gpu, t}
		if k != last {
			// The series' label set remembers its last row: the points of
			// a few GPUs interleaved find theirs without a map lookup.
			ls := si.ls
			if ls.rowBatch == epoch && ls.rowGPU == k.gpu && ls.rowT == k.t {
				last, lastRow = k, ls.row
			} else {
				r, added := sc.rowIdx.find(k, int32(len(sc.rows)))
				if added {
					sc.rows = append(sc.rows, wideRow{gpu: si.gpu, t: t, off: r})
					sc.vals = append(sc.vals, make([]float64, ncol)...)
					for j := 0; j < w; j++ {
						sc.present = append(sc.present, 0)
					}
				}
				last, lastRow = k, r
				ls.rowBatch, ls.rowGPU, ls.rowT, ls.row = epoch, k.gpu, k.t, r
			}
		}
		c := int(si.col)
		sc.vals[int(lastRow)*ncol+c] = p.Value
		sc.present[int(lastRow)*w+c/64] |= 1 << (c % 64)
		if si.wl != 0 {
			sc.rows[lastRow].wl = si.wl
		}
	}
	// A stable order makes concurrent writers lock rows in the same order.
	slices.SortFunc(sc.rows, func(a, b wideRow) int {
		if a.gpu != b.gpu {
			return int(a.gpu - b.gpu)
		}
		return cmpInt64(a.t, b.t)
	})
	slices.SortFunc(sc.extra, func(a, b extraRow) int {
		if a.gpu != b.gpu {
			return int(a.gpu - b.gpu)
		}
		if a.metric != b.metric {
			return int(a.metric - b.metric)
		}
		return cmpInt64(a.t, b.t)
	})
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func renderSample(s *sdk.Series, p sdk.Point) []byte {
	return []byte(fmt.Sprintf("%s%s %s %s", s.Name, s.Labels.String(),
		strconv.FormatFloat(p.Value, 'g', -1, 64), time.Unix(0, p.Time).UTC().Format(time.RFC3339Nano)))
}

// partitionTimes lists one time per partition-interval slot the rows touch.
func (o *Output) partitionTimes(dst []int64, times func(func(int64))) []int64 {
	iv := o.PartitionInterval.D().Microseconds()
	dst = dst[:0]
	lastSlot := int64(math.MinInt64)
	times(func(t int64) {
		s := floorDiv(t, iv)
		if s != lastSlot && !containsSlot(dst, s, iv) {
			dst = append(dst, t)
		}
		lastSlot = s
	})
	return dst
}

func containsSlot(ts []int64, slot, iv int64) bool {
	for _, t := range ts {
		if floorDiv(t, iv) == slot {
			return true
		}
	}
	return false
}

// store writes sc's rows in one transaction, falling back to isolating
// refused rows when the database rejects data.
func (o *Output) store(ctx context.Context, b *sdk.Batch, sc *scratch) error {
	if err := o.ensureAllPartitions(ctx, sc); err != nil {
		return o.wrap(fmt.Errorf("outputs.postgresql: partitions: %w", err))
	}
	sc.buf = encodeSamples(sc.buf[:0], sc.rows, sc)
	sc.ebuf = encodeExtra(sc.ebuf[:0], sc.extra)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		err = o.storeOnce(ctx, sc)
		if err == nil {
			return nil
		}
		if isNoPartition(err) && attempt == 0 {
			// A partition was dropped behind our back (retention by
			// another collector, or by hand): reload and recreate.
			o.parts.forget()
			if perr := o.ensureAllPartitions(ctx, sc); perr != nil {
				return o.wrap(fmt.Errorf("outputs.postgresql: partitions: %w", perr))
			}
			continue
		}
		break
	}
	switch classify(err) {
	case errData:
		return o.storeIsolating(ctx, b, sc)
	default:
		return o.wrap(fmt.Errorf("outputs.postgresql: write: %w", err))
	}
}

func (o *Output) ensureAllPartitions(ctx context.Context, sc *scratch) error {
	if len(sc.rows) > 0 {
		sc.parts = o.partitionTimes(sc.parts, func(f func(int64)) {
			for _, r := range sc.rows {
				f(r.t)
			}
		})
		if err := o.ensurePartitions(ctx, tableSamples, sc.parts); err != nil {
			return err
		}
	}
	if len(sc.extra) > 0 {
		sc.parts = o.partitionTimes(sc.parts, func(f func(int64)) {
			for _, r := range sc.extra {
				f(r.t)
			}
		})
		if err := o.ensurePartitions(ctx, tableExtra, sc.parts); err != nil {
			return err
		}
	}
	return nil
}

// storeOnce is one transaction: a plain COPY first when no conflict is
// expected, else (or after a unique violation) COPY into a staging table and
// INSERT ... ON CONFLICT DO UPDATE, which merges columns and is idempotent.
func (o *Output) storeOnce(ctx context.Context, sc *scratch) error {
	conn, err := o.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tryCopy := len(sc.rows) >= minCopyRows && o.conflictCredit.Load() <= 0
	if !tryCopy && len(sc.rows) >= minCopyRows {
		o.conflictCredit.Add(-1)
	}
	for {
		err := o.txWrite(ctx, conn.Conn(), sc, tryCopy)
		if err != nil && tryCopy && isUniqueViolation(err) {
			span := o.noteConflict()
			// Debug: the merge path costs PostgreSQL about twice the
			// CPU of a plain COPY; rows cut across batches (an input
			// batch cut by a smaller batch_size) show up here.
			o.log.Debug("batch collides with stored rows: merging it, and the next batches", "rows", len(sc.rows), "next_batches", span)
			tryCopy = false
			continue
		}
		if err == nil && tryCopy {
			o.conflictSpan.Store(o.conflictSpan.Load() / 2)
		}
		return err
	}
}

// noteConflict makes the next batches skip the COPY attempt, for a span that
// doubles (up to 64 batches) while conflicts keep coming, and returns it.
func (o *Output) noteConflict() int32 {
	span := min(max(o.conflictSpan.Load()*2, 4), 64)
	o.conflictSpan.Store(span)
	o.conflictCredit.Store(span)
	return span
}

// txWrite is one transaction of storeOnce: the plain COPY path (tryCopy)
// or the merge path, in the queries txPlans prepared (2 or 3 round trips).
// The server runs a query's statements in order and stops at the first that
// fails; its error is returned and the transaction it left open is rolled
// back, as a pgx.Tx's deferred Rollback did.
func (o *Output) txWrite(ctx context.Context, c *pgx.Conn, sc *scratch, tryCopy bool) (err error) {
	set, path := 0, 1
	if len(sc.rows) > 0 {
		set |= 1
	}
	if len(sc.extra) > 0 {
		set |= 2
	}
	if set == 0 {
		return nil
	}
	if tryCopy {
		path = 0
	}
	pg := c.PgConn()
	defer func() {
		if err != nil && !pg.IsClosed() && pg.TxStatus() != 'I' {
			_, _ = c.Exec(context.Background(), "ROLLBACK")
		}
	}()
	for i, data := range [2]*[]byte{&sc.buf, &sc.ebuf} {
		if q := o.sql.txCopy[path][set][i]; q != "" {
			if _, err = pg.CopyFrom(ctx, bytes.NewReader(*data), q); err != nil {
				// When the connection broke, CopyFrom returns before its
				// goroutine stopped reading the data: leave that array to
				// it, and keep a copy (store may send it again).
				*data = slices.Clone(*data)
				return err
			}
		}
	}
	tag, err := c.Exec(ctx, o.sql.txEnd[path][set])
	if err != nil {
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

func (o *Output) merge(ctx context.Context, tx pgx.Tx, create, copySQL, mergeSQL string, data []byte, truncate bool) error {
	if _, err := tx.Exec(ctx, create); err != nil {
		return err
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), copySQL); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, mergeSQL); err != nil {
		return err
	}
	if truncate {
		// Inside one transaction (the isolating path) the staging table
		// must be emptied between merges.
		table := strings.Fields(copySQL)[1]
		if _, err := tx.Exec(ctx, "TRUNCATE "+table); err != nil {
			return err
		}
	}
	return nil
}

// storeIsolating writes sc in one transaction, bisecting with savepoints to
// find the rows the database refuses; those are rejected, the rest committed.
func (o *Output) storeIsolating(ctx context.Context, b *sdk.Batch, sc *scratch) error {
	conn, err := o.pool.Acquire(ctx)
	if err != nil {
		return o.wrap(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return o.wrap(err)
	}
	defer tx.Rollback(context.Background())
	var rejects []sdk.Reject
	var buf []byte
	if len(sc.rows) > 0 {
		err := o.bisect(ctx, tx, len(sc.rows), func(lo, hi int) error {
			buf = encodeSamples(buf[:0], sc.rows[lo:hi], sc)
			return o.merge(ctx, tx, o.sql.stageSamples, o.sql.copyStageSamples, o.sql.mergeSamples, buf, true)
		}, func(i int, err error) {
			rejects = append(rejects, o.rejectRow(sc, sc.rows[i], err))
		})
		if err != nil {
			return o.wrap(fmt.Errorf("outputs.postgresql: write: %w", err))
		}
	}
	if len(sc.extra) > 0 {
		err := o.bisect(ctx, tx, len(sc.extra), func(lo, hi int) error {
			buf = encodeExtra(buf[:0], sc.extra[lo:hi])
			return o.merge(ctx, tx, o.sql.stageExtra, o.sql.copyStageExtra, o.sql.mergeExtra, buf, true)
		}, func(i int, err error) {
			r := sc.extra[i]
			rejects = append(rejects, sdk.Reject{
				Reason:   "outputs.postgresql: row refused: " + o.mask(err).Error(),
				Position: fmt.Sprintf("gpu %s time %s", o.cache.gpuKey(r.gpu), time.UnixMicro(r.t).UTC().Format(time.RFC3339Nano)),
				Raw:      []byte(fmt.Sprintf("gpu=%s time=%s metric_id=%d value=%s", o.cache.gpuKey(r.gpu), time.UnixMicro(r.t).UTC().Format(time.RFC3339Nano), r.metric, strconv.FormatFloat(r.v, 'g', -1, 64))),
			})
		})
		if err != nil {
			return o.wrap(fmt.Errorf("outputs.postgresql: write: %w", err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return o.wrap(fmt.Errorf("outputs.postgresql: commit: %w", err))
	}
	b.Rejects = append(b.Rejects, rejects...)
	if len(rejects) > 0 {
		o.log.Warn("rows refused by the database", "count", len(rejects), "first", rejects[0].Reason)
	}
	return nil
}

// bisect writes rows [0,n) with write(lo,hi) inside savepoints, splitting
// ranges the database refuses until single rows are found and reported.
func (o *Output) bisect(ctx context.Context, tx pgx.Tx, n int, write func(lo, hi int) error, bad func(int, error)) error {
	var rec func(lo, hi int) error
	rec = func(lo, hi int) error {
		if _, err := tx.Exec(ctx, "SAVEPOINT tc_isolate"); err != nil {
			return err
		}
		err := write(lo, hi)
		if err == nil {
			_, err = tx.Exec(ctx, "RELEASE SAVEPOINT tc_isolate")
			return err
		}
		if classify(err) != errData {
			return err
		}
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT tc_isolate"); rerr != nil {
			return rerr
		}
		if _, rerr := tx.Exec(ctx, "RELEASE SAVEPOINT tc_isolate"); rerr != nil {
			return rerr
		}
		if hi-lo == 1 {
			bad(lo, err)
			return nil
		}
		mid := (lo + hi) / 2
		if err := rec(lo, mid); err != nil {
			return err
		}
		return rec(mid, hi)
	}
	return rec(0, n)
}

func (o *Output) rejectRow(sc *scratch, r wideRow, err error) sdk.Reject {
	key := o.cache.gpuKey(r.gpu)
	ts := time.UnixMicro(r.t).UTC().Format(time.RFC3339Nano)
	var sb strings.Builder
	fmt.Fprintf(&sb, "gpu=%s time=%s", key, ts)
	w := words()
	for c := 0; c < ncol; c++ {
		if sc.present[int(r.off)*w+c/64]&(1<<(c%64)) != 0 {
			fmt.Fprintf(&sb, " %s=%s", gpumetrics.Canonical[c].Name, strconv.FormatFloat(sc.vals[int(r.off)*ncol+c], 'g', -1, 64))
		}
	}
	return sdk.Reject{
		Reason:   "outputs.postgresql: row refused: " + o.mask(err).Error(),
		Position: fmt.Sprintf("gpu %s time %s", key, ts),
		Raw:      []byte(sb.String()),
	}
}

// PostgreSQL binary COPY encoding.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// pgEpochMicros is 2000-01-01 00:00:00 UTC in unix microseconds.
const pgEpochMicros = 946684800000000

func encodeSamples(buf []byte, rows []wideRow, sc *scratch) []byte {
	w := words()
	buf = slices.Grow(buf, len(copyHeader)+len(rows)*(30+12*ncol)+2)
	buf = append(buf, copyHeader...)
	be := binary.BigEndian
	for _, r := range rows {
		buf = be.AppendUint16(buf, uint16(3+ncol))
		buf = be.AppendUint32(buf, 4)
		buf = be.AppendUint32(buf, uint32(r.gpu))
		buf = be.AppendUint32(buf, 8)
		buf = be.AppendUint64(buf, uint64(r.t-pgEpochMicros))
		if r.wl == 0 {
			buf = be.AppendUint32(buf, math.MaxUint32)
		} else {
			buf = be.AppendUint32(buf, 4)
			buf = be.AppendUint32(buf, uint32(r.wl))
		}
		vals := sc.vals[int(r.off)*ncol : int(r.off+1)*ncol]
		pres := sc.present[int(r.off)*w : int(r.off+1)*w]
		for c, v := range vals {
			if pres[c/64]&(1<<(c%64)) == 0 {
				buf = be.AppendUint32(buf, math.MaxUint32)
				continue
			}
			buf = be.AppendUint32(buf, 8)
			buf = be.AppendUint64(buf, math.Float64bits(v))
		}
	}
	return be.AppendUint16(buf, math.MaxUint16)
}

func encodeExtra(buf []byte, rows []extraRow) []byte {
	if len(rows) == 0 {
		return buf
	}
	buf = slices.Grow(buf, len(copyHeader)+len(rows)*50+2)
	buf = append(buf, copyHeader...)
	be := binary.BigEndian
	for _, r := range rows {
		buf = be.AppendUint16(buf, 5)
		buf = be.AppendUint32(buf, 4)
		buf = be.AppendUint32(buf, uint32(r.gpu))
		buf = be.AppendUint32(buf, 4)
		buf = be.AppendUint32(buf, uint32(r.metric))
		buf = be.AppendUint32(buf, 8)
		buf = be.AppendUint64(buf, uint64(r.t-pgEpochMicros))
		buf = be.AppendUint32(buf, 8)
		buf = be.AppendUint64(buf, math.Float64bits(r.v))
		if r.wl == 0 {
			buf = be.AppendUint32(buf, math.MaxUint32)
		} else {
			buf = be.AppendUint32(buf, 4)
			buf = be.AppendUint32(buf, uint32(r.wl))
		}
	}
	return be.AppendUint16(buf, math.MaxUint16)
}

// CeilingRows resolves b like Write and returns its final gpu_samples rows
// as values in Columns() order (nil for NULL), for CeilingCopy. Extra
// (non-canonical) metrics are left out.
func (o *Output) CeilingRows(ctx context.Context, b *sdk.Batch) ([][]any, error) {
	sc := newScratch()
	if err := o.build(ctx, b, sc); err != nil {
		return nil, err
	}
	out := make([][]any, len(sc.rows))
	w := words()
	for i, r := range sc.rows {
		row := make([]any, 3+ncol)
		row[0], row[1] = r.gpu, time.UnixMicro(r.t).UTC()
		if r.wl != 0 {
			row[2] = r.wl
		}
		for c := 0; c < ncol; c++ {
			if sc.present[int(r.off)*w+c/64]&(1<<(c%64)) != 0 {
				row[3+c] = sc.vals[int(r.off)*ncol+c]
			}
		}
		out[i] = row
	}
	return out, nil
}

// CeilingCopy is the benchmark ceiling: a plain pgx CopyFrom of final rows
// (from CeilingRows) into schema.gpu_samples, with no conflict handling. The
// partitions for the rows' times must exist (Write or Init creates them).
func CeilingCopy(ctx context.Context, conn *pgx.Conn, schema string, rows [][]any) (int64, error) {
	return conn.CopyFrom(ctx, pgx.Identifier{schema, tableSamples}, Columns(), pgx.CopyFromRows(rows))
}
