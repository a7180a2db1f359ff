package conf

import (
	"fmt"
	"testing"
)

func TestSmokeTmp(t *testing.T) {
	c, err := Load("telemetry-collector.toml", "/tmp/ct", LoadOptions{LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(c.Describe())
	for _, p := range c.Outputs {
		fmt.Println(p.Positions)
		b, _ := p.SettingsJSON()
		fmt.Println(string(b))
	}
}
