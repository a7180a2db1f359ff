package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// noEnv is a LookupEnv with nothing set.
func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// writeFiles writes name->content under a temp dir and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const minimal = `
[[inputs.mq_service]]
  topic = "t"
[[outputs.file]]
  path = "stdout"
`

func aliases(ps []Plugin) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name + "/" + p.Alias
	}
	return out
}

func TestLoadMerge(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string // "main.toml" and "d/NAME"
		inputs     []string
		processors []string
		outputs    []string
		check      func(t *testing.T, dir string, c *Config)
	}{
		{
			name: "instances add across files",
			files: map[string]string{
				"main.toml":        minimal,
				"d/10-a.toml":      "[[outputs.postgresql]]\nconnection = \"x\"\n",
				"d/20-b.toml":      "[[inputs.mq_service]]\ntopic = \"u\"\n[[outputs.file]]\npath = \"/tmp/x\"\n",
				"d/30-c.toml.bak":  "this is not toml",
				"d/README.example": "nor this",
			},
			inputs:  []string{"mq_service/mq_service", "mq_service/mq_service-2"},
			outputs: []string{"file/file", "postgresql/postgresql", "file/file-2"},
			check: func(t *testing.T, dir string, c *Config) {
				want := []string{filepath.Join(dir, "main.toml"), filepath.Join(dir, "d", "10-a.toml"), filepath.Join(dir, "d", "20-b.toml")}
				if !reflect.DeepEqual(c.Files, want) {
					t.Errorf("Files = %v, want %v", c.Files, want)
				}
				if got := c.Inputs[1].Settings["topic"]; got != "u" {
					t.Errorf("second input topic = %v", got)
				}
				if got := c.Inputs[1].Source; got != (Position{filepath.Join(dir, "d", "20-b.toml"), 1}) {
					t.Errorf("second input source = %v", got)
				}
			},
		},
		{
			name: "agent keys override, later file wins",
			files: map[string]string{
				"main.toml":   "[agent]\nlog_level = \"info\"\nqueue_size = 4\nflush_interval = \"2s\"\n" + minimal,
				"d/10-a.toml": "[agent]\nlog_level = \"warn\"\n",
				"d/20-b.toml": "[agent]\nlog_level = \"debug\"\nflush_interval = \"3s\"\n",
			},
			inputs:  []string{"mq_service/mq_service"},
			outputs: []string{"file/file"},
			check: func(t *testing.T, dir string, c *Config) {
				a := c.Agent
				if a.LogLevel != "debug" || a.QueueSize != 4 || a.FlushInterval != 3*time.Second {
					t.Errorf("agent = %+v", a)
				}
				if got, want := a.Positions["log_level"], (Position{filepath.Join(dir, "d", "20-b.toml"), 2}); got != want {
					t.Errorf("log_level position = %v, want %v", got, want)
				}
				if got, want := a.Positions["queue_size"], (Position{filepath.Join(dir, "main.toml"), 3}); got != want {
					t.Errorf("queue_size position = %v, want %v", got, want)
				}
				// Output defaults follow the merged agent values.
				if o := c.Outputs[0]; o.FlushInterval != 3*time.Second || o.QueueSize != 4 {
					t.Errorf("output defaults = %v %v", o.FlushInterval, o.QueueSize)
				}
			},
		},
		{
			name: "processor order: file order, main first, drop-ins by name",
			files: map[string]string{
				"main.toml":   minimal + "[[processors.zeta]]\n[[processors.alpha]]\nx = 1\n[[processors.zeta]]\n",
				"d/20-b.toml": "[[processors.last]]\n",
				"d/10-a.toml": "[[processors.middle]]\n[[processors.first_in_a]]\n",
			},
			inputs:     []string{"mq_service/mq_service"},
			outputs:    []string{"file/file"},
			processors: []string{"zeta/zeta", "alpha/alpha", "zeta/zeta-2", "middle/middle", "first_in_a/first_in_a", "last/last"},
		},
		{
			name: "single-table form is one instance",
			files: map[string]string{
				"main.toml": "[inputs.mq_service]\ntopic = \"t\"\n[outputs.file]\npath = \"p\"\n[processors.dedup]\nwindow = \"1m\"\n",
			},
			inputs:     []string{"mq_service/mq_service"},
			processors: []string{"dedup/dedup"},
			outputs:    []string{"file/file"},
			check: func(t *testing.T, dir string, c *Config) {
				if got := c.Processors[0].KeyPosition("window").Line; got != 6 {
					t.Errorf("window line = %d, want 6", got)
				}
			},
		},
		{
			name: "aliases: explicit kept, repeated names numbered around them",
			files: map[string]string{
				"main.toml": minimal + `
[[outputs.postgresql]]
[[outputs.postgresql]]
  alias = "postgresql-2"
[[outputs.postgresql]]
[[outputs.postgresql]]
  alias = "archive"
`,
			},
			inputs:  []string{"mq_service/mq_service"},
			outputs: []string{"file/file", "postgresql/postgresql", "postgresql/postgresql-2", "postgresql/postgresql-3", "postgresql/archive"},
			check: func(t *testing.T, dir string, c *Config) {
				if got := c.Outputs[4].ID(); got != "outputs.postgresql[archive]" {
					t.Errorf("ID = %q", got)
				}
			},
		},
		{
			name: "generic keys lifted; input batch_size stays a setting",
			files: map[string]string{
				"main.toml": `
[[inputs.mq_service]]
  alias = "mq"
  batch_size = 100
  command = "/opt/mq"
[[outputs.postgresql]]
  batch_size = 500
  flush_interval = "250ms"
  workers = 3
  required = false
  queue_size = 16
  max_retries = 5
  connection = "c"
`,
			},
			inputs:  []string{"mq_service/mq"},
			outputs: []string{"postgresql/postgresql"},
			check: func(t *testing.T, dir string, c *Config) {
				in := c.Inputs[0]
				if in.Command != "/opt/mq" || in.Settings["batch_size"] != int64(100) || in.BatchSize != 0 {
					t.Errorf("input = %+v", in)
				}
				if _, ok := in.Settings["alias"]; ok {
					t.Error("alias left in Settings")
				}
				o := c.Outputs[0]
				want := Plugin{BatchSize: 500, FlushInterval: 250 * time.Millisecond, Workers: 3, Required: false, QueueSize: 16, MaxRetries: 5}
				if o.BatchSize != want.BatchSize || o.FlushInterval != want.FlushInterval || o.Workers != want.Workers ||
					o.Required != want.Required || o.QueueSize != want.QueueSize || o.MaxRetries != want.MaxRetries {
					t.Errorf("output = %+v", o)
				}
				if !reflect.DeepEqual(o.Settings, map[string]any{"connection": "c"}) {
					t.Errorf("output settings = %v", o.Settings)
				}
			},
		},
		{
			name:    "defaults",
			files:   map[string]string{"main.toml": minimal},
			inputs:  []string{"mq_service/mq_service"},
			outputs: []string{"file/file"},
			check: func(t *testing.T, dir string, c *Config) {
				a := c.Agent
				if a.LogLevel != "info" || a.LogFormat != "text" || a.FlushInterval != time.Second || a.ShutdownTimeout != 30*time.Second ||
					a.DeadLetterDir != "dead-letter" || a.QueueSize != 8 || a.InputCredits != 64 || a.MetricsAddress != "" {
					t.Errorf("agent defaults = %+v", a)
				}
				if a.PluginDir != filepath.Join("/opt/tc/bin", "plugins") {
					t.Errorf("plugin_dir = %q", a.PluginDir)
				}
				o := c.Outputs[0]
				if o.BatchSize != 10000 || o.Workers != 1 || !o.Required || o.MaxRetries != 0 || o.QueueSize != 8 || o.FlushInterval != time.Second {
					t.Errorf("output defaults = %+v", o)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			dropIn := ""
			if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
				dropIn = filepath.Join(dir, "d")
			}
			c, err := Load(filepath.Join(dir, "main.toml"), dropIn, LoadOptions{
				LookupEnv:  noEnv,
				Executable: func() (string, error) { return "/opt/tc/bin/telemetry-collector", nil },
			})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := aliases(c.Inputs); !reflect.DeepEqual(got, tt.inputs) {
				t.Errorf("inputs = %v, want %v", got, tt.inputs)
			}
			if got := aliases(c.Processors); len(got)+len(tt.processors) > 0 && !reflect.DeepEqual(got, tt.processors) {
				t.Errorf("processors = %v, want %v", got, tt.processors)
			}
			if got := aliases(c.Outputs); !reflect.DeepEqual(got, tt.outputs) {
				t.Errorf("outputs = %v, want %v", got, tt.outputs)
			}
			if tt.check != nil {
				tt.check(t, dir, c)
			}
		})
	}
}

func TestSubstitution(t *testing.T) {
	env := envOf(map[string]string{
		"DB":      "postgres://u:p@db:5432/x",
		"EMPTY":   "",
		"QUOTE":   `he said "hi" \ and ]] = x`,
		"WORKERS": "4",
		"FLUSH":   "250ms",
		"REQ":     "false",
	})
	tests := []struct {
		name  string
		value string // TOML string literal for key v
		want  string
	}{
		{"set", `"${DB}"`, "postgres://u:p@db:5432/x"},
		{"set ignores default", `"${DB:-other}"`, "postgres://u:p@db:5432/x"},
		{"unset with default", `"${NOPE:-postgres://localhost/db?sslmode=disable}"`, "postgres://localhost/db?sslmode=disable"},
		{"empty uses default", `"${EMPTY:-d}"`, "d"},
		{"empty without default", `"[${EMPTY}]"`, "[]"},
		{"empty default", `"${NOPE:-}"`, ""},
		{"escape", `"$${DB} and $${NOPE}"`, "${DB} and ${NOPE}"},
		{"dollar alone", `"cost $5 $$ {x}"`, "cost $5 $$ {x}"},
		{"quotes in value cannot break TOML", `"${QUOTE}"`, `he said "hi" \ and ]] = x`},
		{"several", `"${EMPTY:-a}-${DB:-b}-${NOPE:-c}"`, "a-postgres://u:p@db:5432/x-c"},
		{"literal string substituted too", `'${NOPE:-lit}'`, "lit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"main.toml": minimal + "[[outputs.x]]\nv = " + tt.value + "\n"})
			c, err := Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: env})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Outputs[1].Settings["v"]; got != tt.want {
				t.Errorf("v = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("nested tables and arrays", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"main.toml": minimal + `
[[outputs.x]]
  list = ["${DB}", "plain", 3]
  inline = { a = "${NOPE:-ia}" }
  [outputs.x.sub]
    b = "${EMPTY:-sb}"
  [[outputs.x.arr]]
    c = "${NOPE:-ac}"
`})
		c, err := Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: env})
		if err != nil {
			t.Fatal(err)
		}
		got := c.Outputs[1].Settings
		want := map[string]any{
			"list":   []any{"postgres://u:p@db:5432/x", "plain", int64(3)},
			"inline": map[string]any{"a": "ia"},
			"sub":    map[string]any{"b": "sb"},
			"arr":    []any{map[string]any{"c": "ac"}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("settings = %#v\nwant %#v", got, want)
		}
	})

	t.Run("generic and agent keys from the environment", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"main.toml": `
[agent]
  flush_interval = "${FLUSH}"
  queue_size = "${NOPE:-12}"
  metrics_address = "${NOPE:-127.0.0.1:9273}"
[[inputs.x]]
[[outputs.x]]
  workers = "${WORKERS}"
  required = "${REQ}"
`})
		c, err := Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: env})
		if err != nil {
			t.Fatal(err)
		}
		if c.Agent.FlushInterval != 250*time.Millisecond || c.Agent.QueueSize != 12 || c.Agent.MetricsAddress != "127.0.0.1:9273" {
			t.Errorf("agent = %+v", c.Agent)
		}
		if o := c.Outputs[0]; o.Workers != 4 || o.Required {
			t.Errorf("output = %+v", o)
		}
	})
}

// wantErr is one expected error: FILE (base name), line, key and a part of
// the message.
type wantErr struct {
	file string
	line int
	key  string
	msg  string
}

func checkErrors(t *testing.T, err error, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded, want %d errors", len(want))
	}
	got := Errors(err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		g := got[i]
		if filepath.Base(g.Pos.File) != w.file || g.Pos.Line != w.line || g.Key != w.key || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("error %d = %q (file %s line %d key %q)\nwant %s:%d key %q msg containing %q",
				i, g.Error(), g.Pos.File, g.Pos.Line, g.Key, w.file, w.line, w.key, w.msg)
		}
		prefix := g.Pos.String() + ": "
		if !strings.HasPrefix(g.Error(), prefix) {
			t.Errorf("Error() = %q, want prefix %q", g.Error(), prefix)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []wantErr
	}{
		{
			name:  "misspelt agent key",
			files: map[string]string{"main.toml": "[agent]\n  log_levle = \"info\"\n" + minimal},
			want:  []wantErr{{"main.toml", 2, "agent.log_levle", `unknown key in [agent] (did you mean "log_level"?)`}},
		},
		{
			name:  "unknown agent key without suggestion",
			files: map[string]string{"main.toml": "[agent]\n\n  colour = \"blue\"\n" + minimal},
			want:  []wantErr{{"main.toml", 3, "agent.colour", "known keys are metrics_address, log_level"}},
		},
		{
			name:  "unknown plugin section",
			files: map[string]string{"main.toml": minimal + "\n[[output.postgresql]]\n  connection = \"x\"\n"},
			want:  []wantErr{{"main.toml", 7, "output", `unknown table (did you mean "outputs"?)`}},
		},
		{
			name:  "unknown top-level table",
			files: map[string]string{"main.toml": "[global_tags]\n  dc = \"x\"\n" + minimal},
			want:  []wantErr{{"main.toml", 1, "global_tags", "unknown table"}},
		},
		{
			name:  "top-level key that is not a table",
			files: map[string]string{"main.toml": "debug = true\n" + minimal},
			want:  []wantErr{{"main.toml", 1, "debug", "unknown table"}},
		},
		{
			name:  "agent that is not a table",
			files: map[string]string{"main.toml": "agent = 1\n" + minimal},
			want:  []wantErr{{"main.toml", 1, "agent", "must be a table"}},
		},
		{
			name:  "plugin that is not a table",
			files: map[string]string{"main.toml": minimal + "[outputs]\n  postgresql = 3\n"},
			want:  []wantErr{{"main.toml", 7, "outputs.postgresql", "must be a table"}},
		},
		{
			name: "wrong types",
			files: map[string]string{"main.toml": minimal + `
[[outputs.postgresql]]
  batch_size = "ten"
  workers = 2.5
  required = "yes"
  alias = 7
`},
			want: []wantErr{
				{"main.toml", 8, "outputs.postgresql.batch_size", `must be an integer from 1 to 1000000, not a string ("ten")`},
				{"main.toml", 9, "outputs.postgresql.workers", "must be an integer from 1 to 64, not a float"},
				{"main.toml", 10, "outputs.postgresql.required", "must be true or false"},
				{"main.toml", 11, "outputs.postgresql.alias", "must be a string"},
			},
		},
		{
			name: "out of range",
			files: map[string]string{"main.toml": minimal + `
[[outputs.postgresql]]
  batch_size = 0
  workers = 65
  queue_size = 1000000
  max_retries = -1
[agent]
  input_credits = 0
`},
			want: []wantErr{
				{"main.toml", 8, "outputs.postgresql.batch_size", "0 is out of range: use an integer from 1 to 1000000"},
				{"main.toml", 9, "outputs.postgresql.workers", "65 is out of range"},
				{"main.toml", 10, "outputs.postgresql.queue_size", "out of range"},
				{"main.toml", 11, "outputs.postgresql.max_retries", "-1 is out of range"},
				{"main.toml", 13, "agent.input_credits", "0 is out of range"},
			},
		},
		{
			name: "bad durations",
			files: map[string]string{"main.toml": `[agent]
  flush_interval = "10 parsecs"
  shutdown_timeout = 30
` + minimal + `  flush_interval = "-1s"
`},
			want: []wantErr{
				{"main.toml", 2, "agent.flush_interval", `invalid duration "10 parsecs"`},
				{"main.toml", 3, "agent.shutdown_timeout", "must be a duration string"},
				{"main.toml", 9, "outputs.file.flush_interval", "must be positive"},
			},
		},
		{
			name: "bad memory limits",
			files: map[string]string{"main.toml": `[agent]
  memory_limit = "64 parsecs"
  plugin_memory_limit = 1024
` + minimal + `  memory_limit = true
[[processors.dedup]]
  memory_limit = "-5MiB"
`},
			want: []wantErr{
				{"main.toml", 2, "agent.memory_limit", `invalid size "64 parsecs": use a number of bytes or a number with a unit, such as "64MiB"`},
				{"main.toml", 3, "agent.plugin_memory_limit", "size 1024 bytes is too small: use at least 8MiB"},
				{"main.toml", 9, "outputs.file.memory_limit", `must be a size such as "64MiB" or a number of bytes, not a boolean`},
				{"main.toml", 11, "processors.dedup.memory_limit", `invalid size "-5MiB"`},
			},
		},
		{
			name: "bad max_procs",
			files: map[string]string{"main.toml": `[agent]
  max_procs = 0
  plugin_max_procs = "2"
` + minimal + `  max_procs = 5000
[[processors.dedup]]
  max_procs = 1.5
`},
			want: []wantErr{
				{"main.toml", 2, "agent.max_procs", "0 is out of range: use an integer from 1 to 4096"},
				{"main.toml", 3, "agent.plugin_max_procs", "must be an integer from 1 to 4096, not a string"},
				{"main.toml", 9, "outputs.file.max_procs", "5000 is out of range"},
				{"main.toml", 11, "processors.dedup.max_procs", "must be an integer from 1 to 4096"},
			},
		},
		{
			name: "bad gogc",
			files: map[string]string{"main.toml": `[agent]
  gogc = "off"
  plugin_gogc = 0
` + minimal + `  gogc = 200000
`},
			want: []wantErr{
				{"main.toml", 2, "agent.gogc", "must be an integer from 1 to 100000, not a string"},
				{"main.toml", 3, "agent.plugin_gogc", "0 is out of range: use an integer from 1 to 100000"},
				{"main.toml", 9, "outputs.file.gogc", "200000 is out of range"},
			},
		},
		{
			name:  "bad log level and format",
			files: map[string]string{"main.toml": "[agent]\nlog_level = \"verbose\"\nlog_format = \"xml\"\nqueue_size = 1.5\n" + minimal},
			want: []wantErr{
				{"main.toml", 2, "agent.log_level", `invalid log level "verbose": use debug, info, warn or error`},
				{"main.toml", 3, "agent.log_format", `invalid log format "xml"`},
				{"main.toml", 4, "agent.queue_size", "not a float"},
			},
		},
		{
			name:  "unset variable without default",
			files: map[string]string{"main.toml": minimal + "[[outputs.postgresql]]\n  connection = \"${DATABASE_URL}\"\n"},
			want:  []wantErr{{"main.toml", 7, "outputs.postgresql.connection", "environment variable DATABASE_URL is not set"}},
		},
		{
			name: "unset variable in nested table, agent and generic keys",
			files: map[string]string{"main.toml": "[agent]\n  dead_letter_dir = \"${DL_DIR}\"\n" + minimal + `  workers = "${W}"
  [outputs.file.tls]
    ca = "${CA_FILE}"
`},
			want: []wantErr{
				{"main.toml", 2, "agent.dead_letter_dir", "DL_DIR is not set"},
				{"main.toml", 8, "outputs.file.workers", "W is not set"},
				{"main.toml", 10, "outputs.file.tls.ca", "CA_FILE is not set"},
			},
		},
		{
			name:  "malformed references",
			files: map[string]string{"main.toml": minimal + "  a = \"${\"\n  b = \"${1X}\"\n"},
			want: []wantErr{
				{"main.toml", 6, "outputs.file.a", "unterminated"},
				{"main.toml", 7, "outputs.file.b", "invalid variable reference"},
			},
		},
		{
			name:  "syntax error",
			files: map[string]string{"main.toml": "[agent]\n  log_level = \"info\n" + minimal},
			want:  []wantErr{{"main.toml", 2, "agent.log_level", "TOML syntax error: strings cannot contain newlines"}},
		},
		{
			name:  "duplicate key is a syntax error",
			files: map[string]string{"main.toml": minimal + "  path = \"again\"\n"},
			want:  []wantErr{{"main.toml", 6, "outputs.file.path", "TOML syntax error"}},
		},
		{
			name: "errors from every file, in merge order",
			files: map[string]string{
				"main.toml":   "[agent]\n  log_level = \"loud\"\n" + minimal,
				"d/10-a.toml": "[agent]\n\n  flush = \"1s\"\n",
				"d/20-b.toml": "[[outputs.file]\n",
			},
			want: []wantErr{
				{"main.toml", 2, "agent.log_level", "invalid log level"},
				{"10-a.toml", 3, "agent.flush", `did you mean "flush_interval"?`},
				{"20-b.toml", 1, "", "TOML syntax error"},
			},
		},
		{
			name: "duplicate explicit alias names both places",
			files: map[string]string{
				"main.toml":   minimal + "[[outputs.postgresql]]\n  alias = \"db\"\n",
				"d/10-a.toml": "\n[[outputs.postgresql]]\n  alias = \"db\"\n",
			},
			want: []wantErr{{"10-a.toml", 3, "outputs.postgresql.alias", `alias "db" is already used by outputs.postgresql at ` + "MAIN:7"}},
		},
		{
			name:  "no input, no output",
			files: map[string]string{"main.toml": "[agent]\n  log_level = \"info\"\n"},
			want: []wantErr{
				{"main.toml", 0, "inputs", "no input configured"},
				{"main.toml", 0, "outputs", "no output configured"},
			},
		},
		{
			name:  "invalid plugin name",
			files: map[string]string{"main.toml": minimal + "[[outputs.\"bad name\"]]\n"},
			want:  []wantErr{{"main.toml", 6, "outputs.bad name", "invalid plugin name"}},
		},
		{
			name:  "deep nesting is refused before decoding",
			files: map[string]string{"main.toml": minimal + "  v = " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n"},
			want:  []wantErr{{"main.toml", 6, "", "nest deeper than 32 levels"}},
		},
		{
			name:  "nan cannot reach a plugin",
			files: map[string]string{"main.toml": minimal + "  ratio = nan\n"},
			want:  []wantErr{{"main.toml", 6, "outputs.file.ratio", "finite number"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			dropIn := ""
			if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
				dropIn = filepath.Join(dir, "d")
			}
			for i := range tt.want {
				tt.want[i].msg = strings.ReplaceAll(tt.want[i].msg, "MAIN", filepath.Join(dir, "main.toml"))
			}
			c, err := Load(filepath.Join(dir, "main.toml"), dropIn, LoadOptions{LookupEnv: noEnv})
			if c != nil {
				t.Errorf("Config returned with errors")
			}
			checkErrors(t, err, tt.want)
		})
	}
}

func TestLoadMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "nope.toml"), "", LoadOptions{LookupEnv: noEnv})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing main file: err = %v, want ErrNotExist", err)
	}
	if errs := Errors(err); len(errs) != 1 || errs[0].Pos.File != filepath.Join(dir, "nope.toml") {
		t.Errorf("errors = %v", errs)
	}
	main := filepath.Join(writeFiles(t, map[string]string{"main.toml": minimal}), "main.toml")
	_, err = Load(main, filepath.Join(dir, "nodir"), LoadOptions{LookupEnv: noEnv})
	var ce *Error
	if !errors.As(err, &ce) || ce.Pos.File != filepath.Join(dir, "nodir") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: err = %v", err)
	}
}

// A key the agent does not know inside a plugin's table reaches the plugin,
// which rejects it; the agent maps its key path back with KeyPosition.
func TestPluginKeyPosition(t *testing.T) {
	src := `# comment [[outputs.fake]]
[[inputs.mq_service]]
  topic = "t"
  note = """
    [[outputs.notreal]]
    key = 1
  """
  list = [
    "a", # ] not the end
    'b',
  ]
  "quoted.key" = 1
  dotted.inner = 2

[[outputs.postgresql]]
  conection = "postgres://x"   # misspelt: the plugin will complain
  batch_size = 10
  inline = { a = 1, b = { c = 2 } }
  arr = [{ name = "x" }, { name = "y" }]
  [outputs.postgresql.tls]
    ca_fiel = "ca.pem"
  [[outputs.postgresql.filters]]
    name = "one"
  [[outputs.postgresql.filters]]
    name = "two"

[[outputs.postgresql]]
  alias = "second"
  conection = "again"
`
	dir := writeFiles(t, map[string]string{"main.toml": src})
	c, err := Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	in, out, out2 := &c.Inputs[0], &c.Outputs[0], &c.Outputs[1]
	tests := []struct {
		p    *Plugin
		key  string
		line int
	}{
		{in, "topic", 3},
		{in, "note", 4},
		{in, "list", 8},
		{in, "quoted.key", 12},
		{in, "dotted.inner", 13},
		{in, "dotted", 13},
		{in, "missing", 2},
		{out, "conection", 16},
		{out, "batch_size", 17},
		{out, "inline.b.c", 18},
		{out, "arr[1].name", 19},
		{out, "arr.1.name", 19},
		{out, "tls", 20},
		{out, "tls.ca_fiel", 21},
		{out, "tls.unknown", 20},
		{out, "filters[0].name", 23},
		{out, "filters[1].name", 25},
		{out, "filters.1.name", 25},
		{out, "/filters/1/name", 25},
		{out, "filters", 22},
		{out2, "conection", 29},
		{out2, "", 27},
	}
	for _, tt := range tests {
		if got := tt.p.KeyPosition(tt.key); got.Line != tt.line || got.File != filepath.Join(dir, "main.toml") {
			t.Errorf("%s KeyPosition(%q) = %v, want line %d", tt.p.ID(), tt.key, got, tt.line)
		}
	}
	e := out.KeyError("tls.ca_fiel", `unknown key (did you mean "ca_file"?)`)
	want := filepath.Join(dir, "main.toml") + `:21: outputs.postgresql.tls.ca_fiel: unknown key (did you mean "ca_file"?)`
	if e.Error() != want {
		t.Errorf("KeyError = %q, want %q", e.Error(), want)
	}
	if got := in.Settings["note"]; !strings.Contains(got.(string), "[[outputs.notreal]]") {
		t.Errorf("note = %q", got)
	}
	if len(c.Outputs) != 2 {
		t.Errorf("outputs = %v", aliases(c.Outputs))
	}
}

func TestShippedConfig(t *testing.T) {
	c, err := Load("telemetry-collector.toml", "telemetry-collector.d", LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatalf("shipped config: %v", err)
	}
	if len(c.Files) != 1 {
		t.Errorf("the .example drop-in was loaded: %v", c.Files)
	}
	if got := aliases(c.Inputs); !reflect.DeepEqual(got, []string{"mq_service/mq_service"}) {
		t.Errorf("inputs = %v", got)
	}
	if got := aliases(c.Processors); !reflect.DeepEqual(got, []string{"gpu_normalize/gpu_normalize", "dedup/dedup"}) {
		t.Errorf("processors = %v", got)
	}
	// gpu_normalize and dedup share one process.
	if g := c.ProcessorGroups(); len(g) != 1 || len(g[0]) != 2 || g[0][0].ProcessGroup != "gpu" {
		t.Errorf("processor groups = %v, want gpu_normalize and dedup in process group gpu", g)
	}
	if got := aliases(c.Outputs); !reflect.DeepEqual(got, []string{"postgresql/postgresql"}) {
		t.Errorf("outputs = %v", got)
	}
	pg := c.Outputs[0]
	if got := pg.Settings["connection"]; got != "postgres://postgres@127.0.0.1:5432/telemetry?sslmode=disable" {
		t.Errorf("connection = %v", got)
	}
	if pg.BatchSize != 10000 || pg.Workers != 3 {
		t.Errorf("postgresql = %+v", pg)
	}
	if c.Agent.MetricsAddress != "127.0.0.1:9273" || c.Agent.ShutdownTimeout != 30*time.Second {
		t.Errorf("agent = %+v", c.Agent)
	}
	in := c.Inputs[0].Settings
	for k, v := range map[string]any{"address": "localhost:50051", "topic": "gpu-telemetry", "consumer_id": "telemetry-collector",
		"batch_size": int64(100), "max_in_flight": int64(1000), "ack_timeout": "30s", "data_format": "gpu-tel-json"} {
		if in[k] != v {
			t.Errorf("inputs.mq_service %s = %v, want %v", k, in[k], v)
		}
	}

	// With DATABASE_URL set, it wins; the example drop-in, once enabled, adds
	// an output and overrides log_level.
	dir := t.TempDir()
	ex, err := os.ReadFile("telemetry-collector.d/10-host-example.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10-host.toml"), ex, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Load("telemetry-collector.toml", dir, LoadOptions{LookupEnv: envOf(map[string]string{"DATABASE_URL": "postgres://u:pw@db/x"})})
	if err != nil {
		t.Fatalf("with example drop-in: %v", err)
	}
	if got := aliases(c.Outputs); !reflect.DeepEqual(got, []string{"postgresql/postgresql", "file/local-copy"}) {
		t.Errorf("outputs = %v", got)
	}
	if c.Agent.LogLevel != "debug" || c.Outputs[0].Settings["connection"] != "postgres://u:pw@db/x" || c.Outputs[1].Required {
		t.Errorf("merged = %+v / %+v", c.Agent, c.Outputs)
	}
}

// TestMaxProcs: plugin_max_procs is the default of every plugin's
// max_procs (also from a drop-in, also through ${VAR}), a plugin's own
// wins, none by default; Describe shows them.
func TestMaxProcs(t *testing.T) {
	tests := []struct {
		name                string
		files               map[string]string
		env                 map[string]string
		agent, agentPlugins int
		in, out             int
		processors          []int
	}{
		{name: "none by default", files: map[string]string{"main.toml": minimal}},
		{
			name:  "agent and one plugin",
			files: map[string]string{"main.toml": "[agent]\nmax_procs = 2\n" + minimal + "max_procs = 3\n"},
			agent: 2, out: 3,
		},
		{
			name: "plugin default, own value wins, drop-in sets the default",
			files: map[string]string{
				"main.toml":   "[[processors.dedup]]\nmax_procs = 4\n[[processors.gpu_normalize]]\n" + minimal,
				"d/10-a.toml": "[agent]\nplugin_max_procs = \"${PROCS}\"\n",
			},
			env:          map[string]string{"PROCS": "1"},
			agentPlugins: 1, in: 1, out: 1, processors: []int{4, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			dropIn := ""
			if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
				dropIn = filepath.Join(dir, "d")
			}
			c, err := Load(filepath.Join(dir, "main.toml"), dropIn, LoadOptions{LookupEnv: func(k string) (string, bool) {
				v, ok := tt.env[k]
				return v, ok
			}})
			if err != nil {
				t.Fatal(err)
			}
			if c.Agent.MaxProcs != tt.agent || c.Agent.PluginMaxProcs != tt.agentPlugins || c.Inputs[0].MaxProcs != tt.in || c.Outputs[0].MaxProcs != tt.out {
				t.Errorf("agent %d/%d, input %d, output %d; want %d/%d, %d, %d", c.Agent.MaxProcs, c.Agent.PluginMaxProcs,
					c.Inputs[0].MaxProcs, c.Outputs[0].MaxProcs, tt.agent, tt.agentPlugins, tt.in, tt.out)
			}
			for i, want := range tt.processors {
				if got := c.Processors[i].MaxProcs; got != want {
					t.Errorf("processor %d: %d, want %d", i, got, want)
				}
			}
			d := c.Describe()
			if !strings.Contains(d, fmt.Sprintf("max_procs         = %-28d", tt.agent)) {
				t.Errorf("Describe does not show the agent's max_procs %d:\n%s", tt.agent, d)
			}
			if tt.out > 0 && !strings.Contains(d, fmt.Sprintf("  max_procs=%d", tt.out)) {
				t.Errorf("Describe does not show the output's max_procs %d:\n%s", tt.out, d)
			}
		})
	}
}

// TestGOGC: plugin_gogc is the default of every plugin's gogc, a
// plugin's own wins, none by default; Describe shows them.
func TestGOGC(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.toml": "[agent]\ngogc = 150\nplugin_gogc = 300\n" +
		"[[processors.dedup]]\ngogc = 50\n[[processors.gpu_normalize]]\n" + minimal})
	c, err := Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.GOGC != 150 || c.Agent.PluginGOGC != 300 || c.Inputs[0].GOGC != 300 || c.Outputs[0].GOGC != 300 ||
		c.Processors[0].GOGC != 50 || c.Processors[1].GOGC != 300 {
		t.Errorf("agent %d/%d, input %d, output %d, processors %d %d; want 150/300, 300, 300, 50 300", c.Agent.GOGC,
			c.Agent.PluginGOGC, c.Inputs[0].GOGC, c.Outputs[0].GOGC, c.Processors[0].GOGC, c.Processors[1].GOGC)
	}
	if d := c.Describe(); !strings.Contains(d, "gogc              = 150") || !strings.Contains(d, "  gogc=50") {
		t.Errorf("Describe does not show gogc:\n%s", d)
	}
	dir = writeFiles(t, map[string]string{"main.toml": minimal})
	if c, err = Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: noEnv}); err != nil {
		t.Fatal(err)
	}
	if c.Agent.GOGC != 0 || c.Outputs[0].GOGC != 0 {
		t.Errorf("default gogc: agent %d, output %d; want 0 (Go's default)", c.Agent.GOGC, c.Outputs[0].GOGC)
	}
}

// TestMemoryLimits: sizes in every accepted spelling, the agent's
// plugin_memory_limit as the default of every plugin (also when a drop-in
// sets it), a plugin's own memory_limit winning, and none by default.
func TestMemoryLimits(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name       string
		files      map[string]string
		env        map[string]string
		agent      int64
		in, out    int64 // the input's and the output's limits
		processors []int64
	}{
		{name: "none by default", files: map[string]string{"main.toml": minimal}},
		{
			name:  "units",
			files: map[string]string{"main.toml": "[agent]\nmemory_limit = \"1.5GiB\"\n" + minimal + "memory_limit = 33554432\n[[inputs.mq_service]]\ntopic = \"u\"\nmemory_limit = \"512k\"\n"},
			agent: 1536 * mib, in: 0, out: 32 * mib,
		},
		{
			name: "plugin default, own limit wins, drop-in sets the default",
			files: map[string]string{
				"main.toml":   "[[processors.dedup]]\nmemory_limit = \"48MiB\"\n[[processors.gpu_normalize]]\n" + minimal,
				"d/10-a.toml": "[agent]\nplugin_memory_limit = \"${LIMIT}\"\n",
			},
			env: map[string]string{"LIMIT": "40 MB"},
			in:  40 * mib, out: 40 * mib, processors: []int64{48 * mib, 40 * mib},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			dropIn := ""
			if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
				dropIn = filepath.Join(dir, "d")
			}
			c, err := Load(filepath.Join(dir, "main.toml"), dropIn, LoadOptions{LookupEnv: func(k string) (string, bool) {
				v, ok := tt.env[k]
				return v, ok
			}})
			if tt.name == "units" {
				// 512k is below the minimum.
				if err == nil || !strings.Contains(err.Error(), "inputs.mq_service.memory_limit: size 524288 bytes is too small") {
					t.Fatalf("Load: %v, want the 512k input refused", err)
				}
				tt.files["main.toml"] = strings.Replace(tt.files["main.toml"], `"512k"`, `"9MiB"`, 1)
				dir = writeFiles(t, tt.files)
				if c, err = Load(filepath.Join(dir, "main.toml"), "", LoadOptions{LookupEnv: noEnv}); err != nil {
					t.Fatal(err)
				}
				if got := c.Inputs[1].MemoryLimit; got != 9*mib {
					t.Errorf("second input: %d", got)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if c.Agent.MemoryLimit != tt.agent || c.Inputs[0].MemoryLimit != tt.in || c.Outputs[0].MemoryLimit != tt.out {
				t.Errorf("agent %d, input %d, output %d; want %d, %d, %d",
					c.Agent.MemoryLimit, c.Inputs[0].MemoryLimit, c.Outputs[0].MemoryLimit, tt.agent, tt.in, tt.out)
			}
			for i, want := range tt.processors {
				if got := c.Processors[i].MemoryLimit; got != want {
					t.Errorf("processor %d: %d, want %d", i, got, want)
				}
			}
			if d := c.Describe(); tt.agent > 0 && !strings.Contains(d, `memory_limit      = "1536MiB"`) {
				t.Errorf("Describe does not show the agent's memory_limit:\n%s", d)
			}
		})
	}
}
