package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := New(t)
	if err := s.CreateDB(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) error {
		c, err := pgx.Connect(ctx, s.URL("app"))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"restart fast", func() error { return s.Restart(ctx, "fast") }},
		{"restart immediate", func() error { return s.Restart(ctx, "immediate") }},
		{"kill and start again", func() error {
			if err := s.Kill(); err != nil {
				return err
			}
			if err := exec("SELECT 1"); err == nil {
				t.Error("query succeeded on a killed server")
			}
			return s.StartAgain(ctx)
		}},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if err := exec("INSERT INTO t VALUES (2)"); err != nil {
			t.Fatalf("after %s: %v", step.name, err)
		}
	}
	if err := s.Restart(ctx, "bogus"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestMissingBinaries(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
	if err == nil {
		t.Fatal("Start succeeded without binaries")
	}
	t.Log(err)
}

func TestReuseDir(t *testing.T) {
	ctx := context.Background()
	// t.TempDir's parent is private to root; the postgres user needs a path it can reach.
	dir, err := os.MkdirTemp("", "pgtest-reuse-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := Start(ctx, Options{Dir: dir, FsyncOff: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDB(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s2, err := Start(ctx, Options{Dir: dir, FsyncOff: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	if err := s2.CreateDB(ctx, "keep"); err == nil {
		t.Error("database from the first run is gone: directory was not reused")
	}
}

// After Kill, connections opened before it must be dead too (a crash, not a
// postmaster-only death that leaves backends serving).
func TestKillTakesBackends(t *testing.T) {
	ctx := context.Background()
	s := New(t)
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("an old connection still works after Kill")
	}
	if err := s.StartAgain(ctx); err != nil {
		t.Fatal(err)
	}
}
