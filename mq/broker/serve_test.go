package broker

import (
	"net"
	"testing"

	"google.golang.org/grpc"
)

// serveLocal creates a broker with opts and serves it (ServerOptions) on a
// free local TCP port. The caller stops srv (and closes the broker).
func serveLocal(tb testing.TB, opts Options) (*Broker, *grpc.Server, net.Listener) {
	tb.Helper()
	bk, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	bk.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	return bk, srv, lis
}
