package main

import (
	"context"
	"strings"
	"testing"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/sdktest"
)

const config = `
default = "unknown"
[clusters]
  "mtv5-dgx1-hgpu-031" = "mtv5"
  "sjc-*" = "sjc"
  "sjc-special-*" = "sjc-special"
`

func batchOf(hosts ...string) *sdk.Batch {
	b := &sdk.Batch{}
	for i, h := range hosts {
		var ls sdk.Labels
		if h != "" {
			ls = sdk.Labels{{Key: sdk.LabelGPUUUID, Value: "GPU-1"}, {Key: sdk.LabelHost, Value: h}}
		}
		s := b.AddSeries("gpu_power_watts", ls)
		b.Add(s, int64(i), float64(i))
	}
	return b
}

// The plugin runs over the real gRPC path, as the agent will run it.
func TestProcessOverGRPC(t *testing.T) {
	p := sdktest.Processor(t, registration(), config)
	out, err := p.Process(context.Background(), batchOf("mtv5-dgx1-hgpu-031", "sjc-a1", "sjc-special-9", "other", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Len() != 5 {
		t.Fatalf("got %d batches", len(out))
	}
	want := []string{"mtv5", "sjc", "sjc-special", "unknown", "unknown"}
	for i, w := range want {
		s := out[0].Sample(i)
		got, _ := s.Labels.Get("cluster")
		if got != w {
			t.Errorf("point %d (%v): cluster=%q, want %q", i, s.Labels, got, w)
		}
		if s.Value != float64(i) {
			t.Errorf("point %d value %v changed", i, s.Value)
		}
		// Labels stay sorted.
		for j := 1; j < len(s.Labels); j++ {
			if s.Labels[j-1].Key >= s.Labels[j].Key {
				t.Errorf("labels not sorted: %v", s.Labels)
			}
		}
	}
}

func TestNoDefaultLeavesUnknownHostsAlone(t *testing.T) {
	p := sdktest.Processor(t, registration(), `clusters = { "a" = "x" }`)
	out, err := p.Process(context.Background(), batchOf("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out[0].Sample(0).Labels.Get("cluster"); ok {
		t.Fatalf("unknown host got a cluster label: %v", out[0].Sample(0).Labels)
	}
}

func TestConfigIssues(t *testing.T) {
	tests := []struct {
		name, config, key, msg string
	}{
		{"unknown key", `clusterz = { "a" = "b" }`, "clusterz", "unknown"},
		{"nothing to do", ``, "", "clusters"},
		{"bad pattern", `clusters = { "[" = "x" }`, "", "bad pattern"},
		{"label is host", `label = "host"
clusters = { "a" = "b" }`, "", "label"},
		{"wrong type", `clusters = { "a" = 1 }`, "clusters.a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issues := sdktest.Check(t, registration(), tt.config)
			if len(issues) == 0 {
				t.Fatalf("config %q accepted", tt.config)
			}
			found := false
			for _, is := range issues {
				if (tt.key == "" || is.Key == tt.key) && strings.Contains(is.Message, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("issues %+v, want key %q with %q", issues, tt.key, tt.msg)
			}
		})
	}
}

func TestSetLabelKeepsSharedSlices(t *testing.T) {
	shared := sdk.Labels{{Key: "a", Value: "1"}, {Key: "z", Value: "2"}}
	got := setLabel(shared, "m", "x")
	if len(shared) != 2 || shared[1].Key != "z" {
		t.Fatalf("input changed: %v", shared)
	}
	if got.String() != `{a="1",m="x",z="2"}` {
		t.Fatalf("got %v", got)
	}
	if s := setLabel(got, "m", "y").String(); s != `{a="1",m="y",z="2"}` {
		t.Fatalf("replace: %v", s)
	}
	if s := setLabel(nil, "m", "y").String(); s != `{m="y"}` {
		t.Fatalf("empty: %v", s)
	}
}
