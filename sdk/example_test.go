package sdk_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// Uppercase is a tiny processor: it upper-cases one label's value.
type Uppercase struct {
	Label string `toml:"label"`
}

// Validate implements sdk.Validator.
func (u *Uppercase) Validate() error {
	if u.Label == "" {
		return &sdk.ConfigIssue{Key: "label", Message: "is required"}
	}
	return nil
}

// Process implements sdk.Processor: it changes b in place and returns it.
func (u *Uppercase) Process(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	for i := range b.Series {
		ls := append(sdk.Labels(nil), b.Series[i].Labels...) // labels may be shared
		for j := range ls {
			if ls[j].Key == u.Label {
				ls[j].Value = strings.ToUpper(ls[j].Value)
			}
		}
		b.Series[i].Labels = ls
	}
	return []*sdk.Batch{b}, nil
}

// A plugin binary registers its plugins and calls Serve from main:
//
//	func main() { sdk.Serve(uppercaseRegistration) }
//
// The agent then runs it with
//
//	[[processors.uppercase]]
//	  command = "/usr/local/bin/uppercase-plugin"
//	  label = "host"
//
// Here the configuration is decoded the way the agent's JSON would be, and
// the processor is called directly; sdk/sdktest runs it over the real
// plugin protocol instead.
func ExampleServe() {
	reg := sdk.Registration{
		Name:         "uppercase",
		Kind:         sdk.KindProcessor,
		Description:  "upper-cases a label value",
		SampleConfig: "label = \"host\"\n",
		New:          func() any { return &Uppercase{} },
	}
	_ = reg // in main(): sdk.Serve(reg)

	p := reg.New().(*Uppercase)
	if err := sdk.DecodeConfig([]byte(`{"lable":"host"}`), p); err != nil {
		fmt.Println(err)
	}
	if err := sdk.DecodeConfig([]byte(`{"label":"host"}`), p); err != nil {
		fmt.Println(err)
	}
	b := &sdk.Batch{}
	b.Add(b.AddSeries("gpu_temp", sdk.Labels{{Key: "host", Value: "node-1"}}), 0, 41)
	out, _ := p.Process(context.Background(), b)
	fmt.Println(out[0].Series[0].Labels)
	// Output:
	// invalid configuration: lable: unknown key (did you mean "label"?)
	// {host="NODE-1"}
}
