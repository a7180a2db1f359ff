package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Error types used as the "type" label of collector_errors_total.
const (
	errTypeReject     = "reject"      // a row an input, processor or output refused
	errTypeRetryable  = "retryable"   // a retryable Process/Write failure (retried)
	errTypePermanent  = "permanent"   // a permanent failure: the batch was dead-lettered
	errTypeExhausted  = "exhausted"   // retries exhausted: the batch was dead-lettered
	errTypeDeadLetter = "dead_letter" // the dead-letter store itself failed
	errTypeGaveUp     = "gave_up"     // a batch the agent gave up on (Delivery{OK:false})
	errTypeInput      = "input"       // Input.Run returned an error
	errTypeClose      = "close"       // Drain or Close failed
)

// metrics are the agent's self-metrics, registered on one registry owned by
// the agent (never the default registry).
type metrics struct {
	messages   *prometheus.CounterVec
	samples    *prometheus.CounterVec
	procTime   *prometheus.HistogramVec
	batchSize  *prometheus.HistogramVec
	errors     *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	deadLetter *prometheus.CounterVec
	inflight   *prometheus.GaugeVec
	restarts   *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_messages_processed_total",
			Help: "Batches that went through a pipeline stage (input emits, processor calls, output writes).",
		}, []string{"plugin"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_samples_processed_total",
			Help: "Points that went through a pipeline stage.",
		}, []string{"plugin"}),
		procTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "collector_processing_time_seconds",
			Help:    "Duration of one Process or Write call.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"plugin"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "collector_batch_size",
			Help:    "Points per batch seen by a pipeline stage.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}, []string{"plugin"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_errors_total",
			Help: "Errors by plugin and type (reject, retryable, permanent, exhausted, dead_letter, gave_up, input, close).",
		}, []string{"plugin", "type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_dropped_total",
			Help: "Batches a best-effort output dropped because its queue was full.",
		}, []string{"plugin"}),
		deadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_dead_letter_total",
			Help: "Records written to the dead-letter store (one per reject or failed batch).",
		}, []string{"plugin"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_inflight_batches",
			Help: "Batches an input emitted that are not yet settled (acknowledged or given up).",
		}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_plugin_restarts_total",
			Help: "Plugin process restarts reported by the plugin runtime.",
		}, []string{"plugin"}),
	}
	for _, c := range []prometheus.Collector{m.messages, m.samples, m.procTime, m.batchSize,
		m.errors, m.dropped, m.deadLetter, m.inflight, m.restarts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// stageDone records one batch of n points through plugin's stage.
func (m *metrics) stage(plugin string, n int) {
	m.messages.WithLabelValues(plugin).Inc()
	m.samples.WithLabelValues(plugin).Add(float64(n))
	m.batchSize.WithLabelValues(plugin).Observe(float64(n))
}

// queueDepth registers a gauge reporting len(ch) under plugin (the queue's
// consumer).
func queueDepth[T any](reg *prometheus.Registry, plugin string, ch chan T) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "collector_queue_depth",
		Help:        "Batches waiting in the queue in front of a stage or output.",
		ConstLabels: prometheus.Labels{"plugin": plugin},
	}, func() float64 { return float64(len(ch)) }))
}
