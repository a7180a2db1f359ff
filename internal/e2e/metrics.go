package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a Prometheus /metrics endpoint: series key ->
// value. A key is the metric name followed by its labels sorted by name, in
// Prometheus text syntax: `collector_errors_total{plugin="inputs.mq_service",type="reject"}`,
// or just the name when there are no labels. Histograms and summaries are
// flattened into `<name>_count`, `<name>_sum` and `<name>_bucket{...,le="..."}`
// / `<name>{...,quantile="..."}` entries.
type Metrics map[string]float64

// SeriesKey renders name and labels (k1, v1, k2, v2, ...) as a Metrics key.
func SeriesKey(name string, kv ...string) string {
	if len(kv)%2 != 0 {
		panic("e2e: SeriesKey needs label name/value pairs")
	}
	if len(kv) == 0 {
		return name
	}
	type lp struct{ k, v string }
	ls := make([]lp, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, lp{kv[i], kv[i+1]})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].k < ls[j].k })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.v))
	}
	b.WriteByte('}')
	return b.String()
}

// parseKey splits a key made by SeriesKey.
func parseKey(key string) (string, map[string]string) {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key, nil
	}
	name, rest := key[:i], strings.TrimSuffix(key[i+1:], "}")
	labels := map[string]string{}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			break
		}
		k := rest[:eq]
		rest = rest[eq+1:]
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			break
		}
		v, _ := strconv.Unquote(q)
		labels[k] = v
		rest = strings.TrimPrefix(rest[len(q):], ",")
	}
	return name, labels
}

// Get returns the value of the series with exactly these labels (pairs), and
// whether it exists.
func (m Metrics) Get(name string, kv ...string) (float64, bool) {
	v, ok := m[SeriesKey(name, kv...)]
	return v, ok
}

// Sum adds up every series of name whose labels include the given pairs
// (k1, v1, ...); 0 when none matches.
func (m Metrics) Sum(name string, kv ...string) float64 {
	if len(kv)%2 != 0 {
		panic("e2e: Sum needs label name/value pairs")
	}
	total := 0.0
	for key, v := range m {
		n, labels := parseKey(key)
		if n != name {
			continue
		}
		match := true
		for i := 0; i < len(kv); i += 2 {
			if labels[kv[i]] != kv[i+1] {
				match = false
				break
			}
		}
		if match {
			total += v
		}
	}
	return total
}

// Has reports whether any series of name exists.
func (m Metrics) Has(name string) bool {
	for key := range m {
		if n, _ := parseKey(key); n == name {
			return true
		}
	}
	return false
}

// Matching returns the keys (sorted) of every series of name, for messages.
func (m Metrics) Matching(name string) []string {
	var out []string
	for key := range m {
		if n, _ := parseKey(key); n == name {
			out = append(out, fmt.Sprintf("%s %g", key, m[key]))
		}
	}
	sort.Strings(out)
	return out
}

// Scrape fetches url (http://HOST:PORT/metrics) and parses it. It does not
// touch a testing.T, so any goroutine may use it.
func Scrape(ctx context.Context, url string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("e2e: scrape %s: %w", url, err)
	}
	// Uncompressed: the scraped process would gzip the page for every
	// poll (make bench polls the collector every few ms near the end of a
	// run), CPU that the pipeline under test competes for.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("e2e: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("e2e: scrape %s: %s: %s", url, resp.Status, b)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics parses the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("e2e: parse metrics: %w", err)
	}
	out := Metrics{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			kv := make([]string, 0, 2*len(m.GetLabel())+2)
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName(), l.GetValue())
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[SeriesKey(name, kv...)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[SeriesKey(name, kv...)] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				out[SeriesKey(name+"_count", kv...)] = float64(h.GetSampleCount())
				out[SeriesKey(name+"_sum", kv...)] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[SeriesKey(name+"_bucket", append(kv[:len(kv):len(kv)], "le", formatFloat(b.GetUpperBound()))...)] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				out[SeriesKey(name+"_count", kv...)] = float64(s.GetSampleCount())
				out[SeriesKey(name+"_sum", kv...)] = s.GetSampleSum()
				for _, q := range s.GetQuantile() {
					out[SeriesKey(name, append(kv[:len(kv):len(kv)], "quantile", formatFloat(q.GetQuantile()))...)] = q.GetValue()
				}
			default:
				out[SeriesKey(name, kv...)] = m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}

func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
