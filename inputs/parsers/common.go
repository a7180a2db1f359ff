package parsers

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// maxRawReject bounds the raw bytes kept in one reject made by this package
// (a whole unparseable block, for instance). The agent may truncate further.
const maxRawReject = 4096

// position renders the reject position of line n of a payload.
func position(pos string, n int) string {
	return fmt.Sprintf("%s line %d", pos, n)
}

// rawCopy returns a copy of b (rejects must not alias the payload, which
// the caller may reuse), cut to maxRawReject bytes.
func rawCopy(b []byte) []byte {
	if len(b) > maxRawReject {
		b = b[:maxRawReject]
	}
	return bytes.Clone(b)
}

// lineReader walks a payload line by line. Lines end in "\n" or "\r\n"; the
// returned line excludes the terminator. Line numbers start at 1.
type lineReader struct {
	data []byte
	off  int
	n    int // number of the line returned last
}

// next returns the next line and its number; ok is false at the end.
func (r *lineReader) next() (line []byte, n int, ok bool) {
	if r.off >= len(r.data) {
		return nil, 0, false
	}
	rest := r.data[r.off:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		line = rest
		r.off = len(r.data)
	} else {
		line = rest[:i]
		r.off += i + 1
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	r.n++
	return line, r.n, true
}

// isBlank reports whether b holds only spaces and tabs.
func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// trimSpace trims ASCII spaces and tabs.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

var (
	errBareQuote       = errors.New(`bare " in a field that is not quoted`)
	errUnterminated    = errors.New("quoted field not terminated")
	errAfterQuote      = errors.New(`extra text after the closing " of a quoted field`)
	errLabelSyntax     = errors.New("malformed label set")
	errLabelUnquoted   = errors.New(`label value not in "quotes"`)
	errLabelUnfinished = errors.New("label value not terminated")
)

// splitCSV splits one CSV line (RFC 4180 quoting, no embedded newlines) into
// fields appended to fields[:0]. Fields point into line or, when a quoted
// field holds doubled quotes, into scratch, whose capacity is grown to
// len(line) first so that it never moves while fields point into it.
// With trim, spaces around fields are removed (nvidia-smi writes ", ").
func splitCSV(line []byte, fields [][]byte, scratch []byte, trim bool) ([][]byte, []byte, error) {
	fields = fields[:0]
	if cap(scratch) < len(line) {
		scratch = make([]byte, 0, len(line))
	}
	scratch = scratch[:0]
	i := 0
	for {
		if trim {
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
		}
		if i < len(line) && line[i] == '"' {
			// Quoted field.
			i++
			start := i
			escaped := false
			for {
				j := bytes.IndexByte(line[i:], '"')
				if j < 0 {
					return fields, scratch, errUnterminated
				}
				i += j + 1
				if i < len(line) && line[i] == '"' {
					escaped = true
					i++
					continue
				}
				break
			}
			f := line[start : i-1]
			if escaped {
				s0 := len(scratch)
				for k := 0; k < len(f); k++ {
					scratch = append(scratch, f[k])
					if f[k] == '"' {
						k++ // skip the doubled quote
					}
				}
				f = scratch[s0:len(scratch):len(scratch)]
			}
			fields = append(fields, f)
			if trim {
				for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
					i++
				}
			}
			if i == len(line) {
				return fields, scratch, nil
			}
			if line[i] != ',' {
				return fields, scratch, errAfterQuote
			}
			i++
			continue
		}
		j := bytes.IndexByte(line[i:], ',')
		var f []byte
		if j < 0 {
			f = line[i:]
		} else {
			f = line[i : i+j]
		}
		if bytes.IndexByte(f, '"') >= 0 {
			return fields, scratch, errBareQuote
		}
		if trim {
			f = trimSpace(f)
		}
		fields = append(fields, f)
		if j < 0 {
			return fields, scratch, nil
		}
		i += j + 1
	}
}

// interner shares one string per distinct byte sequence within a payload, so
// that repeated label values and names cost one allocation.
type interner map[string]string

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// labelSlab hands out label slices carved from one larger allocation. Every
// series gets its own slice (processors may change labels in place); the
// strings inside may be shared. A slab outlives payloads (see
// seriesCache.endPayload): the slices it handed out are disjoint, each
// with len == cap, so the batches they went to share an allocation and
// nothing else. A labelSlab belongs to one parser state (one caller at a
// time).
type labelSlab struct {
	buf []sdk.Label
}

// minSlabLabels is the smallest chunk a slab allocates (32 KiB): payloads
// of one object or a few rows fill one chunk together, one allocation per
// ~90 series of 11 labels, instead of one allocation each. A batch kept
// alive keeps at most its chunk alive.
const minSlabLabels = 1024

// take copies ls into a slice of its own with len == cap.
func (s *labelSlab) take(ls []sdk.Label) sdk.Labels {
	return s.takeHint(ls, 256/max(1, len(ls)))
}

// takeHint is take for a caller that expects about rows more slices of
// this size: a new chunk is sized for them (at most 8192 labels).
func (s *labelSlab) takeHint(ls []sdk.Label, rows int) sdk.Labels {
	if len(ls) == 0 {
		return nil
	}
	if len(s.buf) < len(ls) {
		s.buf = make([]sdk.Label, max(min(len(ls)*rows, 8192), len(ls), minSlabLabels))
	}
	out := s.buf[:len(ls):len(ls)]
	copy(out, ls)
	s.buf = s.buf[len(ls):]
	return out
}

// sortLabels sorts ls by key (stable, so that the first of two equal keys
// wins), drops duplicate keys and empty values, and returns the result
// (sharing ls's array). It does not allocate.
func sortLabels(ls []sdk.Label) []sdk.Label {
	slices.SortStableFunc(ls, func(a, b sdk.Label) int { return strings.Compare(a.Key, b.Key) })
	out := ls[:0]
	for i := range ls {
		if ls[i].Value == "" || ls[i].Key == "" {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Key == ls[i].Key {
			continue
		}
		out = append(out, ls[i])
	}
	return out
}

// mergeLabels appends to dst the union of a (sorted, unique keys) and b
// (any order), sorted, without duplicate keys or empty values; a's value
// wins on equal keys. b is sorted in place when it is not sorted already.
func mergeLabels(dst, a, b []sdk.Label) []sdk.Label {
	if !slices.IsSortedFunc(b, func(x, y sdk.Label) int { return strings.Compare(x.Key, y.Key) }) {
		slices.SortStableFunc(b, func(x, y sdk.Label) int { return strings.Compare(x.Key, y.Key) })
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var l sdk.Label
		switch {
		case j == len(b) || (i < len(a) && a[i].Key <= b[j].Key):
			l = a[i]
			if j < len(b) && b[j].Key == a[i].Key {
				j++
			}
			i++
		default:
			l = b[j]
			j++
		}
		if l.Key == "" || l.Value == "" || (len(dst) > 0 && dst[len(dst)-1].Key == l.Key) {
			continue
		}
		dst = append(dst, l)
	}
	return dst
}

// parsePromLabels parses a Prometheus label set without braces, as found in
// the labels_raw column: key="value",key2="value2". Values may hold the
// escapes \\, \" and \n. It appends one label per pair (skipping __name__)
// to dst, interning keys and values.
func parsePromLabels(b []byte, dst []sdk.Label, in interner) ([]sdk.Label, error) {
	b = trimSpace(b)
	if len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' {
		b = b[1 : len(b)-1]
	}
	i := 0
	for {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i == len(b) {
			return dst, nil
		}
		eq := bytes.IndexByte(b[i:], '=')
		if eq <= 0 {
			return dst, errLabelSyntax
		}
		key := trimSpace(b[i : i+eq])
		if len(key) == 0 {
			return dst, errLabelSyntax
		}
		i += eq + 1
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i == len(b) || b[i] != '"' {
			return dst, errLabelUnquoted
		}
		i++
		start := i
		escaped := false
		for i < len(b) && b[i] != '"' {
			if b[i] == '\\' {
				escaped = true
				i++
			}
			i++
		}
		if i >= len(b) {
			return dst, errLabelUnfinished
		}
		val := b[start:i]
		i++ // closing quote
		var v string
		if escaped {
			v = unescapeLabel(val)
		} else {
			v = in.get(val)
		}
		if string(key) != "__name__" {
			dst = append(dst, sdk.Label{Key: in.get(key), Value: v})
		}
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i == len(b) {
			return dst, nil
		}
		if b[i] != ',' {
			return dst, errLabelSyntax
		}
		i++
	}
}

func unescapeLabel(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\\' && i+1 < len(b) {
			i++
			switch b[i] {
			case 'n':
				c = '\n'
			default:
				c = b[i]
			}
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// valueKind classifies a field that should hold a sample value.
type valueKind uint8

const (
	valueNumber  valueKind = iota // a sample
	valueMissing                  // not a number by the canonical rules: no sample, no reject
	valueBad                      // garbage: reject
)

// valueUnits are the unit suffixes nvidia-smi (and friends) print after
// numbers.
var valueUnits = [...]string{"%", "W", "mW", "MHz", "GHz", "KHz", "Hz", "MiB", "KiB", "GiB", "B", "C", "mJ", "J", "ms", "us", "ns", "s", "KB/s", "MB/s", "V", "mV", "A", "RPM"}

// isMissing reports values that mean "no value" per CANONICAL_METRICS.md:
// empty, N/A, NaN and nvidia-smi's bracketed notes ([N/A], [Not Supported],
// [Unknown Error], ...).
func isMissing(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if b[0] == '[' && b[len(b)-1] == ']' {
		return true
	}
	return bytes.EqualFold(b, []byte("N/A")) || bytes.EqualFold(b, []byte("NaN")) ||
		bytes.EqualFold(b, []byte("Not Supported"))
}

// parseValue applies the value rules of CANONICAL_METRICS.md to one field:
// numbers (optionally followed by a known unit, "68.12 W"), hex bitmasks,
// P-states, Active/Not Active and Enabled/Disabled.
func parseValue(b []byte) (float64, valueKind) {
	b = trimSpace(b)
	if v, ok := plainDecimal(b); ok {
		return v, valueNumber
	}
	if isMissing(b) {
		return 0, valueMissing
	}
	if !mayBeFloat(b) {
		// strconv.ParseFloat would fail (allocating its error): skip it.
	} else if v, err := strconv.ParseFloat(string(b), 64); err == nil {
		if math.IsNaN(v) {
			return 0, valueMissing
		}
		return v, valueNumber
	} else if ne, ok := err.(*strconv.NumError); ok && errors.Is(ne.Err, strconv.ErrRange) {
		return v, valueNumber // ±Inf or 0 on overflow: still a number
	}
	switch {
	case len(b) > 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'X'):
		u, err := strconv.ParseUint(string(b[2:]), 16, 64)
		if err != nil {
			return 0, valueBad
		}
		return float64(u), valueNumber
	case len(b) >= 2 && len(b) <= 3 && b[0] == 'P' && b[1] >= '0' && b[1] <= '9':
		n, err := strconv.Atoi(string(b[1:]))
		if err != nil || n > 15 {
			return 0, valueBad
		}
		return float64(n), valueNumber
	case bytes.EqualFold(b, []byte("Active")), bytes.EqualFold(b, []byte("Enabled")):
		return 1, valueNumber
	case bytes.EqualFold(b, []byte("Not Active")), bytes.EqualFold(b, []byte("Disabled")):
		return 0, valueNumber
	}
	// A number followed by a unit.
	num, unit := splitUnit(b)
	if len(num) == 0 || len(unit) == 0 {
		return 0, valueBad
	}
	known := false
	for _, u := range valueUnits {
		if string(unit) == u {
			known = true
			break
		}
	}
	if !known {
		return 0, valueBad
	}
	v, err := strconv.ParseFloat(string(num), 64)
	if err != nil || math.IsNaN(v) {
		return 0, valueBad
	}
	return v, valueNumber
}

// float64pow10 are the powers of ten a float64 holds exactly.
var float64pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// plainDecimal parses the commonest values quickly: an optional '-', then
// digits with at most one '.' between two of them, 15 digits at most. ok
// false means b is not of that form (parseValue goes on as usual). The
// result is strconv.ParseFloat's: the digits make an integer m < 2^53 and
// 10^k (k <= 15 fraction digits) is exact, so m / 10^k is one correctly
// rounded division, strconv's own exact fast path.
func plainDecimal(b []byte) (float64, bool) {
	neg := false
	i := 0
	if len(b) > 0 && b[0] == '-' {
		neg = true
		i = 1
	}
	if i == len(b) || len(b)-i > 16 {
		return 0, false
	}
	var m uint64
	digits, frac := 0, -1
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + uint64(c-'0')
			digits++
		case c == '.' && frac < 0 && digits > 0 && i+1 < len(b):
			frac = digits
		default:
			return 0, false
		}
	}
	if digits > 15 {
		return 0, false
	}
	v := float64(m)
	if frac >= 0 {
		v /= float64pow10[digits-frac]
	}
	if neg {
		v = -v
	}
	return v, true
}

// mayBeFloat is false for text that strconv.ParseFloat surely rejects: a
// byte no float syntax uses (a space, '%', '/'), a first byte that cannot
// start one, or a 0x prefix without the binary exponent hex floats need.
func mayBeFloat(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	switch c := b[0]; {
	case c >= '0' && c <= '9', c == '+', c == '-', c == '.', c == 'i', c == 'I', c == 'n', c == 'N':
	default:
		return false
	}
	hexPrefix := len(b) > 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'X')
	exp := false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '.', c == '+', c == '-', c == '_':
			exp = exp || c == 'p' || c == 'P'
		default:
			return false
		}
	}
	return !hexPrefix || exp
}

// splitUnit splits "68.12 W" into "68.12" and "W".
func splitUnit(b []byte) (num, unit []byte) {
	i := len(b)
	for i > 0 {
		c := b[i-1]
		if c == '%' || c == '/' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			i--
			continue
		}
		break
	}
	return trimSpace(b[:i]), b[i:]
}

// isDCGMBlank reports DCGM's "blank" sentinels (CANONICAL_METRICS.md):
// 0x7ffffff0.. for 32-bit fields, 0x7ffffffffffffff0.. for 64-bit fields and
// 2^47 (140737488355328.0).. for floats, each with a few values above.
func isDCGMBlank(v float64) bool {
	switch {
	case v >= 2147483632 && v <= 2147483647:
		return true
	case v >= 140737488355328 && v <= 140737488355335:
		return true
	case v >= 9223372036854775000 && v <= 9223372036854775807:
		// Float64 cannot tell 2^63-16 from 2^63; any value this close is the
		// sentinel.
		return true
	}
	return false
}
