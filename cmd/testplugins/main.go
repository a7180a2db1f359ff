// Command testplugins serves the test-only plugins of internal/testplugins
// for the plugin runtime's integration tests.
package main

import (
	"github.com/telemetry-collector/telemetry-collector/internal/testplugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

func main() { sdk.Serve(testplugins.Registrations()...) }
