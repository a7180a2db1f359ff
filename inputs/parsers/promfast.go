package parsers

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	dto "github.com/prometheus/client_model/go"
)

// The Prometheus fast path.
//
// expfmt's TextParser costs ~9 µs per dcgm-exporter sample (it builds a
// protobuf LabelPair per label and a map per family on every scrape),
// while a cluster scrapes the same series again and again. Like
// Prometheus's own scrape cache, the parser remembers the series part of
// every sample line that expfmt accepted (the bytes before the value:
// name and label set) and the series it gave; a payload whose every line
// is known this way is emitted from the cache, with only the value and
// timestamp parsed, exactly as expfmt parses them. expfmt stays the parser
// of record: any line the cache does not know, and anything unusual (a
// summary or histogram family, a comment line not seen in an accepted
// payload, a second HELP or TYPE line for a name, a TYPE line after samples
// of its name, other spacing), sends the whole payload through expfmt,
// which also fills the cache. TestPrometheusFastPath and FuzzPrometheus
// check that both paths give the same samples and the same errors.

const (
	// promFastMaxMeta bounds the comment lines a state remembers as
	// accepted.
	promFastMaxMeta = 1 << 14
	// promFastMaxNames, promFastMaxBlocks and promFastMaxBlockBytes bound
	// the metric names and label sets a state remembers for first sight
	// (see compose): a 1,024-GPU cluster has ~30 names and 1,024 label
	// sets of ~250 bytes.
	promFastMaxNames      = 1 << 14
	promFastMaxBlocks     = 1 << 16
	promFastMaxBlockBytes = 16 << 20
)

// promName is a metric name a payload's HELP, TYPE or sample line named,
// with what kinds of line named it.
type promName struct {
	name                 []byte
	help, typ, hasSample bool
}

// fastParse emits payload from the cache when every line is known; it
// returns false, having appended nothing, otherwise. A payload whose only
// unknown lines are sample lines (a host's first scrape) is first sighted
// (see firstSight) and tried again.
//
// fastScan appends each sample as it goes; when it gives up (or finds an
// unknown line), fastParse takes them back: the batch's points and series
// are cut back to their lengths before, the label slab is put back as it
// was (the labels it handed out belong to the series cut off), and the
// cache's payload number moves on, so that no cached series counts as
// already in the batch.
func (em *promEmitter) fastParse(payload []byte) bool {
	st := em.st
	if st.cache.noRows {
		return false
	}
	defer func() {
		st.fastNames = st.fastNames[:0]
		st.missed = st.missed[:0]
	}()
	b := em.b
	points, series, slab := len(b.Points), len(b.Series), st.cache.slab
	undo := func() {
		b.Points = b.Points[:points]
		clear(b.Series[series:])
		b.Series = b.Series[:series]
		st.cache.slab = slab
		st.cache.gen++
	}
	// The prediction goes on from the last row of the previous payload
	// (the source's previous scrape, or the host before it): a payload's
	// first line is predicted too.
	prev := st.cache.prev
	ok, missing, rows := em.fastScan(payload)
	sighted := false
	if ok && missing {
		undo()
		if !em.firstSight(payload) {
			return false
		}
		sighted = true
		st.cache.prev = prev
		ok, missing, rows = em.fastScan(payload)
	}
	if !ok || missing || rows == 0 {
		undo()
		return false
	}
	if sighted {
		st.firstSights++
	}
	if st.metaDiverged {
		st.keepMetaLines(payload)
	}
	return true
}

// fastScan checks payload line by line for the fast path and appends its
// samples to the batch (see fastParse), counting its sample lines in rows.
// ok is false when the payload needs expfmt; missing reports sample lines
// whose series is not known (listed in st.missed; after the first of them
// nothing is appended), in a payload that is otherwise fine.
func (em *promEmitter) fastScan(payload []byte) (ok, missing bool, rows int) {
	st := em.st
	names := st.fastNames[:0]
	st.missed = st.missed[:0]
	st.metaLines = st.metaLines[:0]
	st.metaDiverged = false
	metaNext := 0 // the entry of st.metaSeq the next comment line is tried against
	quickLines, metaHits := 0, 0
	defer func() {
		st.quickLines += quickLines
		st.metaHits += metaHits
		st.fastNames = names
	}()
	// seen returns the entry of name, adding it.
	seen := func(name []byte) *promName {
		// Scrapes name a few dozen families: a linear scan beats a map.
		for i := len(names) - 1; i >= 0; i-- {
			if bytes.Equal(names[i].name, name) {
				return &names[i]
			}
		}
		names = append(names, promName{name: name})
		return &names[len(names)-1]
	}
	var last []byte // the name of the last sample line
	for off := 0; off < len(payload); {
		start := off
		var (
			name, value, ts []byte
			e               *cachedSeries
			lineLen         int
		)
		// The row predicted to come next, when its key is kept: a line
		// that is that key and a tail is that row (see promQuick).
		quick := false
		if r := st.cache.predicted(); r != nil && r.key != nil && payload[off] != '#' {
			var nameLen int
			nameLen, value, ts, lineLen, quick = r.promQuick(payload[off:])
			if quick {
				quickLines++
				st.cache.follow(r)
				e, name = r.e, payload[off:off+nameLen]
				off += lineLen + 1
			}
		}
		if !quick {
			var line []byte
			var kind byte
			if payload[off] == '#' && metaNext < len(st.metaSeq) {
				// The comment line the last payload had here (see
				// promMetaRec).
				rec := st.metaSeq[metaNext]
				end := off + rec.n
				if end <= len(payload) && (end == len(payload) || payload[end] == '\n') &&
					string(payload[off:end]) == string(st.metaBuf[rec.off:rec.off+rec.n]) {
					metaNext++
					metaHits++
					line, kind, name = payload[off:end], rec.kind, payload[off+len("# HELP "):off+len("# HELP ")+rec.nameLen]
					off = end + 1
				} else {
					metaNext = len(st.metaSeq) // diverged: check the rest one by one
				}
			}
			if line == nil {
				line, off = nextLine(payload, off)
				if len(line) == 0 {
					continue
				}
				if line[0] == '#' {
					var ok bool
					kind, name, ok = promMetaLine(line)
					if !ok || !st.metaOK(line) {
						return false, false, 0
					}
					st.metaDiverged = true // a line not in st.metaSeq
				}
			}
			if line[0] == '#' {
				st.metaLines = append(st.metaLines, promMetaRec{off: start, n: len(line), nameLen: len(name), kind: kind})
				n := seen(name)
				if kind == 'H' {
					if n.help {
						return false, false, 0 // expfmt: second HELP line
					}
					n.help = true
				} else {
					if n.typ || n.hasSample {
						return false, false, 0 // expfmt: second TYPE line, or TYPE after samples
					}
					n.typ = true
				}
				continue
			}
			var series []byte
			var ok bool
			series, name, value, ts, ok = splitPromSample(line)
			if !ok {
				return false, false, 0
			}
			e = st.cache.row(series)
			if e == nil {
				e = st.compose(series, name)
			}
			lineLen = len(line)
		}
		v, err := expfmtFloat(value)
		if err != nil {
			return false, false, 0
		}
		t := em.msgNanos
		if ts != nil {
			ms, err := strconv.ParseInt(bstr(ts), 10, 64)
			if err != nil {
				return false, false, 0
			}
			t = ms * int64(time.Millisecond)
		}
		if !bytes.Equal(name, last) {
			n := seen(name)
			if n.hasSample {
				// Samples of a family apart: expfmt's output groups them,
				// so the order would differ.
				return false, false, 0
			}
			n.hasSample = true
			last = name
		}
		rows++
		if e == nil {
			missing = true
			st.missed = append(st.missed, [2]int{start, start + lineLen})
			continue
		}
		if missing || math.IsNaN(v) || (isDCGMBlank(v) && strings.HasPrefix(e.name, "DCGM_")) {
			continue
		}
		id := e.id
		if e.gen != st.cache.gen {
			// What seriesCache.add does, without its division where the
			// slab is not used (shared labels).
			hint := 0
			if !st.cache.shared {
				hint = (len(payload)-off)/(lineLen+1) + 1
			}
			id = st.cache.id(em.b, e, hint)
		}
		em.b.Add(id, t, v)
	}
	return true, missing, rows
}

// compose returns the series of a sample line the row cache does not know
// when both its name and its label set (series minus name: "{...}", or
// nothing) are known from lines expfmt accepted, and remembers it as a
// row; nil otherwise.
//
// This gives what expfmt gives: the fast path only takes lines of counter,
// gauge and untyped families (the only TYPE lines it accepts), where
// expfmt reads a line's label set without regard to its name (le and
// quantile mean something only in histograms and summaries; a quoted name
// inside the braces is never learned, the name outside them being
// required), and a label set ends at the line's last '}' whenever expfmt
// accepted the line with a numeric value and timestamp after it (see
// splitPromSample).
func (st *promState) compose(series, name []byte) *cachedSeries {
	n, ok := st.knownNames[bstr(name)]
	if !ok {
		return nil
	}
	ls, ok := st.blocks[bstr(series[len(name):])]
	if !ok {
		return nil
	}
	e := st.cache.series(n, ls)
	st.cache.setRow(series, e, rowTemplate{})
	return e
}

// firstSight learns the unknown sample lines that fastScan listed in
// st.missed cheaply: it hands expfmt, of the missed lines, only the first
// with each unknown label set or unknown name, in payload order, and
// learns from what expfmt makes of them. A host's first scrape (~8 label
// sets, one per GPU, over ~240 lines, with names every other host's
// scrape taught already) thus costs expfmt ~8 lines instead of ~240 and
// its ~60 HELP and TYPE lines. Those are left out: fastScan accepted the
// payload's comment lines, so its families are counters, gauges or
// untyped, and expfmt reads a sample line of any of these alike (see
// compose). It reports whether expfmt accepted the lines; fastScan then
// composes the other lines. Anything expfmt rejects goes to the full
// parse, which reports it as always.
func (em *promEmitter) firstSight(payload []byte) bool {
	st := em.st
	buf := st.pick[:0]
	var newNames, newBlocks map[string]bool
	for _, at := range st.missed {
		line := payload[at[0]:at[1]]
		series, name, _, _, ok := splitPromSample(line)
		if !ok {
			return false
		}
		blk := series[len(name):]
		_, knownName := st.knownNames[bstr(name)]
		_, knownBlock := st.blocks[bstr(blk)]
		take := false
		if !knownName && !newNames[string(name)] {
			if newNames == nil {
				newNames = make(map[string]bool)
			}
			newNames[string(name)] = true
			take = true
		}
		if !knownBlock && !newBlocks[string(blk)] {
			if newBlocks == nil {
				newBlocks = make(map[string]bool)
			}
			newBlocks[string(blk)] = true
			take = true
		}
		if take {
			buf = append(append(buf, line...), '\n')
		}
	}
	st.pick = buf[:0]
	if len(newNames) == 0 && len(newBlocks) == 0 {
		return false
	}
	fams, err := st.parseText(buf)
	if err != nil {
		return false
	}
	em.learn(buf, fams)
	return true
}

// learn remembers the lines of payload, which expfmt parsed into fams
// without error, for the fast path: the comment lines, and the series of
// each sample line of a counter, gauge or untyped family. It learns
// nothing from a payload with a summary or histogram family, or with a
// line it cannot match to expfmt's result.
func (em *promEmitter) learn(payload []byte, fams map[string]*dto.MetricFamily) {
	st := em.st
	if st.cache.noRows {
		return
	}
	for _, mf := range fams {
		switch mf.GetType() {
		case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
		default:
			return
		}
	}
	st.cache.prev = nil
	// next[name] is the index of the next metric of family name.
	next := st.fastNext
	clear(next)
	type learned struct {
		series, name []byte
		e            *cachedSeries
	}
	var rows []learned
	var metas [][]byte
	for off := 0; off < len(payload); {
		var line []byte
		line, off = nextLine(payload, off)
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			if _, _, ok := promMetaLine(line); ok {
				metas = append(metas, line)
			}
			continue
		}
		series, name, value, ts, ok := splitPromSample(line)
		if !ok {
			return
		}
		mf := fams[bstr(name)]
		if mf == nil {
			return
		}
		i := next[mf.GetName()]
		next[mf.GetName()] = i + 1
		if i >= len(mf.GetMetric()) {
			return
		}
		m := mf.GetMetric()[i]
		// The line must be the metric expfmt made of it.
		v, err := expfmtFloat(value)
		if err != nil || !sameFloat(v, promValue(mf, m)) {
			return
		}
		if (ts == nil) != (m.TimestampMs == nil) {
			return
		}
		if ts != nil {
			ms, err := strconv.ParseInt(bstr(ts), 10, 64)
			if err != nil || ms != m.GetTimestampMs() {
				return
			}
		}
		rows = append(rows, learned{series: series, name: name, e: em.seriesOf(mf.GetName(), m, "", "", "")})
	}
	if len(st.knownNames)+len(rows) > promFastMaxNames {
		clear(st.knownNames)
	}
	if len(st.blocks)+len(rows) > promFastMaxBlocks || st.blockBytes > promFastMaxBlockBytes {
		clear(st.blocks)
		st.blockBytes = 0
	}
	for _, r := range rows {
		st.cache.setRow(r.series, r.e, rowTemplate{})
		if _, ok := st.knownNames[bstr(r.name)]; !ok {
			st.knownNames[string(r.name)] = r.e.name
		}
		blk := r.series[len(r.name):]
		if _, ok := st.blocks[bstr(blk)]; !ok {
			st.blocks[string(blk)] = r.e.labels
			st.blockBytes += len(blk)
		}
	}
	if len(st.meta)+len(metas) > promFastMaxMeta {
		clear(st.meta)
		st.metaSeq = st.metaSeq[:0] // its lines may no longer be in meta
	}
	for _, l := range metas {
		st.meta[string(l)] = struct{}{}
	}
}

// promMetaRec is a comment line of a payload the fast path emitted (in
// st.metaSeq: its bytes are st.metaBuf[off:off+n]; in st.metaLines, the
// scan's scratch list: payload[off:off+n]), with what promMetaLine made of
// it: kind, and the length of the name that follows "# HELP " or "# TYPE ".
//
// A payload's comment lines usually repeat the last payload's byte for
// byte (a host's families do not change between scrapes; in a cluster all
// hosts serve the same HELP and TYPE lines). fastScan compares each comment
// line with the one the last payload had at its place (st.metaSeq, in
// order) and takes the recorded kind and name when they are equal: every
// recorded line passed promMetaLine and metaOK, and stays in st.meta
// until st.meta is emptied, which empties st.metaSeq too. At the first
// line that differs fastScan checks the rest one by one, and once such a
// payload is emitted its comment lines become the sequence (keepMetaLines).
// st.metaSeq and st.metaBuf belong to the state, as the rest of it.
type promMetaRec struct {
	off, n, nameLen int
	kind            byte
}

// keepMetaLines makes the comment lines that fastScan listed in
// st.metaLines (lines of payload, all checked) the sequence the next
// payloads' comment lines are compared with.
func (st *promState) keepMetaLines(payload []byte) {
	st.metaBuf = st.metaBuf[:0]
	st.metaSeq = st.metaSeq[:0]
	for _, r := range st.metaLines {
		off := len(st.metaBuf)
		st.metaBuf = append(st.metaBuf, payload[r.off:r.off+r.n]...)
		r.off = off
		st.metaSeq = append(st.metaSeq, r)
	}
}

// metaOK reports whether comment line was seen in a payload expfmt
// accepted.
func (st *promState) metaOK(line []byte) bool {
	_, ok := st.meta[bstr(line)]
	return ok
}

// promValue is the value of a counter, gauge or untyped metric.
func promValue(mf *dto.MetricFamily, m *dto.Metric) float64 {
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

func sameFloat(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || (math.IsNaN(a) && math.IsNaN(b))
}

// promMetaLine recognises "# HELP name ..." and "# TYPE name type" with
// single spaces, the type one the fast path handles (counter, gauge,
// untyped). kind is 'H' or 'T'.
func promMetaLine(line []byte) (kind byte, name []byte, ok bool) {
	var rest []byte
	switch {
	case bytes.HasPrefix(line, []byte("# HELP ")):
		kind, rest = 'H', line[len("# HELP "):]
	case bytes.HasPrefix(line, []byte("# TYPE ")):
		kind, rest = 'T', line[len("# TYPE "):]
	default:
		return 0, nil, false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return 0, nil, false
	}
	name, rest = rest[:sp], rest[sp+1:]
	for _, c := range name {
		if !isPromNameByte(c) {
			return 0, nil, false
		}
	}
	if kind == 'T' {
		switch strings.ToLower(bstr(rest)) {
		case "counter", "gauge", "untyped":
		default:
			return 0, nil, false
		}
	}
	return kind, name, true
}

// splitPromSample splits "name{labels} value[ timestamp]" (blanks or tabs
// between the parts, nothing after them) into its series part (name and
// label set), name, value and timestamp (nil when absent). ok is false for
// other shapes.
//
// The label set ends at the line's last '}': only the value and the
// timestamp, which hold no '}' when they are numbers, can follow it. The
// split is not checked further: the fast path only uses a series part
// that the cache learned from a line expfmt accepted with this same split
// (learn compares the value and timestamp with expfmt's), and the cache
// holds nothing else.
func splitPromSample(line []byte) (series, name, value, ts []byte, ok bool) {
	var i int
	if b := bytes.IndexByte(line, '{'); b >= 0 {
		name = line[:b]
		j := bytes.LastIndexByte(line, '}')
		if j < b {
			return nil, nil, nil, nil, false
		}
		i = j + 1
	} else {
		i = tokenEnd(line)
		name = line[:i]
	}
	if len(name) == 0 || name[0] == '#' {
		return nil, nil, nil, nil, false
	}
	value, ts, ok = splitPromTail(line[i:])
	if !ok {
		return nil, nil, nil, nil, false
	}
	return line[:i], name, value, ts, true
}

// splitPromTail splits what follows a sample line's series part (blanks,
// the value, and optionally blanks and the timestamp) as splitPromSample
// does.
func splitPromTail(rest []byte) (value, ts []byte, ok bool) {
	k := skipBlanks(rest)
	if k == 0 || k == len(rest) {
		return nil, nil, false
	}
	rest = rest[k:]
	end := tokenEnd(rest)
	value, rest = rest[:end], rest[end:]
	if len(rest) == 0 {
		return value, nil, true
	}
	k = skipBlanks(rest)
	if k == len(rest) {
		return nil, nil, false // trailing blanks: expfmt wants a timestamp
	}
	rest = rest[k:]
	end = tokenEnd(rest)
	if end != len(rest) {
		return nil, nil, false
	}
	return value, rest, true
}

// promQuick reads the sample line at the start of rest (up to its '\n' or
// the end) as the row r, whose key is kept, without looking for the
// line's end, braces or the series part first: the line must be r's key
// followed by a tail holding no brace. Then splitPromSample would split it
// into r's key and that tail (the key holds the line's first '{' and ends
// with its last '}', or, without braces, holds neither a brace nor a blank,
// and the tail starts with a blank), and row would find r (the predicted
// row, whose kept key is compared): the results are those of the full
// path, which takes any other line. nameLen is the length of the metric
// name (the key up to its '{'), lineLen that of the line without its '\n'.
func (r *rowEntry) promQuick(rest []byte) (nameLen int, value, ts []byte, lineLen int, ok bool) {
	k := r.key
	if len(rest) <= len(k) || string(rest[:len(k)]) != string(k) {
		return 0, nil, nil, 0, false
	}
	// One pass over the tail, as splitPromTail splits the line's tail
	// (blanks, the value, then optionally blanks and the timestamp, up to
	// the '\n'), and no brace in it.
	tail := rest[len(k):]
	i := 0
	for i < len(tail) && (tail[i] == ' ' || tail[i] == '\t') {
		i++
	}
	if i == 0 {
		return 0, nil, nil, 0, false
	}
	vs := i
	i = promToken(tail, i)
	if i == vs || i < 0 {
		return 0, nil, nil, 0, false // no value (blanks to the end), or a brace
	}
	value = tail[vs:i]
	if i < len(tail) && tail[i] != '\n' {
		j := i
		for j < len(tail) && (tail[j] == ' ' || tail[j] == '\t') {
			j++
		}
		if j == len(tail) || tail[j] == '\n' {
			return 0, nil, nil, 0, false // trailing blanks: expfmt wants a timestamp
		}
		i = promToken(tail, j)
		if i < 0 || (i < len(tail) && tail[i] != '\n') {
			return 0, nil, nil, 0, false // a brace, or more after the timestamp
		}
		ts = tail[j:i]
	}
	if r.aux == 0 {
		n := bytes.IndexByte(k, '{')
		if n < 0 {
			n = len(k)
		}
		r.aux = int32(n) + 1
	}
	return int(r.aux) - 1, value, ts, len(k) + i, true
}

// promToken returns where the token of b that starts at i ends (at a
// blank, '\n' or the end of b), or -1 when it holds a brace.
func promToken(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n':
			return i
		case '{', '}':
			return -1
		}
	}
	return i
}

func skipBlanks(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func tokenEnd(b []byte) int {
	i := 0
	for i < len(b) && b[i] != ' ' && b[i] != '\t' {
		i++
	}
	return i
}

// isPromNameByte reports the legacy metric name characters
// [a-zA-Z0-9_:].
func isPromNameByte(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// nextLine returns the line of payload that starts at off (without its
// '\n') and the offset of the next one.
func nextLine(payload []byte, off int) (line []byte, next int) {
	line = payload[off:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	return line, off + len(line) + 1
}

// expfmtFloat parses a sample value the way expfmt does. Plain decimals
// (most values) take plainDecimal's exact path, which gives
// strconv.ParseFloat's result.
func expfmtFloat(b []byte) (float64, error) {
	if v, ok := plainDecimal(b); ok {
		return v, nil
	}
	if bytes.ContainsAny(b, "pP_") {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseFloat(bstr(b), 64)
}

// bstr views b as a string without copying; the string must not outlive
// b's contents or be kept.
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
