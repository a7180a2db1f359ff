package parsers

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// telScan scans one gpu-tel-json object: where its timestamp and value
// are (spans of b: start, end; -1 when absent), and how far it got.
type telScan struct {
	ts, val       [2]int
	tsKey, valKey int    // offsets of the keys of the timestamp and value
	seen          uint32 // fields met (telKey's field numbers)
	pos           int    // where an early stop left off: after a value
}

// telHint remembers how the last object scanned whole introduced its
// timestamp and value (e.g. `"value":`), so that the next object's can be
// found without scanning it (see telState.guess).
type telHint struct {
	ts, val []byte // nil: absent
	ok      bool
}

// learn takes the hint of object b, just scanned whole into sc.
func (h *telHint) learn(b []byte, sc *telScan) {
	h.ok = sc.val[0] >= 0
	h.ts = h.ts[:0]
	if sc.ts[0] >= 0 {
		h.ts = append(h.ts, b[sc.tsKey:sc.ts[0]]...)
	} else {
		h.ts = nil
	}
	if h.ok {
		h.val = append(h.val[:0], b[sc.valKey:sc.val[0]]...)
	}
}

// guess fills sc with the spans of the timestamp and value of b as the
// hint places them: after the first occurrence of each introducer. The
// guess is not checked beyond each span holding one JSON scalar; a row
// key built from it that matches the key of an object scanned whole
// proves it right (the bytes around the spans are then those of a valid
// object, and a scalar in place of a scalar keeps it valid).
func (h *telHint) guess(b []byte, sc *telScan) bool {
	if !h.ok {
		return false
	}
	span := func(intro []byte) ([2]int, bool) {
		i := bytes.Index(b, intro)
		if i < 0 {
			return [2]int{}, false
		}
		s := i + len(intro)
		end, ok := scanJSONScalar(b, s)
		return [2]int{s, end}, ok
	}
	sc.ts = [2]int{-1, -1}
	var ok bool
	if h.ts != nil {
		if sc.ts, ok = span(h.ts); !ok {
			return false
		}
	}
	if sc.val, ok = span(h.val); !ok {
		return false
	}
	// The spans must not overlap.
	return sc.ts[0] < 0 || sc.ts[1] <= sc.val[0] || sc.val[1] <= sc.ts[0]
}

// scanJSONScalar checks the string, number, true, false or null at b[i]
// and returns the offset after it.
func scanJSONScalar(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := scanJSONString(b, i)
		return end, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return scanJSONNumber(b, i)
	case c == 't':
		return scanJSONLiteral(b, i, "true")
	case c == 'f':
		return scanJSONLiteral(b, i, "false")
	case c == 'n':
		return scanJSONLiteral(b, i, "null")
	}
	return 0, false
}

// Kinds of the keys of a gpu-tel-json object (see telRecord).
const (
	tkUnknown   = iota // ignored by encoding/json
	tkString           // a string field: a string or null, else a type error
	tkRaw              // a json.RawMessage field: any value
	tkTimestamp        // timestamp (a json.RawMessage)
	tkValue            // value (a json.RawMessage)
)

// telKey classifies key (the bytes between the quotes) the way
// encoding/json matches it against telRecord's fields (exactly or ASCII
// case-insensitively), giving a field number for telling duplicates. ok is
// false for keys that need encoding/json's own rules: escapes or non-ASCII
// bytes (Unicode case folding).
func telKey(key []byte) (kind, field int, ok bool) {
	var buf [12]byte
	if len(key) > len(buf) {
		for _, c := range key {
			if c == '\\' || c >= utf8.RuneSelf {
				return 0, 0, false
			}
		}
		return tkUnknown, -1, true
	}
	for i, c := range key {
		switch {
		case c == '\\' || c >= utf8.RuneSelf:
			return 0, 0, false
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(key)]) {
	case "timestamp":
		return tkTimestamp, 0, true
	case "metric_name":
		return tkString, 1, true
	case "gpu_id":
		return tkRaw, 2, true
	case "gpu":
		return tkRaw, 3, true
	case "device":
		return tkString, 4, true
	case "uuid":
		return tkString, 5, true
	case "model_name":
		return tkString, 6, true
	case "modelname":
		return tkString, 7, true
	case "hostname":
		return tkString, 8, true
	case "container":
		return tkString, 9, true
	case "pod":
		return tkString, 10, true
	case "namespace":
		return tkString, 11, true
	case "value":
		return tkValue, 12, true
	case "labels_raw":
		return tkRaw, 13, true
	}
	return tkUnknown, -1, true
}

// scanTelObject checks that b is one flat JSON object (white space around
// it allowed) whose values are strings, numbers, true, false or null, and
// notes where its timestamp and value are. It reports false when b is not
// valid JSON, and also whenever encoding/json might treat it in a way this
// scanner does not copy (nested values, escaped or non-ASCII keys, a field
// given twice, a string field holding something else): the caller then
// falls back to encoding/json. True means encoding/json decodes b into a
// telRecord without error.
func scanTelObject(b []byte, sc *telScan) bool {
	ok, _ := sc.start(b, false)
	return ok
}

// start scans b from its beginning. With early, it stops (done false) as
// soon as both the timestamp and the value have been found; resume then
// checks the rest. ok false: see scanTelObject.
func (sc *telScan) start(b []byte, early bool) (ok, done bool) {
	sc.ts = [2]int{-1, -1}
	sc.val = [2]int{-1, -1}
	sc.seen = 0
	i := skipJSONSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return false, true
	}
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipJSONSpace(b, i+1) == len(b), true
	}
	return sc.members(b, i, early)
}

// resume finishes a scan that start stopped early.
func (sc *telScan) resume(b []byte) bool {
	i, more, ok := sc.next(b, sc.pos)
	if !ok || !more {
		return ok
	}
	ok, _ = sc.members(b, i, false)
	return ok
}

// next moves past the white space and the ',' or '}' after a member value
// at i: more says another member follows (at the returned offset).
func (sc *telScan) next(b []byte, i int) (j int, more, ok bool) {
	i = skipJSONSpace(b, i)
	if i == len(b) {
		return 0, false, false
	}
	if b[i] == '}' {
		return 0, false, skipJSONSpace(b, i+1) == len(b)
	}
	if b[i] != ',' {
		return 0, false, false
	}
	return skipJSONSpace(b, i+1), true, true
}

// members scans members from i (the opening quote of a key) to the end of
// the object.
func (sc *telScan) members(b []byte, i int, early bool) (ok, done bool) {
	for {
		// Key.
		if i == len(b) || b[i] != '"' {
			return false, true
		}
		ks := i + 1
		end, plain, ok := scanJSONString(b, i)
		if !ok || !plain {
			return false, true
		}
		kind, field, ok := telKey(b[ks : end-1])
		if !ok {
			return false, true
		}
		if field >= 0 {
			if sc.seen&(1<<field) != 0 {
				return false, true
			}
			sc.seen |= 1 << field
		}
		i = skipJSONSpace(b, end)
		if i == len(b) || b[i] != ':' {
			return false, true
		}
		i = skipJSONSpace(b, i+1)
		// Value.
		if i == len(b) {
			return false, true
		}
		vs := i
		switch c := b[i]; {
		case c == '"':
			end, _, ok = scanJSONString(b, i)
		case c == '-' || (c >= '0' && c <= '9'):
			end, ok = scanJSONNumber(b, i)
			ok = ok && kind != tkString
		case c == 't':
			end, ok = scanJSONLiteral(b, i, "true")
			ok = ok && kind != tkString
		case c == 'f':
			end, ok = scanJSONLiteral(b, i, "false")
			ok = ok && kind != tkString
		case c == 'n':
			end, ok = scanJSONLiteral(b, i, "null")
		default:
			return false, true // nested, or not JSON
		}
		if !ok {
			return false, true
		}
		switch kind {
		case tkTimestamp:
			sc.ts, sc.tsKey = [2]int{vs, end}, ks-1
		case tkValue:
			sc.val, sc.valKey = [2]int{vs, end}, ks-1
		}
		if early && sc.ts[0] >= 0 && sc.val[0] >= 0 {
			sc.pos = end
			return true, false
		}
		var more bool
		if i, more, ok = sc.next(b, end); !ok || !more {
			return ok, true
		}
	}
}

// key appends to k the identity key of object b scanned into sc: b less
// its timestamp and value. Objects with equal keys have equal names and
// labels, and either both decode or neither does, whatever their
// timestamps and values.
func (sc *telScan) key(b, k []byte) []byte {
	cuts, flags := sc.cuts()
	k = append(k, flags)
	prev := 0
	for _, c := range cuts {
		if c[0] < 0 {
			continue
		}
		k = binary.AppendUvarint(k, uint64(c[0]-prev))
		k = append(k, b[prev:c[0]]...)
		prev = c[1]
	}
	return append(k, b[prev:]...)
}

// template returns the rowTemplate of object b scanned into sc: where its
// cuts (timestamp and value) lie, in the order key puts them, and key's
// flags.
func (sc *telScan) template(b []byte) rowTemplate {
	cuts, flags := sc.cuts()
	t := rowTemplate{flags: flags}
	prev := 0
	for _, c := range cuts {
		if c[0] < 0 {
			continue
		}
		if t.n == 0 {
			t.a = int32(c[0] - prev)
		} else {
			t.b = int32(c[0] - prev)
		}
		t.n++
		prev = c[1]
	}
	t.c = int32(len(b) - prev)
	return t
}

// locateJSON fills sc with the spans of the timestamp and value of object
// b where template t places them: the first cut at offset t.a, the second
// t.b bytes after the first ends, t.c bytes before the end, each one JSON
// scalar, and returns the first t.n of cuts (in the order and with the
// flags sc.cuts gives for them). It reports false when they do not fit.
// As with telHint.guess,
// the placement is proved only by a row key built from it matching the
// key of an object scanned whole. lastTS, when it is a JSON string (a
// scalar checked before: the last timestamp read), is the timestamp's
// token whenever b holds those bytes where the timestamp starts: a string
// ends at its first unescaped quote, so the scan would stop at the same
// place.
func (t rowTemplate) locateJSON(b []byte, sc *telScan, lastTS []byte) (cuts [2][2]int, ok bool) {
	if int(t.n) != int(t.flags&1+t.flags>>1&1) {
		return cuts, false
	}
	tsCut := -1
	switch t.flags {
	case 1, 3:
		tsCut = 0
	case 7:
		tsCut = 1
	}
	end := 0
	if t.n > 0 {
		i := int(t.a)
		for k := 0; k < int(t.n) && k < 2; k++ {
			if k == 1 {
				i = end + int(t.b)
			}
			if i < end || i > len(b) {
				return cuts, false
			}
			if k == tsCut && len(lastTS) > 0 && lastTS[0] == '"' && len(b)-i >= len(lastTS) && string(b[i:i+len(lastTS)]) == string(lastTS) {
				end = i + len(lastTS)
			} else if end, ok = scanJSONScalar(b, i); !ok {
				return cuts, false
			}
			cuts[k] = [2]int{i, end}
		}
	}
	if len(b)-end != int(t.c) {
		return cuts, false
	}
	sc.ts = [2]int{-1, -1}
	sc.val = [2]int{-1, -1}
	switch t.flags {
	case 0:
	case 1:
		sc.ts = cuts[0]
	case 2:
		sc.val = cuts[0]
	case 3:
		sc.ts, sc.val = cuts[0], cuts[1]
	case 7:
		sc.val, sc.ts = cuts[0], cuts[1]
	default:
		return cuts, false
	}
	return cuts, true
}

// cuts returns the spans of the timestamp and value of the object scanned
// into sc, in the order they come (absent ones as -1), and flags telling
// which are present (1: timestamp, 2: value) and whether the value comes
// first (4).
func (sc *telScan) cuts() ([2][2]int, byte) {
	cuts := [2][2]int{sc.ts, sc.val}
	flags := byte(0)
	if cuts[0][0] >= 0 {
		flags |= 1
	}
	if cuts[1][0] >= 0 {
		flags |= 2
	}
	if flags == 3 && cuts[0][0] > cuts[1][0] {
		cuts[0], cuts[1] = cuts[1], cuts[0]
		flags |= 4
	}
	return cuts, flags
}

// skipJSONSpace skips JSON white space from i.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// trimJSONSpace trims JSON white space.
func trimJSONSpace(b []byte) []byte {
	b = b[skipJSONSpace(b, 0):]
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// scanJSONString checks the string starting at b[i] (a quote) and returns
// the offset after its closing quote. plain is true when the string has no
// escapes and only ASCII, so that its bytes are its value.
func scanJSONString(b []byte, i int) (end int, plain, ok bool) {
	plain = true
	i++
	for {
		// Skip eight ordinary bytes at a time.
		for i+8 <= len(b) && !jsonSpecial8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			return 0, false, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, plain, true
		case c < 0x20:
			return 0, false, false
		case c >= utf8.RuneSelf:
			plain = false
		case c == '\\':
			plain = false
			i++
			if i == len(b) {
				return 0, false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return 0, false, false
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false, false
					}
				}
				i += 4
			default:
				return 0, false, false
			}
		}
		i++
	}
}

// jsonSpecial8 reports whether the eight bytes of w (little endian) hold a
// byte a JSON string scanner must look at: '"', '\\', a control character
// or a non-ASCII byte.
func jsonSpecial8(w uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := w ^ (lo * '"')
	bs := w ^ (lo * '\\')
	return ((w-lo*0x20)&^w|(q-lo)&^q|(bs-lo)&^bs|w)&hi != 0
}

// scanJSONNumber checks the number starting at b[i] (JSON grammar) and
// returns the offset after it.
func scanJSONNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	if i == len(b) {
		return 0, false
	}
	if b[i] == '0' {
		i++
	} else {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return 0, false
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return 0, false
		}
	}
	return i, true
}

// scanJSONLiteral checks that lit (true, false, null) starts at b[i].
func scanJSONLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// plainJSONString reports whether s (the inside of a valid JSON string)
// decodes to itself: no escapes, no control characters, valid UTF-8.
func plainJSONString(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return utf8.Valid(s)
}
