// Command telemetry-streamer publishes telemetry files to an mq.v1 service
// as messages of whole records (see mq/README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/schollz/progressbar/v3"
	"github.com/telemetry-collector/telemetry-collector/mq/client"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type config struct {
	address, topic, format, from, logLevel string
	batch, window                          int
	rate                                   float64
	loop, timeShift, waitForAck, progress  bool
	files                                  []string
}

func parseFlags(args []string, stderr io.Writer) (config, bool, error) {
	var c config
	var showVersion bool
	fs := flag.NewFlagSet("telemetry-streamer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: telemetry-streamer --address HOST:PORT --topic TOPIC --format FORMAT [flags] FILE...")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.address, "address", "localhost:50051", "mq-service address HOST:PORT")
	fs.StringVar(&c.topic, "topic", "gpu-telemetry", "topic to publish to")
	fs.StringVar(&c.format, "format", "", "payload format: dcgm-csv | nvidia-smi-csv | prometheus | gpu-tel-json (required)")
	fs.StringVar(&c.from, "from", "", "input format to convert from (only dcgm-csv, with --format gpu-tel-json)")
	fs.IntVar(&c.batch, "batch", 100, "records per message (0: a whole file per message)")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second (0: as fast as possible)")
	fs.BoolVar(&c.loop, "loop", false, "repeat the files until interrupted")
	fs.BoolVar(&c.timeShift, "time-shift", false, "with --from dcgm-csv: move timestamps so the data starts now (and advances every --loop pass)")
	fs.BoolVar(&c.waitForAck, "wait-for-ack", true, "ask the broker to answer once each message is stored durably")
	fs.IntVar(&c.window, "window", 64, "messages awaiting their publish response at once")
	fs.BoolVar(&c.progress, "progress", true, "show a progress bar when stderr is a terminal")
	fs.StringVar(&c.logLevel, "log-level", "info", "trace | debug | info | warn | error")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, false, err
	}
	if showVersion {
		return c, true, nil
	}
	c.files = fs.Args()
	var errs []error
	if len(c.files) == 0 {
		errs = append(errs, errors.New("no input FILE given"))
	}
	if c.format == "" {
		errs = append(errs, errors.New("--format is required"))
	} else if _, err := splitterFor(c.format); err != nil {
		errs = append(errs, err)
	}
	if c.from != "" && (c.from != formatDCGMCSV || c.format != formatGPUTelJSON) {
		errs = append(errs, fmt.Errorf("--from %q: only --from dcgm-csv with --format gpu-tel-json is supported", c.from))
	}
	if c.timeShift && c.from == "" {
		errs = append(errs, errors.New("--time-shift needs --from dcgm-csv"))
	}
	if c.batch < 0 || c.rate < 0 || c.window <= 0 {
		errs = append(errs, errors.New("--batch and --rate must be >= 0, --window > 0"))
	}
	if c.topic == "" {
		errs = append(errs, errors.New("--topic must not be empty"))
	}
	if hclog.LevelFromString(c.logLevel) == hclog.NoLevel {
		errs = append(errs, fmt.Errorf("unknown --log-level %q", c.logLevel))
	}
	return c, false, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, showVersion, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "telemetry-streamer:", err)
		return 2
	}
	if showVersion {
		fmt.Fprintln(stdout, "telemetry-streamer", version)
		return 0
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "telemetry-streamer", Level: hclog.LevelFromString(c.logLevel), Output: stderr})
	started := time.Now()
	st, err := stream(ctx, c, log, stderr)
	st.elapsed = time.Since(started)
	fmt.Fprintln(stderr, st.summary())
	if err != nil {
		log.Error("streaming failed", "error", err)
		return 1
	}
	return 0
}

// stats are the totals of one run.
type stats struct {
	messages, records, bytes, failed, badRows int64
	elapsed                                   time.Duration
}

func (s stats) summary() string {
	sec := s.elapsed.Seconds()
	rate := 0.0
	if sec > 0 {
		rate = float64(s.messages) / sec
	}
	line := fmt.Sprintf("published %d messages, %d records, %d bytes in %.2fs (%.1f messages/s)", s.messages, s.records, s.bytes, sec, rate)
	if s.failed > 0 {
		line += fmt.Sprintf("; %d messages FAILED", s.failed)
	}
	if s.badRows > 0 {
		line += fmt.Sprintf("; %d unparsable rows skipped", s.badRows)
	}
	return line
}

type outMsg struct {
	payload []byte
	records int
}

// countingReader counts bytes read for the progress bar.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// stream reads the files, splits them, and publishes the messages,
// waiting for every response.
func stream(ctx context.Context, c config, log hclog.Logger, stderr io.Writer) (stats, error) {
	var st stats
	var total int64
	for _, f := range c.files {
		fi, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("input: %w", err)
		}
		total += fi.Size()
	}
	conn, err := client.Dial(c.address)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	pub := client.NewPublisher(conn, client.PublisherOptions{WaitForAck: c.waitForAck, Window: c.window})

	var readBytes atomic.Int64
	var bar *progressbar.ProgressBar
	if c.progress && isTerminal(stderr) {
		max := total
		if c.loop {
			max = -1
		}
		bar = progressbar.NewOptions64(max, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("publishing "+c.topic), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}

	// A signal (ctx) stops reading; what was read is still published and
	// answered. pubCtx ends only when publishing itself fails.
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	msgs := make(chan outMsg, c.window)
	var badRows atomic.Int64
	prodErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		prodErr <- produce(readCtx, c, log, msgs, &readBytes, &badRows)
	}()

	var pubErrs []error
	chunk := make([]*mqpb.Message, 0, c.window)
	recs := make([]int, 0, c.window)
	for m := range msgs {
		chunk, recs = chunk[:0], recs[:0]
		add := func(m outMsg) {
			chunk = append(chunk, &mqpb.Message{Topic: c.topic, Payload: m.payload,
				Metadata: map[string]string{"content-type": c.format, "records": fmt.Sprint(m.records)}})
			recs = append(recs, m.records)
		}
		add(m)
	drain:
		for len(chunk) < c.window {
			select {
			case m, ok := <-msgs:
				if !ok {
					break drain
				}
				add(m)
			default:
				break drain
			}
		}
		resps, err := pub.Publish(pubCtx, chunk)
		for i, r := range resps {
			if r.GetSuccess() {
				st.messages++
				st.records += int64(recs[i])
				st.bytes += int64(len(chunk[i].Payload))
			}
		}
		if err != nil {
			st.failed += int64(len(chunk) - countOK(resps))
			pubErrs = append(pubErrs, err)
			if len(resps) < len(chunk) {
				stopReading() // the stream broke: stop reading
			}
		}
		if bar != nil {
			if c.loop {
				_ = bar.Add64(readBytes.Swap(0))
			} else {
				_ = bar.Set64(readBytes.Load())
			}
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	st.badRows = badRows.Load()
	perr := <-prodErr
	if len(pubErrs) > 0 {
		if errors.Is(perr, context.Canceled) {
			perr = nil // we stopped reading because publishing failed
		}
		return st, errors.Join(append(pubErrs, perr)...)
	}
	if errors.Is(perr, context.Canceled) && ctx.Err() != nil {
		if c.loop {
			return st, nil // --loop ends with SIGINT/SIGTERM
		}
		return st, errors.New("interrupted before every file was published")
	}
	return st, perr
}

func countOK(rs []*mqpb.PublishResponse) int {
	n := 0
	for _, r := range rs {
		if r.GetSuccess() {
			n++
		}
	}
	return n
}

// produce splits every file (forever with --loop) into msgs, paced by
// --rate.
func produce(ctx context.Context, c config, log hclog.Logger, msgs chan<- outMsg, readBytes, badRows *atomic.Int64) error {
	split, err := splitterFor(c.format)
	if err != nil {
		return err
	}
	var tick *time.Ticker
	if c.rate > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / c.rate))
		defer tick.Stop()
	}
	emit := func(payload []byte, records int) error {
		if tick != nil {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case msgs <- outMsg{payload: append([]byte(nil), payload...), records: records}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	shifters := map[string]*shifter{}
	runStart := time.Now()
	for pass := 0; ; pass++ {
		for _, name := range c.files {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("input: %w", err)
			}
			r := countingReader{r: f, n: readBytes}
			if c.from == formatDCGMCSV {
				var shift func(time.Time) time.Time
				if c.timeShift {
					sh := shifters[name]
					if sh == nil {
						sh = &shifter{runStart: runStart}
						shifters[name] = sh
					} else {
						sh.nextPass()
					}
					shift = sh.shift
				}
				var bad int
				bad, err = convertDCGM(r, c.batch, shift, func(line int, perr error) {
					log.Warn("unparsable csv row skipped", "file", filepath.Base(name), "line", line, "error", perr)
				}, emit)
				badRows.Add(int64(bad))
			} else {
				err = split(r, c.batch, emit)
			}
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if !c.loop {
			return nil
		}
	}
}

// shifter moves one file's timestamps so its first row is at the run's
// start; every later --loop pass lands after the previous one (the file's
// span plus one second later).
type shifter struct {
	runStart    time.Time
	first, last time.Time
	offset      time.Duration
}

func (s *shifter) nextPass() {
	if !s.first.IsZero() {
		s.offset += s.last.Sub(s.first) + time.Second
	}
}

func (s *shifter) shift(ts time.Time) time.Time {
	if s.first.IsZero() {
		s.first, s.last = ts, ts
	}
	if ts.After(s.last) {
		s.last = ts
	}
	return s.runStart.Add(ts.Sub(s.first) + s.offset)
}
