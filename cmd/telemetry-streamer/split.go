package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Formats the streamer publishes (metadata["content-type"]).
const (
	formatDCGMCSV    = "dcgm-csv"
	formatSMICSV     = "nvidia-smi-csv"
	formatProm       = "prometheus"
	formatGPUTelJSON = "gpu-tel-json"
)

// emitFunc receives one message payload holding records records. The
// payload may be reused after emit returns: copy it to keep it.
type emitFunc func(payload []byte, records int) error

// splitter cuts one input stream into message payloads of at most batch
// records (batch <= 0: the whole input is one message).
type splitter func(r io.Reader, batch int, emit emitFunc) error

func splitterFor(format string) (splitter, error) {
	switch format {
	case formatDCGMCSV, formatSMICSV:
		return splitCSV, nil
	case formatProm:
		return splitPrometheus, nil
	case formatGPUTelJSON:
		return splitJSON, nil
	}
	return nil, fmt.Errorf("unknown format %q (want %s, %s, %s or %s)", format, formatDCGMCSV, formatSMICSV, formatProm, formatGPUTelJSON)
}

// batcher accumulates records into a message and emits it when full.
type batcher struct {
	batch   int
	emit    emitFunc
	buf     bytes.Buffer
	records int
}

func (b *batcher) full() bool { return b.batch > 0 && b.records >= b.batch }

func (b *batcher) flush() error {
	if b.records == 0 {
		b.buf.Reset()
		return nil
	}
	err := b.emit(b.buf.Bytes(), b.records)
	b.buf.Reset()
	b.records = 0
	return err
}

// readCSVRecord returns the next CSV record with its line ending, keeping
// quoted fields that contain newlines inside one record.
func readCSVRecord(r *bufio.Reader) ([]byte, error) {
	var rec []byte
	inQuote := false
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		}
		for _, c := range line {
			if c == '"' {
				inQuote = !inQuote
			}
		}
		rec = append(rec, line...)
		if err != nil {
			if len(rec) > 0 && errors.Is(err, io.EOF) {
				return rec, nil
			}
			return rec, err
		}
		if !inQuote && len(line) > 0 && line[len(line)-1] == '\n' {
			return rec, nil
		}
	}
}

func isBlank(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

func withNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(b, '\n')
	}
	return b
}

// splitCSV repeats the header record at the top of every message.
func splitCSV(in io.Reader, batch int, emit emitFunc) error {
	r := bufio.NewReaderSize(in, 1<<20)
	var header []byte
	bt := &batcher{batch: batch, emit: emit}
	for {
		rec, err := readCSVRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read csv: %w", err)
		}
		if isBlank(rec) {
			continue
		}
		rec = withNewline(rec)
		if header == nil {
			header = append([]byte(nil), rec...)
			continue
		}
		if bt.records == 0 {
			bt.buf.Write(header)
		}
		bt.buf.Write(rec)
		bt.records++
		if bt.full() {
			if err := bt.flush(); err != nil {
				return err
			}
		}
	}
	return bt.flush()
}

// promFamily is one metric family of a text exposition: its # HELP/# TYPE
// (and preceding comment) lines and its sample lines.
type promFamily struct {
	name    string
	kind    string
	header  [][]byte
	samples [][]byte
}

func (f *promFamily) owns(metric string) bool {
	if metric == f.name {
		return true
	}
	if rest, ok := strings.CutPrefix(metric, f.name+"_"); ok {
		switch rest {
		case "bucket", "sum", "count", "total", "created", "gcount", "gsum":
			return true
		}
	}
	return false
}

func sampleName(line []byte) string {
	s := string(bytes.TrimLeft(line, " \t"))
	if i := strings.IndexAny(s, "{ \t"); i >= 0 {
		return s[:i]
	}
	return strings.TrimSpace(s)
}

// splitPrometheus keeps every message a valid exposition: samples stay
// with their family's # HELP/# TYPE lines, which are repeated when a family
// spans messages. Histogram and summary families are never split.
func splitPrometheus(in io.Reader, batch int, emit emitFunc) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	bt := &batcher{batch: batch, emit: emit}
	var cur *promFamily
	var comments [][]byte
	addFamily := func(f *promFamily) error {
		if f == nil || len(f.samples) == 0 {
			return nil
		}
		if f.kind == "histogram" || f.kind == "summary" || f.kind == "gaugehistogram" {
			if bt.records > 0 && bt.batch > 0 && bt.records+len(f.samples) > bt.batch {
				if err := bt.flush(); err != nil {
					return err
				}
			}
			writeLines(&bt.buf, f.header)
			writeLines(&bt.buf, f.samples)
			bt.records += len(f.samples)
			if bt.full() {
				return bt.flush()
			}
			return nil
		}
		started := false
		for _, s := range f.samples {
			if !started {
				writeLines(&bt.buf, f.header)
				started = true
			}
			bt.buf.Write(s)
			bt.buf.WriteByte('\n')
			bt.records++
			if bt.full() {
				if err := bt.flush(); err != nil {
					return err
				}
				started = false
			}
		}
		return nil
	}
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if isBlank(line) {
			continue
		}
		line = append([]byte(nil), line...)
		if line[0] == '#' {
			fields := strings.Fields(string(line))
			if len(fields) >= 3 && (fields[1] == "HELP" || fields[1] == "TYPE") {
				name := fields[2]
				if cur == nil || cur.name != name || len(cur.samples) > 0 {
					if err := addFamily(cur); err != nil {
						return err
					}
					cur = &promFamily{name: name}
				}
				cur.header = append(cur.header, comments...)
				comments = nil
				cur.header = append(cur.header, line)
				if fields[1] == "TYPE" && len(fields) >= 4 {
					cur.kind = fields[3]
				}
				continue
			}
			comments = append(comments, line)
			continue
		}
		name := sampleName(line)
		if cur == nil || !cur.owns(name) {
			if err := addFamily(cur); err != nil {
				return err
			}
			cur = &promFamily{name: name}
		}
		if len(comments) > 0 {
			var b bytes.Buffer
			writeLines(&b, comments)
			b.Write(line)
			line = b.Bytes()
			comments = nil
		}
		cur.samples = append(cur.samples, line)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read exposition: %w", err)
	}
	if err := addFamily(cur); err != nil {
		return err
	}
	if bt.records > 0 && len(comments) > 0 {
		writeLines(&bt.buf, comments)
	}
	return bt.flush()
}

func writeLines(b *bytes.Buffer, lines [][]byte) {
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
}

// splitJSON reads JSON lines (one record per non-blank line, published as
// is) or, when the input starts with '[', a JSON array (one record per
// element, compacted to one line). Messages are NDJSON.
func splitJSON(in io.Reader, batch int, emit emitFunc) error {
	r := bufio.NewReaderSize(in, 1<<20)
	bt := &batcher{batch: batch, emit: emit}
	add := func(rec []byte) error {
		bt.buf.Write(rec)
		bt.buf.WriteByte('\n')
		bt.records++
		if bt.full() {
			return bt.flush()
		}
		return nil
	}
	for {
		c, err := r.ReadByte()
		if err != nil {
			return bt.flush()
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0xEF || c == 0xBB || c == 0xBF {
			continue
		}
		_ = r.UnreadByte()
		if c != '[' {
			break
		}
		dec := json.NewDecoder(r)
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("read json array: %w", err)
		}
		var compact bytes.Buffer
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return fmt.Errorf("read json array element %d: %w", bt.records+1, err)
			}
			compact.Reset()
			if err := json.Compact(&compact, raw); err != nil {
				return fmt.Errorf("compact json element: %w", err)
			}
			if err := add(compact.Bytes()); err != nil {
				return err
			}
		}
		return bt.flush()
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := add(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read json lines: %w", err)
	}
	return bt.flush()
}

// dcgmColumns maps the DCGM CSV header (case-insensitive) to gpu-tel-json
// keys, in output order.
var dcgmKeys = []struct{ key, column string }{
	{"timestamp", "timestamp"}, {"metric_name", "metric_name"}, {"gpu_id", "gpu_id"},
	{"device", "device"}, {"uuid", "uuid"}, {"model_name", "modelname"}, {"hostname", "hostname"},
	{"container", "container"}, {"pod", "pod"}, {"namespace", "namespace"}, {"value", "value"},
	{"labels_raw", "labels_raw"},
}

// convertDCGM turns DCGM CSV rows into gpu-tel-json objects (the original
// service's payload), batch objects per NDJSON message. gpu_id and value
// are JSON numbers when they parse, strings otherwise (values are not
// judged). shift, when set, rewrites RFC 3339 timestamps. Rows the CSV
// reader cannot parse are counted in bad and reported through onBad.
func convertDCGM(in io.Reader, batch int, shift func(time.Time) time.Time, onBad func(line int, err error), emit emitFunc) (bad int, err error) {
	cr := csv.NewReader(bufio.NewReaderSize(in, 1<<20))
	cr.LazyQuotes = true
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read dcgm csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	idx := make([]int, len(dcgmKeys))
	for i, k := range dcgmKeys {
		j, ok := col[k.column]
		if !ok {
			j = -1
		}
		idx[i] = j
	}
	bt := &batcher{batch: batch, emit: emit}
	var obj []byte
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad++
				if onBad != nil {
					onBad(pe.StartLine, err)
				}
				continue
			}
			return bad, fmt.Errorf("read dcgm csv: %w", err)
		}
		if len(row) == 1 && strings.TrimSpace(row[0]) == "" {
			continue
		}
		obj = append(obj[:0], '{')
		for i, k := range dcgmKeys {
			v := ""
			if j := idx[i]; j >= 0 && j < len(row) {
				v = row[j]
			}
			if i > 0 {
				obj = append(obj, ',')
			}
			obj = strconv.AppendQuote(obj, k.key)
			obj = append(obj, ':')
			switch k.key {
			case "gpu_id":
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					obj = strconv.AppendInt(obj, n, 10)
					continue
				}
			case "value":
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
					obj = strconv.AppendFloat(obj, f, 'g', -1, 64)
					continue
				}
			case "timestamp":
				if shift != nil {
					if ts, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v)); err == nil {
						v = shift(ts).UTC().Format(time.RFC3339Nano)
					}
				}
			}
			obj = appendJSONString(obj, v)
		}
		obj = append(obj, '}')
		bt.buf.Write(obj)
		bt.buf.WriteByte('\n')
		bt.records++
		if bt.full() {
			if err := bt.flush(); err != nil {
				return bad, err
			}
		}
	}
	return bad, bt.flush()
}

func appendJSONString(b []byte, s string) []byte {
	enc, _ := json.Marshal(s) // a string always marshals
	return append(b, enc...)
}
