// Command nogroups is a processor plugin as a binary built with an sdk
// that predates process groups answers: it speaks the current protocol but
// ignores ConfigureRequest.group (and so reports no group_size). The
// plugins tests check the launcher refuses to run a group on it.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/internal/wire"
)

type server struct {
	pluginpb.UnimplementedPluginServer
}

func (server) Describe(context.Context, *pluginpb.Empty) (*pluginpb.DescribeResponse, error) {
	return &pluginpb.DescribeResponse{ProtocolVersion: wire.ProtocolVersion,
		Plugins: []*pluginpb.PluginInfo{{Name: "passthrough", Kind: "processor"}}}, nil
}

func (server) Configure(context.Context, *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	return &pluginpb.ConfigureResponse{MaxConcurrency: 1}, nil
}

type grpcPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPluginServer(s, server{})
	return nil
}

func (grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake(),
		Plugins:         plugin.PluginSet{wire.PluginSetName: grpcPlugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
