package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/telemetry-collector/telemetry-collector/internal/procfs"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/grpc"
)

// BenchmarkPublishConsumeAck is the gpu-tel-json shape of `make bench` in
// one process: b.N one-sample messages of ~550 bytes published over 4
// streams (wait_for_ack), consumed by one subscriber (batch_size 1000,
// max_in_flight 20000) that acknowledges every message individually on one
// Acknowledge stream, all through the real gRPC server on a local
// listener. ns/op, cpu-ns/msg (user+system CPU of the whole process, the
// number to compare on a busy machine) and allocs/op are per message and
// include the client's side (publish, decode, ack).
func BenchmarkPublishConsumeAck(b *testing.B) {
	for _, dir := range []bool{false, true} {
		name := "memory"
		if dir {
			name = "data-dir"
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{Logger: hclog.NewNullLogger(), HeartbeatInterval: time.Second}
			if dir {
				opts.DataDir = b.TempDir()
			}
			bk, srv, lis := serveLocal(b, opts)
			conn, err := client.Dial(lis.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				bk.Shutdown()
				srv.Stop()
				_ = conn.Close()
				if err := bk.Close(); err != nil {
					b.Error(err)
				}
			}()
			benchPublishConsumeAck(b, conn, func() int {
				t, _ := bk.topic("bench")
				t.mu.Lock()
				defer t.mu.Unlock()
				return len(t.entries)
			})
		})
	}
}

// benchPublishConsumeAck runs the workload against the broker behind conn;
// depth reports how many messages the broker retains afterwards (0).
func benchPublishConsumeAck(b *testing.B, conn *grpc.ClientConn, depth func() int) {
	sub := mqpb.NewSubscriberServiceClient(conn)
	const streams = 4
	payload := `{"timestamp":"2025-07-18T20:42:34Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_id":0,"device":"nvidia0","uuid":"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","model_name":"NVIDIA H100 80GB HBM3","hostname":"mtv5-dgx1-hgpu-031","container":"","pod":"","namespace":"","value":100,"labels_raw":"DCGM_FI_DRIVER_VERSION=\"535.129.03\",Hostname=\"mtv5-dgx1-hgpu-031\",UUID=\"GPU-5fd4f087-86f3-7a43-b711-4771313afc50\",device=\"nvidia0\",gpu=\"0\",modelName=\"NVIDIA H100 80GB HBM3\"`
	payload += strings.Repeat(" ", max(0, 548-len(payload))) + "}\n"
	msgs := make([][]*mqpb.Message, streams)
	for s := range msgs {
		n := b.N / streams
		if s < b.N%streams {
			n++
		}
		msgs[s] = make([]*mqpb.Message, n)
		for i := range msgs[s] {
			msgs[s][i] = &mqpb.Message{Topic: "bench", Payload: []byte(payload),
				Metadata: map[string]string{"content-type": "gpu-tel-json", "records": "1"}}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := sub.Subscribe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&mqpb.SubscribeRequest{Topic: "bench", ConsumerId: "c", BatchSize: 1000, MaxInFlight: 20000, AckTimeoutSeconds: 60}); err != nil {
		b.Fatal(err)
	}
	acks, err := sub.Acknowledge(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := procfs.SelfCPU()
	var wg sync.WaitGroup
	pubErr := make(chan error, streams)
	for s := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := client.NewPublisher(conn, client.PublisherOptions{WaitForAck: true, Window: 256}).Publish(ctx, msgs[s]); err != nil {
				pubErr <- err
			}
		}()
	}
	got := 0
	for got < b.N {
		r, err := st.Recv()
		if err != nil {
			b.Fatalf("subscribe after %d: %v", got, err)
		}
		for _, m := range r.GetMessages() {
			if err := acks.Send(&mqpb.AcknowledgeRequest{MessageId: m.GetId(), ConsumerId: "c", Success: true}); err != nil {
				b.Fatal(err)
			}
			got++
		}
	}
	wg.Wait()
	close(pubErr)
	for err := range pubErr {
		b.Fatal(err)
	}
	// Every ack applied: the topic retains nothing.
	if _, err := acks.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(procfs.SelfCPU()-cpu0)/float64(b.N), "cpu-ns/msg")
	if n := depth(); n != 0 {
		b.Fatal(fmt.Sprintf("%d messages retained after every ack", n))
	}
	_ = st.CloseSend()
}
