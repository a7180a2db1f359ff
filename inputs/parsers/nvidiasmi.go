package parsers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// nvidiaSMICSV parses `nvidia-smi --query-gpu=... --format=csv` output
// (FormatNvidiaSMICSV). Each row gives one sample per numeric field, all
// carrying the row's identity fields as labels. It is safe for concurrent
// use: each call takes a state from the pool (scratch buffers and caches
// kept between calls; see smiState).
type nvidiaSMICSV struct {
	loc  *time.Location
	pool statePool[smiState]
}

// Column kinds.
const (
	smiSkip    = iota // a repeated column name: only the first counts
	smiTime           // timestamp
	smiLabel          // identity field: always a label
	smiNumeric        // a measurement: a number, a missing marker, or a reject
	smiAuto           // a number when it is one, else a label (compute_mode ...)
)

// smiLabelFields are nvidia-smi fields that identify a GPU; they become
// labels even when they look like numbers (index, serial).
var smiLabelFields = map[string]bool{
	"index": true, "uuid": true, "gpu_uuid": true, "name": true, "gpu_name": true,
	"serial": true, "gpu_serial": true, "pci.bus_id": true, "gpu_bus_id": true,
	"pci.domain": true, "pci.bus": true, "pci.device": true, "pci.device_id": true,
	"pci.sub_device_id": true, "driver_version": true, "vbios_version": true,
	"inforom.img": true, "inforom.oem": true, "inforom.ecc": true, "inforom.pwr": true,
	"board_id": true, "module_id": true,
}

// smiNumericPrefixes name fields that are always measurements, so that text
// in them is garbage (rejected) rather than a label.
var smiNumericPrefixes = []string{
	"temperature.", "utilization.", "memory.", "power.", "enforced.power.", "clocks.",
	"clocks_event_reasons.", "clocks_throttle_reasons.", "ecc.", "remapped_rows.",
	"retired_pages.", "pcie.link.", "fan.speed", "pstate", "encoder.stats.", "fbc.stats.",
	"protected_memory.",
}

type smiColumn struct {
	name string
	kind int
}

type smiValue struct {
	col int
	v   float64
}

// smiState is the state of one Parse call. States come from the parser's
// pool, so one is used by one goroutine at a time. Besides scratch buffers
// it keeps, across calls, the column layouts of the headers it has seen, the
// row identities (with a payload number: series ids are per payload) and
// interned label strings, each bounded (see smiMaxRows).
type smiState struct {
	fields  [][]byte
	scratch []byte
	cols    []smiColumn // the current header's, shared with headers: read only
	vals    []smiValue
	labels  []sdk.Label
	key     []byte
	cache   seriesCache // series, and the interned label strings
	headers map[string][]smiColumn
	rowIDs  map[string]int // row identity -> index into rows
	rows    []smiRow
	ids     []int32 // series id per row identity and column (-1: none yet)
}

// smiRow is a row identity: in payload gen (cache.gen), its series ids
// start at ids[off].
type smiRow struct {
	gen uint64
	off int
}

// smiMaxRows bounds the row identities a state keeps between calls: past
// it they are forgotten at the end of a call (the series cache has its own
// bounds).
const smiMaxRows = 4096

func newNvidiaSMICSV(loc *time.Location) *nvidiaSMICSV {
	return &nvidiaSMICSV{loc: loc, pool: statePool[smiState]{make: func() *smiState {
		return &smiState{cache: newSeriesCache(false), rowIDs: make(map[string]int), headers: make(map[string][]smiColumn)}
	}}}
}

// Parse implements Parser.
func (p *nvidiaSMICSV) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	st := p.pool.get()
	st.cache.beginPayload()
	err := st.parse(payload, msgTime, pos, b, p.loc)
	// Not deferred: a state left half-way by a panic is dropped, not reused.
	st.cache.endPayload()
	st.ids = st.ids[:0]
	if len(st.rowIDs) > smiMaxRows {
		clear(st.rowIDs)
		st.rows = st.rows[:0]
	}
	if len(st.headers) > maxHeaders {
		clear(st.headers)
	}
	p.pool.put(st)
	return err
}

// header returns the columns of header line, from the cache or parsed
// (errors are not cached).
func (st *smiState) header(line []byte) ([]smiColumn, error) {
	if cols, ok := st.headers[string(line)]; ok {
		return cols, nil
	}
	var err error
	st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("parsers: nvidia-smi-csv: header: %w", err))
	}
	cols := make([]smiColumn, 0, len(st.fields))
	seen := make(map[string]bool, len(st.fields))
	for _, f := range st.fields {
		name, unit, ok := splitSMIHeader(f)
		if !ok {
			return nil, sdk.Permanent(fmt.Errorf("parsers: nvidia-smi-csv: first line %q is not a header (want field names as printed by --format=csv)", truncate(line)))
		}
		c := smiColumn{name: string(name)}
		switch {
		case seen[c.name]:
			c.kind = smiSkip
		case c.name == "timestamp":
			c.kind = smiTime
		case smiLabelFields[c.name]:
			c.kind = smiLabel
		case len(unit) > 0 || hasAnyPrefix(c.name, smiNumericPrefixes):
			c.kind = smiNumeric
		default:
			c.kind = smiAuto
		}
		seen[c.name] = true
		cols = append(cols, c)
	}
	st.headers[string(line)] = cols
	return cols, nil
}

// splitSMIHeader splits "utilization.gpu [%]" into name and unit.
func splitSMIHeader(f []byte) (name, unit []byte, ok bool) {
	name = f
	if i := bytes.IndexByte(f, '['); i >= 0 {
		if f[len(f)-1] != ']' {
			return nil, nil, false
		}
		name = trimSpace(f[:i])
		unit = trimSpace(f[i+1 : len(f)-1])
	}
	if len(name) == 0 {
		return nil, nil, false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return nil, nil, false
		}
	}
	// A header field never starts with a digit; a data row does.
	if name[0] >= '0' && name[0] <= '9' {
		return nil, nil, false
	}
	return name, unit, true
}

func (st *smiState) parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch, loc *time.Location) error {
	var (
		header []byte
		lr     = lineReader{data: payload}
		err    error
	)
	for {
		line, _, ok := lr.next()
		if !ok {
			return sdk.Permanent(errors.New("parsers: nvidia-smi-csv: payload has no header line"))
		}
		if isBlank(line) {
			continue
		}
		if st.cols, err = st.header(line); err != nil {
			return err
		}
		header = line
		break
	}

	var (
		lastTS   []byte
		lastTime int64
		msgNanos = msgTime.UnixNano()
	)
rows:
	for {
		line, n, ok := lr.next()
		if !ok {
			break
		}
		if isBlank(line) || bytes.Equal(line, header) {
			continue
		}
		st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
		if err != nil {
			b.Reject("nvidia-smi-csv: "+err.Error(), position(pos, n), rawCopy(line))
			continue
		}
		if len(st.fields) != len(st.cols) {
			b.Reject(fmt.Sprintf("nvidia-smi-csv: %d fields, header has %d", len(st.fields), len(st.cols)), position(pos, n), rawCopy(line))
			continue
		}
		ts := msgNanos
		st.vals = st.vals[:0]
		k := st.key[:0]
		for i, f := range st.fields {
			c := &st.cols[i]
			switch c.kind {
			case smiTime:
				if isMissing(f) {
					continue
				}
				if lastTS != nil && bytes.Equal(f, lastTS) {
					ts = lastTime
					continue
				}
				t, err := parseSMITime(f, loc)
				if err != nil {
					b.Reject("nvidia-smi-csv: "+err.Error(), position(pos, n), rawCopy(line))
					continue rows
				}
				ts, lastTime = t, t
				lastTS = append(lastTS[:0], f...)
			case smiLabel:
				if isMissing(f) {
					continue
				}
				k = appendKeyField(k, i, f)
			case smiNumeric, smiAuto:
				v, kind := parseValue(f)
				switch {
				case kind == valueNumber:
					st.vals = append(st.vals, smiValue{col: i, v: v})
				case kind == valueBad && c.kind == smiNumeric:
					b.Reject(fmt.Sprintf("nvidia-smi-csv: %s: %q is not a number", c.name, truncate(f)), position(pos, n), rawCopy(line))
					continue rows
				case kind == valueBad:
					k = appendKeyField(k, i, f) // text: a label
				}
			}
		}
		st.key = k
		if len(st.vals) == 0 {
			continue
		}
		// Series ids are per payload (row.gen), and one payload has one
		// header: the key needs no header.
		r, ok := st.rowIDs[string(k)]
		if !ok {
			r = len(st.rows)
			st.rows = append(st.rows, smiRow{})
			st.rowIDs[string(k)] = r
		}
		row := &st.rows[r]
		if row.gen != st.cache.gen {
			row.gen = st.cache.gen
			row.off = len(st.ids)
			for range st.cols {
				st.ids = append(st.ids, -1)
			}
		}
		ids := st.ids[row.off : row.off+len(st.cols)]
		var ls []sdk.Label // built on the first new series of this row
		for _, sv := range st.vals {
			id := ids[sv.col]
			if id < 0 {
				if ls == nil {
					ls = st.rowLabels()
				}
				e := st.cache.series(st.cols[sv.col].name, ls)
				id = int32(st.cache.id(b, e, len(st.vals)))
				ids[sv.col] = id
			}
			b.Add(uint32(id), ts, sv.v)
		}
	}
	return nil
}

// rowLabels builds the sorted labels of the current row from st.fields.
func (st *smiState) rowLabels() []sdk.Label {
	ls := st.labels[:0]
	for i, f := range st.fields {
		c := &st.cols[i]
		switch c.kind {
		case smiLabel:
			if isMissing(f) {
				continue
			}
		case smiAuto:
			if _, kind := parseValue(f); kind != valueBad {
				continue
			}
		default:
			continue
		}
		ls = append(ls, sdk.Label{Key: c.name, Value: st.cache.in.get(f)})
	}
	ls = sortLabels(ls)
	st.labels = ls
	if ls == nil {
		ls = []sdk.Label{}
	}
	return ls
}

func appendKeyField(k []byte, col int, f []byte) []byte {
	k = binary.AppendUvarint(k, uint64(col))
	k = binary.AppendUvarint(k, uint64(len(f)))
	return append(k, f...)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// parseSMITime parses nvidia-smi's "2026/11/26 13:21:32.123" (local time,
// no zone) in loc; RFC 3339 is accepted too.
func parseSMITime(f []byte, loc *time.Location) (int64, error) {
	s := string(f)
	t, err := time.ParseInLocation("2006/01/02 15:04:05", s, loc)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("timestamp %q: want YYYY/MM/DD hh:mm:ss.fff", truncate(f))
		}
	}
	return t.UnixNano(), nil
}
