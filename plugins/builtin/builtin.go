// Package builtin lists the plugins shipped with telemetry-collector. One
// binary (cmd/telemetry-plugins, installed as bin/plugins/telemetry-plugins)
// serves them all; the agent launches one process per configured instance and
// picks the plugin by name when it configures it.
package builtin

import (
	"github.com/telemetry-collector/telemetry-collector/inputs/mq_service"
	"github.com/telemetry-collector/telemetry-collector/outputs/file"
	"github.com/telemetry-collector/telemetry-collector/outputs/postgresql"
	"github.com/telemetry-collector/telemetry-collector/processors/dedup"
	gpunormalize "github.com/telemetry-collector/telemetry-collector/processors/gpu_normalize"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Registrations returns a fresh list of every built-in plugin.
func Registrations() []sdk.Registration {
	return []sdk.Registration{
		{Name: mq_service.Name, Kind: sdk.KindInput, Description: mq_service.Description,
			SampleConfig: mq_service.SampleConfig, New: func() any { return mq_service.New() }},
		{Name: gpunormalize.Name, Kind: sdk.KindProcessor, Description: gpunormalize.Description,
			SampleConfig: gpunormalize.SampleConfig, New: func() any { return gpunormalize.New() }},
		{Name: dedup.Name, Kind: sdk.KindProcessor, Description: dedup.Description,
			SampleConfig: dedup.SampleConfig, New: func() any { return dedup.New() }},
		{Name: postgresql.Name, Kind: sdk.KindOutput, Description: postgresql.Description,
			SampleConfig: postgresql.SampleConfig, New: func() any { return postgresql.New() }},
		{Name: file.Name, Kind: sdk.KindOutput, Description: file.Description,
			SampleConfig: file.SampleConfig, New: func() any { return file.New() }},
	}
}
