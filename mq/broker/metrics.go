package broker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the broker's Prometheus metrics. Counters are updated inline;
// the gauges are read from the topics at scrape time.
type metrics struct {
	b                                                              *Broker
	published, delivered, acked, nacked, redelivered, deadLettered *prometheus.CounterVec
	unknownAcks                                                    prometheus.Counter
	inFlight, depth, bytes, groups                                 *prometheus.Desc
}

func newMetrics(b *Broker) *metrics {
	cv := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mq", Name: name, Help: help}, []string{"topic"})
	}
	return &metrics{
		b:            b,
		published:    cv("messages_published_total", "Messages stored by publishers (and dead letters)."),
		delivered:    cv("messages_delivered_total", "Message deliveries to subscribers, redeliveries included."),
		acked:        cv("messages_acked_total", "Positive acknowledgements."),
		nacked:       cv("messages_nacked_total", "Negative acknowledgements (success=false)."),
		redelivered:  cv("messages_redelivered_total", "Deliveries after the first of a message to a group."),
		deadLettered: cv("messages_dead_lettered_total", "Messages moved to <topic>.dlq after too many deliveries."),
		unknownAcks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "mq", Name: "acks_unknown_total",
			Help: "Acknowledgements for messages not in flight (already acknowledged or unknown)."}),
		inFlight: prometheus.NewDesc("mq_messages_in_flight", "Messages delivered and not yet acknowledged, per topic.", []string{"topic"}, nil),
		depth:    prometheus.NewDesc("mq_topic_depth", "Messages retained by the topic.", []string{"topic"}, nil),
		bytes:    prometheus.NewDesc("mq_topic_bytes", "Approximate bytes retained by the topic.", []string{"topic"}, nil),
		groups:   prometheus.NewDesc("mq_topic_consumer_groups", "Consumer groups of the topic.", []string{"topic"}, nil),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.published, m.delivered, m.acked, m.nacked, m.redelivered, m.deadLettered, m.unknownAcks, m} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Describe implements prometheus.Collector for the gauges.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.inFlight
	ch <- m.depth
	ch <- m.bytes
	ch <- m.groups
}

// Collect implements prometheus.Collector for the gauges.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, t := range m.b.topicList() {
		t.mu.Lock()
		inflight := 0
		for _, s := range t.subs {
			inflight += s.inflight
		}
		depth, bytes, groups := len(t.entries), t.bytes, len(t.groups)
		t.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(inflight), t.name)
		ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(depth), t.name)
		ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(bytes), t.name)
		ch <- prometheus.MustNewConstMetric(m.groups, prometheus.GaugeValue, float64(groups), t.name)
	}
}
