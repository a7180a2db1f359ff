package plugins_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Built once per test binary by TestMain.
var (
	testPluginBin string // cmd/testplugins
	orphanBin     string // testdata/orphan
	oldProtoBin   string // testdata/oldproto
	noGroupsBin   string // testdata/nogroups
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugins-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPluginBin = filepath.Join(dir, "testplugins")
	orphanBin = filepath.Join(dir, "orphan")
	oldProtoBin = filepath.Join(dir, "oldproto")
	noGroupsBin = filepath.Join(dir, "nogroups")
	for _, b := range [][2]string{{testPluginBin, "../cmd/testplugins"}, {orphanBin, "./testdata/orphan"}, {oldProtoBin, "./testdata/oldproto"},
		{noGroupsBin, "./testdata/nogroups"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b[1], err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
