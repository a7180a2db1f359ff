package mq_service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// testInput returns an input for addr with fast timings and the fake parsers.
func testInput(t *testing.T, addr string) *Input {
	in := New()
	in.SetLogger(testLogger(t))
	in.Address = addr
	in.Topic = "gpu-telemetry"
	in.newParser = fakeParsers
	in.DataFormat = "fake"
	in.EmitMaxWait = 0
	in.ReconnectBackoffMax = sdk.Duration(200 * time.Millisecond)
	in.drainGrace = 200 * time.Millisecond
	return in
}

// running is an input whose Run goroutine a test controls.
type running struct {
	in     *Input
	cancel context.CancelFunc
	errc   chan error
}

func start(t *testing.T, in *Input, acc sdk.Accumulator) *running {
	t.Helper()
	if err := in.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{in: in, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- in.Run(ctx, acc) }()
	t.Cleanup(func() {
		r.stop(t)
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_ = in.Close(cctx)
	})
	return r
}

// stop cancels Run and checks it returns nil promptly (idempotent).
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if r.errc == nil {
		return
	}
	select {
	case err := <-r.errc:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	r.errc = nil
}

func TestEmitThenAckOnlyAfterDone(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	in.Filter = map[string]string{"host": "h1"}
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })

	for _, id := range []string{"m1", "m2", "m3"} {
		srv.publish(msg(id, "gpu_util 50\nmem_used 1024", nil))
	}
	waitFor(t, "6 points", 2*time.Second, func() bool { return acc.points() == 6 })
	time.Sleep(100 * time.Millisecond)
	if a := srv.ackList(); len(a) != 0 {
		t.Fatalf("acks before done: %v", a)
	}
	b := acc.list()[0].b
	s := b.Sample(0)
	if s.Name != "gpu_util" || s.Value != 50 || !s.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("first sample = %+v", s)
	}
	if got := in.Stats().InFlight; got != 3 {
		t.Errorf("InFlight = %d, want 3", got)
	}

	acc.doneAll(sdk.Delivery{OK: true}, 0)
	waitFor(t, "3 acks", 2*time.Second, func() bool { return len(srv.ackList()) == 3 })
	for _, a := range srv.ackList() {
		if !a.GetSuccess() || a.GetConsumerId() != DefaultConsumerID || a.GetError() != "" {
			t.Errorf("ack = %v, want success for %s", a, DefaultConsumerID)
		}
	}
	st := in.Stats()
	if st.Received != 3 || st.Parsed != 3 || st.Acked != 3 || st.Nacked != 0 || st.InFlight != 0 {
		t.Errorf("stats = %+v", st)
	}

	req := srv.requests()[0]
	if req.GetTopic() != "gpu-telemetry" || req.GetConsumerId() != DefaultConsumerID ||
		req.GetBatchSize() != DefaultBatchSize || req.GetMaxInFlight() != DefaultMaxInFlight ||
		req.GetAckTimeoutSeconds() != 30 || req.GetFilter()["host"] != "h1" {
		t.Errorf("subscribe request = %v", req)
	}
}

func TestNackOnFailedDelivery(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{auto: &sdk.Delivery{OK: false, Err: errors.New("postgres down")}}
	in := testInput(t, srv.addr)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("m1", "x 1", nil))
	waitFor(t, "nack", 2*time.Second, func() bool { return len(srv.ackList()) == 1 })
	a := srv.ackList()[0]
	if a.GetSuccess() || a.GetMessageId() != "m1" || !strings.Contains(a.GetError(), "postgres down") {
		t.Errorf("ack = %v, want a nack of m1 with the error", a)
	}
	if st := in.Stats(); st.Nacked != 1 || st.Acked != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestBadMessagesAreRejectedAndAcked(t *testing.T) {
	big := "garbage" + strings.Repeat("x", 100<<10)
	tests := []struct {
		name       string
		payload    string
		md         map[string]string
		wantReason string
		wantRaw    int
		wantPoints int
		rowRejects int
	}{
		{name: "unparseable", payload: "garbage here", wantReason: "no valid header", wantRaw: 12},
		{name: "huge unparseable is truncated", payload: big, wantReason: "payload 102407 bytes, first 65536 kept", wantRaw: 65536},
		{name: "unknown content-type", payload: "x 1", md: map[string]string{"content-type": "text/xml"},
			wantReason: `unknown content-type "text/xml"`, wantRaw: 3},
		{name: "parser panic", payload: "panic now", wantReason: "parser panicked", wantRaw: 9},
		{name: "bad row among good ones", payload: "x 1\nbad row\ny 2", wantPoints: 2, rowRejects: 1, wantRaw: 7,
			wantReason: "bad row"},
		{name: "content-type names the parser", payload: "x 1", md: map[string]string{"Content-Type": "FAKE; v=1"},
			wantPoints: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startOrig(t, "127.0.0.1:0")
			acc := &fakeAcc{auto: &sdk.Delivery{OK: true}}
			in := testInput(t, srv.addr)
			in.DataFormat = parsersGPUTelJSON
			start(t, in, acc)
			waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
			srv.publish(msg("bad1", tc.payload, tc.md))
			waitFor(t, "ack", 2*time.Second, func() bool { return len(srv.ackList()) == 1 })
			if a := srv.ackList()[0]; !a.GetSuccess() || a.GetMessageId() != "bad1" {
				t.Errorf("ack = %v, want success (dead-lettered data is delivered)", a)
			}
			l := acc.list()
			if len(l) != 1 {
				t.Fatalf("%d batches, want 1", len(l))
			}
			b := l[0].b
			if b.Len() != tc.wantPoints {
				t.Errorf("points = %d, want %d", b.Len(), tc.wantPoints)
			}
			if tc.wantReason == "" {
				if len(b.Rejects) != 0 {
					t.Errorf("rejects = %v", b.Rejects)
				}
				return
			}
			if len(b.Rejects) != 1 {
				t.Fatalf("rejects = %v, want 1", b.Rejects)
			}
			r := b.Rejects[0]
			if !strings.Contains(r.Reason, tc.wantReason) || len(r.Raw) != tc.wantRaw ||
				!strings.HasPrefix(r.Position, "message bad1") {
				t.Errorf("reject = {%q %q %d bytes}, want reason with %q, %d bytes", r.Reason, r.Position, len(r.Raw), tc.wantReason, tc.wantRaw)
			}
			st := in.Stats()
			if tc.rowRejects > 0 {
				if st.RowRejects != uint64(tc.rowRejects) || st.Rejected != 0 {
					t.Errorf("stats = %+v", st)
				}
			} else if st.Rejected != 1 {
				t.Errorf("stats = %+v, want 1 rejected", st)
			}
		})
	}
}

const parsersGPUTelJSON = "gpu-tel-json"

func TestEmptyResultIsAckedWithoutEmit(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("na", "x [N/A]", nil))
	waitFor(t, "ack", 2*time.Second, func() bool { return len(srv.ackList()) == 1 })
	if n := len(acc.list()); n != 0 {
		t.Errorf("%d batches emitted for a message without samples", n)
	}
}

func TestBackpressureStopsReading(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	gate := make(chan struct{})
	acc := &fakeAcc{gate: gate, auto: &sdk.Delivery{OK: true}}
	in := testInput(t, srv.addr)
	in.EmitMaxPoints = 10
	in.EmitMaxWait = sdk.Duration(time.Millisecond)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })

	const total = 3000
	payload := "x 1\n" + strings.Repeat("#", 1000) // ~1 KiB, one point
	for k := 0; k < total; k++ {
		srv.publish(msg("m"+itoa(k), payload, nil))
	}
	waitFor(t, "blocked emit", 2*time.Second, func() bool { return acc.entered.Load() >= 1 })
	time.Sleep(300 * time.Millisecond)
	sent1, recv1 := srv.sent.Load(), in.Stats().Received
	time.Sleep(200 * time.Millisecond)
	sent2, recv2 := srv.sent.Load(), in.Stats().Received
	if sent2 != sent1 || recv2 != recv1 {
		t.Errorf("still reading while Emit blocks: sent %d->%d, received %d->%d", sent1, sent2, recv1, recv2)
	}
	if sent2 >= total/2 {
		t.Errorf("server could push %d of %d messages while the pipeline was blocked", sent2, total)
	}
	if recv2 > 2*10+2 {
		t.Errorf("input took %d messages while blocked, want about one batch", recv2)
	}
	close(gate)
	waitFor(t, "all acked", 5*time.Second, func() bool { return len(srv.ackList()) == total })
	if d := srv.dropped.Load(); d != 0 {
		t.Errorf("server dropped %d", d)
	}
	if acc.points() != total {
		t.Errorf("points = %d, want %d", acc.points(), total)
	}
	for _, e := range acc.list() {
		if e.b.Len() > 10 {
			t.Fatalf("batch of %d points exceeds emit_max_points", e.b.Len())
		}
	}
}

func TestMergesMessagesUpToEmitMaxPoints(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	in.EmitMaxPoints = 1000
	in.EmitMaxWait = sdk.Duration(300 * time.Millisecond)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	for k := 0; k < 20; k++ {
		srv.publish(msg("m"+itoa(k), "a 1\nb 2", nil))
	}
	waitFor(t, "40 points", 3*time.Second, func() bool { return acc.points() == 40 })
	l := acc.list()
	if len(l) > 3 {
		t.Errorf("%d batches for 20 quick messages, want them merged", len(l))
	}
	if n := len(l[0].b.Series); n != 2 {
		t.Errorf("merged batch has %d series, want 2 (interned)", n)
	}
	// One done per batch acknowledges every message in it.
	acc.doneAll(sdk.Delivery{OK: true}, 0)
	waitFor(t, "20 acks", 2*time.Second, func() bool { return len(srv.ackList()) == 20 })
}

func TestLeaseRenewalWhileInFlight(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	in.renewEvery = 40 * time.Millisecond
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })

	time.Sleep(150 * time.Millisecond)
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("%d subscribe requests with nothing in flight, want 1", n)
	}
	srv.publish(msg("m1", "x 1", nil))
	waitFor(t, "renewals", 2*time.Second, func() bool { return len(srv.requests()) >= 4 })
	for _, r := range srv.requests() {
		if r.GetTopic() != "gpu-telemetry" || r.GetAckTimeoutSeconds() != 30 {
			t.Errorf("renewal = %v", r)
		}
	}
	acc.doneAll(sdk.Delivery{OK: true}, 0)
	waitFor(t, "ack", 2*time.Second, func() bool { return len(srv.ackList()) == 1 })
	time.Sleep(60 * time.Millisecond)
	n1 := len(srv.requests())
	time.Sleep(200 * time.Millisecond)
	if n2 := len(srv.requests()); n2 != n1 {
		t.Errorf("renewals went on with nothing in flight: %d -> %d", n1, n2)
	}
	if st := in.Stats(); st.Renewals < 3 || st.Reconnects != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRenewalRefusedIsHarmless(t *testing.T) {
	refusals := map[string]error{
		"status error": status.Error(codes.InvalidArgument, "already subscribed"),
		"plain error":  errors.New("unexpected request"),
		"stream ended": io.EOF, // the test server returns nil on it
	}
	for name, refusal := range refusals {
		t.Run(name, func(t *testing.T) {
			if refusal == io.EOF {
				refusal = errEndStream
			}
			srv := startOrig(t, "127.0.0.1:0", func(s *origServer) { s.errorOnExtra = refusal })
			acc := &fakeAcc{}
			in := testInput(t, srv.addr)
			in.renewEvery = 40 * time.Millisecond
			start(t, in, acc)
			waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
			srv.publish(msg("m1", "x 1", nil))
			waitFor(t, "renewals disabled", 3*time.Second, func() bool { return in.Stats().RenewalsDisabled })
			waitFor(t, "resubscribed", 3*time.Second, func() bool { return srv.numSubs() == 1 })
			n := len(srv.requests())
			time.Sleep(200 * time.Millisecond)
			if n2 := len(srv.requests()); n2 != n {
				t.Errorf("still renewing after the broker refused: %d -> %d requests", n, n2)
			}
			srv.publish(msg("m2", "y 2", nil))
			waitFor(t, "m2", 2*time.Second, func() bool { return acc.points() == 2 })
			acc.doneAll(sdk.Delivery{OK: true}, 0)
			waitFor(t, "acks for both", 2*time.Second, func() bool { return len(srv.ackList()) == 2 })
		})
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("old", "x 1", nil))
	waitFor(t, "old emitted", 2*time.Second, func() bool { return acc.points() == 1 })

	srv.stop()
	// The pipeline finishes the old message while the broker is away (and
	// the input knows it: an ack written into a connection that is dying
	// unnoticed may be lost, and the broker redelivers it).
	waitFor(t, "outage noticed", 2*time.Second, func() bool { return connDown(in) })
	acc.doneAll(sdk.Delivery{OK: true}, 0)
	time.Sleep(300 * time.Millisecond)

	srv2 := startOrig(t, srv.addr)
	waitFor(t, "resubscribed", 5*time.Second, func() bool { return srv2.numSubs() == 1 })
	srv2.publish(msg("new", "y 2", nil))
	waitFor(t, "new emitted", 2*time.Second, func() bool { return acc.points() == 2 })
	acc.doneAll(sdk.Delivery{OK: true}, 1)
	waitFor(t, "acks of old and new on the new server", 5*time.Second, func() bool {
		return len(srv2.ackFor("old")) == 1 && len(srv2.ackFor("new")) == 1
	})
	if st := in.Stats(); st.Reconnects < 1 {
		t.Errorf("stats = %+v, want a reconnect", st)
	}
}

func TestBrokerDownAtStart(t *testing.T) {
	// Find a free port, then start the broker there only later.
	probe := startOrig(t, "127.0.0.1:0")
	addr := probe.addr
	probe.stop()
	acc := &fakeAcc{auto: &sdk.Delivery{OK: true}}
	in := testInput(t, addr)
	start(t, in, acc)
	time.Sleep(400 * time.Millisecond)
	srv := startOrig(t, addr)
	waitFor(t, "subscriber", 5*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("m1", "x 1", nil))
	waitFor(t, "ack", 2*time.Second, func() bool { return len(srv.ackList()) == 1 })
	if st := in.Stats(); st.Reconnects < 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestHeartbeatSilenceReconnects(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	srv.heartbeatEvery.Store(int64(20 * time.Millisecond))
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	in.HeartbeatTimeout = sdk.Duration(500 * time.Millisecond)
	start(t, in, acc)
	waitFor(t, "heartbeats", 2*time.Second, func() bool { return in.Stats().Heartbeats >= 3 })
	if st := in.Stats(); st.Reconnects != 0 {
		t.Fatalf("reconnected while heartbeats flow: %+v", st)
	}
	srv.heartbeatEvery.Store(int64(time.Hour)) // silent, stream still open
	waitFor(t, "reconnect", 3*time.Second, func() bool { return in.Stats().Reconnects >= 1 })
}

func TestDrainAcksAfterRunReturned(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	r := start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("m1", "x 1", nil))
	srv.publish(msg("m2", "y 2", nil))
	waitFor(t, "emitted", 2*time.Second, func() bool { return acc.points() == 2 })

	r.stop(t) // Run returned nil
	waitFor(t, "subscribe send side closed", 2*time.Second, func() bool { return srv.halfClosed.Load() == 1 })
	waitFor(t, "subscription gone", 2*time.Second, func() bool { return srv.numSubs() == 0 })

	acc.doneAll(sdk.Delivery{OK: true}, 0)
	waitFor(t, "acks after Run returned", 2*time.Second, func() bool { return len(srv.ackList()) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := in.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, fin := srv.ackCounts(); fin != 1 {
		t.Errorf("acknowledge stream finished %d times, want 1 (CloseAndRecv)", fin)
	}
	if err := in.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A late callback after Close is dropped, not a panic or a hang.
	in.finish(&msgTrack{id: "late"})
	if st := in.Stats(); st.AckDropped != 1 || st.Acked != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestDrainNacksWhatWasNotEmitted(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	gate := make(chan struct{}) // never opened: Emit blocks until ctx ends
	acc := &fakeAcc{gate: gate}
	in := testInput(t, srv.addr)
	r := start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("m1", "x 1", nil))
	waitFor(t, "blocked", 2*time.Second, func() bool { return acc.entered.Load() == 1 })
	r.stop(t)
	waitFor(t, "nack", 2*time.Second, func() bool { return len(srv.ackFor("m1")) == 1 })
	if a := srv.ackFor("m1")[0]; a.GetSuccess() {
		t.Errorf("ack = %v, want a nack", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := in.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCloseGivesUpWhenBrokerIsGone(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	r := start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	srv.publish(msg("m1", "x 1", nil))
	waitFor(t, "emitted", 2*time.Second, func() bool { return acc.points() == 1 })
	r.stop(t)
	srv.stop()
	waitFor(t, "outage noticed", 2*time.Second, func() bool { return connDown(in) })
	acc.doneAll(sdk.Delivery{OK: true}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := in.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 acknowledgements not sent") {
		t.Errorf("Close = %v, want the unsent acknowledgement reported", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
}

func TestCloseWithoutRun(t *testing.T) {
	in := New()
	ctx := context.Background()
	if err := in.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.Run(ctx, &fakeAcc{}); err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Input)
		want []string
	}{
		{name: "defaults plus topic", mod: func(*Input) {}},
		{name: "topic missing", mod: func(i *Input) { i.Topic = "" }, want: []string{"topic: is required"}},
		{name: "everything wrong", mod: func(i *Input) {
			i.Address = "nohost"
			i.ConsumerID = ""
			i.BatchSize = 0
			i.MaxInFlight = -1
			i.AckTimeout = sdk.Duration(500 * time.Millisecond)
			i.DataFormat = "xml"
			i.Timezone = "Mars/Olympus"
			i.MaxMessageBytes = 10
			i.EmitMaxPoints = 0
			i.ReconnectBackoffMax = sdk.Duration(time.Millisecond)
			i.HeartbeatTimeout = sdk.Duration(-time.Second)
			i.TLSCert = "/x.pem"
		}, want: []string{"address:", "consumer_id:", "batch_size:", "max_in_flight:", "ack_timeout:",
			"data_format:", "timezone:", "max_message_bytes:", "emit_max_points:", "reconnect_backoff_max:",
			"heartbeat_timeout:", "tls_cert and tls_key"}},
		{name: "grpc target uri", mod: func(i *Input) { i.Address = "dns:///mq.example:50051" }},
		{name: "missing ca file", mod: func(i *Input) { i.TLSCA = "/nonexistent/ca.pem" }, want: []string{"read tls_ca"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := New()
			in.newParser = fakeParsers
			in.Topic = "gpu-telemetry"
			tc.mod(in)
			err := in.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nmissing %q", err, w)
				}
			}
		})
	}
}

func TestSampleConfigDecodesStrictly(t *testing.T) {
	var conf struct {
		Inputs struct {
			MQ []map[string]any `toml:"mq_service"`
		} `toml:"inputs"`
	}
	if _, err := toml.Decode(SampleConfig, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Inputs.MQ) != 1 {
		t.Fatalf("%d instances in the sample", len(conf.Inputs.MQ))
	}
	// As the agent does: the table's JSON, decoded strictly over the
	// defaults, then validated (with the real parsers).
	js, err := json.Marshal(conf.Inputs.MQ[0])
	if err != nil {
		t.Fatal(err)
	}
	in := New()
	if err := sdk.DecodeConfig(js, in); err != nil {
		t.Fatalf("DecodeConfig: %v", err)
	}
	if err := in.Validate(); err != nil {
		t.Errorf("sample config does not validate: %v", err)
	}
	if in.Topic != "gpu-telemetry" || in.AckTimeout.D() != 30*time.Second || in.EmitMaxPoints != DefaultEmitMaxPoints ||
		in.BatchSize != 100 || in.MaxInFlight != 1000 || in.DataFormat != "gpu-tel-json" {
		t.Errorf("decoded %+v", in)
	}
	// Unknown keys are errors.
	if err := sdk.DecodeConfig([]byte(`{"topic":"t","ack_timout":"1s"}`), New()); err == nil {
		t.Error("unknown key accepted")
	}
	// Validation issues name their keys.
	bad := New()
	issues := sdk.IssuesOf(bad.Validate())
	if len(issues) != 1 || issues[0].Key != "topic" {
		t.Errorf("issues = %+v, want one about topic", issues)
	}
}

func TestRenewInterval(t *testing.T) {
	in := New()
	in.AckTimeout = sdk.Duration(30 * time.Second)
	if d := in.renewInterval(); d != 10*time.Second {
		t.Errorf("renewInterval = %s, want 10s", d)
	}
	in.AckTimeout = sdk.Duration(1500 * time.Millisecond)
	if s := in.ackTimeoutSeconds(); s != 2 {
		t.Errorf("ackTimeoutSeconds = %d, want 2 (rounded up)", s)
	}
}

func TestBuilderSplitsLargeMessage(t *testing.T) {
	in := New()
	in.acks = nil // finish counts drops; we check trackers directly
	bl := &builder{maxPoints: 10}
	src := &sdk.Batch{}
	idx := sdk.NewSeriesIndex(src)
	for k := 0; k < 25; k++ {
		src.Add(idx.ID("m", sdk.Labels{{Key: "i", Value: itoa(k % 3)}}), int64(k), float64(k))
	}
	src.Reject("bad", "message big line 9", []byte("row"))
	big := &msgTrack{id: "big"}
	bl.add(big, src)
	small := &msgTrack{id: "small"}
	src2 := &sdk.Batch{}
	src2.AddSample(sdk.Sample{Name: "s", Time: time.Unix(1, 0), Value: 1})
	bl.add(small, src2)
	batches := bl.take(true)
	if len(batches) != 3 {
		t.Fatalf("%d batches, want 3", len(batches))
	}
	sizes := []int{batches[0].b.Len(), batches[1].b.Len(), batches[2].b.Len()}
	if sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 6 {
		t.Errorf("sizes = %v, want [10 10 6]", sizes)
	}
	if big.pending != 3 || small.pending != 1 {
		t.Errorf("pending big=%d small=%d, want 3 and 1", big.pending, small.pending)
	}
	// Values and series survive the split.
	total := 0.0
	for _, p := range batches {
		for k := range p.b.Points {
			s := p.b.Sample(k)
			if s.Name == "m" {
				want, _ := s.Labels.Get("i")
				if itoa(int(s.Value)%3) != want {
					t.Fatalf("point %v has wrong labels %v", s.Value, s.Labels)
				}
			}
			total += s.Value
		}
	}
	if total != 300+1 {
		t.Errorf("sum = %v, want 301", total)
	}
	// big is acknowledged only after its three batches; a failure nacks.
	in.batchDone(batches[0], sdk.Delivery{OK: true})
	in.batchDone(batches[1], sdk.Delivery{OK: false, Err: errors.New("disk full")})
	in.batchDone(batches[1], sdk.Delivery{OK: true}) // second call ignored
	if big.pending != 1 || big.err == nil {
		t.Errorf("big pending=%d err=%v", big.pending, big.err)
	}
	in.batchDone(batches[2], sdk.Delivery{OK: true})
	if big.pending != 0 || small.pending != 0 {
		t.Errorf("pending big=%d small=%d", big.pending, small.pending)
	}
}

func TestContentType(t *testing.T) {
	tests := map[string]struct {
		md   map[string]string
		want string
	}{
		"none":           {nil, ""},
		"exact":          {map[string]string{"content-type": "dcgm-csv"}, "dcgm-csv"},
		"case and param": {map[string]string{"Content-Type": " Prometheus ; version=0.0.4"}, "prometheus"},
	}
	for name, tc := range tests {
		if got := contentType(tc.md); got != tc.want {
			t.Errorf("%s: contentType = %q, want %q", name, got, tc.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Debug})
}

// connDown reports whether the input's connection noticed the broker is gone.
func connDown(in *Input) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.conn != nil && in.conn.GetState() != connectivity.Ready
}

// keepDoneAcc keeps only the done callbacks of what it takes (as the plugin
// runtime does once a batch is sent to the agent) and counts the emitted
// batches the garbage collector has freed.
type keepDoneAcc struct {
	mu    sync.Mutex
	dones []func(sdk.Delivery)
	freed atomic.Int64
}

func (a *keepDoneAcc) Emit(_ context.Context, b *sdk.Batch, done func(sdk.Delivery)) error {
	runtime.SetFinalizer(b, func(*sdk.Batch) { a.freed.Add(1) })
	a.mu.Lock()
	a.dones = append(a.dones, done)
	a.mu.Unlock()
	return nil
}

func (a *keepDoneAcc) taken() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.dones)
}

// TestEmittedBatchNotRetained: while the pipeline holds a batch (its done
// not called yet), the input keeps only what it needs to acknowledge the
// messages, not the samples: under backpressure max_in_flight messages
// wait in the pipeline, and the input must not hold a second copy of them.
func TestEmittedBatchNotRetained(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &keepDoneAcc{}
	in := testInput(t, srv.addr)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })
	for _, id := range []string{"m1", "m2", "m3"} {
		srv.publish(msg(id, "gpu_util 50\nmem_used 1024", nil))
	}
	waitFor(t, "3 batches", 2*time.Second, func() bool { return acc.taken() == 3 })
	deadline := time.Now().Add(3 * time.Second)
	for acc.freed.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 emitted batches still reachable from the input while their delivery is pending", 3-acc.freed.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	acc.mu.Lock()
	dones := append([](func(sdk.Delivery)){}, acc.dones...)
	acc.mu.Unlock()
	for _, d := range dones {
		d(sdk.Delivery{OK: true})
	}
	waitFor(t, "3 acks", 2*time.Second, func() bool { return len(srv.ackList()) == 3 })
}

// TestRedeliveryWhileInFlightIsNotReprocessed: a message delivered again
// while its first copy is still in our pipeline (a broker restart, a
// reopened stream, an expired lease) is not emitted a second time: a
// processor could drop the copy as a duplicate, which counts as delivered,
// and the copy's acknowledgement would then reach the broker before the
// first copy is stored. The first copy's acknowledgement covers the id.
// Once the first copy is done, a later delivery is processed normally.
func TestRedeliveryWhileInFlightIsNotReprocessed(t *testing.T) {
	srv := startOrig(t, "127.0.0.1:0")
	acc := &fakeAcc{}
	in := testInput(t, srv.addr)
	start(t, in, acc)
	waitFor(t, "subscriber", 2*time.Second, func() bool { return srv.numSubs() == 1 })

	srv.publish(msg("m1", "gpu_util 50", nil))
	waitFor(t, "first copy emitted", 2*time.Second, func() bool { return acc.points() == 1 })
	srv.publish(msg("m1", "gpu_util 50", nil)) // redelivered while in flight
	srv.publish(msg("m2", "gpu_util 60", nil))
	waitFor(t, "m2 emitted", 2*time.Second, func() bool { return acc.points() == 2 })
	if st := in.Stats(); st.Redelivered != 1 || st.Received != 3 {
		t.Fatalf("stats %+v: want 3 received, 1 redelivered", st)
	}
	if a := srv.ackList(); len(a) != 0 {
		t.Fatalf("acknowledged before the first copy was delivered: %v", a)
	}
	acc.doneAll(sdk.Delivery{OK: true}, 0)
	waitFor(t, "2 acks", 2*time.Second, func() bool { return len(srv.ackList()) == 2 })
	for _, a := range srv.ackList() {
		if !a.GetSuccess() {
			t.Errorf("ack %v", a)
		}
	}
	if got := in.Stats().InFlight; got != 0 {
		t.Errorf("InFlight = %d after every ack, want 0", got)
	}
	// Delivered again after it was acknowledged (an ack lost on the way):
	// processed again, harmlessly.
	srv.publish(msg("m1", "gpu_util 50", nil))
	waitFor(t, "m1 emitted again", 2*time.Second, func() bool { return acc.points() == 3 })
}
