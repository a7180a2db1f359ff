package parsers

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// prometheusText parses the Prometheus text exposition format as served by
// dcgm-exporter (FormatPrometheus), with expfmt's TextParser. It is safe for
// concurrent use: each call takes a state (a TextParser, reused after
// successful parses, and a series cache) from a pool.
type prometheusText struct {
	pool statePool[promState]
}

// promState is the state of one Parse call (see dcgmState).
type promState struct {
	tp     expfmt.TextParser
	tpOK   bool // tp may be reused: its last parse succeeded
	rd     bytes.Reader
	cache  seriesCache
	labels []sdk.Label
	names  []string
	name   []byte

	// The fast path (promfast.go): comment lines of accepted payloads,
	// and scratch space.
	meta      map[string]struct{}
	fastNames []promName
	fastNext  map[string]int
	// metaSeq (lines in metaBuf) is the last emitted payload's comment
	// lines, metaLines the scan's, metaDiverged whether the scan's
	// differ from metaSeq (see promMetaRec).
	metaSeq      []promMetaRec
	metaBuf      []byte
	metaLines    []promMetaRec
	metaDiverged bool

	// First sight (promfast.go): the metric names and label sets (the
	// "{...}" of a sample line) of sample lines that expfmt accepted, so
	// that a new line made of a known name and a known label set is known
	// too; blockBytes counts the bytes of the label sets kept. missed (the
	// start and end offsets of the sample lines fastScan could not place)
	// and pick are scratch space.
	knownNames map[string]string
	blocks     map[string][]sdk.Label
	blockBytes int
	missed     [][2]int
	pick       []byte

	// fullParses counts the payloads expfmt parsed whole, firstSights
	// those emitted after firstSight (tests read them).
	fullParses, firstSights int
	// quickLines and metaHits count the sample lines promQuick read and
	// the comment lines found in metaSeq (tests read them).
	quickLines, metaHits int
}

func newPrometheus() *prometheusText {
	return &prometheusText{pool: statePool[promState]{make: func() *promState { return newPromState(false) }}}
}

// newPrometheusWith returns a prometheus parser; noRows turns its row
// cache, and with it the fast path, off (tests compare against it).
func newPrometheusWith(noRows bool) *prometheusText {
	return &prometheusText{pool: statePool[promState]{make: func() *promState { return newPromState(noRows) }}}
}

func newPromState(noRows bool) *promState {
	return &promState{cache: newSeriesCache(noRows), meta: make(map[string]struct{}), fastNext: make(map[string]int),
		knownNames: make(map[string]string), blocks: make(map[string][]sdk.Label)}
}

// parseText runs expfmt over text, which must end in a newline.
func (st *promState) parseText(text []byte) (map[string]*dto.MetricFamily, error) {
	if !st.tpOK {
		st.tp = expfmt.NewTextParser(model.UTF8Validation)
	}
	if len(text) > 0 && text[len(text)-1] != '\n' {
		text = append(text[:len(text):len(text)], '\n')
	}
	st.rd.Reset(text)
	fams, err := st.tp.TextToMetricFamilies(&st.rd)
	// A parser that failed half-way may hold state of the bad line.
	st.tpOK = err == nil
	st.rd.Reset(nil)
	return fams, err
}

// maxBlockRetries bounds how often one metric-family block is re-parsed
// after dropping a bad line, so a block of garbage costs O(n) parses at most
// this many times.
const maxBlockRetries = 64

// Parse implements Parser. When expfmt rejects the payload, Parse falls
// back to parsing it block by block (a block is the HELP/TYPE lines and
// samples of one metric family) and, inside a failing block, drops the line
// expfmt names and tries again, so that only bad lines are rejected.
func (p *prometheusText) Parse(payload []byte, msgTime time.Time, pos string, b *sdk.Batch) error {
	if isBlank(bytes.TrimSpace(payload)) {
		return sdk.Permanent(errors.New("parsers: prometheus: empty payload"))
	}
	st := p.pool.get()
	st.cache.beginPayload()
	em := promEmitter{b: b, st: st, msgNanos: msgTime.UnixNano()}
	err := em.parse(payload, pos)
	// Not deferred: a state left half-way by a panic is dropped, not reused.
	st.cache.endPayload()
	p.pool.put(st)
	return err
}

func (em *promEmitter) parse(payload []byte, pos string) error {
	b := em.b
	if em.fastParse(payload) {
		return nil
	}
	em.st.fullParses++
	fams, err := em.st.parseText(payload)
	if err == nil {
		em.emit(payload, fams)
		em.learn(payload, fams)
		return nil
	}
	var pe expfmt.ParseError
	if !errors.As(err, &pe) {
		return sdk.Permanent(fmt.Errorf("parsers: prometheus: %w", err))
	}
	before, rejects := b.Len(), len(b.Rejects)
	blocks := splitBlocks(payload)
	for _, blk := range blocks {
		em.parseBlock(blk, pos)
	}
	if b.Len() == before && len(blocks) > 0 && em.goodBlocks == 0 {
		// Nothing usable at all: the caller dead-letters the whole payload,
		// so drop the line rejects to count it once.
		clear(b.Rejects[rejects:])
		b.Rejects = b.Rejects[:rejects]
		return sdk.Permanent(fmt.Errorf("parsers: prometheus: no valid sample: %w", err))
	}
	return nil
}

// parseText runs a new expfmt parser over text, which must end in a
// newline.
func parseText(text []byte) (map[string]*dto.MetricFamily, error) {
	tp := expfmt.NewTextParser(model.UTF8Validation)
	if len(text) > 0 && text[len(text)-1] != '\n' {
		text = append(text[:len(text):len(text)], '\n')
	}
	return tp.TextToMetricFamilies(bytes.NewReader(text))
}

// block is a run of lines of one metric family; first is the number of its
// first line in the payload; lines keep their terminators removed.
type block struct {
	first int
	lines [][]byte
}

// splitBlocks cuts payload into metric-family blocks: a HELP or TYPE line
// for a name other than the current family's starts a new block, and so
// does a sample line whose name does not belong to it.
func splitBlocks(payload []byte) []block {
	var (
		blocks []block
		cur    block
		family string
		lr     = lineReader{data: payload}
	)
	flush := func() {
		if len(cur.lines) > 0 {
			blocks = append(blocks, cur)
		}
		cur = block{}
	}
	for {
		line, n, ok := lr.next()
		if !ok {
			break
		}
		t := trimSpace(line)
		var name string
		isMeta := false
		switch {
		case len(t) == 0:
			name = family // keep blank lines with the block
		case t[0] == '#':
			fs := strings.Fields(string(t[1:]))
			if len(fs) >= 2 && (fs[0] == "HELP" || fs[0] == "TYPE") {
				name, isMeta = fs[1], true
			} else {
				name = family // other comments are ignored by expfmt
			}
		default:
			name = sampleName(t)
		}
		if len(cur.lines) == 0 {
			cur.first = n
			family = name
		} else if name != family && !(!isMeta && family != "" && belongsTo(name, family)) {
			flush()
			cur.first = n
			family = name
		}
		cur.lines = append(cur.lines, line)
	}
	flush()
	return blocks
}

// sampleName returns the metric name at the start of a sample line.
func sampleName(t []byte) string {
	if len(t) > 0 && t[0] == '{' {
		// UTF-8 quoted name inside the braces: {"name",...}.
		if end := bytes.IndexAny(t, ",}"); end > 0 {
			return strings.Trim(string(t[1:end]), `" `)
		}
		return ""
	}
	i := bytes.IndexAny(t, "{ \t")
	if i < 0 {
		return string(t)
	}
	return string(t[:i])
}

// belongsTo reports whether sample name n is part of family f (histogram
// and summary series carry suffixes).
func belongsTo(n, f string) bool {
	if n == f {
		return true
	}
	for _, s := range [...]string{"_bucket", "_sum", "_count", "_total", "_created"} {
		if n == f+s {
			return true
		}
	}
	return false
}

// promEmitter appends parsed families to a batch.
type promEmitter struct {
	b          *sdk.Batch
	st         *promState
	msgNanos   int64
	goodBlocks int
	rows       int // metrics in the families being emitted (sizes the label slab)
}

// parseBlock parses one block, dropping (and rejecting) the lines expfmt
// complains about until the rest parses.
func (em *promEmitter) parseBlock(blk block, pos string) {
	lines := blk.lines
	nums := make([]int, len(lines)) // payload line number of each line
	for i := range nums {
		nums[i] = blk.first + i
	}
	var buf []byte
	for try := 0; ; try++ {
		buf = buf[:0]
		for _, l := range lines {
			buf = append(buf, l...)
			buf = append(buf, '\n')
		}
		if isBlank(bytes.TrimSpace(buf)) {
			return
		}
		fams, err := em.st.parseText(buf)
		if err == nil {
			em.goodBlocks++
			em.emit(buf, fams)
			return
		}
		var pe expfmt.ParseError
		if !errors.As(err, &pe) || pe.Line < 1 || pe.Line > len(lines) || try >= maxBlockRetries {
			// Cannot tell which line: reject the block.
			em.b.Reject("prometheus: "+err.Error(), position(pos, nums[0]), rawCopy(buf))
			return
		}
		bad := pe.Line - 1
		em.b.Reject("prometheus: "+pe.Msg, position(pos, nums[bad]), rawCopy(lines[bad]))
		lines = slices.Delete(slices.Clone(lines), bad, bad+1)
		nums = slices.Delete(nums, bad, bad+1)
	}
}

// emit appends the samples of fams, which expfmt made of payload: the
// families in the order their first sample line comes in payload (any
// other in name order), the metrics of each in expfmt's order (the lines'
// order for counters, gauges and untyped metrics). The fast path
// (promfast.go) emits in the same order.
func (em *promEmitter) emit(payload []byte, fams map[string]*dto.MetricFamily) {
	st := em.st
	st.names = st.names[:0]
	for off := 0; off < len(payload); {
		line := payload[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		off += len(line) + 1
		t := trimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		name := familyOf(fams, sampleName(t))
		if name != "" && (len(st.names) == 0 || st.names[len(st.names)-1] != name) && !slices.Contains(st.names, name) {
			st.names = append(st.names, name)
		}
	}
	if len(st.names) < len(fams) {
		n := len(st.names)
		for name := range fams {
			if !slices.Contains(st.names[:n], name) {
				st.names = append(st.names, name)
			}
		}
		slices.Sort(st.names[n:])
	}
	em.rows = 0
	for _, mf := range fams {
		em.rows += len(mf.GetMetric())
	}
	for _, name := range st.names {
		mf := fams[name]
		dcgm := strings.HasPrefix(name, "DCGM_")
		for _, m := range mf.GetMetric() {
			ts := em.msgNanos
			if m.TimestampMs != nil {
				ts = m.GetTimestampMs() * int64(time.Millisecond)
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				em.add(name, m, "", "", ts, m.GetCounter().GetValue(), dcgm, "")
			case dto.MetricType_GAUGE:
				em.add(name, m, "", "", ts, m.GetGauge().GetValue(), dcgm, "")
			case dto.MetricType_UNTYPED:
				em.add(name, m, "", "", ts, m.GetUntyped().GetValue(), dcgm, "")
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					em.add(name, m, model.QuantileLabel, formatBound(q.GetQuantile()), ts, q.GetValue(), false, "")
				}
				em.add(name, m, "", "", ts, s.GetSampleSum(), false, "_sum")
				em.add(name, m, "", "", ts, float64(s.GetSampleCount()), false, "_count")
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					c := float64(bk.GetCumulativeCount())
					if bk.CumulativeCountFloat != nil {
						c = bk.GetCumulativeCountFloat()
					}
					em.add(name, m, model.BucketLabel, formatBound(bk.GetUpperBound()), ts, c, false, "_bucket")
				}
				em.add(name, m, "", "", ts, h.GetSampleSum(), false, "_sum")
				cnt := float64(h.GetSampleCount())
				if h.SampleCountFloat != nil {
					cnt = h.GetSampleCountFloat()
				}
				em.add(name, m, "", "", ts, cnt, false, "_count")
			}
		}
	}
}

// familyOf returns the family of fams that sample name n belongs to, or
// "".
func familyOf(fams map[string]*dto.MetricFamily, n string) string {
	if _, ok := fams[n]; ok {
		return n
	}
	for _, s := range [...]string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(n, s); ok {
			if _, ok := fams[f]; ok {
				return f
			}
		}
	}
	return ""
}

// add appends one sample of metric m under name+suffix, with an extra
// label (le/quantile) when extraKey is set. NaN, and DCGM blank sentinels
// on DCGM_ metrics, give no sample.
func (em *promEmitter) add(name string, m *dto.Metric, extraKey, extraVal string, ts int64, v float64, dcgm bool, suffix string) {
	if math.IsNaN(v) || (dcgm && isDCGMBlank(v)) {
		return
	}
	e := em.seriesOf(name, m, extraKey, extraVal, suffix)
	em.st.cache.add(em.b, e, ts, v, em.rows, 0)
}

// seriesOf returns the cached series of metric m under name+suffix, with
// an extra label (le/quantile) when extraKey is set.
func (em *promEmitter) seriesOf(name string, m *dto.Metric, extraKey, extraVal, suffix string) *cachedSeries {
	st := em.st
	in := st.cache.in
	ls := st.labels[:0]
	for _, lp := range m.GetLabel() {
		if lp.GetValue() == "" {
			continue // Prometheus: an empty label is no label
		}
		ls = append(ls, sdk.Label{Key: in.getString(lp.GetName()), Value: in.getString(lp.GetValue())})
	}
	if extraKey != "" {
		ls = append(ls, sdk.Label{Key: extraKey, Value: in.getString(extraVal)})
	}
	ls = sortLabels(ls)
	st.labels = ls
	st.name = append(append(st.name[:0], name...), suffix...)
	return st.cache.series(in.get(st.name), ls)
}

// getString interns s.
func (in interner) getString(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
}

// formatBound renders a bucket bound or quantile the way Prometheus does.
func formatBound(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
