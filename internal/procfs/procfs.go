// Package procfs reads the few facts about Linux processes that the
// project's test harnesses and throwaway servers need from /proc: parent
// pid and state, live children, resident memory.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Stat returns a process's parent pid and state letter from /proc/PID/stat
// (0, 0 when it is gone).
func Stat(pid int) (ppid int, state byte) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0][0]
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	_, st := Stat(pid)
	return st != 0 && st != 'Z'
}

// Children lists the live (non-zombie) processes whose parent is pid.
func Children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state := Stat(c); ppid == pid && state != 'Z' && state != 0 {
			out = append(out, c)
		}
	}
	return out
}

// RSS reads a process's resident set size (VmRSS in /proc/PID/status) in
// bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("procfs: rss of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("procfs: rss of %d: unexpected line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procfs: rss of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("procfs: rss of %d: no VmRSS (a zombie or kernel thread?)", pid)
}

// PSS reads a process's proportional set size (Pss in
// /proc/PID/smaps_rollup) in bytes: its resident memory with every page
// it shares divided among the processes sharing it, so that the PSS of a
// group of processes adds up to the memory they use together (their RSS
// counts a shared page, such as the text of a binary several of them run,
// once per process). Reading it walks the process's page tables: slower
// than RSS.
func PSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, fmt.Errorf("procfs: pss of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("procfs: pss of %d: unexpected line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procfs: pss of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("procfs: pss of %d: no Pss line", pid)
}

// SelfCPU is the user and system CPU time this process used so far, in
// nanoseconds (getrusage; 0 if it fails). Benchmarks report CPU per
// sample with it: on a shared machine it varies less than wall time when
// other processes compete for the cores.
func SelfCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
