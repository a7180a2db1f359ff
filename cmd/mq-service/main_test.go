package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil || c.listen != "127.0.0.1:50051" || c.maxDeliveries != 5 {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	for _, args := range [][]string{{"--log-level", "loud"}, {"extra"}, {"--max-deliveries", "x"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Fatalf("%v: no error", args)
		}
	}
	if code := run([]string{"--log-level", "loud"}, io.Discard); code != 2 {
		t.Fatalf("bad flag exit %d, want 2", code)
	}
}

func TestServeAndStop(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	c, _ := parseFlags([]string{"--listen", addr, "--data-dir", t.TempDir()}, io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, hclog.New(&hclog.LoggerOptions{Output: &logs})) }()
	conn, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := mqpb.NewPublisherServiceClient(conn).HealthCheck(context.Background(), &mqpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == mqpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := client.NewPublisher(conn, client.PublisherOptions{WaitForAck: true}).Publish(context.Background(),
		[]*mqpb.Message{{Topic: "t", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the signal")
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Fatalf("logs: %s", logs.String())
	}
}
