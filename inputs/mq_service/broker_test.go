package mq_service

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/mq/broker"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// startBroker runs our mq.v1 broker on a fresh port and returns its address
// and a publish function.
func startBroker(t *testing.T) (string, func(topic string, msgs ...*mqpb.Message)) {
	t.Helper()
	b, err := broker.New(broker.Options{HeartbeatInterval: 100 * time.Millisecond, ReapInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(broker.ServerOptions()...)
	b.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	conn, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		b.Shutdown()
		srv.Stop()
		_ = b.Close()
	})
	pub := client.NewPublisher(conn, client.PublisherOptions{})
	return lis.Addr().String(), func(topic string, msgs ...*mqpb.Message) {
		t.Helper()
		for _, m := range msgs {
			m.Topic = topic
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := pub.Publish(ctx, msgs); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// countingAcc records how often each value was emitted (values identify
// messages in these tests) and completes batches after hold.
type countingAcc struct {
	hold time.Duration

	mu   sync.Mutex
	seen map[float64]int
}

func (a *countingAcc) Emit(_ context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	a.mu.Lock()
	if a.seen == nil {
		a.seen = map[float64]int{}
	}
	for _, p := range b.Points {
		a.seen[p.Value]++
	}
	a.mu.Unlock()
	time.AfterFunc(a.hold, func() { done(sdk.Delivery{OK: true}) })
	return nil
}

func (a *countingAcc) counts() (distinct, dups int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.seen {
		distinct++
		dups += n - 1
	}
	return distinct, dups
}

func numbered(n, from int) []*mqpb.Message {
	out := make([]*mqpb.Message, n)
	for k := range out {
		out[k] = &mqpb.Message{Payload: []byte(fmt.Sprintf("x %d", from+k)),
			Metadata: map[string]string{"content-type": "fake"}}
	}
	return out
}

func TestOurBrokerConsumerGroup(t *testing.T) {
	t.Parallel()
	addr, publish := startBroker(t)
	const n = 200
	accA, accB := &countingAcc{hold: time.Millisecond}, &countingAcc{hold: time.Millisecond}
	a, b := testInput(t, addr), testInput(t, addr)
	for _, in := range []*Input{a, b} {
		in.BatchSize = 10
		in.MaxInFlight = 20
		in.AckTimeout = sdk.Duration(time.Second)
	}
	start(t, a, accA)
	start(t, b, accB)
	time.Sleep(200 * time.Millisecond) // both members joined
	publish("gpu-telemetry", numbered(n, 0)...)
	waitFor(t, "all messages", 5*time.Second, func() bool {
		da, _ := accA.counts()
		db, _ := accB.counts()
		return da+db >= n
	})
	waitFor(t, "all acked", 5*time.Second, func() bool { return a.Stats().Acked+b.Stats().Acked >= n })
	time.Sleep(1500 * time.Millisecond) // past ack_timeout: nothing may come back
	da, dupA := accA.counts()
	db, dupB := accB.counts()
	if da+db != n || dupA+dupB != 0 {
		t.Errorf("group got %d+%d distinct, %d+%d duplicates; want %d in all, no duplicates", da, db, dupA, dupB, n)
	}
	if da == 0 || db == 0 {
		t.Errorf("one member got nothing (%d, %d): not shared", da, db)
	}
}

// A pipeline slower than ack_timeout: lease renewal keeps the broker from
// redelivering; without it (control) the broker redelivers.
func TestOurBrokerSlowPipelineRenewals(t *testing.T) {
	t.Parallel()
	addr, publish := startBroker(t)
	run := func(topic string, renew bool) (*Input, *countingAcc) {
		acc := &countingAcc{hold: 2200 * time.Millisecond}
		in := testInput(t, addr)
		in.Topic = topic
		in.ConsumerID = "slow-" + topic
		in.AckTimeout = sdk.Duration(time.Second)
		in.BatchSize = 5
		in.MaxInFlight = 50
		if !renew {
			in.renewOff.Store(true)
		}
		start(t, in, acc)
		return in, acc
	}
	in, acc := run("renewed", true)
	ctl, ctlAcc := run("control", false)
	time.Sleep(200 * time.Millisecond)
	publish("renewed", numbered(20, 0)...)
	publish("control", numbered(20, 0)...)
	waitFor(t, "acks", 6*time.Second, func() bool { return in.Stats().Acked >= 20 && ctl.Stats().Acked >= 20 })
	distinct, dups := acc.counts()
	if distinct != 20 || dups != 0 {
		t.Errorf("with renewals: %d distinct, %d redelivered; want 20, 0 (renewals %d)", distinct, dups, in.Stats().Renewals)
	}
	if in.Stats().Renewals == 0 {
		t.Error("no renewals sent")
	}
	if r := in.Stats().Redelivered; r != 0 {
		t.Errorf("with renewals the broker redelivered %d messages still in our pipeline", r)
	}
	// Without renewals the broker redelivers; copies of messages still in
	// our pipeline are counted and not emitted again, later ones are.
	if _, cdups := ctlAcc.counts(); cdups == 0 && ctl.Stats().Redelivered == 0 {
		t.Error("control without renewals saw no redelivery: the test cannot tell renewals work")
	}
}

// Real gpu-tel-json payloads through our broker and the real parser.
func TestOurBrokerRealParser(t *testing.T) {
	addr, publish := startBroker(t)
	acc := &fakeAcc{auto: &sdk.Delivery{OK: true}}
	in := testInput(t, addr)
	in.newParser = parsers.New
	in.DataFormat = parsers.FormatGPUTelJSON
	start(t, in, acc)
	time.Sleep(100 * time.Millisecond)
	good := `{"timestamp":"2025-07-18T20:42:34Z","metric_name":"DCGM_FI_DEV_POWER_USAGE","gpu_id":0,"device":"nvidia0","uuid":"GPU-5fd4","model_name":"NVIDIA H100 80GB HBM3","hostname":"host1","container":"","pod":"","namespace":"","value":689.457,"labels_raw":""}`
	publish("gpu-telemetry",
		&mqpb.Message{Payload: []byte(good)},
		&mqpb.Message{Payload: []byte("not json at all")},
	)
	waitFor(t, "both acked", 3*time.Second, func() bool { return in.Stats().Acked == 2 })
	points, rejects := 0, 0
	var val float64
	for _, e := range acc.list() {
		points += e.b.Len()
		rejects += len(e.b.Rejects)
		if e.b.Len() > 0 {
			val = e.b.Points[0].Value
		}
	}
	if points != 1 || val != 689.457 || rejects < 1 {
		t.Errorf("points=%d value=%v rejects=%d; want 1 point 689.457 and the bad message rejected", points, val, rejects)
	}
}

// Real dcgm-csv (content-type) through the ORIGINAL-style server: the
// input picks the parser by metadata and splits a large message over
// batches of emit_max_points.
func TestOriginalServerRealDCGMCSV(t *testing.T) {
	csv, err := os.ReadFile("testdata/dcgm_head.csv") // header + 40 rows of the real export
	if err != nil {
		t.Fatal(err)
	}
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	in.newParser = parsers.New
	in.DataFormat = parsers.FormatGPUTelJSON
	in.EmitMaxPoints = 16
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("csv1", string(csv), map[string]string{"content-type": parsers.FormatDCGMCSV}))
	waitFor(t, "40 points", 3*time.Second, func() bool { return acc.points() == 40 })
	l := acc.list()
	if len(l) != 3 {
		t.Errorf("%d batches, want 3 (16+16+8)", len(l))
	}
	s := l[0].b.Sample(0)
	if !s.Time.Equal(time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)) {
		t.Errorf("first sample %+v", s)
	}
	acc.doneAll(sdk.Delivery{OK: true}, 0)
	waitFor(t, "one ack for the message", 2*time.Second, func() bool { return len(srv.ackList()) == 1 })
	if a := srv.ackList()[0]; a.GetMessageId() != "csv1" || !a.GetSuccess() {
		t.Errorf("ack = %v", a)
	}
}

// TestOurBrokerBufferReuse: responses are decoded into buffers the input
// reuses once a response is parsed (mqcodec.Buffers). With a backlog, the
// next response is received while the current one is parsed, and decoded
// into the buffer the current one is released to; every value of
// every message must still arrive exactly once and nothing be rejected. A
// buffer released before its response is parsed gets overwritten
// mid-parse (and the race detector sees the overlap).
func TestOurBrokerBufferReuse(t *testing.T) {
	addr, publish := startBroker(t)
	const msgs, lines = 300, 120
	var batch []*mqpb.Message
	for m := 0; m < msgs; m++ {
		var p []byte
		p = append(p, "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"...)
		for l := 0; l < lines; l++ {
			p = fmt.Appendf(p, "DCGM_FI_DEV_GPU_TEMP{gpu=\"%d\",UUID=\"GPU-%04d\",Hostname=\"host-%03d\"} %d\n", l, l, m, m*lines+l)
		}
		batch = append(batch, &mqpb.Message{Payload: p, Metadata: map[string]string{"content-type": parsers.FormatPrometheus}})
	}
	publish("gpu-telemetry", batch...) // a backlog before the input starts
	acc := &countingAcc{}
	in := testInput(t, addr)
	in.newParser = parsers.New
	in.DataFormat = parsers.FormatPrometheus
	in.BatchSize = 4 // many responses of the same size: buffers get reused
	start(t, in, acc)
	waitFor(t, "all acked", 20*time.Second, func() bool { return in.Stats().Acked == msgs })
	distinct, dups := acc.counts()
	if distinct != msgs*lines || dups != 0 {
		t.Errorf("%d distinct values (%d duplicates), want %d once each", distinct, dups, msgs*lines)
	}
	acc.mu.Lock()
	defer acc.mu.Unlock()
	for v := 0; v < msgs*lines; v++ {
		if acc.seen[float64(v)] != 1 {
			t.Fatalf("value %d seen %d times", v, acc.seen[float64(v)])
		}
	}
	if s := in.Stats(); s.Rejected != 0 || s.RowRejects != 0 {
		t.Errorf("%d messages and %d rows rejected, want none", s.Rejected, s.RowRejects)
	}
}

// copyingAcc is countingAcc behind an accumulator that copies a batch
// before Emit returns (sdk.BatchCopier), as a plugin process's does. It
// records the arrays of the batches it got, to see them reused.
type copyingAcc struct {
	countingAcc
	arraysMu sync.Mutex
	arrays   map[*sdk.Point]bool
	emitted  int
}

func (a *copyingAcc) EmitCopies() bool { return true }

func (a *copyingAcc) Emit(ctx context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	a.arraysMu.Lock()
	if a.arrays == nil {
		a.arrays = map[*sdk.Point]bool{}
	}
	if len(b.Points) > 0 {
		a.arrays[&b.Points[:1][0]] = true
	}
	a.emitted++
	a.arraysMu.Unlock()
	// countingAcc reads the values now, as an encoder would.
	return a.countingAcc.Emit(ctx, b, done)
}

// TestOurBrokerReusesEmittedBatches: with an accumulator that copies on
// Emit, the input builds later batches in the memory of emitted ones, and
// every value still arrives exactly once.
func TestOurBrokerReusesEmittedBatches(t *testing.T) {
	addr, publish := startBroker(t)
	const msgs, lines = 200, 50
	var batch []*mqpb.Message
	for m := 0; m < msgs; m++ {
		var p []byte
		for l := 0; l < lines; l++ {
			p = fmt.Appendf(p, "DCGM_FI_DEV_GPU_TEMP{gpu=\"%d\",Hostname=\"host-%03d\"} %d\n", l, m, m*lines+l)
		}
		batch = append(batch, &mqpb.Message{Payload: p, Metadata: map[string]string{"content-type": parsers.FormatPrometheus}})
	}
	publish("gpu-telemetry", batch...)
	acc := &copyingAcc{}
	in := testInput(t, addr)
	in.newParser = parsers.New
	in.DataFormat = parsers.FormatPrometheus
	in.BatchSize = 10
	in.EmitMaxPoints = 500 // 20 batches or more
	start(t, in, acc)
	waitFor(t, "all acked", 20*time.Second, func() bool { return in.Stats().Acked == msgs })
	distinct, dups := acc.counts()
	if distinct != msgs*lines || dups != 0 {
		t.Errorf("%d distinct values (%d duplicates), want %d once each", distinct, dups, msgs*lines)
	}
	acc.arraysMu.Lock()
	defer acc.arraysMu.Unlock()
	if acc.emitted < 20 || len(acc.arrays) >= acc.emitted {
		t.Errorf("%d batches emitted in %d distinct point arrays: emitted batches' memory was not reused", acc.emitted, len(acc.arrays))
	}
}
