package conf

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// keyIndex maps the resolved path of every table header and key written in
// one TOML file to the line it was written on.
//
// Paths join key segments with "." and number array-of-tables instances
// (and array elements) with "[n]", for example:
//
//	agent                           [agent]
//	agent.log_level                 log_level = "info"
//	outputs.postgresql              first [[outputs.postgresql]] (implicit prefix)
//	outputs.postgresql[1]           second [[outputs.postgresql]]
//	outputs.postgresql[1].tls.ca    ca = "..." under [outputs.postgresql.tls]
//
// BurntSushi/toml does not expose per-key positions, so the index is built by
// a small structural scanner that understands the parts of TOML that decide
// where keys live (headers, dotted and quoted keys, inline tables, arrays,
// every string form and comments) and skips values otherwise. It is only run
// on input that toml.Decode already accepted; on anything else it still
// terminates and never panics, it just may record less.
type keyIndex map[string]int

// maxIndexDepth bounds the recursion into nested arrays and inline tables;
// deeper values are skipped without recording keys.
const maxIndexDepth = 64

func buildIndex(src []byte) keyIndex {
	s := &indexScanner{src: src, line: 1, idx: keyIndex{}, arrays: map[string]int{}}
	s.run()
	return s.idx
}

type indexScanner struct {
	src    []byte
	i      int
	line   int
	idx    keyIndex
	arrays map[string]int // resolved array-of-tables path -> current instance
}

func (s *indexScanner) peek(off int) byte {
	if s.i+off < len(s.src) && s.i+off >= 0 {
		return s.src[s.i+off]
	}
	return 0
}

func (s *indexScanner) hasPrefix(p string) bool {
	return bytes.HasPrefix(s.src[min(s.i, len(s.src)):], []byte(p))
}

// adv consumes one byte, counting lines.
func (s *indexScanner) adv() {
	if s.i < len(s.src) {
		if s.src[s.i] == '\n' {
			s.line++
		}
		s.i++
	}
}

// skipWS skips spaces and tabs.
func (s *indexScanner) skipWS() {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
}

// skipBlank skips whitespace, newlines and comments.
func (s *indexScanner) skipBlank() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.adv()
		case '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipToEOL consumes the rest of the line including its newline.
func (s *indexScanner) skipToEOL() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
	s.adv()
}

func (s *indexScanner) set(path string, line int) { s.idx[path] = line }

func (s *indexScanner) setIfAbsent(path string, line int) {
	if _, ok := s.idx[path]; !ok {
		s.idx[path] = line
	}
}

func (s *indexScanner) run() {
	cur := ""
	for s.i < len(s.src) {
		start := s.i
		s.skipBlank()
		if s.i >= len(s.src) {
			break
		}
		line := s.line
		if s.src[s.i] == '[' {
			array := s.peek(1) == '['
			if array {
				s.i += 2
			} else {
				s.i++
			}
			segs := s.key()
			prefixes := s.resolve(segs)
			if len(prefixes) > 0 {
				for _, p := range prefixes {
					s.setIfAbsent(p, line)
				}
				path := prefixes[len(prefixes)-1]
				if array {
					n := 0
					if v, ok := s.arrays[path]; ok {
						n = v + 1
					}
					s.arrays[path] = n
					path += "[" + strconv.Itoa(n) + "]"
				}
				s.set(path, line)
				cur = path
			}
			s.skipToEOL()
		} else {
			segs := s.key()
			s.skipWS()
			if len(segs) == 0 || s.peek(0) != '=' {
				s.skipToEOL()
			} else {
				s.i++
				s.keyValue(cur, segs, line, 0)
				s.skipToEOL()
			}
		}
		if s.i == start {
			s.adv()
		}
	}
}

// resolve turns header segments into the resolved paths of each prefix,
// numbering the prefixes that are arrays of tables with their current
// instance. The last element is the header's own (unnumbered) path.
func (s *indexScanner) resolve(segs []string) []string {
	out := make([]string, 0, len(segs))
	p := ""
	for k, seg := range segs {
		if k == 0 {
			p = seg
		} else {
			p += "." + seg
		}
		out = append(out, p)
		if k < len(segs)-1 {
			if n, ok := s.arrays[p]; ok {
				p += "[" + strconv.Itoa(n) + "]"
			}
		}
	}
	return out
}

func joinPath(prefix string, segs []string) string {
	p := prefix
	for _, seg := range segs {
		if p == "" {
			p = seg
		} else {
			p += "." + seg
		}
	}
	return p
}

// keyValue records a (possibly dotted) key under prefix and scans its value.
func (s *indexScanner) keyValue(prefix string, segs []string, line, depth int) {
	for k := 1; k < len(segs); k++ {
		s.setIfAbsent(joinPath(prefix, segs[:k]), line)
	}
	full := joinPath(prefix, segs)
	s.set(full, line)
	s.value(full, depth)
}

// key reads a dotted key of bare, basic-quoted or literal-quoted segments.
func (s *indexScanner) key() []string {
	var segs []string
	for {
		s.skipWS()
		var seg string
		switch c := s.peek(0); {
		case c == '"':
			start := s.i
			s.basicString()
			raw := string(s.src[start:s.i])
			if u, err := strconv.Unquote(raw); err == nil {
				seg = u
			} else {
				seg = strings.Trim(raw, `"`)
			}
		case c == '\'':
			start := s.i
			s.literalString()
			seg = strings.Trim(string(s.src[start:s.i]), "'")
		default:
			start := s.i
			for s.i < len(s.src) && isBareKeyChar(s.src[s.i]) {
				s.i++
			}
			if s.i == start {
				return segs
			}
			seg = string(s.src[start:s.i])
		}
		segs = append(segs, seg)
		s.skipWS()
		if s.peek(0) != '.' {
			return segs
		}
		s.i++
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value scans one value; keys inside inline tables are recorded under path,
// array elements as path[n].
func (s *indexScanner) value(path string, depth int) {
	s.skipWS()
	switch {
	case s.hasPrefix(`"""`):
		s.multiLine(`"""`, true)
	case s.hasPrefix(`'''`):
		s.multiLine(`'''`, false)
	case s.peek(0) == '"':
		s.basicString()
	case s.peek(0) == '\'':
		s.literalString()
	case s.peek(0) == '{':
		s.i++
		if depth >= maxIndexDepth {
			s.skipNested(1)
			return
		}
		s.inlineTable(path, depth+1)
	case s.peek(0) == '[':
		s.i++
		if depth >= maxIndexDepth {
			s.skipNested(1)
			return
		}
		s.array(path, depth+1)
	default:
		for s.i < len(s.src) && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
			s.i++
		}
	}
}

func (s *indexScanner) array(path string, depth int) {
	n := 0
	for s.i < len(s.src) {
		start := s.i
		s.skipBlank()
		switch s.peek(0) {
		case ']':
			s.i++
			return
		case ',':
			s.i++
			continue
		case 0:
			return
		}
		elem := path + "[" + strconv.Itoa(n) + "]"
		s.set(elem, s.line)
		s.value(elem, depth)
		n++
		if s.i == start {
			s.adv()
		}
	}
}

func (s *indexScanner) inlineTable(path string, depth int) {
	for s.i < len(s.src) {
		start := s.i
		s.skipBlank()
		switch s.peek(0) {
		case '}':
			s.i++
			return
		case ',':
			s.i++
			continue
		case 0:
			return
		}
		line := s.line
		segs := s.key()
		s.skipWS()
		if len(segs) == 0 || s.peek(0) != '=' {
			// Not valid inline-table syntax: give up on this table.
			s.skipNested(1)
			return
		}
		s.i++
		s.keyValue(path, segs, line, depth)
		if s.i == start {
			s.adv()
		}
	}
}

// skipNested skips to the bracket that closes `open` already-open brackets,
// honouring strings and comments.
func (s *indexScanner) skipNested(open int) {
	for s.i < len(s.src) && open > 0 {
		switch {
		case s.hasPrefix(`"""`):
			s.multiLine(`"""`, true)
		case s.hasPrefix(`'''`):
			s.multiLine(`'''`, false)
		case s.peek(0) == '"':
			s.basicString()
		case s.peek(0) == '\'':
			s.literalString()
		case s.peek(0) == '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		case s.peek(0) == '[' || s.peek(0) == '{':
			open++
			s.i++
		case s.peek(0) == ']' || s.peek(0) == '}':
			open--
			s.i++
		default:
			s.adv()
		}
	}
}

// basicString consumes "..." (with escapes) up to the closing quote or the
// end of the line.
func (s *indexScanner) basicString() {
	s.i++ // opening quote
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return
		case '\n':
			return
		default:
			s.i++
		}
	}
	s.i = min(s.i, len(s.src))
}

// literalString consumes '...' up to the closing quote or the end of the line.
func (s *indexScanner) literalString() {
	s.i++
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case '\'':
			s.i++
			return
		case '\n':
			return
		default:
			s.i++
		}
	}
}

// multiLine consumes a """ or ”' string, counting its lines. Up to two
// quotes directly before the closing delimiter belong to the content.
func (s *indexScanner) multiLine(delim string, escapes bool) {
	s.i += len(delim)
	q := delim[0]
	for s.i < len(s.src) {
		if escapes && s.src[s.i] == '\\' {
			s.i++
			s.adv()
			continue
		}
		if s.hasPrefix(delim) {
			s.i += len(delim)
			for k := 0; k < 2 && s.peek(0) == q; k++ {
				s.i++
			}
			return
		}
		s.adv()
	}
}

// under returns the entries of idx below prefix (which ends in "."), with
// prefix removed. keys is idx's keys, sorted.
func (idx keyIndex) under(keys []string, prefix string) map[string]int {
	out := map[string]int{}
	for i := sort.SearchStrings(keys, prefix); i < len(keys) && strings.HasPrefix(keys[i], prefix); i++ {
		out[keys[i][len(prefix):]] = idx[keys[i]]
	}
	return out
}

// sortedKeys returns idx's keys in order.
func (idx keyIndex) sortedKeys() []string {
	keys := make([]string, 0, len(idx))
	for k := range idx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// maxNesting bounds how deeply arrays and inline tables may nest. The TOML
// decoder slows down sharply on deep nesting (seconds for a few thousand
// levels); no configuration needs more than a few.
const maxNesting = 32

// checkNesting returns the line where brackets outside strings and comments
// nest deeper than maxNesting, or 0. It is a cheap pre-check, run before
// decoding, that also works on invalid TOML. Header brackets ("[[a]]") count
// too but never reach the limit.
func checkNesting(src []byte) int {
	s := &indexScanner{src: src, line: 1}
	depth := 0
	for s.i < len(s.src) {
		switch c := s.peek(0); {
		case s.hasPrefix(`"""`):
			s.multiLine(`"""`, true)
		case s.hasPrefix(`'''`):
			s.multiLine(`'''`, false)
		case c == '"':
			s.basicString()
		case c == '\'':
			s.literalString()
		case c == '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		case c == '[' || c == '{':
			depth++
			if depth > maxNesting {
				return s.line
			}
			s.i++
		case c == ']' || c == '}':
			depth = max(depth-1, 0)
			s.i++
		default:
			s.adv()
		}
	}
	return 0
}
