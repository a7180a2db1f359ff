package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// StreamOptions are telemetry-streamer flags.
type StreamOptions struct {
	Address string // mq-service HOST:PORT (required)
	Topic   string // default "gpu-telemetry"
	Format  string // --format (required)
	From    string // --from (dcgm-csv with Format gpu-tel-json)
	// Batch is --batch (records per message). 0 keeps the streamer's
	// default (100); WholeFile sends --batch 0 (a whole file per message).
	Batch     int
	WholeFile bool
	Rate      float64  // --rate (messages/s; 0: as fast as possible)
	Loop      bool     // --loop (runs until stopped: use StartStreamer)
	TimeShift bool     // --time-shift
	Args      []string // more flags
}

func (o StreamOptions) args(files []string) []string {
	topic := o.Topic
	if topic == "" {
		topic = "gpu-telemetry"
	}
	args := []string{"--address", o.Address, "--topic", topic, "--format", o.Format}
	if o.From != "" {
		args = append(args, "--from", o.From)
	}
	switch {
	case o.WholeFile:
		args = append(args, "--batch", "0")
	case o.Batch > 0:
		args = append(args, "--batch", strconv.Itoa(o.Batch))
	}
	if o.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(o.Rate, 'g', -1, 64))
	}
	if o.Loop {
		args = append(args, "--loop")
	}
	if o.TimeShift {
		args = append(args, "--time-shift")
	}
	args = append(args, o.Args...)
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err == nil {
			f = abs
		}
		args = append(args, f)
	}
	return args
}

// StartStreamer starts telemetry-streamer on files without waiting for it
// (for --loop or concurrent faults). It is killed at the test's end if still
// running.
func (e *Env) StartStreamer(o StreamOptions, files ...string) *Proc {
	e.T.Helper()
	if o.Address == "" || o.Format == "" {
		e.T.Fatal("e2e: StreamOptions needs Address and Format")
	}
	p := e.NewProc(e.nextName("streamer"), e.Bins.Streamer, o.args(files)...)
	e.cleanupProc(p, 5*time.Second)
	if err := p.Start(); err != nil {
		e.T.Fatal(err)
	}
	return p
}

// Stream runs telemetry-streamer on files to completion (up to 2 minutes)
// and returns its summary line ("published N messages, ..."); it fails the
// test when the streamer exits non-zero.
func (e *Env) Stream(o StreamOptions, files ...string) string {
	e.T.Helper()
	p := e.StartStreamer(o, files...)
	code, err := p.Wait(2 * time.Minute)
	if err != nil || code != 0 {
		e.Fatalf("e2e: %s: exit %d, %v\n%s", p.Name, code, err, p.LogTail(20))
	}
	for _, line := range strings.Split(p.Log(), "\n") {
		if strings.HasPrefix(line, "published ") {
			return line
		}
	}
	e.Fatalf("e2e: %s printed no summary:\n%s", p.Name, p.LogTail(20))
	return ""
}

// ParseSummary extracts the message and record counts from a streamer
// summary line.
func ParseSummary(line string) (messages, records int64, err error) {
	if _, err := fmt.Sscanf(line, "published %d messages, %d records", &messages, &records); err != nil {
		return 0, 0, fmt.Errorf("e2e: streamer summary %q: %w", line, err)
	}
	return messages, records, nil
}
