// Package client is a small mq.v1 client used by the telemetry-streamer and
// by tests.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
)

// MaxMessageBytes is the gRPC message size limit Dial configures (the
// broker's limit).
const MaxMessageBytes = 64 << 20

// Dial connects to an mq.v1 service without TLS, with 64 MiB message
// limits. Extra options are appended.
func Dial(address string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	// Buffers that are not zeroed before use (internal/grpcbuf): a
	// publisher marshals every payload into one.
	pool := grpcbuf.NewBufferPool()
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes),
			grpc.ForceCodecV2(mqcodec.NewCodec(pool))),
		experimental.WithBufferPool(pool),
	}
	conn, err := grpc.NewClient(address, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("mq client: dial %s: %w", address, err)
	}
	return conn, nil
}

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// WaitForAck asks the broker to answer only once each message is stored
	// durably (PublishRequest.wait_for_ack).
	WaitForAck bool
	// Window is how many messages may await their response at once on the
	// stream (default 64).
	Window int
}

// Publisher publishes messages over PublisherService.Publish. It is safe
// for concurrent use; each Publish call uses its own stream.
type Publisher struct {
	c    mqpb.PublisherServiceClient
	opts PublisherOptions
}

// NewPublisher returns a Publisher over conn.
func NewPublisher(conn grpc.ClientConnInterface, opts PublisherOptions) *Publisher {
	if opts.Window <= 0 {
		opts.Window = 64
	}
	return &Publisher{c: mqpb.NewPublisherServiceClient(conn), opts: opts}
}

// ErrRejected wraps the broker's error text of a PublishResponse with
// success=false.
var ErrRejected = errors.New("mq client: message rejected")

// Publish sends msgs in order, keeping up to Window of them in flight, and
// waits for every response. It returns one response per message it got an
// answer for (in order) and an error when the stream failed or any message
// was rejected (wrapping ErrRejected). Publish does not modify msgs.
func (p *Publisher) Publish(ctx context.Context, msgs []*mqpb.Message) ([]*mqpb.PublishResponse, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.c.Publish(ctx)
	if err != nil {
		return nil, fmt.Errorf("mq client: open publish stream: %w", err)
	}
	credits := make(chan struct{}, p.opts.Window)
	sendErr := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			select {
			case credits <- struct{}{}:
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			}
			if err := stream.Send(&mqpb.PublishRequest{Message: m, WaitForAck: p.opts.WaitForAck}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	resps := make([]*mqpb.PublishResponse, 0, len(msgs))
	var rejected []error
	for len(resps) < len(msgs) {
		r, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			cancel()
			if serr := <-sendErr; serr != nil && !errors.Is(serr, io.EOF) && !errors.Is(serr, context.Canceled) {
				err = errors.Join(err, serr)
			}
			return resps, fmt.Errorf("mq client: publish stream after %d of %d responses: %w", len(resps), len(msgs), err)
		}
		<-credits
		resps = append(resps, r)
		if !r.GetSuccess() {
			rejected = append(rejected, fmt.Errorf("%w: %s: %s", ErrRejected, r.GetMessageId(), r.GetError()))
		}
	}
	if err := <-sendErr; err != nil {
		return resps, fmt.Errorf("mq client: publish stream: %w", err)
	}
	return resps, errors.Join(rejected...)
}
