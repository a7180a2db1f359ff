package parsers

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// dcgmCSV parses the DCGM CSV export (FormatDCGMCSV): a header line naming
// the columns, then one sample per row. It is safe for concurrent use; per
// payload scratch state comes from a pool.
type dcgmCSV struct {
	pool sync.Pool // *dcgmState
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

// dcgmState is the scratch state of one Parse call.
type dcgmState struct {
	fields  [][]byte
	scratch []byte
	labels  []sdk.Label
	merged  []sdk.Label
	in      interner
	slab    labelSlab
}

func newDCGMCSV() *dcgmCSV {
	return &dcgmCSV{pool: sync.Pool{New: func() any {
		return &dcgmState{in: make(interner)}
	}}}
}

// Parse implements Parser.
func (p *dcgmCSV) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	st := p.pool.Get().(*dcgmState)
	defer func() {
		clear(st.in)
		st.slab = labelSlab{}
		p.pool.Put(st)
	}()
	return st.parse(payload, msgTime, pos, b)
}

func (st *dcgmState) parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	var (
		cols   [dcNumCols]int // field index of each column, -1 if absent
		nCols  int
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
		st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
		if err != nil {
			return sdk.Permanent(fmt.Errorf("parsers: dcgm-csv: header: %w", err))
		}
		for i := range cols {
			cols[i] = -1
		}
		for i, f := range st.fields {
			c, ok := dcgmColumns[string(bytes.ToLower(f))]
			if ok && cols[c] < 0 {
				cols[c] = i
			}
		}
		if cols[dcMetric] < 0 || cols[dcValue] < 0 {
			return sdk.Permanent(fmt.Errorf("parsers: dcgm-csv: header %q lacks metric_name or value", truncate(line)))
		}
		nCols = len(st.fields)
		header = line
		break
	}

	idx := sdk.NewSeriesIndex(b)
	var (
		lastTS   []byte
		lastTime = msgTime.UnixNano()
		msgNanos = lastTime
	)
	for {
		line, n, ok := lr.next()
		if !ok {
			break
		}
		if isBlank(line) || bytes.Equal(line, header) {
			continue // the streamer repeats the header in every message
		}
		st.fields, st.scratch, err = splitCSV(line, st.fields, st.scratch, true)
		if err != nil {
			b.Reject("dcgm-csv: "+err.Error(), position(pos, n), rawCopy(line))
			continue
		}
		if len(st.fields) != nCols {
			b.Reject(fmt.Sprintf("dcgm-csv: %d fields, header has %d", len(st.fields), nCols), position(pos, n), rawCopy(line))
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
			if lastTS != nil && bytes.Equal(f[c], lastTS) {
				ts = lastTime
			} else {
				t, err := parseTimestamp(f[c])
				if err != nil {
					b.Reject("dcgm-csv: "+err.Error(), position(pos, n), rawCopy(line))
					continue
				}
				ts = t
				lastTS = append(lastTS[:0], f[c]...)
				lastTime = t
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
		cl := st.labels[:0]
		for _, c := range dcgmLabelOrder {
			if cols[c] >= 0 && len(f[cols[c]]) > 0 {
				cl = append(cl, sdk.Label{Key: dcgmLabelKeys[c], Value: st.in.get(f[cols[c]])})
			}
		}
		nc := len(cl)
		if c := cols[dcLabelsRaw]; c >= 0 {
			cl, err = parsePromLabels(f[c], cl, st.in)
			st.labels = cl
			if err != nil {
				b.Reject("dcgm-csv: labels_raw: "+err.Error(), position(pos, n), rawCopy(line))
				continue
			}
		}
		st.labels = cl
		st.merged = mergeLabels(st.merged[:0], cl[:nc], cl[nc:])
		ls := st.merged
		ns := len(b.Series)
		id := idx.ID(st.in.get(name), ls)
		if len(b.Series) > ns {
			b.Series[id].Labels = st.slab.take(ls) // the index kept the scratch slice
		}
		b.Add(id, ts, v)
	}
	return nil
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
