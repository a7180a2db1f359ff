package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// MQOptions configure an mq-service process. Zero values take the
// mq-service defaults, except where noted.
type MQOptions struct {
	// Addr is the gRPC listen address; "" picks a free port.
	Addr string
	// MetricsAddr serves /metrics and /healthz; "" picks a free port.
	MetricsAddr string
	// DataDir is the broker's log directory; "" means <Env.Dir>/<name>-data.
	// Memory keeps everything in memory instead (no --data-dir).
	DataDir string
	Memory  bool

	MaxDeliveries     int           // --max-deliveries (0: default 5)
	MaxTopicBytes     int64         // --max-topic-bytes (0: default 256 MiB)
	MaxTopicMessages  int           // --max-topic-messages (0: unbounded)
	HeartbeatInterval time.Duration // --heartbeat-interval (0: default 5s)
	ShutdownTimeout   time.Duration // --shutdown-timeout (0: default 10s)
	LogLevel          string        // --log-level (default "info")
	Args              []string      // more flags
	Env               []string      // extra KEY=VALUE environment entries
}

// MQ is a running (or stopped) mq-service. Its addresses and data
// directory stay the same across restarts.
type MQ struct {
	*Proc
	Addr        string // gRPC HOST:PORT
	MetricsAddr string // HOST:PORT of /metrics and /healthz
	DataDir     string // "" when in memory
	env         *Env
}

// StartMQ starts an mq-service and waits until it is healthy. It is stopped
// at the test's end. Ports picked by the harness are picked again if
// another process took them first.
func (e *Env) StartMQ(o MQOptions) *MQ {
	e.T.Helper()
	name := e.nextName("mq-service")
	m := &MQ{env: e}
	if !o.Memory {
		m.DataDir = o.DataDir
		if m.DataDir == "" {
			m.DataDir = e.Path(name + "-data")
		}
	}
	m.Proc = e.NewProc(name, e.Bins.MQService)
	m.Proc.Env = o.Env
	e.cleanupProc(m.Proc, 10*time.Second)
	for attempt := 1; ; attempt++ {
		m.Addr, m.MetricsAddr = o.Addr, o.MetricsAddr
		if m.Addr == "" {
			m.Addr = e.freeAddr()
		}
		if m.MetricsAddr == "" {
			m.MetricsAddr = e.freeAddr()
		}
		m.Proc.Args = o.args(m)
		err := m.StartErr(20 * time.Second)
		if err == nil {
			return m
		}
		if attempt < 3 && (o.Addr == "" || o.MetricsAddr == "") && lostPortRace(m.Proc) {
			continue
		}
		e.Fatalf("%v\n---- %s last lines ----\n%s", err, m.Name, m.LogTail(20))
	}
}

// lostPortRace reports whether p's last run failed because its address was
// taken between the harness picking the port and the process binding it.
func lostPortRace(p *Proc) bool {
	log := p.Log()
	if i := strings.LastIndex(log, "=== e2e: start #"); i >= 0 {
		log = log[i:]
	}
	return !p.Running() && strings.Contains(log, "address already in use")
}

func (o MQOptions) args(m *MQ) []string {
	args := []string{"--listen", m.Addr, "--metrics-address", m.MetricsAddr}
	if m.DataDir != "" {
		args = append(args, "--data-dir", m.DataDir)
	}
	if o.MaxDeliveries > 0 {
		args = append(args, "--max-deliveries", strconv.Itoa(o.MaxDeliveries))
	}
	if o.MaxTopicBytes != 0 {
		args = append(args, "--max-topic-bytes", strconv.FormatInt(o.MaxTopicBytes, 10))
	}
	if o.MaxTopicMessages > 0 {
		args = append(args, "--max-topic-messages", strconv.Itoa(o.MaxTopicMessages))
	}
	if o.HeartbeatInterval > 0 {
		args = append(args, "--heartbeat-interval", o.HeartbeatInterval.String())
	}
	if o.ShutdownTimeout > 0 {
		args = append(args, "--shutdown-timeout", o.ShutdownTimeout.String())
	}
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	args = append(args, "--log-level", level)
	return append(args, o.Args...)
}

// Start starts the broker again (after Stop or Kill) on the same addresses
// and data directory, and waits until it is healthy. It fails the test on
// error.
func (m *MQ) Start() {
	m.env.T.Helper()
	if err := m.StartErr(20 * time.Second); err != nil {
		m.env.Fatalf("%v\n---- %s last lines ----\n%s", err, m.Name, m.LogTail(20))
	}
}

// StartErr is Start without failing the test (any goroutine).
func (m *MQ) StartErr(timeout time.Duration) error {
	if err := m.Proc.Start(); err != nil {
		return err
	}
	return m.WaitHealthy(timeout)
}

// WaitHealthy waits until /healthz answers 200 (the gRPC listener is up
// before the metrics server starts). It does not fail the test.
func (m *MQ) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if !m.Running() {
			return fmt.Errorf("e2e: %s exited during start-up (%s)", m.Name, m.ExitState())
		}
		if httpOK("http://" + m.MetricsAddr + "/healthz") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("e2e: %s not healthy after %v", m.Name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops the broker with SIGTERM (killing it after 15s) and starts
// it again; it fails the test when either step fails.
func (m *MQ) Restart() {
	m.env.T.Helper()
	if code, err := m.Stop(15 * time.Second); err != nil || code != 0 {
		m.env.Fatalf("e2e: stop %s: exit %d, %v\n%s", m.Name, code, err, m.LogTail(20))
	}
	m.Start()
}

// KillRestart kills the broker with SIGKILL (a crash) and starts it again.
func (m *MQ) KillRestart() {
	m.env.T.Helper()
	m.Kill()
	m.Start()
}

// Metrics scrapes the broker's /metrics, failing the test on error.
func (m *MQ) Metrics() Metrics {
	m.env.T.Helper()
	ms, err := Scrape(m.env.Ctx, "http://"+m.MetricsAddr+"/metrics")
	if err != nil {
		m.env.Fatalf("%v", err)
	}
	return ms
}

// MQTopicStats are the broker's per-topic figures.
type MQTopicStats struct {
	Published, Delivered, Acked, Nacked, Redelivered, DeadLettered float64
	InFlight, Depth, Groups                                        float64
}

// TopicStats reads the broker's figures for topic from its /metrics. It
// does not fail the test.
func (m *MQ) TopicStats(ctx context.Context, topic string) (MQTopicStats, error) {
	ms, err := Scrape(ctx, "http://"+m.MetricsAddr+"/metrics")
	if err != nil {
		return MQTopicStats{}, err
	}
	g := func(name string) float64 { v, _ := ms.Get(name, "topic", topic); return v }
	return MQTopicStats{
		Published: g("mq_messages_published_total"), Delivered: g("mq_messages_delivered_total"),
		Acked: g("mq_messages_acked_total"), Nacked: g("mq_messages_nacked_total"),
		Redelivered: g("mq_messages_redelivered_total"), DeadLettered: g("mq_messages_dead_lettered_total"),
		InFlight: g("mq_messages_in_flight"), Depth: g("mq_topic_depth"), Groups: g("mq_topic_consumer_groups"),
	}, nil
}

// WaitDrained waits until topic has no message in flight and retains none
// (every consumer group acknowledged everything), and returns the figures.
// It fails the test on timeout with the last figures.
func (m *MQ) WaitDrained(timeout time.Duration, topic string) MQTopicStats {
	m.env.T.Helper()
	var st MQTopicStats
	m.env.Eventually(timeout, fmt.Sprintf("%s to have nothing unacknowledged on topic %q", m.Name, topic), func() (bool, string) {
		var err error
		st, err = m.TopicStats(m.env.Ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		return st.Groups > 0 && st.InFlight == 0 && st.Depth == 0, fmt.Sprintf("%+v", st)
	})
	return st
}

func httpOK(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Publish publishes msgs to the broker at addr (mq/client, wait_for_ack)
// and fails the test unless every message was stored. It returns the
// responses (message ids in order).
func (e *Env) Publish(addr string, msgs ...*mqpb.Message) []*mqpb.PublishResponse {
	e.T.Helper()
	conn, err := client.Dial(addr)
	if err != nil {
		e.T.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(e.Ctx, time.Minute)
	defer cancel()
	resps, err := client.NewPublisher(conn, client.PublisherOptions{WaitForAck: true}).Publish(ctx, msgs)
	if err != nil {
		e.Fatalf("e2e: publish %d messages to %s: %v", len(msgs), addr, err)
	}
	return resps
}
