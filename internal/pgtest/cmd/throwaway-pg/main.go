// Command throwaway-pg runs a local PostgreSQL cluster for development:
//
//	go run ./internal/pgtest/cmd/throwaway-pg --dir .run/pg --port 55432
//
// It initialises the cluster in DIR (or reuses it when already initialised),
// creates the database named by --db if missing, prints
// DATABASE_URL=postgres://... on stdout, and stays in the foreground until
// SIGINT or SIGTERM, then shuts the cluster down (fast mode).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/telemetry-collector/telemetry-collector/internal/pgtest"
)

func main() {
	dir := flag.String("dir", ".run/pg", "cluster directory (created, or reused when initialised)")
	port := flag.Int("port", 55432, "TCP port on 127.0.0.1 (0: a free one)")
	db := flag.String("db", "telemetry", "database to create if missing")
	fsync := flag.Bool("fsync", true, "keep fsync on (off is faster and unsafe on a machine crash)")
	binDir := flag.String("bindir", "", "directory of initdb and postgres (default $PGTEST_BINDIR or "+pgtest.DefaultBinDir+")")
	flag.Parse()
	if err := run(*dir, *port, *db, !*fsync, *binDir); err != nil {
		fmt.Fprintln(os.Stderr, "throwaway-pg:", err)
		os.Exit(1)
	}
}

func run(dir string, port int, db string, fsyncOff bool, binDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := pgtest.Start(ctx, pgtest.Options{Dir: dir, Port: port, FsyncOff: fsyncOff, BinDir: binDir})
	if err != nil {
		return err
	}
	defer srv.Stop()
	if db != "" && db != "postgres" {
		if err := srv.CreateDB(ctx, db); err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
	} else {
		db = "postgres"
	}
	fmt.Printf("DATABASE_URL=%s\n", srv.URL(db))
	fmt.Fprintf(os.Stderr, "throwaway-pg: PostgreSQL running (data %s, log %s); Ctrl-C stops it\n", srv.DataDir(), srv.LogFile())
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "throwaway-pg: stopping")
	return srv.Stop()
}
