// Package wire is the agent <-> plugin codec and handshake, shared by the
// plugin side (package sdk) and the agent side (package plugins).
//
// A metric.Batch travels as a pluginpb.Batch: a per-batch string dictionary,
// a flattened series table of dictionary references and three packed point
// columns (series index, unix-nano time, value). An Encoder dedupes strings
// with a map it reuses across batches; a Decoder makes no string allocation
// of its own: every label key, label value and metric name of the decoded
// batch shares the dictionary strings proto.Unmarshal allocated once per
// distinct string.
package wire

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the agent <-> plugin protocol version. Bump it on
// incompatible changes to internal/pluginpb/plugin.proto.
const ProtocolVersion = 1

// PluginSetName is the name the plugin gRPC service is registered under in
// the go-plugin plugin set.
const PluginSetName = "telemetry"

// MaxMessageSize is the gRPC message limit both sides configure (go-plugin's
// server default is 4 MiB). Batches should stay well below it.
const MaxMessageSize = 64 << 20

// WindowSize is the HTTP/2 stream and connection flow-control window both
// sides configure: large enough that a whole batch is in flight without
// waiting for window updates (gRPC's default starts at 64 KiB).
const WindowSize = 16 << 20

// Magic cookie: a plugin binary started by hand (without it) says it is a
// plugin and exits instead of serving.
const (
	MagicCookieKey   = "TELEMETRY_COLLECTOR_PLUGIN"
	MagicCookieValue = "2f6c3a4e-gpu-telemetry-plugin-v1"
)

// Handshake returns the go-plugin handshake both sides must agree on.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}
