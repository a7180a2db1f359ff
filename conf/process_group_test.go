package conf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// groupIDs renders ProcessorGroups as [[id id] [id]].
func groupIDs(c *Config) [][]string {
	var out [][]string
	for _, g := range c.ProcessorGroups() {
		ids := make([]string, len(g))
		for i, p := range g {
			ids[i] = p.ID()
		}
		out = append(out, ids)
	}
	return out
}

// loadDir loads dir/main.toml with dir/d as the drop-in directory when it
// exists.
func loadDir(t *testing.T, dir string, env map[string]string) (*Config, error) {
	t.Helper()
	dropIn := ""
	if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
		dropIn = filepath.Join(dir, "d")
	}
	return Load(filepath.Join(dir, "main.toml"), dropIn, LoadOptions{LookupEnv: envOf(env)})
}

// TestProcessGroups: process_group is lifted out of Settings (also from
// ${VAR}), groups follow the processor order across drop-ins, defaults from
// [agent] make the members agree, and ProcessorGroups and Describe show the
// processes.
func TestProcessGroups(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		env      map[string]string
		groups   []string // ProcessGroup of each processor
		want     [][]string
		describe []string // parts of Describe's output
		check    func(t *testing.T, c *Config)
	}{
		{
			name: "two members and a processor of its own",
			files: map[string]string{"main.toml": `
[[processors.gpu_normalize]]
  process_group = "gpu"
[[processors.dedup]]
  window = "10m"
  process_group = "gpu"
[[processors.cluster_label]]
` + minimal},
			groups: []string{"gpu", "gpu", ""},
			want:   [][]string{{"processors.gpu_normalize", "processors.dedup"}, {"processors.cluster_label"}},
			describe: []string{
				"inputs.mq_service -> [gpu: processors.gpu_normalize -> processors.dedup] -> processors.cluster_label -> outputs.file",
				`1. processors.gpu_normalize  alias="gpu_normalize"  (MAIN:2)  built-in  process_group="gpu"`,
				`2. processors.dedup  alias="dedup"  (MAIN:4)  built-in  process_group="gpu"`,
			},
			check: func(t *testing.T, c *Config) {
				for i := range c.Processors {
					if _, ok := c.Processors[i].Settings["process_group"]; ok {
						t.Errorf("processor %d: process_group left in Settings", i)
					}
				}
				if !reflect.DeepEqual(c.Processors[1].Settings, map[string]any{"window": "10m"}) {
					t.Errorf("dedup settings = %v", c.Processors[1].Settings)
				}
				if got := c.Processors[1].KeyPosition("process_group").Line; got != 6 {
					t.Errorf("process_group line = %d, want 6", got)
				}
				if g := c.ProcessorGroups(); g[0][1] != &c.Processors[1] {
					t.Error("ProcessorGroups does not point into Processors")
				}
			},
		},
		{
			name: "from the environment, with a default",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "${GROUP}"
[[processors.b]]
  process_group = "${OTHER:-gpu-1}"
` + minimal},
			env:    map[string]string{"GROUP": "gpu-1"},
			groups: []string{"gpu-1", "gpu-1"},
			want:   [][]string{{"processors.a", "processors.b"}},
		},
		{
			name:     "a group of one is its own process",
			files:    map[string]string{"main.toml": "[[processors.a]]\nprocess_group = \"solo\"\n[[processors.b]]\n" + minimal},
			groups:   []string{"solo", ""},
			want:     [][]string{{"processors.a"}, {"processors.b"}},
			describe: []string{"inputs.mq_service -> processors.a -> processors.b -> outputs.file", `process_group="solo"`},
		},
		{
			name: "adjacent groups and repeated plugins",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "one"
[[processors.a]]
  process_group = "one"
[[processors.b]]
  process_group = "two"
[[processors.c]]
  process_group = "two"
[[processors.d]]
` + minimal},
			groups: []string{"one", "one", "two", "two", ""},
			want:   [][]string{{"processors.a", "processors.a[a-2]"}, {"processors.b", "processors.c"}, {"processors.d"}},
			describe: []string{
				"inputs.mq_service -> [one: processors.a -> processors.a[a-2]] -> [two: processors.b -> processors.c] -> processors.d -> outputs.file",
			},
		},
		{
			name: "agent defaults apply to every member: equal",
			files: map[string]string{"main.toml": `
[agent]
  plugin_memory_limit = "64MiB"
  plugin_max_procs = 2
  plugin_gogc = 200
[[processors.a]]
  process_group = "g"
[[processors.b]]
  process_group = "g"
` + minimal},
			groups: []string{"g", "g"},
			want:   [][]string{{"processors.a", "processors.b"}},
			check: func(t *testing.T, c *Config) {
				for _, p := range c.Processors {
					if p.MemoryLimit != 64<<20 || p.MaxProcs != 2 || p.GOGC != 200 {
						t.Errorf("%s: %d %d %d", p.ID(), p.MemoryLimit, p.MaxProcs, p.GOGC)
					}
				}
			},
		},
		{
			name: "a member's own value equal to the agent default",
			files: map[string]string{
				"main.toml": "[[processors.a]]\nprocess_group = \"g\"\nmax_procs = 2\nmemory_limit = 67108864\n[[processors.b]]\nprocess_group = \"g\"\n" + minimal,
				"d/10.toml": "[agent]\nplugin_max_procs = 2\nplugin_memory_limit = \"64MiB\"\n",
			},
			groups: []string{"g", "g"},
			want:   [][]string{{"processors.a", "processors.b"}},
		},
		{
			name: "the same command on every member",
			files: map[string]string{"main.toml": `
[[processors.a]]
  command = "/opt/bin/proc"
  process_group = "ext"
  gogc = 400
[[processors.b]]
  command = "${BIN:-/opt/bin/proc}"
  process_group = "ext"
  gogc = 400
` + minimal},
			groups: []string{"ext", "ext"},
			want:   [][]string{{"processors.a", "processors.b"}},
		},
		{
			name: "a drop-in adds the next member",
			files: map[string]string{
				"main.toml":   "[[processors.first]]\n[[processors.gpu_normalize]]\nprocess_group = \"gpu\"\n" + minimal,
				"d/10-a.toml": "[[processors.dedup]]\nprocess_group = \"gpu\"\n",
				"d/20-b.toml": "[[processors.last]]\n",
			},
			groups: []string{"", "gpu", "gpu", ""},
			want:   [][]string{{"processors.first"}, {"processors.gpu_normalize", "processors.dedup"}, {"processors.last"}},
		},
		{
			name:  "no processors",
			files: map[string]string{"main.toml": minimal},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			c, err := loadDir(t, dir, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			var groups []string
			for _, p := range c.Processors {
				groups = append(groups, p.ProcessGroup)
			}
			if !reflect.DeepEqual(groups, tt.groups) {
				t.Errorf("ProcessGroup = %q, want %q", groups, tt.groups)
			}
			if got := groupIDs(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ProcessorGroups = %v, want %v", got, tt.want)
			}
			d := c.Describe()
			for _, want := range tt.describe {
				want = strings.ReplaceAll(want, "MAIN", filepath.Join(dir, "main.toml"))
				if !strings.Contains(d, want) {
					t.Errorf("Describe lacks %q:\n%s", want, d)
				}
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestProcessGroupErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		env   map[string]string
		want  []wantErr
	}{
		{
			name: "on an input or an output",
			files: map[string]string{"main.toml": `
[[inputs.mq_service]]
  process_group = "gpu"
[[outputs.file]]
  path = "stdout"
  process_group = "gpu"
`},
			want: []wantErr{
				{"main.toml", 3, "inputs.mq_service.process_group", "process groups are for processors: remove process_group (every input runs in its own process)"},
				{"main.toml", 6, "outputs.file.process_group", "process groups are for processors: remove process_group (every output runs in its own process)"},
			},
		},
		{
			name: "bad values",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "g p u"
[[processors.b]]
  process_group = ""
[[processors.c]]
  process_group = 7
[[processors.d]]
  process_group = "${NOPE}"
[[processors.e]]
  process_group = "${BAD}"
` + minimal},
			env: map[string]string{"BAD": "gpu/1"},
			want: []wantErr{
				{"main.toml", 3, "processors.a.process_group", `invalid process group "g p u": use letters, digits, _ and -`},
				{"main.toml", 5, "processors.b.process_group", "must not be empty"},
				{"main.toml", 7, "processors.c.process_group", "must be a string, not an integer"},
				{"main.toml", 9, "processors.d.process_group", "environment variable NOPE is not set"},
				{"main.toml", 11, "processors.e.process_group", `invalid process group "gpu/1"`},
			},
		},
		{
			name: "split by a processor without a group",
			files: map[string]string{"main.toml": `
[[processors.gpu_normalize]]
  process_group = "gpu"
[[processors.filter]]
[[processors.other]]
[[processors.dedup]]
  process_group = "gpu"
` + minimal},
			want: []wantErr{{"main.toml", 7, "processors.dedup.process_group",
				`process group "gpu" is split: processors.filter (MAIN:4, in no process group) runs between processors.gpu_normalize (MAIN:3) and this processor; ` +
					"the members of a group run one after the other in one process, so they must be consecutive: move this table next to the group's other members, or give it another process_group"}},
		},
		{
			name: "split by another group, each member reported",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "x"
[[processors.b]]
  alias = "bee"
  process_group = "y"
[[processors.c]]
  process_group = "x"
[[processors.d]]
  process_group = "y"
` + minimal},
			want: []wantErr{
				{"main.toml", 8, "processors.c.process_group", `process group "x" is split: processors.b[bee] (MAIN:4, in process group "y") runs between processors.a (MAIN:3) and this processor`},
				{"main.toml", 10, "processors.d.process_group", `process group "y" is split: processors.c (MAIN:7, in process group "x") runs between processors.b[bee] (MAIN:6) and this processor`},
			},
		},
		{
			name: "split across drop-ins: main file processors run first",
			files: map[string]string{
				"main.toml":   "[[processors.gpu_normalize]]\nprocess_group = \"gpu\"\n" + minimal + "[[processors.cluster_label]]\n",
				"d/10-a.toml": "\n[[processors.dedup]]\nprocess_group = \"gpu\"\n",
			},
			want: []wantErr{{"10-a.toml", 3, "processors.dedup.process_group",
				`process group "gpu" is split: processors.cluster_label (MAIN:8, in no process group) runs between processors.gpu_normalize (MAIN:2)`}},
		},
		{
			name: "a processor whose group is refused does not split",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "gpu"
[[processors.b]]
  process_group = "g p u"
[[processors.c]]
  process_group = "gpu"
` + minimal},
			want: []wantErr{{"main.toml", 5, "processors.b.process_group", "invalid process group"}},
		},
		{
			name: "different commands",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "g"
[[processors.b]]
  process_group = "g"
  command = "/opt/b"
[[processors.c]]
  command = "/opt/c"
  process_group = "g"
` + minimal},
			want: []wantErr{
				{"main.toml", 5, "processors.b.process_group",
					`command "/opt/b" differs from built-in of processors.a (MAIN:3), the first member of process group "g": ` +
						"one binary runs every member of a group: give every member the same command (none for the built-in plugins), or put them in different groups"},
				{"main.toml", 9, "processors.c.process_group", `command "/opt/c" differs from built-in of processors.a (MAIN:3)`},
			},
		},
		{
			name: "one member with its own memory_limit, the agent's default on the others",
			files: map[string]string{"main.toml": `
[agent]
  plugin_memory_limit = "64MiB"
[[processors.a]]
  process_group = "g"
[[processors.b]]
  memory_limit = "128MiB"
  process_group = "g"
` + minimal},
			want: []wantErr{{"main.toml", 8, "processors.b.process_group",
				`memory_limit "128MiB" differs from "64MiB" of processors.a (MAIN:5), the first member of process group "g": ` +
					"the members share one process: give every member the same memory_limit, or write memory_limit on none of them so that [agent] plugin_memory_limit applies to all"}},
		},
		{
			name: "the first member sets max_procs and gogc, no agent default",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "g"
  max_procs = 2
  gogc = 300
[[processors.b]]
  process_group = "g"
[[processors.c]]
  process_group = "g"
  max_procs = 2
  gogc = 300
` + minimal},
			want: []wantErr{
				{"main.toml", 7, "processors.b.process_group", `max_procs unset (Go's default) differs from 2 of processors.a (MAIN:3), the first member of process group "g": ` +
					"the members share one process: give every member the same max_procs, or write max_procs on none of them so that [agent] plugin_max_procs applies to all"},
				{"main.toml", 7, "processors.b.process_group", `gogc unset (Go's default) differs from 300 of processors.a (MAIN:3)`},
			},
		},
		{
			name: "a member in a drop-in differs from the agent default of a later file",
			files: map[string]string{
				"main.toml":   "[[processors.a]]\nprocess_group = \"g\"\ngogc = 100\n" + minimal,
				"d/10-a.toml": "[[processors.b]]\nprocess_group = \"g\"\n",
				"d/20-b.toml": "[agent]\nplugin_gogc = 50\n",
			},
			want: []wantErr{{"10-a.toml", 2, "processors.b.process_group", `gogc 50 differs from 100 of processors.a (MAIN:2)`}},
		},
		{
			name: "a refused value is reported once",
			files: map[string]string{"main.toml": `
[[processors.a]]
  process_group = "g"
  memory_limit = "lots"
  max_procs = 0
[[processors.b]]
  process_group = "g"
  memory_limit = "64MiB"
  max_procs = 1
  command = ""
` + minimal},
			want: []wantErr{
				{"main.toml", 4, "processors.a.memory_limit", `invalid size "lots"`},
				{"main.toml", 5, "processors.a.max_procs", "0 is out of range"},
				{"main.toml", 10, "processors.b.command", "must not be empty"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			for i := range tt.want {
				tt.want[i].msg = strings.ReplaceAll(tt.want[i].msg, "MAIN", filepath.Join(dir, "main.toml"))
			}
			c, err := loadDir(t, dir, tt.env)
			if c != nil {
				t.Errorf("Config returned with errors")
			}
			checkErrors(t, err, tt.want)
		})
	}
}

// TestProcessorGroupsByHand: a Config the agent builds itself is grouped
// by runs of the same non-empty group, without Load's checks.
func TestProcessorGroupsByHand(t *testing.T) {
	proc := func(name, group string) Plugin {
		return Plugin{Kind: KindProcessor, Name: name, ProcessGroup: group}
	}
	tests := []struct {
		name string
		ps   []Plugin
		want [][]string
	}{
		{name: "none"},
		{name: "no groups", ps: []Plugin{proc("a", ""), proc("b", "")}, want: [][]string{{"processors.a"}, {"processors.b"}}},
		{
			name: "runs",
			ps:   []Plugin{proc("a", "x"), proc("b", "x"), proc("c", "x"), proc("d", ""), proc("e", "y")},
			want: [][]string{{"processors.a", "processors.b", "processors.c"}, {"processors.d"}, {"processors.e"}},
		},
		{
			name: "members apart form separate groups",
			ps:   []Plugin{proc("a", "x"), proc("b", "y"), proc("c", "x"), proc("d", "x")},
			want: [][]string{{"processors.a"}, {"processors.b"}, {"processors.c", "processors.d"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Processors: tt.ps}
			if got := groupIDs(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ProcessorGroups = %v, want %v", got, tt.want)
			}
			// Appending to one group must not overwrite the next.
			gs := c.ProcessorGroups()
			if len(gs) > 1 {
				_ = append(gs[0], &Plugin{Name: "extra"})
				if gs[1][0] != &c.Processors[len(gs[0])] {
					t.Error("groups share backing arrays")
				}
			}
		})
	}
}
