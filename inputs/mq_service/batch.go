package mq_service

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// msgTrack follows one received message through the batches that hold its
// data. pending is set while the batches are built (by the receive loop,
// before any of them is emitted) and then only changed under
// Input.trackMu by done callbacks; the message is acknowledged when it
// reaches zero, negatively if any of its batches failed.
type msgTrack struct {
	id      string
	pending int
	err     error
}

// pendingBatch is a batch being built or in the pipeline, with the messages
// whose data it holds.
type pendingBatch struct {
	b           *sdk.Batch
	msgs        []*msgTrack
	rejectBytes int
	fired       atomic.Bool // done already handled
}

// release drops the batch once it was handed to the pipeline; only the
// message tracks are needed afterwards.
func (p *pendingBatch) release() { p.b = nil }

func (p *pendingBatch) empty() bool { return len(p.msgs) == 0 }

// attach records that m has data in p.
func (p *pendingBatch) attach(m *msgTrack) {
	if n := len(p.msgs); n > 0 && p.msgs[n-1] == m {
		return
	}
	p.msgs = append(p.msgs, m)
	m.pending++
}

// builder merges parsed messages into batches of at most maxPoints points
// (and bounded reject bytes), splitting a large message over several
// batches. It is owned by the receive loop.
//
// Series of messages whose parser does not share its label slices (see
// merge) are interned in the batch being built by a 64-bit hash of their
// name and labels, checked against the series found (sdk.SeriesIndex kept
// the whole ~300-byte key of every series: 3 MiB per 10,000-series batch,
// and a quarter of the input's CPU under the dcgm-csv bench). A series
// whose hash collides with another's is added without being indexed (the
// batch may then hold it twice, which is valid; the odds are ~n²/2⁶⁵ per
// batch of n series).
type builder struct {
	maxPoints int
	// hintPoints and hintSeries are the sizes of the last batch started
	// before the current one (newCur sizes a new batch with them).
	hintPoints, hintSeries int
	full                   []*pendingBatch // complete, waiting to be emitted
	cur                    *pendingBatch
	remap                  []int32 // message series -> cur series, -1 unknown

	ids  map[uint64]uint32 // series hash -> index in cur's batch
	seed maphash.Seed
	key  []byte // scratch for series keys

	// reusable is an emitted batch whose memory newCur may take (see
	// spare); nil: none.
	reusable *sdk.Batch
	// noWhole turns appendWhole off (tests compare merge with and
	// without it).
	noWhole bool
}

func newBuilder(maxPoints int) *builder { return &builder{maxPoints: maxPoints} }

// newCur starts a new batch.
func (bl *builder) newCur() {
	if c := bl.cur; c != nil && c.b != nil {
		// The next batch is sized like the last one: it grows once
		// instead of doubling its way up (copying ~10,000 series and
		// points several times).
		bl.hintPoints, bl.hintSeries = len(c.b.Points), len(c.b.Series)
	}
	if b := bl.reusable; b != nil {
		bl.reusable = nil
		b.Reset()
		bl.cur = &pendingBatch{b: b}
		bl.resetIDs()
		return
	}
	b := &sdk.Batch{}
	if bl.hintPoints > 0 {
		b.Points = make([]sdk.Point, 0, min(bl.hintPoints, bl.maxPoints))
		b.Series = make([]sdk.Series, 0, min(bl.hintSeries, bl.hintPoints, bl.maxPoints))
	}
	bl.cur = &pendingBatch{b: b}
	bl.resetIDs()
}

// resetIDs empties the series index of the current batch.
func (bl *builder) resetIDs() {
	if bl.ids == nil {
		bl.ids = make(map[uint64]uint32)
		bl.seed = maphash.MakeSeed()
	}
	clear(bl.ids)
}

// spare offers the memory of b, a batch emitted to an accumulator that
// copied it (sdk.BatchCopier), to the next new batch. Only b's arrays are
// reused; the builder keeps one such batch.
func (bl *builder) spare(b *sdk.Batch) {
	if b != nil && bl.reusable == nil {
		bl.reusable = b
	}
}

func (bl *builder) rotate() {
	if bl.cur != nil && !bl.cur.empty() {
		bl.full = append(bl.full, bl.cur)
	}
	bl.newCur()
	for k := range bl.remap {
		bl.remap[k] = -1
	}
}

// seriesID returns the index of series (name, labels) in cur's batch,
// adding it when new.
func (bl *builder) seriesID(name string, labels sdk.Labels) uint32 {
	k := append(bl.key[:0], name...)
	for _, l := range labels {
		k = append(k, 0)
		k = append(k, l.Key...)
		k = append(k, 1)
		k = append(k, l.Value...)
	}
	bl.key = k
	h := maphash.Bytes(bl.seed, k)
	b := bl.cur.b
	if id, ok := bl.ids[h]; ok {
		if s := b.Series[id]; s.Name == name && slices.Equal(s.Labels, labels) {
			return id
		}
		return b.AddSeries(name, labels) // a collision: not indexed
	}
	id := b.AddSeries(name, labels)
	bl.ids[h] = id
	return id
}

// add merges the points and rejects of one parsed message (src) into the
// batches. It copies what it keeps; src may be reused afterwards.
func (bl *builder) add(m *msgTrack, src *sdk.Batch) { bl.merge(m, src, false) }

// merge is add, where sharedLabels says that src's labels come from a
// parser that shares its label slices (parsers.SharesLabels). Then the
// series of src are added to the batch as they are, not interned across
// messages: such a parser already gives each series of a payload one
// entry, messages of one batch come from different hosts in a cluster (no
// series in common), and interning cost the input ~13% of its CPU under
// `make bench` (a lookup in a table of every series of the batch, which
// does not fit a CPU cache). A batch built from several messages of one
// host (a backlog) may then list a series once per message, which the SDK
// allows: downstream, every entry is a series like any other, and the
// plugin protocol's stream dictionary sends it once.
func (bl *builder) merge(m *msgTrack, src *sdk.Batch, sharedLabels bool) {
	if bl.cur == nil {
		bl.newCur()
	}
	// A message that fits in a batch is not cut across two: the current
	// batch goes out a little short instead. A message is one source's
	// record of one instant (a host's scrape, its export rows), so every
	// (GPU, time) row it fills stays in one batch, and an output writing
	// one row per (GPU, time) sees each row once, complete: cut rows
	// reached PostgreSQL in two transactions, the second of which then
	// took the slower merge path (INSERT ... ON CONFLICT) for nearly every
	// batch of `make bench`.
	if n, have := len(src.Points), bl.cur.b.Len(); have > 0 && have+n > bl.maxPoints && n <= bl.maxPoints {
		bl.rotate()
	}
	if sharedLabels && !bl.noWhole && bl.appendWhole(m, src) {
		return
	}
	bl.remap = bl.remap[:0]
	for range src.Series {
		bl.remap = append(bl.remap, -1)
	}
	for _, p := range src.Points {
		if bl.cur.b.Len() >= bl.maxPoints {
			bl.rotate()
		}
		bl.cur.attach(m)
		if int(p.Series) >= len(src.Series) {
			// A parser bug; keep the data visible instead of panicking.
			bl.cur.b.Reject(fmt.Sprintf("parser produced point with series %d of %d", p.Series, len(src.Series)),
				"", nil)
			continue
		}
		s := bl.remap[p.Series]
		if s < 0 {
			ser := src.Series[p.Series]
			if sharedLabels {
				s = int32(bl.cur.b.AddSeries(ser.Name, ser.Labels))
			} else {
				s = int32(bl.seriesID(ser.Name, ser.Labels))
			}
			bl.remap[p.Series] = s
		}
		bl.cur.b.Add(uint32(s), p.Time, p.Value)
	}
	for _, r := range src.Rejects {
		if n := len(bl.cur.b.Rejects); n > 0 &&
			(n >= bl.maxPoints || bl.cur.rejectBytes+len(r.Raw) > maxBatchRejectBytes) {
			bl.rotate()
		}
		bl.cur.attach(m)
		bl.cur.b.Rejects = append(bl.cur.b.Rejects, r)
		bl.cur.rejectBytes += len(r.Raw)
	}
}

// appendWhole is merge's common case, done in one pass: src (a shared-labels
// parser's) fits in the current batch, and its points name its series in
// order of first use, every series used (as the parsers add them). Then
// merge would give series i of src the id base+i, where base is the number
// of series in the current batch: appendWhole appends src's series as they
// are and its points with base added, and attaches m once. It reports
// false, having changed nothing, when src is not of that shape.
func (bl *builder) appendWhole(m *msgTrack, src *sdk.Batch) bool {
	b := bl.cur.b
	n := len(src.Points)
	if n == 0 || len(src.Rejects) > 0 || b.Len()+n > bl.maxPoints || len(src.Series) > n {
		return false
	}
	next := uint32(0) // the series the next new one must be
	for _, p := range src.Points {
		if p.Series == next {
			next++
		} else if p.Series > next {
			return false
		}
	}
	if int(next) != len(src.Series) {
		return false
	}
	base := uint32(len(b.Series))
	b.Series = append(b.Series, src.Series...)
	at := len(b.Points)
	b.Points = slices.Grow(b.Points, n)[:at+n]
	dst := b.Points[at:]
	for i, p := range src.Points {
		p.Series += base
		dst[i] = p
	}
	bl.cur.attach(m)
	return true
}

// take returns the batches ready to emit: the full ones, and the current
// one too when all is set or it reached the point cap.
func (bl *builder) take(all bool) []*pendingBatch {
	out := bl.full
	bl.full = nil
	if bl.cur != nil && !bl.cur.empty() && (all || bl.cur.b.Len() >= bl.maxPoints) {
		out = append(out, bl.cur)
		bl.hintPoints, bl.hintSeries = len(bl.cur.b.Points), len(bl.cur.b.Series)
		bl.cur = nil
	}
	return out
}

// points is the number of points waiting in the builder.
func (bl *builder) pending() bool {
	return len(bl.full) > 0 || (bl.cur != nil && !bl.cur.empty())
}

// batchDone handles the fate of an emitted (or failed) batch: messages all
// of whose batches are done get acknowledged. It never blocks.
func (i *Input) batchDone(p *pendingBatch, d sdk.Delivery) {
	if !p.fired.CompareAndSwap(false, true) {
		return
	}
	var ready []*msgTrack
	i.trackMu.Lock()
	for _, m := range p.msgs {
		if !d.OK && m.err == nil {
			m.err = d.Err
			if m.err == nil {
				m.err = errors.New("not delivered")
			}
		}
		m.pending--
		if m.pending == 0 {
			ready = append(ready, m)
		}
	}
	i.trackMu.Unlock()
	for _, m := range ready {
		i.finish(m)
	}
}

// finish acknowledges a message whose fate is known.
func (i *Input) finish(m *msgTrack) {
	i.inflightDone(m.id)
	acks := i.ackerOrNil()
	if acks == nil {
		i.stats.ackDropped.Add(1)
		return
	}
	if m.err != nil {
		acks.enqueue(m.id, false, truncate("delivery failed: "+m.err.Error(), 1024))
		return
	}
	acks.enqueue(m.id, true, "")
}

func (i *Input) ackerOrNil() *acker {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.acks
}

// parserCache holds the parsers by format; owned by the receive loop.
type parserCache struct {
	newParser func(string, parsers.Options) (parsers.Parser, error)
	opts      parsers.Options
	ok        map[string]parsers.Parser
	bad       map[string]error
}

func (c *parserCache) get(format string) (parsers.Parser, error) {
	if p, ok := c.ok[format]; ok {
		return p, nil
	}
	if err, ok := c.bad[format]; ok {
		return nil, err
	}
	p, err := c.newParser(format, c.opts)
	if err == nil && p == nil {
		err = fmt.Errorf("no parser for %q", format)
	}
	if err != nil {
		if len(c.bad) < maxCachedParserErrors {
			c.bad[format] = err
		}
		return nil, err
	}
	c.ok[format] = p
	return p, nil
}

// contentType returns the normalised format named by a message's metadata,
// or "" when it names none.
func contentType(md map[string]string) string {
	ct, ok := md["content-type"]
	if !ok {
		for k, v := range md {
			if strings.EqualFold(k, "content-type") {
				ct, ok = v, true
				break
			}
		}
	}
	if !ok {
		return ""
	}
	if k := strings.IndexByte(ct, ';'); k >= 0 {
		ct = ct[:k]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// parseMessage parses m into dst (empty on entry). On error dst holds
// nothing but one reject carrying the (truncated) payload; the returned
// error says why, for counting.
//
// sharedLabels reports that dst's labels come from a parser that shares
// its label slices (parsers.SharesLabels).
func (i *Input) parseMessage(pc *parserCache, m *mqpb.Message, dst *sdk.Batch, now time.Time) (sharedLabels bool, err error) {
	pos := "message " + m.GetId()
	format := contentType(m.GetMetadata())
	if format == "" {
		format = i.DataFormat
	}
	msgTime := now
	if ts := m.GetTimestamp(); ts != nil && ts.IsValid() && (ts.Seconds != 0 || ts.Nanos != 0) {
		msgTime = ts.AsTime()
	}
	p, err := pc.get(format)
	if err != nil {
		err = fmt.Errorf("unknown content-type %q: %w", format, err)
	} else {
		err = safeParse(p, m.GetPayload(), msgTime, pos, dst)
		if err != nil {
			err = fmt.Errorf("%s payload does not parse: %w", format, err)
		}
	}
	if err != nil {
		dst.Reset()
		payload := m.GetPayload()
		raw := payload
		if len(raw) > maxRejectRaw {
			raw = raw[:maxRejectRaw]
		}
		reason := fmt.Sprintf("%v (payload %d bytes", err, len(payload))
		if len(raw) < len(payload) {
			reason += fmt.Sprintf(", first %d kept", len(raw))
		}
		dst.Reject(reason+")", pos, append([]byte(nil), raw...))
		return false, err
	}
	return parsers.SharesLabels(p), nil
}

// safeParse runs a parser, turning a panic on bad input into an error.
func safeParse(p parsers.Parser, payload []byte, t time.Time, pos string, dst *sdk.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser panicked: %v", r)
		}
	}()
	return p.Parse(payload, t, pos, dst)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
