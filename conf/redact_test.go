package conf

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://user:secret@host:5432/db", "postgres://user:xxxxx@host:5432/db"},
		{"postgresql://user:s3cr3t@host/db?sslmode=disable", "postgresql://user:xxxxx@host/db?sslmode=disable"},
		{"postgres://user@host/db", "postgres://user@host/db"},
		{"postgres://host/db", "postgres://host/db"},
		{"postgres://user:p@ss:w/rd@host/db", "postgres://user:xxxxx@ss:w/rd@host/db"}, // '/' ends the authority: nothing better is possible
		{"postgres://user:p@ss@host/db", "postgres://user:xxxxx@host/db"},
		{"postgres://user:@host/db", "postgres://user:xxxxx@host/db"},
		{"postgres://u:a@h1,u:b@h2/db", "postgres://u:xxxxx@h2/db"},
		{"postgres://user@host/db?password=secret&sslmode=require", "postgres://user@host/db?password=xxxxx&sslmode=require"},
		{"host=db user=me password=secret dbname=x", "host=db user=me password=xxxxx dbname=x"},
		{"host=db password = 'sec ret\\' x' dbname=x", "host=db password = xxxxx dbname=x"},
		{"PASSWORD=Secret", "PASSWORD=xxxxx"},
		{"password=", "password=xxxxx"},
		{"connect to postgres://a:b@c and mysql://d:e@f now", "connect to postgres://a:xxxxx@c and mysql://d:xxxxx@f now"},
		{"dial tcp 127.0.0.1:5432: connection refused", "dial tcp 127.0.0.1:5432: connection refused"},
		{"no_password_here=1 mypassword=2", "no_password_here=1 mypassword=2"},
		{"", ""},
		{"://", "://"},
		{"a://:@", "a://:xxxxx@"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDescribeMasksSecrets(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.toml": `
[agent]
  metrics_address = "127.0.0.1:9273"
[[inputs.mq_service]]
  address = "localhost:50051"
  auth_token = "tok-SECRET1"
[[processors.gpu_normalize]]
[[processors.dedup]]
  window = "10m"
[[outputs.postgresql]]
  connection = "${DATABASE_URL}"
  workers = 3
[[outputs.postgresql]]
  alias = "archive"
  connection = "host=db user=me password=SECRET3 dbname=x"
  password = "SECRET4"
  [outputs.postgresql.tls]
    key_password = "SECRET5"
    ca = "/etc/ca.pem"
  [outputs.postgresql.credentials]
    user = "SECRET6"
[[outputs.file]]
  path = "stdout"
  client_secret = 12345
`})
	main := filepath.Join(dir, "main.toml")
	c, err := Load(main, "", LoadOptions{LookupEnv: envOf(map[string]string{"DATABASE_URL": "postgres://u:SECRET2@db:5432/t"})})
	if err != nil {
		t.Fatal(err)
	}
	out := c.Describe()
	for _, s := range []string{"SECRET", "12345"} {
		if strings.Contains(out, s) {
			t.Errorf("Describe leaks %q:\n%s", s, out)
		}
	}
	for _, s := range []string{
		"inputs.mq_service -> processors.gpu_normalize -> processors.dedup -> {outputs.postgresql, outputs.postgresql[archive], outputs.file}",
		`connection = "postgres://u:xxxxx@db:5432/t"  # line 11`,
		`connection = "host=db user=me password=xxxxx dbname=x"`,
		`password = "xxxxx"`,
		`tls.key_password = "xxxxx"`,
		`tls.ca = "/etc/ca.pem"  # line 19`,
		`credentials.user = "xxxxx"`,
		`auth_token = "xxxxx"`,
		`client_secret = "xxxxx"`,
		"1. processors.gpu_normalize",
		"2. processors.dedup",
		`outputs.postgresql  alias="archive"  (` + main + `:13)`,
		"workers=3",
		`metrics_address   = "127.0.0.1:9273"`,
		main + ":3",
		`log_level         = "info"`,
	} {
		if !strings.Contains(out, s) {
			t.Errorf("Describe lacks %q:\n%s", s, out)
		}
	}
	// Redaction works on copies: the settings the plugin gets are intact.
	if got := c.Outputs[0].Settings["connection"]; got != "postgres://u:SECRET2@db:5432/t" {
		t.Errorf("settings changed: %v", got)
	}
}

func TestSettingsJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.toml": minimal + `
[[outputs.x]]
  alias = "a"
  batch_size = 7
  s = "v"
  n = 3
  f = 1.5
  b = true
  at = 2024-05-01T10:00:00Z
  local = 2024-05-01T10:00:00
  list = [1, "two"]
  [outputs.x.sub]
    k = "${NOPE:-d}"
  [[outputs.x.arr]]
    name = "one"
`})
	c, err := Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Outputs[1].SettingsJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"s": "v", "n": 3.0, "f": 1.5, "b": true,
		"at":    "2024-05-01T10:00:00Z",
		"local": "2024-05-01T10:00:00Z",
		"list":  []any{1.0, "two"},
		"sub":   map[string]any{"k": "d"},
		"arr":   []any{map[string]any{"name": "one"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SettingsJSON = %s\nwant %v", b, want)
	}
	if _, err := time.Parse(time.RFC3339, got["at"].(string)); err != nil {
		t.Errorf("at is not RFC 3339: %v", err)
	}
	empty := Plugin{Kind: KindProcessor, Name: "p"}
	if b, err := empty.SettingsJSON(); err != nil || string(b) != "{}" {
		t.Errorf("empty SettingsJSON = %s, %v", b, err)
	}
}

func TestIndex(t *testing.T) {
	src := `# top comment
title = "x" # [not.a.table]
"quoted key" = 1
'lit.key' = 2
a.b . c = 3
multi = """
line " "" \"""
[fake]
"""
lit = '''
[[fake2]]
'''
arr = [
  1,
  [2, 3],
  { k = "v" },
]
[t1]
x = 1
[[aot]]
y = 1
[aot.sub]
z = 1
[[aot.inner]]
w = 1
[[aot]]
y = 2
[[aot.inner]]
w = 2
[[aot.inner]]
w = 3
[ t2 . "q.k" ]
v = """a""""
after = 1
`
	want := map[string]int{
		"title":             2,
		"quoted key":        3,
		"lit.key":           4,
		"a":                 5,
		"a.b":               5,
		"a.b.c":             5,
		"multi":             6,
		"lit":               10,
		"arr":               13,
		"arr[0]":            14,
		"arr[1]":            15,
		"arr[1][1]":         15,
		"arr[2]":            16,
		"arr[2].k":          16,
		"t1":                18,
		"t1.x":              19,
		"aot":               20,
		"aot[0]":            20,
		"aot[0].y":          21,
		"aot[0].sub":        22,
		"aot[0].sub.z":      23,
		"aot[0].inner":      24,
		"aot[0].inner[0]":   24,
		"aot[0].inner[0].w": 25,
		"aot[1]":            26,
		"aot[1].y":          27,
		"aot[1].inner":      28,
		"aot[1].inner[0].w": 29,
		"aot[1].inner[1]":   30,
		"aot[1].inner[1].w": 31,
		"t2":                32,
		"t2.q.k":            32,
		"t2.q.k.v":          33,
		"t2.q.k.after":      34,
	}
	idx := buildIndex([]byte(src))
	for k, line := range want {
		if got, ok := idx[k]; !ok || got != line {
			t.Errorf("idx[%q] = %d (%v), want %d", k, got, ok, line)
		}
	}
	for _, k := range []string{"fake", "fake2", "not.a.table", "not"} {
		if _, ok := idx[k]; ok {
			t.Errorf("idx has %q, which is inside a string or comment", k)
		}
	}
	// The source is valid TOML (the scanner only ever sees valid input).
	var m map[string]any
	if _, err := toml.Decode(src, &m); err != nil {
		t.Fatalf("test source is not valid TOML: %v", err)
	}
}
