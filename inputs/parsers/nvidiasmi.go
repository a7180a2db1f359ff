package parsers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// nvidiaSMICSV parses `nvidia-smi --query-gpu=... --format=csv` output
// (FormatNvidiaSMICSV). Each row gives one sample per numeric field, all
// carrying the row's identity fields as labels. It is safe for concurrent
// use; per payload scratch state comes from a pool.
type nvidiaSMICSV struct {
	loc  *time.Location
	pool sync.Pool // *smiState
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

// smiState is the scratch state of one Parse call.
type smiState struct {
	fields  [][]byte
	scratch []byte
	cols    []smiColumn
	vals    []smiValue
	labels  []sdk.Label
	key     []byte
	in      interner
	rowIDs  map[string]int // row identity -> index into rows
	rows    [][]int32      // per row identity, series id per column (-1: none yet)
	slab    labelSlab
}

func newNvidiaSMICSV(loc *time.Location) *nvidiaSMICSV {
	return &nvidiaSMICSV{loc: loc, pool: sync.Pool{New: func() any {
		return &smiState{in: make(interner), rowIDs: make(map[string]int)}
	}}}
}

// Parse implements Parser.
func (p *nvidiaSMICSV) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	st := p.pool.Get().(*smiState)
	defer func() {
		clear(st.in)
		clear(st.rowIDs)
		st.rows = st.rows[:0]
		st.slab = labelSlab{}
		p.pool.Put(st)
	}()
	return st.parse(payload, msgTime, pos, b, p.loc)
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
		st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
		if err != nil {
			return sdk.Permanent(fmt.Errorf("parsers: nvidia-smi-csv: header: %w", err))
		}
		st.cols = st.cols[:0]
		seen := make(map[string]bool, len(st.fields))
		for _, f := range st.fields {
			name, unit, ok := splitSMIHeader(f)
			if !ok {
				return sdk.Permanent(fmt.Errorf("parsers: nvidia-smi-csv: first line %q is not a header (want field names as printed by --format=csv)", truncate(line)))
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
			st.cols = append(st.cols, c)
		}
		header = line
		break
	}

	idx := sdk.NewSeriesIndex(b)
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
		r, ok := st.rowIDs[string(k)]
		if !ok {
			ids := make([]int32, len(st.cols))
			for i := range ids {
				ids[i] = -1
			}
			r = len(st.rows)
			st.rows = append(st.rows, ids)
			st.rowIDs[string(k)] = r
		}
		ids := st.rows[r]
		var ls []sdk.Label // built on the first new series of this row
		for _, sv := range st.vals {
			id := ids[sv.col]
			if id < 0 {
				if ls == nil {
					ls = st.rowLabels()
				}
				id = int32(idx.ID(st.cols[sv.col].name, st.slab.take(ls)))
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
		ls = append(ls, sdk.Label{Key: c.name, Value: st.in.get(f)})
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
