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
		for i := range c.Outputs {
			if _, err := c.Outputs[i].SettingsJSON(); err != nil {
				t.Fatalf("SettingsJSON: %v", err)
			}
		}
		_ = buildIndex(data)
	})
}
