package parsers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// dcgmCSV parses the DCGM CSV export (FormatDCGMCSV): a header line naming
// the columns, then one sample per row. It is safe for concurrent use: each
// call takes a state from the pool (scratch buffers, and caches of header
// layouts and series kept between calls; see dcgmState).
type dcgmCSV struct {
	pool statePool[dcgmState]
}

// dcgm-csv columns, matched case-insensitively by name.
const (
	dcTimestamp = iota
	dcMetric
	dcGPU
	dcDevice
	dcUUID
	dcModel
	dcHost
	dcContainer
	dcPod
	dcNamespace
	dcValue
	dcLabelsRaw
	dcNumCols
)

// dcgmColumns maps header names (lower case) to columns, and gives each
// identity column its label key. Both the export's spelling and the JSON
// payload's spelling are accepted in the header.
var dcgmColumns = map[string]int{
	"timestamp":   dcTimestamp,
	"time":        dcTimestamp,
	"metric_name": dcMetric,
	"metric":      dcMetric,
	"gpu_id":      dcGPU,
	"gpu":         dcGPU,
	"device":      dcDevice,
	"uuid":        dcUUID,
	"modelname":   dcModel,
	"model_name":  dcModel,
	"hostname":    dcHost,
	"container":   dcContainer,
	"pod":         dcPod,
	"namespace":   dcNamespace,
	"value":       dcValue,
	"labels_raw":  dcLabelsRaw,
	"labels":      dcLabelsRaw,
}

// dcgmLabelKeys are the label keys of the identity columns: the spelling
// dcgm-exporter uses, so that columns and labels_raw agree.
var dcgmLabelKeys = [dcNumCols]string{
	dcGPU:       "gpu",
	dcDevice:    "device",
	dcUUID:      "UUID",
	dcModel:     "modelName",
	dcHost:      "Hostname",
	dcContainer: "container",
	dcPod:       "pod",
	dcNamespace: "namespace",
}

// dcgmLabelOrder lists the identity columns in the byte order of their
// label keys, so that they come out sorted.
var dcgmLabelOrder = [...]int{dcHost, dcUUID, dcContainer, dcDevice, dcGPU, dcModel, dcNamespace, dcPod}

// dcgmState is the state of one Parse call. States come from the parser's
// pool, so one is used by one goroutine at a time; besides scratch buffers
// it keeps a series cache that outlives the call (see seriesCache).
type dcgmState struct {
	fields  [][]byte
	scratch []byte
	labels  []sdk.Label
	merged  []sdk.Label
	spans   []csvSpan
	cuts    [2]csvSpan // the cut fields of the current line (see locate)
	key     []byte

	cache   seriesCache
	headers map[string]*dcgmLayout // header line -> column layout
	layouts uint32                 // layouts handed out (ids are never reused)
	lastTS  []byte                 // last timestamp parsed, and its value
	lastT   int64
	// tplHits counts the rows the template fast path emitted (tests check
	// that it is taken).
	tplHits int
}

// dcgmLayout is what a header line says: where each column is.
type dcgmLayout struct {
	id    uint32
	cols  [dcNumCols]int // field index of each column, -1 if absent
	nCols int
	// cut lists the fields (timestamp, value; ascending) left out of a
	// row's identity key; split is the number of leading fields the fast
	// path must split to find them.
	cut   [2]int
	nCut  int
	split int
	// tsCut and valCut are the indexes in cut of the timestamp and value
	// columns (tsCut -1: no timestamp column).
	tsCut, valCut int
	// head is how row keys of this layout begin (its id, see rowKey).
	head []byte
}

// maxHeaders bounds the header layouts a state remembers.
const maxHeaders = 64

func newDCGMCSV() *dcgmCSV { return newDCGMCSVWith(false) }

// newDCGMCSVWith returns a dcgm-csv parser; noRows turns its row cache off
// (for tests).
func newDCGMCSVWith(noRows bool) *dcgmCSV {
	return &dcgmCSV{pool: statePool[dcgmState]{make: func() *dcgmState {
		return &dcgmState{cache: newSeriesCache(noRows), headers: make(map[string]*dcgmLayout)}
	}}}
}

// Parse implements Parser.
func (p *dcgmCSV) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	st := p.pool.get()
	err := st.parse(payload, msgTime, pos, b)
	// Not deferred: a state left half-way by a panic is dropped, not reused.
	st.cache.endPayload()
	p.pool.put(st)
	return err
}

// layout returns the column layout of header line, from the cache or
// parsed (errors are not cached).
func (st *dcgmState) layout(line []byte) (*dcgmLayout, error) {
	if l := st.headers[string(line)]; l != nil {
		return l, nil
	}
	var err error
	st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("parsers: dcgm-csv: header: %w", err))
	}
	l := &dcgmLayout{nCols: len(st.fields)}
	for i := range l.cols {
		l.cols[i] = -1
	}
	for i, f := range st.fields {
		c, ok := dcgmColumns[string(bytes.ToLower(f))]
		if ok && l.cols[c] < 0 {
			l.cols[c] = i
		}
	}
	if l.cols[dcMetric] < 0 || l.cols[dcValue] < 0 {
		return nil, sdk.Permanent(fmt.Errorf("parsers: dcgm-csv: header %q lacks metric_name or value", truncate(line)))
	}
	st.layouts++
	l.id = st.layouts
	l.head = binary.AppendUvarint(nil, uint64(l.id))
	for _, c := range [...]int{l.cols[dcTimestamp], l.cols[dcValue]} {
		if c >= 0 {
			l.cut[l.nCut] = c
			l.nCut++
			l.split = max(l.split, c+1)
		}
	}
	l.tsCut, l.valCut = -1, 0
	if l.nCut == 2 {
		l.tsCut, l.valCut = 0, 1
		if l.cut[0] > l.cut[1] {
			l.cut[0], l.cut[1] = l.cut[1], l.cut[0]
			l.tsCut, l.valCut = 1, 0
		}
	}
	if len(st.headers) >= maxHeaders {
		clear(st.headers)
	}
	st.headers[string(line)] = l
	return l, nil
}

func (st *dcgmState) parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	var (
		lay    *dcgmLayout
		header []byte
		lr     = lineReader{data: payload}
		err    error
	)
	// Header: the first non-blank line.
	for {
		line, _, ok := lr.next()
		if !ok {
			return sdk.Permanent(errors.New("parsers: dcgm-csv: payload has no header line"))
		}
		if isBlank(line) {
			continue
		}
		if lay, err = st.layout(line); err != nil {
			return err
		}
		header = line
		break
	}

	st.cache.beginPayload()
	cols := &lay.cols
	msgNanos := msgTime.UnixNano()
	grown := false
	for {
		// Fastest path: the row predicted to come next, found without
		// looking for the end of its line (see quickLine).
		if r := st.cache.predicted(); r != nil && grown {
			if line, ok := st.quickLine(lay, r, &lr, header); ok {
				st.tplHits++
				var tsF []byte
				if lay.tsCut >= 0 {
					tsF = st.cuts[lay.tsCut].content(line)
				}
				st.emit(b, r.e, line, lr.n, pos, tsF, st.cuts[lay.valCut].content(line), msgNanos, len(payload)-lr.off)
				continue
			}
		}
		line, n, ok := lr.next()
		if !ok {
			break
		}
		if isBlank(line) || bytes.Equal(line, header) {
			continue // the streamer repeats the header in every message
		}
		if !grown {
			// Size the batch for the rows left, judging by this one.
			grown = true
			growBatch(b, (len(payload)-lr.off)/(len(line)+1)+1)
		}
		// Next fastest: the row predicted to come next, its timestamp and
		// value found where its template places them (no splitting); the
		// key proves the placement.
		if r := st.cache.predicted(); r != nil && st.locate(lay, r.tpl, line) {
			// The key compared in place (what matching rowKey's result
			// with r's would do), else built for the map.
			var cuts [2][2]int
			for i, sp := range st.cuts[:lay.nCut] {
				cuts[i] = [2]int{sp.start, sp.end}
			}
			e := r.e
			if r.matches(lay.head, line, cuts[:lay.nCut]) {
				st.cache.follow(r)
			} else {
				e = st.cache.rowAt(r, st.rowKey(lay, line, st.cuts[:lay.nCut]))
			}
			if e != nil {
				st.tplHits++
				var tsF []byte
				if lay.tsCut >= 0 {
					tsF = st.cuts[lay.tsCut].content(line)
				}
				st.emit(b, e, line, n, pos, tsF, st.cuts[lay.valCut].content(line), msgNanos, len(payload)-lr.off)
				continue
			}
		}
		// Fast path: a row whose identity (every field but timestamp and
		// value, byte for byte) was seen before.
		var (
			key    []byte
			simple bool
		)
		st.spans, simple = splitPrefix(line, lay.split, st.spans)
		if simple {
			for i, c := range lay.cut[:lay.nCut] {
				st.cuts[i] = st.spans[c]
			}
			key = st.rowKey(lay, line, st.cuts[:lay.nCut])
			if e := st.cache.row(key); e != nil {
				var tsF []byte
				if c := cols[dcTimestamp]; c >= 0 {
					tsF = st.spans[c].content(line)
				}
				st.emit(b, e, line, n, pos, tsF, st.spans[cols[dcValue]].content(line), msgNanos, len(payload)-lr.off)
				continue
			}
		}

		// Slow path: split and check the whole row.
		st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
		if err != nil {
			b.Reject("dcgm-csv: "+err.Error(), position(pos, n), rawCopy(line))
			continue
		}
		if len(st.fields) != lay.nCols {
			b.Reject(fmt.Sprintf("dcgm-csv: %d fields, header has %d", len(st.fields), lay.nCols), position(pos, n), rawCopy(line))
			continue
		}
		f := st.fields
		name := f[cols[dcMetric]]
		if len(name) == 0 {
			b.Reject("dcgm-csv: empty metric_name", position(pos, n), rawCopy(line))
			continue
		}
		// Time.
		ts := msgNanos
		if c := cols[dcTimestamp]; c >= 0 && len(f[c]) > 0 {
			if ts, err = st.timestamp(f[c]); err != nil {
				b.Reject("dcgm-csv: "+err.Error(), position(pos, n), rawCopy(line))
				continue
			}
		}
		// Value.
		v, kind := parseValue(f[cols[dcValue]])
		if kind == valueBad {
			b.Reject(fmt.Sprintf("dcgm-csv: value %q is not a number", truncate(f[cols[dcValue]])), position(pos, n), rawCopy(line))
			continue
		}
		if kind == valueMissing || isDCGMBlank(v) {
			continue
		}
		// Labels: the identity columns in key order, then labels_raw
		// (dcgm-exporter prints it sorted), merged.
		in := st.cache.in
		cl := st.labels[:0]
		for _, c := range dcgmLabelOrder {
			if cols[c] >= 0 && len(f[cols[c]]) > 0 {
				cl = append(cl, sdk.Label{Key: dcgmLabelKeys[c], Value: in.get(f[cols[c]])})
			}
		}
		nc := len(cl)
		if c := cols[dcLabelsRaw]; c >= 0 {
			cl, err = parsePromLabels(f[c], cl, in)
			st.labels = cl
			if err != nil {
				b.Reject("dcgm-csv: labels_raw: "+err.Error(), position(pos, n), rawCopy(line))
				continue
			}
		}
		st.labels = cl
		st.merged = mergeLabels(st.merged[:0], cl[:nc], cl[nc:])
		e := st.cache.series(in.get(name), st.merged)
		if simple {
			st.cache.setRow(key, e, csvTemplate(st.cuts[:lay.nCut], len(line)))
		}
		st.cache.add(b, e, ts, v, len(payload)-lr.off, len(line))
	}
	return nil
}

// emit adds the sample of row line (number n) of cached series e, with
// timestamp field tsF (empty: msgNanos) and value field valF, or rejects
// the row; rest is the length of the payload after the line. It is what
// the slow path does with a row that gives series e.
func (st *dcgmState) emit(b *sdk.Batch, e *cachedSeries, line []byte, n int, pos string, tsF, valF []byte, msgNanos int64, rest int) {
	ts := msgNanos
	if len(tsF) > 0 {
		var err error
		if ts, err = st.timestamp(tsF); err != nil {
			b.Reject("dcgm-csv: "+err.Error(), position(pos, n), rawCopy(line))
			return
		}
	}
	v, kind := parseValue(valF)
	if kind == valueBad {
		b.Reject(fmt.Sprintf("dcgm-csv: value %q is not a number", truncate(valF)), position(pos, n), rawCopy(line))
		return
	}
	if kind == valueMissing || isDCGMBlank(v) {
		return
	}
	st.cache.add(b, e, ts, v, rest, len(line))
}

// csvTemplate is the template of a line of length n whose cut fields are
// cuts.
func csvTemplate(cuts []csvSpan, n int) rowTemplate {
	t := rowTemplate{n: uint8(len(cuts))}
	if len(cuts) == 0 {
		return t
	}
	t.a = int32(cuts[0].start)
	if len(cuts) == 2 {
		t.b = int32(cuts[1].start - cuts[0].end)
	}
	t.c = int32(n - cuts[len(cuts)-1].end)
	return t
}

// locate finds the cut fields of line (into st.cuts) where template t
// places them: the first at offset t.a, the second t.b bytes after the
// first ends, and t.c bytes after the last. It reports false when they
// are not there, or are not fields splitPrefix would split that way. The
// placement is a guess until a row key built from it matches a row seen
// before: then line is that row with other cut fields, each a field of
// the same extent as splitPrefix finds it, so the slow path would split
// it the same way.
func (st *dcgmState) locate(lay *dcgmLayout, t rowTemplate, line []byte) bool {
	n, ok := st.locateIn(lay, t, line)
	return ok && n == len(line)
}

// locateIn is locate for a line that starts buf and whose end is not
// known: it returns the length the line has if the template is right
// (the end of the last cut, plus t.c).
func (st *dcgmState) locateIn(lay *dcgmLayout, t rowTemplate, buf []byte) (int, bool) {
	if int(t.n) != lay.nCut || t.n == 0 || int(t.a) > len(buf) {
		return 0, false
	}
	sp, ok := csvField(buf, int(t.a))
	if !ok {
		return 0, false
	}
	st.cuts[0] = sp
	if t.n == 2 {
		i := sp.end + int(t.b)
		if t.b <= 0 || i > len(buf) {
			return 0, false
		}
		if sp, ok = csvField(buf, i); !ok {
			return 0, false
		}
		st.cuts[1] = sp
	}
	return sp.end + int(t.c), sp.end+int(t.c) <= len(buf)
}

// quickLine is the fastest path: the next line of lr taken as row r (the
// predicted one) without looking for its end first. Its cut fields are
// found where r's template places them in the rest of the payload, which
// gives the line's end; the line is r's when its bytes outside the cuts
// are r's kept key's, the cuts hold no line break, and lineReader would
// end the line there (a "\n", "\r\n" or the end of the payload after it,
// no "\r" of its own at its end). It then advances lr past the line and
// reports true; else it changes nothing but st.cuts. Only for templates
// with bytes after the last cut (t.c > 0, the DCGM export's labels_raw):
// a last cut at the end of a line would be split across the line break.
func (st *dcgmState) quickLine(lay *dcgmLayout, r *rowEntry, lr *lineReader, header []byte) ([]byte, bool) {
	if r.tpl.c <= 0 || r.key == nil {
		return nil, false
	}
	rest := lr.data[lr.off:]
	n, ok := st.locateIn(lay, r.tpl, rest)
	if !ok {
		return nil, false
	}
	line := rest[:n]
	var cuts [2][2]int
	for i, sp := range st.cuts[:lay.nCut] {
		if bytes.IndexByte(line[sp.start:sp.end], '\n') >= 0 {
			return nil, false
		}
		cuts[i] = [2]int{sp.start, sp.end}
	}
	if !r.matches(lay.head, line, cuts[:lay.nCut]) {
		return nil, false
	}
	next := n
	switch {
	case n == len(rest):
		if line[n-1] == '\r' {
			return nil, false
		}
	case rest[n] == '\n':
		if line[n-1] == '\r' {
			return nil, false
		}
		next = n + 1
	case rest[n] == '\r' && (n+1 == len(rest) || rest[n+1] == '\n'):
		next = min(n+2, len(rest))
	default:
		return nil, false
	}
	if isBlank(line) || bytes.Equal(line, header) {
		return nil, false
	}
	lr.off += next
	lr.n++
	st.cache.follow(r)
	return line, true
}

// timestamp parses a timestamp field, reusing the last result when the
// field repeats (rows of one scrape share it).
func (st *dcgmState) timestamp(f []byte) (int64, error) {
	if st.lastTS != nil && bytes.Equal(f, st.lastTS) {
		return st.lastT, nil
	}
	t, err := parseTimestamp(f)
	if err != nil {
		return 0, err
	}
	st.lastTS = append(st.lastTS[:0], f...)
	st.lastT = t
	return t, nil
}

// rowKey builds the identity key of a row whose cut fields (timestamp and
// value, in the order of lay.cut) are cuts: the layout id and the row's
// bytes less those fields. Rows with
// equal keys have equal names and labels, and either both parse or neither
// does, whatever their timestamps and values.
func (st *dcgmState) rowKey(lay *dcgmLayout, line []byte, cuts []csvSpan) []byte {
	k := append(st.key[:0], lay.head...)
	prev := 0
	for _, sp := range cuts {
		k = binary.AppendUvarint(k, uint64(sp.start-prev))
		k = append(k, line[prev:sp.start]...)
		prev = sp.end
	}
	k = append(k, line[prev:]...)
	st.key = k
	return k
}

// csvSpan locates one field of a CSV line: start and end bound the raw
// field between its commas; cs and ce its content (inside the quotes, or
// trimmed).
type csvSpan struct {
	start, end, cs, ce int
}

func (s csvSpan) content(line []byte) []byte { return line[s.cs:s.ce] }

// splitPrefix splits the first n fields of line the way splitCSV (with
// trim) does. It reports false when that is not possible simply: the line
// has fewer fields, a field is malformed, or a quoted field holds doubled
// quotes (the content would need unescaping). Fields after the n-th are
// not looked at.
func splitPrefix(line []byte, n int, spans []csvSpan) ([]csvSpan, bool) {
	spans = spans[:0]
	i := 0
	for len(spans) < n {
		sp, ok := csvField(line, i)
		if !ok {
			return spans, false
		}
		spans = append(spans, sp)
		i = sp.end
		if i == len(line) {
			return spans, len(spans) == n
		}
		i++ // the comma
	}
	return spans, true
}

// csvField splits the field of line that starts at i (0 <= i <=
// len(line)) the way splitCSV (with trim) does; its end is the offset of
// the comma after it, or len(line). It reports false when that is not
// possible simply: a malformed field, or a quoted field with doubled
// quotes.
func csvField(line []byte, i int) (csvSpan, bool) {
	start := i
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i < len(line) && line[i] == '"' {
		i++
		cs := i
		q := bytes.IndexByte(line[i:], '"')
		if q < 0 {
			return csvSpan{}, false
		}
		ce := i + q
		i = ce + 1
		if i < len(line) && line[i] == '"' {
			return csvSpan{}, false // doubled quote
		}
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i < len(line) && line[i] != ',' {
			return csvSpan{}, false
		}
		return csvSpan{start: start, end: i, cs: cs, ce: ce}, true
	}
	cs := i
	for i < len(line) && line[i] != ',' {
		if line[i] == '"' {
			return csvSpan{}, false
		}
		i++
	}
	ce := i
	for ce > cs && (line[ce-1] == ' ' || line[ce-1] == '\t') {
		ce--
	}
	return csvSpan{start: start, end: i, cs: cs, ce: ce}, true
}

// parseTimestamp parses an RFC 3339 time, or a number of seconds (or
// milliseconds, microseconds, nanoseconds, told apart by magnitude) since the
// Unix epoch, into Unix nanoseconds.
func parseTimestamp(s []byte) (int64, error) {
	s = trimSpace(s)
	if len(s) > 0 && (s[0] >= '0' && s[0] <= '9') && bytes.IndexByte(s, '-') < 0 {
		if v, kind := parseValue(s); kind == valueNumber {
			return epochNanos(v)
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		return 0, fmt.Errorf("timestamp %q is not RFC 3339", truncate(s))
	}
	return t.UnixNano(), nil
}

// epochNanos turns a Unix time in s, ms, us or ns (by magnitude) into ns.
func epochNanos(v float64) (int64, error) {
	switch {
	case v < 0 || v > 9.2e18:
		return 0, fmt.Errorf("timestamp %g out of range", v)
	case v < 1e11: // seconds until year 5138
		return int64(v * 1e9), nil
	case v < 1e14:
		return int64(v * 1e6), nil
	case v < 1e17:
		return int64(v * 1e3), nil
	default:
		return int64(v), nil
	}
}

// truncate shortens b for error messages.
func truncate(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
