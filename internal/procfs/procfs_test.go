package procfs

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	ppid, st := Stat(os.Getpid())
	if ppid != os.Getppid() || st == 0 || st == 'Z' {
		t.Errorf("Stat(self) = %d, %q; want parent %d", ppid, st, os.Getppid())
	}
	if !Alive(os.Getpid()) {
		t.Error("Alive(self) = false")
	}
	r, err := RSS(os.Getpid())
	if err != nil || r < 1<<20 {
		t.Errorf("RSS(self) = %d, %v", r, err)
	}
	// A page shared with another process counts in full in RSS, in part
	// in PSS: PSS is positive and at most RSS (plus pages touched since).
	if p, err := PSS(os.Getpid()); err != nil || p <= 0 || p > r+16<<20 {
		t.Errorf("PSS(self) = %d, %v (RSS %d)", p, err, r)
	}
}

func TestGone(t *testing.T) {
	const none = 1 << 30 // above pid_max
	if ppid, st := Stat(none); ppid != 0 || st != 0 {
		t.Errorf("Stat(gone) = %d, %q", ppid, st)
	}
	if Alive(none) {
		t.Error("Alive(gone) = true")
	}
	if _, err := RSS(none); err == nil {
		t.Error("RSS(gone) succeeded")
	}
	if _, err := PSS(none); err == nil {
		t.Error("PSS(gone) succeeded")
	}
}

func TestChildrenAndZombies(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !slices.Contains(Children(os.Getpid()), pid) {
		t.Fatalf("Children(self) lacks %d", pid)
	}
	_ = cmd.Process.Kill()
	// Not yet reaped: a zombie, neither alive nor listed.
	for i := 0; i < 200 && Alive(pid); i++ {
		exec.Command("sleep", "0.01").Run()
	}
	if Alive(pid) {
		t.Fatal("killed child still alive")
	}
	if slices.Contains(Children(os.Getpid()), pid) {
		t.Error("Children lists a zombie")
	}
	_ = cmd.Wait()
}

// TestSelfCPU: the process's CPU time grows while it computes.
func TestSelfCPU(t *testing.T) {
	c0 := SelfCPU()
	if c0 <= 0 {
		t.Fatalf("SelfCPU = %d, want > 0", c0)
	}
	x := uint64(1)
	for time.Duration(SelfCPU()-c0) < 20*time.Millisecond {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	if x == 0 {
		t.Log(x) // keep the loop
	}
}
