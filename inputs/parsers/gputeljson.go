package parsers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// gpuTelJSON parses the original service's JSON payload (FormatGPUTelJSON):
// one object per sample, a JSON array of them, or newline-delimited objects.
// Labels use the dcgm-csv parser's keys (gpu, device, UUID, modelName,
// Hostname, container, pod, namespace) so one normalization covers both. It
// is safe for concurrent use: each call takes a state from the pool
// (scratch buffers and a series cache kept between calls; see telState).
type gpuTelJSON struct {
	pool statePool[telState]
}

// telRecord is one sample object. encoding/json matches keys
// case-insensitively, so "UUID" and "Hostname" are accepted too; the
// camelCase spellings of the CSV export are accepted as alternates.
type telRecord struct {
	Timestamp  json.RawMessage `json:"timestamp"`
	MetricName string          `json:"metric_name"`
	GPUID      json.RawMessage `json:"gpu_id"`
	GPU        json.RawMessage `json:"gpu"`
	Device     string          `json:"device"`
	UUID       string          `json:"uuid"`
	ModelName  string          `json:"model_name"`
	ModelName2 string          `json:"modelName"`
	Hostname   string          `json:"hostname"`
	Container  string          `json:"container"`
	Pod        string          `json:"pod"`
	Namespace  string          `json:"namespace"`
	Value      json.RawMessage `json:"value"`
	LabelsRaw  json.RawMessage `json:"labels_raw"`
}

// telState is the state of one Parse call. States come from the parser's
// pool, so one is used by one goroutine at a time; besides scratch buffers
// it keeps a series cache that outlives the call (see seriesCache).
type telState struct {
	rec    telRecord
	scan   telScan
	hint   telHint
	labels []sdk.Label
	key    []byte
	cache  seriesCache
	lastTS []byte // last timestamp parsed, and its value
	lastT  int64
	// tplHits counts the objects the template fast path emitted (tests
	// check that it is taken).
	tplHits int
}

func newGPUTelJSON() *gpuTelJSON { return newGPUTelJSONWith(false) }

// newGPUTelJSONWith returns a gpu-tel-json parser; noRows turns its row
// cache off (for tests).
func newGPUTelJSONWith(noRows bool) *gpuTelJSON {
	return &gpuTelJSON{pool: statePool[telState]{make: func() *telState { return &telState{cache: newSeriesCache(noRows)} }}}
}

// Parse implements Parser.
func (p *gpuTelJSON) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	st := p.pool.get()
	err := st.parse(payload, msgTime, pos, b)
	// Not deferred: a state left half-way by a panic is dropped, not reused.
	st.cache.endPayload()
	p.pool.put(st)
	return err
}

func (st *telState) parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	em := telEmitter{st: st, b: b, msgNanos: msgTime.UnixNano(), pos: pos, payload: payload}
	start := skipSpace(payload, 0)
	if start == len(payload) {
		return sdk.Permanent(errors.New("parsers: gpu-tel-json: empty payload"))
	}
	st.cache.beginPayload()
	switch payload[start] {
	case '[':
		return em.array(start)
	case '{':
		// One known object (found without scanning it, see quick), and no
		// line break after it: whatever line breaks it holds, its first
		// line is no whole object (its one closing brace ends it), so it
		// is not newline-delimited, and the code below would take it as
		// one object, trimmed.
		raw := trimJSONSpace(payload[start:])
		tried := false
		if bytes.IndexByte(payload[start+len(raw):], '\n') < 0 {
			tried = true
			if em.quick(raw, em.lineAt(start)) {
				return nil
			}
		}
		// Newline-delimited when the first line is a whole object.
		end := bytes.IndexByte(payload[start:], '\n')
		if end >= 0 {
			first := payload[start : start+end]
			if scanTelObject(first, &st.scan) || json.Valid(first) {
				growBatch(b, len(payload)/(end+1)+1)
				em.lines()
				return nil
			}
		}
		// One object: a known one, found without scanning it (white space
		// around it is no part of it, as below), else scanned.
		if !tried && em.quick(raw, em.lineAt(start)) {
			return nil
		}
		if scanTelObject(payload[start:], &st.scan) {
			// One object and nothing but white space after it: what the
			// decoder would do, without it.
			em.record(raw, em.lineAt(start), true)
			return nil
		}
		return em.stream(start)
	}
	return sdk.Permanent(fmt.Errorf("parsers: gpu-tel-json: payload is not JSON (starts with %q)", truncate(payload[start:min(len(payload), start+20)])))
}

type telEmitter struct {
	st       *telState
	b        *sdk.Batch
	msgNanos int64
	pos      string
	payload  []byte
	// line counting for offsets, advanced monotonically
	lineOff, lineNum int
}

// lineAt returns the 1-based line number of payload offset off (off must
// not go backwards between calls).
func (em *telEmitter) lineAt(off int) int {
	if em.lineNum == 0 {
		em.lineNum = 1
	}
	off = min(off, len(em.payload))
	if off > em.lineOff {
		em.lineNum += bytes.Count(em.payload[em.lineOff:off], []byte{'\n'})
		em.lineOff = off
	}
	return em.lineNum
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == ',') {
		i++
	}
	return i
}

// lines handles newline-delimited objects: each line alone.
func (em *telEmitter) lines() {
	lr := lineReader{data: em.payload}
	for {
		line, n, ok := lr.next()
		if !ok {
			return
		}
		if isBlank(line) {
			continue
		}
		em.record(line, n, false)
	}
}

// array handles a JSON array of objects. A syntax error stops the walk; the
// rest of the payload is rejected as one piece.
func (em *telEmitter) array(start int) error {
	dec := json.NewDecoder(bytes.NewReader(em.payload[start:]))
	if _, err := dec.Token(); err != nil {
		return sdk.Permanent(fmt.Errorf("parsers: gpu-tel-json: %w", err))
	}
	n := 0
	for dec.More() {
		off := skipSpace(em.payload, start+int(dec.InputOffset()))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return em.rest(off, err, n)
		}
		n++
		em.record(raw, em.lineAt(off), false)
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		return em.rest(start+int(dec.InputOffset()), err, n)
	}
	return nil
}

// stream handles one object or several concatenated (pretty-printed) ones.
func (em *telEmitter) stream(start int) error {
	dec := json.NewDecoder(bytes.NewReader(em.payload[start:]))
	n := 0
	for {
		off := skipSpace(em.payload, start+int(dec.InputOffset()))
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return em.rest(off, err, n)
		}
		n++
		em.record(raw, em.lineAt(off), false)
	}
}

// rest rejects the payload from off on after a syntax error; with nothing
// decoded before, the payload is unusable and Parse fails instead.
func (em *telEmitter) rest(off int, err error, decoded int) error {
	if decoded == 0 {
		return sdk.Permanent(fmt.Errorf("parsers: gpu-tel-json: %w", err))
	}
	off = min(off, len(em.payload))
	em.b.Reject("gpu-tel-json: "+err.Error(), position(em.pos, em.lineAt(off)), rawCopy(em.payload[off:]))
	return nil
}

// record turns one object into a sample, or a reject.
// With scanned, st.scan holds scanTelObject's findings for raw.
func (em *telEmitter) record(raw []byte, line int, scanned bool) {
	st := em.st
	// Fast path: an object whose identity (every byte but the timestamp and
	// value) was seen before, its timestamp and value found without
	// scanning (see quick), else scanned.
	if !scanned && em.quick(raw, line) {
		return
	}
	var key []byte
	if scanned || scanTelObject(raw, &st.scan) {
		st.hint.learn(raw, &st.scan)
		key = st.scan.key(raw, st.key[:0])
		st.key = key
		if e := st.cache.row(key); e != nil {
			em.fast(e, raw, line)
			return
		}
	}
	st.rec = telRecord{}
	r := &st.rec
	reject := func(reason string) {
		em.b.Reject("gpu-tel-json: "+reason, position(em.pos, line), rawCopy(raw))
	}
	if err := json.Unmarshal(raw, r); err != nil {
		reject(err.Error())
		return
	}
	if r.MetricName == "" {
		reject("no metric_name")
		return
	}
	v, kind := jsonValue(r.Value)
	if kind == valueBad {
		reject(fmt.Sprintf("value %s is not a number", truncate(r.Value)))
		return
	}
	if kind == valueMissing || isDCGMBlank(v) {
		return
	}
	ts, err := em.timestamp(r.Timestamp)
	if err != nil {
		reject(err.Error())
		return
	}
	gpu := r.GPUID
	if len(gpu) == 0 || string(gpu) == "null" {
		gpu = r.GPU
	}
	model := r.ModelName
	if model == "" {
		model = r.ModelName2
	}
	ls := st.labels[:0]
	if len(gpu) > 0 && string(gpu) != "null" {
		if c := gpu[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
			reject("gpu_id is not a number or a string")
			return
		}
		g := bytes.Trim(gpu, `"`)
		if len(g) > 0 {
			ls = append(ls, sdk.Label{Key: "gpu", Value: st.cache.in.get(g)})
		}
	}
	for _, l := range [...]sdk.Label{
		{Key: "device", Value: r.Device}, {Key: "UUID", Value: r.UUID}, {Key: "modelName", Value: model},
		{Key: "Hostname", Value: r.Hostname}, {Key: "container", Value: r.Container},
		{Key: "pod", Value: r.Pod}, {Key: "namespace", Value: r.Namespace},
	} {
		if l.Value != "" {
			ls = append(ls, sdk.Label{Key: l.Key, Value: st.cache.in.getString(l.Value)})
		}
	}
	ls, err = em.labelsRaw(r.LabelsRaw, ls)
	st.labels = ls
	if err != nil {
		reject("labels_raw: " + err.Error())
		return
	}
	ls = sortLabels(ls)
	e := st.cache.series(st.cache.in.getString(r.MetricName), ls)
	if key != nil {
		st.cache.setRow(key, e, st.scan.template(raw))
	}
	st.cache.add(em.b, e, ts, v, len(em.payload), len(raw))
}

// quick emits object raw (at line) when its identity was seen before and
// its timestamp and value are found without scanning it: first where the
// template of the row predicted to come next places them (the previous
// object's successor last time), then after the first `"timestamp":` and
// `"value":` (as the last object scanned whole spelled them). It reports
// false, having done nothing else, when neither finds a known row. A
// found row proves the placement (see telHint.guess and rowTemplate).
func (em *telEmitter) quick(raw []byte, line int) bool {
	st := em.st
	if r := st.cache.predicted(); r != nil && em.template(r, raw, line) {
		return true
	}
	if st.hint.guess(raw, &st.scan) {
		key := st.scan.key(raw, st.key[:0])
		st.key = key
		if e := st.cache.row(key); e != nil {
			em.fast(e, raw, line)
			return true
		}
	}
	return false
}

// template is quick's first try: object raw taken as the predicted row
// r, or another known row with r's template.
func (em *telEmitter) template(r *rowEntry, raw []byte, line int) bool {
	st := em.st
	cuts, ok := r.tpl.locateJSON(raw, &st.scan, st.lastTS)
	if !ok {
		return false
	}
	// The key compared in place (what matching st.scan.key's result with
	// r's would do), else built for the map.
	if r.matches([]byte{r.tpl.flags}, raw, cuts[:r.tpl.n]) {
		st.cache.follow(r)
		st.tplHits++
		em.fast(r.e, raw, line)
		return true
	}
	key := st.scan.key(raw, st.key[:0])
	st.key = key
	if e := st.cache.rowAt(r, key); e != nil {
		st.tplHits++
		em.fast(e, raw, line)
		return true
	}
	return false
}

// fast emits object raw of cached series e: only its timestamp and value
// are to be read (st.scan locates them), in the order record checks them.
func (em *telEmitter) fast(e *cachedSeries, raw []byte, line int) {
	sc := &em.st.scan
	var val, tsRaw []byte
	if sc.val[0] >= 0 {
		val = raw[sc.val[0]:sc.val[1]]
	}
	if sc.ts[0] >= 0 {
		tsRaw = raw[sc.ts[0]:sc.ts[1]]
	}
	v, kind := jsonValue(val)
	if kind == valueBad {
		em.b.Reject("gpu-tel-json: "+fmt.Sprintf("value %s is not a number", truncate(val)), position(em.pos, line), rawCopy(raw))
		return
	}
	if kind == valueMissing || isDCGMBlank(v) {
		return
	}
	ts, err := em.timestamp(tsRaw)
	if err != nil {
		em.b.Reject("gpu-tel-json: "+err.Error(), position(em.pos, line), rawCopy(raw))
		return
	}
	em.st.cache.add(em.b, e, ts, v, len(em.payload), len(raw))
}

// timestamp turns a timestamp field (raw JSON, possibly absent) into Unix
// nanoseconds: the message time when absent, null or empty. The last result
// is reused when the field repeats.
func (em *telEmitter) timestamp(raw []byte) (int64, error) {
	st := em.st
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return em.msgNanos, nil
	}
	if st.lastTS != nil && bytes.Equal(raw, st.lastTS) {
		return st.lastT, nil
	}
	t, err := parseTimestamp(bytes.Trim(raw, `"`))
	if err != nil {
		return 0, err
	}
	st.lastTS = append(st.lastTS[:0], raw...)
	st.lastT = t
	return t, nil
}

// labelsRaw appends the labels of a labels_raw value: a Prometheus label
// set in a string, or an object of strings.
func (em *telEmitter) labelsRaw(raw json.RawMessage, ls []sdk.Label) ([]sdk.Label, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ls, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return ls, err
		}
		return parsePromLabels([]byte(s), ls, em.st.cache.in)
	case '{':
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return ls, err
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "__name__" {
				continue
			}
			switch v := m[k].(type) {
			case string:
				ls = append(ls, sdk.Label{Key: em.st.cache.in.getString(k), Value: em.st.cache.in.getString(v)})
			case json.Number, float64, bool:
				ls = append(ls, sdk.Label{Key: em.st.cache.in.getString(k), Value: fmt.Sprint(v)})
			}
		}
		return ls, nil
	}
	return ls, errors.New("want a string or an object")
}

// jsonValue classifies a JSON value field: a number, a string holding a
// value (CANONICAL_METRICS.md rules), or null (missing).
func jsonValue(raw json.RawMessage) (float64, valueKind) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, valueMissing
	}
	switch raw[0] {
	case '"':
		if s := raw[1:]; len(s) > 0 && s[len(s)-1] == '"' && plainJSONString(s[:len(s)-1]) {
			return parseValue(s[:len(s)-1])
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, valueBad
		}
		return parseValue([]byte(s))
	case 't':
		if string(raw) == "true" {
			return 1, valueNumber
		}
	case 'f':
		if string(raw) == "false" {
			return 0, valueNumber
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return parseValue(raw)
	}
	return 0, valueBad
}
