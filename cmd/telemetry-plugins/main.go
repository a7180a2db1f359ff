// Command telemetry-plugins serves every built-in plugin. The agent starts it
// once per configured plugin instance (go-plugin handshake on stdout) and
// chooses the plugin by name; started by hand it explains that and exits.
package main

import (
	"github.com/telemetry-collector/telemetry-collector/plugins/builtin"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

func main() {
	sdk.Serve(builtin.Registrations()...)
}
