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
// dcgm-exporter (FormatPrometheus), with expfmt's TextParser. It holds no
// state and is safe for concurrent use (each call makes its own TextParser).
type prometheusText struct{}

func newPrometheus() *prometheusText { return &prometheusText{} }

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
	em := promEmitter{b: b, idx: sdk.NewSeriesIndex(b), in: make(interner), msgNanos: msgTime.UnixNano()}
	fams, err := parseText(payload)
	if err == nil {
		em.emit(fams)
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

// parseText runs expfmt over text, which must end in a newline.
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
	idx        *sdk.SeriesIndex
	in         interner
	msgNanos   int64
	labels     []sdk.Label
	slab       labelSlab
	names      []string
	goodBlocks int
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
		fams, err := parseText(buf)
		if err == nil {
			em.goodBlocks++
			em.emit(fams)
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

// emit appends the samples of fams, in family name order.
func (em *promEmitter) emit(fams map[string]*dto.MetricFamily) {
	em.names = em.names[:0]
	for name := range fams {
		em.names = append(em.names, name)
	}
	slices.Sort(em.names)
	for _, name := range em.names {
		mf := fams[name]
		dcgm := strings.HasPrefix(name, "DCGM_")
		for _, m := range mf.GetMetric() {
			ts := em.msgNanos
			if m.TimestampMs != nil {
				ts = m.GetTimestampMs() * int64(time.Millisecond)
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				em.add(name, m, "", "", ts, m.GetCounter().GetValue(), dcgm)
			case dto.MetricType_GAUGE:
				em.add(name, m, "", "", ts, m.GetGauge().GetValue(), dcgm)
			case dto.MetricType_UNTYPED:
				em.add(name, m, "", "", ts, m.GetUntyped().GetValue(), dcgm)
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					em.add(name, m, model.QuantileLabel, formatBound(q.GetQuantile()), ts, q.GetValue(), false)
				}
				em.add(name+"_sum", m, "", "", ts, s.GetSampleSum(), false)
				em.add(name+"_count", m, "", "", ts, float64(s.GetSampleCount()), false)
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					c := float64(bk.GetCumulativeCount())
					if bk.CumulativeCountFloat != nil {
						c = bk.GetCumulativeCountFloat()
					}
					em.add(name+"_bucket", m, model.BucketLabel, formatBound(bk.GetUpperBound()), ts, c, false)
				}
				em.add(name+"_sum", m, "", "", ts, h.GetSampleSum(), false)
				cnt := float64(h.GetSampleCount())
				if h.SampleCountFloat != nil {
					cnt = h.GetSampleCountFloat()
				}
				em.add(name+"_count", m, "", "", ts, cnt, false)
			}
		}
	}
}

// add appends one sample of metric m under name, with an extra label
// (le/quantile) when extraKey is set. NaN, and DCGM blank sentinels on
// DCGM_ metrics, give no sample.
func (em *promEmitter) add(name string, m *dto.Metric, extraKey, extraVal string, ts int64, v float64, dcgm bool) {
	if math.IsNaN(v) || (dcgm && isDCGMBlank(v)) {
		return
	}
	ls := em.labels[:0]
	for _, lp := range m.GetLabel() {
		if lp.GetValue() == "" {
			continue // Prometheus: an empty label is no label
		}
		ls = append(ls, sdk.Label{Key: em.in.getString(lp.GetName()), Value: em.in.getString(lp.GetValue())})
	}
	if extraKey != "" {
		ls = append(ls, sdk.Label{Key: extraKey, Value: extraVal})
	}
	ls = sortLabels(ls)
	em.labels = ls
	n := len(em.b.Series)
	id := em.idx.ID(em.in.getString(name), ls)
	if len(em.b.Series) > n {
		// The index kept ls: give the series its own copy.
		em.b.Series[id].Labels = em.slab.take(ls)
	}
	em.b.Add(id, ts, v)
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
