package parsers

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// The Prometheus first-sight path.
//
// The fast path (promfast.go) only emits payloads whose every sample line
// the cache knows; a payload with a series never seen went through expfmt
// whole (~6-12 µs per sample: a protobuf LabelPair and strings per label,
// a map per family). firstParse reads such a payload itself when every
// line has one of the plain shapes below, which expfmt reads in exactly
// one way, and emits and learns it exactly as the expfmt path (emit, then
// learn) would; anything else (any other line shape, a summary or
// histogram, anything expfmt would reject) makes it return false having
// appended nothing, and expfmt parses the payload as before. It is all or
// nothing: a payload is either wholly accepted here or wholly given to
// expfmt, so rejects, their reasons and positions, and errors only ever
// come from the expfmt path.
//
// The shapes (lines cut at '\n'; nothing else counts as a blank):
//
//   - an empty line;
//   - a comment whose first word (after '#' and blanks) is neither HELP
//     nor TYPE, or that ends before a word (expfmt ignores it);
//   - "# HELP name text": one space each, name a legacy metric name
//     ([a-zA-Z_:][a-zA-Z0-9_:]*), text not empty, not starting with a
//     blank, its backslashes followed by '\', 'n' or '"' only;
//   - "# TYPE name type": type counter, gauge or untyped in any ASCII case;
//   - "name value", "name{labels} value", either with " timestamp": name
//     a legacy metric name; labels `key="value"` pairs joined by ',' (a
//     trailing ',' allowed, "{}" too) with no blank inside the braces, key
//     [a-zA-Z_][a-zA-Z0-9_]* other than __name__, no key twice, value valid
//     UTF-8 with the escapes \\ \" \n only; blanks (' ', '\t') between
//     the parts and none after the last; value as expfmtFloat parses it,
//     timestamp as strconv.ParseInt (base 10) does. The line must split
//     as splitPromSample splits it (the fast path later uses that split).
//
// and the payload: at least one sample, no second HELP or TYPE line for a
// name, no TYPE line after samples of its name, the samples of a family
// together (expfmt groups a family's samples, so lines apart would come
// out in another order). With only counter, gauge and untyped families,
// expfmt makes one family per sample name and one metric per line, in
// line order, with the labels in line order; emit then adds the samples
// in line order, which is what firstParse does.
//
// Tests: TestPromFirstSight (generated payloads, each compared with the
// expfmt path and the uncached parser, and the first-sight path must be
// taken where the shapes say so), FuzzPromFirstSight.

// promFirstRow is one sample line of a payload read by firstParse.
type promFirstRow struct {
	series  []byte        // name and label set, as splitPromSample cuts it
	name    []byte        // the metric name
	e       *cachedSeries // nil: not known yet (labels in firstLabels[l0:l1])
	l0, l1  int
	ts      int64
	v       float64
	lineLen int // the line's length
	rest    int // payload bytes after the line
}

// promLabelSpan is one label of a sample line: key and raw value (between
// the quotes, escapes not yet resolved).
type promLabelSpan struct {
	key, val []byte
	esc      bool // val holds a backslash
}

// firstParse emits payload, which fastParse did not, without expfmt when
// every line has a shape listed above, and feeds the caches as learn
// does; it returns false, having appended nothing (and learned nothing),
// otherwise.
func (em *promEmitter) firstParse(payload []byte) bool {
	st := em.st
	if st.cache.noRows || st.noFirst {
		return false
	}
	rows := st.firstRows[:0]
	spans := st.firstLabels[:0]
	names := st.fastNames[:0]
	metas := st.firstMetas[:0]
	defer func() {
		clear(rows)
		clear(spans)
		clear(metas)
		st.firstRows = rows[:0]
		st.firstLabels = spans[:0]
		st.firstMetas = metas[:0]
		st.fastNames = names[:0]
	}()
	seen := func(name []byte) *promName {
		for i := len(names) - 1; i >= 0; i-- {
			if bytes.Equal(names[i].name, name) {
				return &names[i]
			}
		}
		names = append(names, promName{name: name})
		return &names[len(names)-1]
	}
	st.cache.prev = nil
	var last []byte // the name of the last sample line
	for off := 0; off < len(payload); {
		var line []byte
		line, off = nextLine(payload, off)
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			kind, name, ok := promFirstComment(line)
			if !ok {
				return false
			}
			if kind == 0 {
				continue // a comment expfmt ignores
			}
			n := seen(name)
			if kind == 'H' {
				if n.help {
					return false // expfmt: second HELP line
				}
				n.help = true
			} else {
				if n.typ || n.hasSample {
					return false // expfmt: second TYPE line, or TYPE after samples
				}
				n.typ = true
			}
			metas = append(metas, line)
			continue
		}
		if !isPromNameStart(line[0]) {
			return false
		}
		series, name, value, ts, ok := splitPromSample(line)
		if !ok {
			return false
		}
		r := promFirstRow{series: series, name: name, lineLen: len(line), rest: len(payload) - off}
		r.e = st.cache.row(series)
		if r.e == nil {
			l0 := len(spans)
			if spans, ok = promFirstSeries(series, len(name), spans); !ok {
				return false
			}
			r.l0, r.l1 = l0, len(spans)
		} else if r.e.name != bstr(name) {
			return false // cannot be (the series part starts with the name); be safe
		}
		var err error
		if r.v, err = expfmtFloat(value); err != nil {
			return false
		}
		r.ts = em.msgNanos
		if ts != nil {
			ms, err := strconv.ParseInt(bstr(ts), 10, 64)
			if err != nil {
				return false
			}
			r.ts = ms * int64(time.Millisecond)
		}
		if !bytes.Equal(name, last) {
			n := seen(name)
			if n.hasSample {
				return false // a family's samples apart
			}
			n.hasSample = true
			last = name
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return false
	}
	// Accepted: what expfmt would have accepted, read the same way. Make
	// the new series and learn every line, as learn does (its rows in line
	// order, so that the next sight predicts them), then emit.
	in := st.cache.in
	st.cache.prev = nil
	for i := range rows {
		r := &rows[i]
		if r.e == nil {
			ls := st.labels[:0]
			for _, sp := range spans[r.l0:r.l1] {
				if len(sp.val) == 0 {
					continue // Prometheus: an empty label is no label
				}
				v := sp.val
				if sp.esc {
					st.unesc = promUnescape(st.unesc[:0], v)
					v = st.unesc
				}
				ls = append(ls, sdk.Label{Key: in.get(sp.key), Value: in.get(v)})
			}
			ls = sortLabels(ls)
			st.labels = ls
			r.e = st.cache.series(in.get(r.name), ls)
		}
		st.cache.setRow(r.series, r.e, rowTemplate{})
	}
	if len(st.meta)+len(metas) > promFastMaxMeta {
		clear(st.meta)
	}
	for _, l := range metas {
		st.meta[st.cache.hash(l)] = len(l)
	}
	for _, r := range rows {
		if math.IsNaN(r.v) || (strings.HasPrefix(r.e.name, "DCGM_") && isDCGMBlank(r.v)) {
			continue
		}
		st.cache.add(em.b, r.e, r.ts, r.v, r.rest, r.lineLen)
	}
	st.firstHits++
	return true
}

// promFirstComment classifies a comment line (line[0] == '#') the way
// expfmt reads it: kind 0 for a comment expfmt ignores, 'H' or 'T' (with
// the name) for a HELP or TYPE line of the plain shape firstParse takes;
// ok is false for anything else.
func promFirstComment(line []byte) (kind byte, name []byte, ok bool) {
	// expfmt: blanks after '#', then a word up to a blank or the line's end.
	i := 1
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	j := i
	for j < len(line) && line[j] != ' ' && line[j] != '\t' {
		j++
	}
	if j == len(line) {
		// Nothing after the word (or no word): ignored whatever the word.
		// "# HELP" alone is ignored too, but keep to the plain shapes.
		w := line[i:j]
		if string(w) == "HELP" || string(w) == "TYPE" {
			return 0, nil, false
		}
		return 0, nil, true
	}
	switch w := line[i:j]; {
	case string(w) != "HELP" && string(w) != "TYPE":
		return 0, nil, true
	case i != 2 || line[1] != ' ' || line[j] != ' ':
		return 0, nil, false // other spacing: leave it to expfmt
	}
	kind = line[i] // 'H' or 'T'
	rest := line[j+1:]
	k := 0
	if len(rest) == 0 || !isPromNameStart(rest[0]) {
		return 0, nil, false
	}
	for k < len(rest) && isPromNameByte(rest[k]) {
		k++
	}
	if k == len(rest) || rest[k] != ' ' {
		return 0, nil, false
	}
	name, text := rest[:k], rest[k+1:]
	if len(text) == 0 || text[0] == ' ' || text[0] == '\t' {
		return 0, nil, false
	}
	if kind == 'H' {
		for i := 0; i < len(text); i++ {
			if text[i] == '\\' {
				if i+1 == len(text) {
					return 0, nil, false
				}
				switch text[i+1] {
				case '\\', 'n', '"':
					i++
				default:
					return 0, nil, false // expfmt: invalid escape sequence
				}
			}
		}
		return kind, name, true
	}
	if asciiEqualFold(text, "counter") || asciiEqualFold(text, "gauge") || asciiEqualFold(text, "untyped") {
		return kind, name, true
	}
	return 0, nil, false
}

// promFirstSeries checks the series part of a sample line (as
// splitPromSample cuts it: the name, then nothing or a label set ending at
// its last byte) for the plain shape, with the name nameLen bytes long,
// and appends its labels to spans; ok is false for any other shape.
func promFirstSeries(series []byte, nameLen int, spans []promLabelSpan) (_ []promLabelSpan, ok bool) {
	if nameLen == 0 || !isPromNameStart(series[0]) {
		return spans, false
	}
	for _, c := range series[:nameLen] {
		if !isPromNameByte(c) {
			return spans, false
		}
	}
	if nameLen == len(series) {
		return spans, true // no label set
	}
	// series[nameLen] == '{' and the series ends at the line's last '}'.
	first := len(spans)
	i := nameLen + 1
	for {
		if i >= len(series) {
			return spans, false
		}
		if series[i] == '}' {
			break // "{}" or a trailing ','
		}
		// Label name.
		if c := series[i]; !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return spans, false
		}
		k0 := i
		for i < len(series) && isLabelNameByte(series[i]) {
			i++
		}
		key := series[k0:i]
		if i+1 >= len(series) || series[i] != '=' || series[i+1] != '"' {
			return spans, false
		}
		if string(key) == "__name__" {
			return spans, false // expfmt: reserved
		}
		for _, sp := range spans[first:] {
			if bytes.Equal(sp.key, key) {
				return spans, false // expfmt: duplicate label names
			}
		}
		i += 2
		v0, esc := i, false
		for {
			if i >= len(series) {
				return spans, false
			}
			c := series[i]
			if c == '"' {
				break
			}
			if c == '\\' {
				if i+1 >= len(series) {
					return spans, false
				}
				switch series[i+1] {
				case '\\', '"', 'n':
				default:
					return spans, false // expfmt: invalid escape sequence
				}
				esc = true
				i += 2
				continue
			}
			i++
		}
		val := series[v0:i]
		if !utf8.Valid(val) {
			return spans, false // expfmt: invalid label value
		}
		spans = append(spans, promLabelSpan{key: key, val: val, esc: esc})
		i++ // the closing quote
		if i >= len(series) {
			return spans, false
		}
		if series[i] == ',' {
			i++
			continue
		}
		if series[i] != '}' {
			return spans, false
		}
		break
	}
	// The label set must end where splitPromSample ended the series.
	if i != len(series)-1 {
		return spans, false
	}
	return spans, true
}

// promUnescape appends v with the label-value escapes \\ \" \n resolved
// (v holds no other escape).
func promUnescape(dst, v []byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			i++
			c = v[i]
			if c == 'n' {
				c = '\n'
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// isPromNameStart reports the bytes a legacy metric name starts with:
// [a-zA-Z_:].
func isPromNameStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// isLabelNameByte reports the legacy label name characters [a-zA-Z0-9_].
func isLabelNameByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// asciiEqualFold reports whether b is s (lower-case ASCII) in any ASCII
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
