package bench

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/inputs/parsers"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	gpunormalize "github.com/telemetry-collector/telemetry-collector/processors/gpu_normalize"
	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// TestWorkloadsParse runs every workload's messages through the real parser
// and gpu_normalize: no rejects, the promised sample count, every sample a
// canonical metric of a GPU identified by its UUID, one value per (GPU,
// metric, time).
func TestWorkloadsParse(t *testing.T) {
	c := Cluster{GPUs: 16, Fields: len(Fields), Rounds: 2, Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, w := range Workloads {
		t.Run(w.Name, func(t *testing.T) {
			msgs := w.Generate(c, "topic")
			wantMsgs := c.GPUs / GPUsPerHost * c.Rounds
			if w.Name == "gpu-tel-json" {
				wantMsgs = c.Samples()
			}
			if len(msgs) != wantMsgs {
				t.Fatalf("%d messages, want %d", len(msgs), wantMsgs)
			}
			ct := msgs[0].GetMetadata()["content-type"]
			p, err := parsers.New(ct, parsers.Options{Location: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			n := gpunormalize.New()
			seen := map[[3]string]bool{}
			total := 0
			for i, m := range msgs {
				if m.GetMetadata()["content-type"] != ct || m.GetTopic() != "topic" || m.GetId() == "" {
					t.Fatalf("message %d: bad envelope %v", i, m)
				}
				b := &sdk.Batch{}
				if err := p.Parse(m.GetPayload(), m.GetTimestamp().AsTime(), "m", b); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				out, err := n.Process(context.Background(), b)
				if err != nil {
					t.Fatal(err)
				}
				for _, ob := range out {
					if len(ob.Rejects) > 0 {
						t.Fatalf("message %d: reject %+v", i, ob.Rejects[0])
					}
					for _, pt := range ob.Points {
						s := ob.Series[pt.Series]
						if gpumetrics.Index(s.Name) < 0 {
							t.Fatalf("message %d: %s is not canonical", i, s.Name)
						}
						u, _ := s.Labels.Get(sdk.LabelGPUUUID)
						if h, _ := s.Labels.Get(sdk.LabelHost); u == "" || h == "" {
							t.Fatalf("message %d: %s%s lacks gpu_uuid or host", i, s.Name, s.Labels.String())
						}
						k := [3]string{u, s.Name, time.Unix(0, pt.Time).String()}
						if seen[k] {
							t.Fatalf("message %d: duplicate sample %v", i, k)
						}
						seen[k] = true
						total++
					}
				}
			}
			if total != c.Samples() {
				t.Fatalf("%d samples, want %d", total, c.Samples())
			}
		})
	}
}

func TestRoundsFor(t *testing.T) {
	for _, tc := range []struct{ gpus, fields, samples, want int }{
		{1024, 30, 2_000_000, 66}, {1024, 30, 30720, 1}, {1024, 30, 30721, 2}, {8, 1, 1, 1},
	} {
		c := Cluster{GPUs: tc.gpus, Fields: tc.fields}
		if got := c.RoundsFor(tc.samples); got != tc.want {
			t.Errorf("RoundsFor(%d) with %d GPUs x %d = %d, want %d", tc.samples, tc.gpus, tc.fields, got, tc.want)
		}
	}
}

// TestPollInterval: the bench scrapes /metrics rarely while much is left,
// and every 5ms when the end is near.
func TestPollInterval(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stored  float64
		want    int64
		elapsed time.Duration
		exp     time.Duration
	}{
		{"nothing stored yet", 0, 1000, time.Second, 100 * time.Millisecond},
		{"far from the end", 100, 1000, time.Second, 100 * time.Millisecond},
		{"half the rest", 900, 1000, 900 * time.Millisecond, 50 * time.Millisecond},
		{"almost done", 999, 1000, time.Second, 5 * time.Millisecond},
		{"all stored", 1000, 1000, time.Second, 5 * time.Millisecond},
	} {
		if got := pollInterval(tc.stored, tc.want, tc.elapsed); got != tc.exp {
			t.Errorf("%s: pollInterval(%v, %d, %v) = %v, want %v", tc.name, tc.stored, tc.want, tc.elapsed, got, tc.exp)
		}
	}
}

// TestBuildMatchesGenerate: the compact form the benchmark publishes from
// (Build, Fill) makes the very messages Generate does, in the same order,
// also when filled concurrently and encoded as the publisher encodes them.
func TestBuildMatchesGenerate(t *testing.T) {
	c := Cluster{GPUs: 16, Fields: len(Fields), Rounds: 3, Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, w := range Workloads {
		t.Run(w.Name, func(t *testing.T) {
			want := w.Generate(c, "topic")
			got, err := w.Build(c, "topic")
			if err != nil {
				t.Fatal(err)
			}
			defer got.Free()
			if got.Len() != len(want) {
				t.Fatalf("Len %d, want %d", got.Len(), len(want))
			}
			var bytes int64
			for _, m := range want {
				bytes += int64(len(m.GetPayload()))
			}
			if got.PayloadBytes() != bytes {
				t.Fatalf("PayloadBytes %d, want %d", got.PayloadBytes(), bytes)
			}
			const workers = 4
			var wg sync.WaitGroup
			errs := make([]error, workers)
			for k := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := k; i < len(want); i += workers {
						m := &mqpb.Message{}
						got.Fill(i, m)
						if !proto.Equal(m, want[i]) {
							errs[k] = fmt.Errorf("message %d: %v, want %v", i, m, want[i])
							return
						}
						if p := got.Payload(i); cap(p) != len(p) {
							errs[k] = fmt.Errorf("payload %d: cap %d, len %d", i, cap(p), len(p))
							return
						}
						enc, err := mqcodec.MarshalPublishRequest(&mqpb.PublishRequest{Message: m})
						if err != nil {
							errs[k] = err
							return
						}
						// The publisher's own encoding: the same message,
						// the same size as mqcodec's, a large payload
						// spliced in from the arena.
						own := got.encodeRequest(i)
						if own.Len() != enc.Len() {
							errs[k] = fmt.Errorf("message %d: encodeRequest %d bytes, mqcodec %d", i, own.Len(), enc.Len())
							return
						}
						if spliced := len(m.Payload) >= mqcodec.SpliceMin; spliced != (len(own) == 2) ||
							spliced && &own[1].ReadOnlyData()[0] != &m.Payload[0] {
							errs[k] = fmt.Errorf("message %d: %d pieces for a %d-byte payload", i, len(own), len(m.Payload))
							return
						}
						for _, dec := range []func([]byte, *mqpb.PublishRequest) error{
							mqcodec.UnmarshalPublishRequest,
							func(b []byte, r *mqpb.PublishRequest) error { return proto.Unmarshal(b, r) },
						} {
							var r mqpb.PublishRequest
							if err := dec(own.Materialize(), &r); err != nil {
								errs[k] = fmt.Errorf("message %d: %v", i, err)
								return
							}
							if r.WaitForAck || !proto.Equal(r.Message, want[i]) {
								errs[k] = fmt.Errorf("message %d: encodeRequest decodes to %v, want %v", i, &r, want[i])
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestArena: payloads keep their bytes across chunks, none spans two, a
// payload larger than a chunk gets its own.
func TestArena(t *testing.T) {
	a := arena{chunk: 100}
	defer a.free()
	var want [][]byte
	for i, n := range []int{60, 40, 1, 250, 0, 99, 100, 7} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		if err := a.add(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	if a.len() != len(want) {
		t.Fatalf("len %d, want %d", a.len(), len(want))
	}
	for i, p := range want {
		if got := a.get(i); !bytes.Equal(got, p) || cap(got) != len(p) {
			t.Errorf("payload %d: %q (cap %d), want %q", i, got, cap(got), p)
		}
	}
	// 60+40 | 1 | 250+0 | 99 | 100 | 7
	if len(a.chunks) != 6 || len(a.chunks[2]) != 250 {
		t.Errorf("%d chunks (third %d bytes), want 6 (third 250 bytes)", len(a.chunks), len(a.chunks[2]))
	}
	if err := a.free(); err != nil || a.len() != 0 {
		t.Fatalf("free: %v, len %d", err, a.len())
	}
}

// TestAck: the publisher's decoding of a PublishResponse agrees with
// proto.Unmarshal and fails where it fails.
func TestAck(t *testing.T) {
	ts := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	for _, r := range []*mqpb.PublishResponse{
		{MessageId: "bench-x-1", Success: true, Timestamp: ts},
		{Success: true},
		{MessageId: "bench-x-2", Error: "topic full", Timestamp: ts},
		{},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b = protowire.AppendTag(b, 9, protowire.BytesType) // an unknown field
		b = protowire.AppendString(b, "later")
		var a ack
		if err := a.decode(b); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		want := ack{success: r.Success}
		if !r.Success {
			want.id, want.err = r.MessageId, r.Error
		}
		if a != want {
			t.Errorf("%v: decoded %+v, want %+v", r, a, want)
		}
		var bad ack
		if err := bad.decode(b[:len(b)-1]); err == nil {
			t.Errorf("%v: truncated input decoded", r)
		}
	}
	var a ack
	bad := protowire.AppendTag(nil, fieldResponseError, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff})
	if err := a.decode(bad); err == nil || proto.Unmarshal(bad, &mqpb.PublishResponse{}) == nil {
		t.Errorf("invalid UTF-8: decode %v, want an error as proto.Unmarshal's", err)
	}
}
