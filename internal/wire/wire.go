// Package wire is the agent <-> plugin codec and handshake, shared by the
// plugin side (package sdk) and the agent side (package plugins).
//
// A metric.Batch travels as a pluginpb.Batch: the batch's series as stream
// series ids, three packed point columns (batch series index, unix-nano
// time, value) and the rejects. Series and their strings travel once per
// stream: a StreamEncoder defines a series (its new strings and label refs)
// in the first batch of the stream that carries it, a StreamDecoder keeps
// the stream's dictionary and resolves ids (see stream.go for the ordering
// and memory rules). Encoder and Decoder are the older self-contained
// per-batch form (a per-batch string dictionary and series table), kept for
// comparison benchmarks and tools; the plugin protocol uses the stream form.
//
// NewCodec is the gRPC codec of the plugin protocol: protobuf, with Batch
// and ProcessResult marshalled and unmarshalled by hand (proto's bytes, see
// batchcodec.go) and the columns of received batches pooled: a receiver
// hands them back with RecycleBatch once it decoded the batch.
package wire

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the agent <-> plugin protocol version. Bump it on
// incompatible changes to internal/pluginpb/plugin.proto. Version 2: stream
// dictionaries (series and strings travel once per stream, see stream.go).
const ProtocolVersion = 2

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
