package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad loads arbitrary bytes as the main file: Load must never panic,
// must return either a Config or errors (never both, never neither), and
// every error must carry the file it came from.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		minimal,
		"[agent]\nlog_level = \"debug\"\n" + minimal,
		"[[inputs.x]]\na = \"\"\"\n[[b]]\n\"\"\"\n[[outputs.y]]\nc = [1, [2, {d = 3}]]\n",
		"[inputs.x]\n[outputs.y]\nv = \"${A:-b}$${c}\"\n",
		"[[outputs.x]]\nbatch_size = \"ten\"\n[[inputs.x]]\n",
		"a.b.\"c.d\" = 1\n[t]\n'k' = 2\n",
		"[[a.b]]\n[[a.b.c]]\n[a.b.c.d]\n[[a.b]]\n",
		"x = [[[[[[[[]]]]]]]]\n",
		"[agent\n",
		"[[processors.a]]\nprocess_group = \"g\"\n[[processors.b]]\nprocess_group = \"g\"\nmemory_limit = \"9MiB\"\n[[processors.c]]\n[[processors.d]]\nprocess_group = \"${A}\"\n" + minimal,
		"[[inputs.x]]\nprocess_group = 1\n[[processors.p]]\nprocess_group = \"g\"\n[[processors.q]]\n[[processors.p]]\nprocess_group = \"g\"\n[[outputs.y]]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "fuzz.toml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, "", LoadOptions{LookupEnv: envOf(map[string]string{"A": "1"})})
		if (c == nil) == (err == nil) {
			t.Fatalf("Load returned config %v and error %v", c != nil, err)
		}
		if err != nil {
			for _, e := range Errors(err) {
				if e.Pos.File != path || !strings.HasPrefix(e.Error(), path) {
					t.Fatalf("error without its file: %q", e.Error())
				}
			}
			return
		}
		_ = c.Describe()
		// The groups are the processors in order, each group's members
		// of one non-empty process group and the only ones of it.
		var flat []*Plugin
		seen := map[string]bool{}
		for _, g := range c.ProcessorGroups() {
			if len(g) == 0 {
				t.Fatal("empty processor group")
			}
			name := g[0].ProcessGroup
			if name != "" && seen[name] {
				t.Fatalf("process group %q not consecutive", name)
			}
			seen[name] = true
			for _, p := range g {
				if p.ProcessGroup != name || len(g) > 1 && (name == "" || p.Command != g[0].Command ||
					p.MemoryLimit != g[0].MemoryLimit || p.MaxProcs != g[0].MaxProcs || p.GOGC != g[0].GOGC) {
					t.Fatalf("group %q: member %s differs", name, p.ID())
				}
			}
			flat = append(flat, g...)
		}
		if len(flat) != len(c.Processors) {
			t.Fatalf("%d processors in groups, want %d", len(flat), len(c.Processors))
		}
		for i := range flat {
			if flat[i] != &c.Processors[i] {
				t.Fatalf("group member %d is not processor %d", i, i)
			}
		}
		for i := range c.Outputs {
			if _, err := c.Outputs[i].SettingsJSON(); err != nil {
				t.Fatalf("SettingsJSON: %v", err)
			}
		}
		_ = buildIndex(data)
	})
}
