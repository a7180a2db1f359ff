package sdk_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

type tlsConf struct {
	CA       string `toml:"ca"`
	Insecure bool   `toml:"insecure_skip_verify"`
}

type testConf struct {
	Address  string       `toml:"address"`
	Workers  int          `toml:"workers"`
	Ratio    float64      `toml:"ratio"`
	Timeout  sdk.Duration `toml:"timeout"`
	Interval sdk.Duration `toml:"interval"`
	Tags     []string     `toml:"tags"`
	TLS      tlsConf      `toml:"tls"`
	Extra    map[string]string
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name   string
		json   string
		want   testConf
		issues []sdk.ConfigIssue
	}{
		{name: "empty", json: ``},
		{name: "null", json: `null`},
		{name: "all", json: `{"address":"x:1","workers":3,"ratio":1,"timeout":"1m30s","interval":2000,"tags":["a","b"],"tls":{"ca":"/ca.pem","insecure_skip_verify":true},"Extra":{"k":"v"}}`,
			want: testConf{Address: "x:1", Workers: 3, Ratio: 1, Timeout: sdk.Duration(90 * time.Second), Interval: 2000, Tags: []string{"a", "b"},
				TLS: tlsConf{CA: "/ca.pem", Insecure: true}, Extra: map[string]string{"k": "v"}}},
		{name: "float ratio", json: `{"ratio":0.25}`, want: testConf{Ratio: 0.25}},
		{name: "null value ignored", json: `{"address":null}`},
		{name: "unknown key suggests", json: `{"adress":"x"}`,
			issues: []sdk.ConfigIssue{{Key: "adress", Message: `unknown key (did you mean "address"?)`}}},
		{name: "unknown far key", json: `{"zzzzzzzz":1}`, issues: []sdk.ConfigIssue{{Key: "zzzzzzzz", Message: "unknown key"}}},
		{name: "nested unknown", json: `{"tls":{"caa":"x"}}`,
			issues: []sdk.ConfigIssue{{Key: "tls.caa", Message: `unknown key (did you mean "ca"?)`}}},
		{name: "unknown table", json: `{"tsl":{"ca":"x"}}`,
			issues: []sdk.ConfigIssue{{Key: "tsl", Message: `unknown key (did you mean "tls"?)`}}},
		{name: "several unknown", json: `{"a1":1,"workerz":2}`,
			issues: []sdk.ConfigIssue{{Key: "a1", Message: "unknown key"}, {Key: "workerz", Message: `unknown key (did you mean "workers"?)`}}},
		{name: "wrong type", json: `{"workers":"three"}`,
			issues: []sdk.ConfigIssue{{Key: "workers", Message: "incompatible types: value has type string; want type integer"}}},
		{name: "fraction into int", json: `{"workers":1.5}`,
			issues: []sdk.ConfigIssue{{Key: "workers", Message: "incompatible types: value has type float; want type integer"}}},
		{name: "nested wrong type", json: `{"tls":{"ca":5}}`,
			issues: []sdk.ConfigIssue{{Key: "tls.ca", Message: "incompatible types: value has type integer; want type string"}}},
		{name: "bad duration", json: `{"timeout":"3 fortnights"}`,
			issues: []sdk.ConfigIssue{{Key: "timeout", Message: `time: unknown unit " fortnights" in duration "3 fortnights"`}}},
		{name: "not an object", json: `[1]`, issues: []sdk.ConfigIssue{{Message: "configuration must be a table, not []interface {}"}}},
		{name: "bad json", json: `{`, issues: []sdk.ConfigIssue{{Message: "configuration is not valid JSON: unexpected EOF"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testConf
			err := sdk.DecodeConfig([]byte(tt.json), &got)
			if tt.issues == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v\nwant %+v", got, tt.want)
				}
				return
			}
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want *ConfigError, got %T %v", err, err)
			}
			if !reflect.DeepEqual(ce.Issues, tt.issues) {
				t.Fatalf("issues\n got %#v\nwant %#v", ce.Issues, tt.issues)
			}
		})
	}
}

func TestIssuesOf(t *testing.T) {
	err := errors.Join(&sdk.ConfigIssue{Key: "window", Message: "must be positive"}, errors.New("plain"),
		&sdk.ConfigError{Issues: []sdk.ConfigIssue{{Key: "a", Message: "b"}}})
	got := sdk.IssuesOf(err)
	want := []sdk.ConfigIssue{{Key: "window", Message: "must be positive"}, {Message: "plain"}, {Key: "a", Message: "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	if sdk.IssuesOf(nil) != nil {
		t.Fatal("nil error gave issues")
	}
	if !strings.Contains((&sdk.ConfigError{Issues: want}).Error(), "window: must be positive") {
		t.Fatal("ConfigError text")
	}
}
