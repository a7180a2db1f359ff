package mq_service

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// rawResponse is sent by rawCodec as it is: bytes no SubscribeResponse
// decodes from.
type rawResponse []byte

// rawCodec is the proto codec, except that it sends a rawResponse as it is.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawResponse); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

// malformedServer answers its first subscription with one good message
// and then a response that does not decode, and later ones with another
// good message.
type malformedServer struct {
	mqpb.UnimplementedSubscriberServiceServer
	streams atomic.Int64
}

func (s *malformedServer) Subscribe(stream grpc.BidiStreamingServer[mqpb.SubscribeRequest, mqpb.SubscribeResponse]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if s.streams.Add(1) == 1 {
		if err := stream.Send(&mqpb.SubscribeResponse{Messages: []*mqpb.Message{msg("m1", "x 1", nil)}}); err != nil {
			return err
		}
		// A messages field of 2047 bytes with 3 of them there.
		if err := stream.SendMsg(rawResponse{0x0a, 0xff, 0x0f, 1, 2, 3}); err != nil {
			return err
		}
	} else if err := stream.Send(&mqpb.SubscribeResponse{Messages: []*mqpb.Message{msg("m2", "x 2", nil)}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// TestMalformedResponseReconnects: a response that does not decode (the
// input decodes a response only when it takes it from the receiver, see
// receive) ends the subscription like any broken stream: what was taken
// before it still reaches the pipeline, nothing of it is processed, and the
// input subscribes again.
func TestMalformedResponseReconnects(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	ms := &malformedServer{}
	mqpb.RegisterSubscriberServiceServer(srv, ms)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	acc := &fakeAcc{}
	in := testInput(t, lis.Addr().String())
	start(t, in, acc)
	waitFor(t, "both good messages emitted", 3*time.Second, func() bool { return acc.points() == 2 })
	st := in.Stats()
	if st.Reconnects < 1 || ms.streams.Load() < 2 {
		t.Errorf("%d reconnects, %d streams: want the malformed response to end the first", st.Reconnects, ms.streams.Load())
	}
	if st.Received != 2 || st.Rejected != 0 {
		t.Errorf("stats %+v: want 2 messages received, none rejected", st)
	}
}
