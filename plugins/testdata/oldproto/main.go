// Command oldproto is a plugin built against an older agent<->plugin
// protocol (version 1): the plugins tests check the launcher refuses it at
// the handshake, permanently, with a message saying so.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/telemetry-collector/telemetry-collector/internal/wire"
)

type nothing struct{ plugin.NetRPCUnsupportedPlugin }

func (nothing) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

func (nothing) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	h := wire.Handshake()
	h.ProtocolVersion = 1
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: h,
		Plugins:         plugin.PluginSet{wire.PluginSetName: nothing{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
