package postgresql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/telemetry-collector/telemetry-collector/internal/pgtest"
	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// srv is the package's throwaway cluster; each test uses a database of its own.
var (
	srv   *pgtest.Server
	dbSeq atomic.Int32
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := pgtest.Start(ctx, pgtest.Options{FsyncOff: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "outputs/postgresql tests need PostgreSQL:", err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	_ = s.Stop()
	os.Exit(code)
}

func newDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := srv.CreateDB(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return srv.URL(name)
}

// newOutput returns an initialised output on url, closed when the test
// ends; setup (if any) changes it before Init.
func newOutput(t testing.TB, url string, setup ...func(*Output)) *Output {
	t.Helper()
	o := New()
	o.Connection = url
	o.SetEnvironment(sdk.Environment{Name: Name, Workers: 2, BatchSize: 10000})
	for _, f := range setup {
		f(o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := o.Init(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	return o
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

var t0 = time.Date(2025, 7, 18, 13, 42, 33, 0, time.UTC)

func gpuLabels(host string, idx int) sdk.Labels {
	return sdk.Labels{
		{Key: "gpu_index", Value: fmt.Sprint(idx)},
		{Key: "gpu_model", Value: "NVIDIA H100 80GB HBM3"},
		{Key: "gpu_uuid", Value: fmt.Sprintf("GPU-%s-%04d", host, idx)},
		{Key: "host", Value: host},
	}
}

// scrape builds a batch of gpus x metrics samples at each of times.
func scrape(gpus, metrics int, times ...time.Time) *sdk.Batch {
	b := &sdk.Batch{}
	idx := sdk.NewSeriesIndex(b)
	for _, ts := range times {
		for g := 0; g < gpus; g++ {
			ls := gpuLabels("node1", g)
			for m := 0; m < metrics; m++ {
				s := idx.ID(gpumetrics.Canonical[m].Name, ls)
				b.Add(s, ts.UnixNano(), float64(g*1000+m)+0.25)
			}
		}
	}
	return b
}

type viewRow struct {
	t      time.Time
	uuid   string
	metric string
	value  float64
}

func readView(t testing.TB, c *pgx.Conn) map[string]viewRow {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT time, coalesce(gpu_uuid, host || '/' || gpu_index), metric, value FROM gpu_metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]viewRow{}
	for rows.Next() {
		var r viewRow
		if err := rows.Scan(&r.t, &r.uuid, &r.metric, &r.value); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s|%s|%d", r.uuid, r.metric, r.t.UnixMicro())
		if _, dup := out[k]; dup {
			t.Errorf("duplicate sample in gpu_metrics: %s", k)
		}
		out[k] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t testing.TB, c *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestInitIdempotentAndConcurrent(t *testing.T) {
	url := newDB(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := New()
			o.Connection = url
			errs[i] = o.Init(context.Background())
			o.Close(context.Background())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	o := newOutput(t, url) // and once more, after
	c := connect(t, url)
	if n := count(t, c, "SELECT count(*) FROM schema_version"); n != SchemaVersion {
		t.Errorf("schema_version rows = %d, want %d", n, SchemaVersion)
	}
	// Partitions for now and the next interval exist.
	if n := count(t, c, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'gpu_samples'::regclass"); n != 2 {
		t.Errorf("partitions = %d, want 2", n)
	}
	// The view has the contract's columns, in order.
	rows, err := c.Query(context.Background(), "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'gpu_metrics' ORDER BY ordinal_position")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var n, ty string
		rows.Scan(&n, &ty)
		got = append(got, n+" "+ty)
	}
	want := []string{"time timestamp with time zone", "host text", "gpu_uuid text", "gpu_index integer", "gpu_model text", "metric text", "value double precision"}
	if len(got) < len(want) || strings.Join(got[:len(want)], ",") != strings.Join(want, ",") {
		t.Errorf("gpu_metrics columns = %v, want prefix %v", got, want)
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := New().Close(context.Background()); err != nil {
		t.Fatal("Close without Init:", err)
	}
}

func TestWriteReadBackIdempotent(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	c := connect(t, url)
	ctx := context.Background()
	b := scrape(8, len(gpumetrics.Canonical), t0, t0.Add(time.Second), t0.Add(30*24*time.Hour))
	for i := 0; i < 3; i++ { // the same batch three times: redelivery
		if err := o.Write(ctx, b); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if len(b.Rejects) != 0 {
			t.Fatalf("rejects: %+v", b.Rejects)
		}
	}
	got := readView(t, c)
	if len(got) != len(b.Points) {
		t.Fatalf("view has %d samples, want %d", len(got), len(b.Points))
	}
	for i := range b.Points {
		s := b.Sample(i)
		uuid, _ := s.Labels.Get("gpu_uuid")
		k := fmt.Sprintf("%s|%s|%d", uuid, s.Name, s.Time.UnixMicro())
		r, ok := got[k]
		if !ok || r.value != s.Value {
			t.Fatalf("sample %s: got %+v, want %v", k, r, s.Value)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_samples"); n != 8*3 {
		t.Errorf("gpu_samples rows = %d, want 24", n)
	}
	if n := count(t, c, "SELECT count(*) - count(DISTINCT (gpu_uuid, metric, time)) FROM gpu_metrics"); n != 0 {
		t.Errorf("%d duplicate samples", n)
	}
	if n := count(t, c, "SELECT count(*) FROM gpus"); n != 8 {
		t.Errorf("gpus = %d, want 8", n)
	}
	// A fresh output (empty caches, as after a restart) writing the batch
	// again changes nothing either.
	o2 := newOutput(t, url)
	if err := o2.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != len(b.Points) {
		t.Errorf("after a restart's redelivery: %d samples, want %d", n, len(b.Points))
	}
	// gpu_index and gpu_model are in the view.
	var idx int
	var model string
	if err := c.QueryRow(ctx, "SELECT gpu_index, gpu_model FROM gpu_metrics WHERE gpu_uuid = 'GPU-node1-0003' LIMIT 1").Scan(&idx, &model); err != nil || idx != 3 || model != "NVIDIA H100 80GB HBM3" {
		t.Errorf("gpu_index, gpu_model = %d, %q, %v", idx, model, err)
	}
}

// Long-form sources deliver one metric per record: metrics of one (gpu,
// time) arrive in different batches and must merge into one row.
func TestLongFormMerge(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	c := connect(t, url)
	ctx := context.Background()
	const gpus = 40 // above minCopyRows: the COPY attempt collides
	for m := 0; m < 5; m++ {
		b := &sdk.Batch{}
		for g := 0; g < gpus; g++ {
			s := b.AddSeries(gpumetrics.Canonical[m].Name, gpuLabels("node2", g))
			b.Add(s, t0.UnixNano(), float64(m*100+g))
		}
		for rep := 0; rep < 2; rep++ {
			if err := o.Write(ctx, b); err != nil {
				t.Fatalf("metric %d: %v", m, err)
			}
		}
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_samples"); n != gpus {
		t.Errorf("rows = %d, want %d (one per gpu and time)", n, gpus)
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != gpus*5 {
		t.Errorf("view samples = %d, want %d", n, gpus*5)
	}
	var v float64
	if err := c.QueryRow(ctx, "SELECT value FROM gpu_metrics WHERE gpu_uuid = 'GPU-node2-0007' AND metric = $1", gpumetrics.Canonical[3].Name).Scan(&v); err != nil || v != 307 {
		t.Errorf("merged value = %v, %v; want 307", v, err)
	}
	// A later value for a metric replaces the stored one (newest wins).
	b := &sdk.Batch{}
	b.Add(b.AddSeries(gpumetrics.Canonical[0].Name, gpuLabels("node2", 7)), t0.UnixNano(), 99.5)
	if err := o.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT "+gpumetrics.Canonical[0].Name+" FROM gpu_samples g JOIN gpus USING (gpu_id) WHERE gpu_uuid = 'GPU-node2-0007'").Scan(&v); err != nil || v != 99.5 {
		t.Errorf("updated value = %v, %v", v, err)
	}
}

func TestExtraMetricsAndIdentity(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	c := connect(t, url)
	ctx := context.Background()
	b := &sdk.Batch{}
	// Canonical metric of a GPU without UUID: identified by host and index.
	noUUID := sdk.Labels{{Key: "gpu_index", Value: "2"}, {Key: "host", Value: "edge-1"}, {Key: "pod", Value: "train-0"}}
	b.Add(b.AddSeries("gpu_power_watts", noUUID), t0.UnixNano(), 312.5)
	// Unknown metric names land in gpu_samples_extra.
	b.Add(b.AddSeries("dcgm_fi_prof_nvlink_tx_bytes", gpuLabels("node3", 0)), t0.UnixNano(), 1e9)
	b.Add(b.AddSeries("dcgm_fi_prof_nvlink_tx_bytes", gpuLabels("node3", 0)), t0.Add(time.Second).UnixNano(), 2e9)
	b.Add(b.AddSeries("gpu_temperature_celsius", gpuLabels("node3", 0)), t0.UnixNano(), 41)
	// No identity at all: rejected, not dropped silently.
	b.Add(b.AddSeries("gpu_power_watts", sdk.Labels{{Key: "host", Value: "edge-1"}}), t0.UnixNano(), 1)
	b.Add(b.AddSeries("gpu_power_watts", sdk.Labels{{Key: "gpu_model", Value: "T4"}}), t0.UnixNano(), 1)
	// A label PostgreSQL text cannot hold.
	b.Add(b.AddSeries("gpu_power_watts", sdk.Labels{{Key: "gpu_uuid", Value: "GPU-bad\x00uuid"}}), t0.UnixNano(), 1)
	// A point that refers to no series.
	b.Points = append(b.Points, sdk.Point{Series: 99, Time: t0.UnixNano(), Value: 1})
	for rep := 0; rep < 2; rep++ {
		b.Rejects = nil
		if err := o.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		if len(b.Rejects) != 4 {
			t.Fatalf("rejects = %d, want 4: %+v", len(b.Rejects), b.Rejects)
		}
	}
	for i, want := range []string{"refers to series 99", "no GPU identity", "no GPU identity", "NUL byte"} {
		if !strings.Contains(b.Rejects[i].Reason, want) {
			t.Errorf("reject %d: %q, want it to mention %q", i, b.Rejects[i].Reason, want)
		}
	}
	got := readView(t, c)
	for k, want := range map[string]float64{
		fmt.Sprintf("edge-1/2|gpu_power_watts|%d", t0.UnixMicro()):                                     312.5,
		fmt.Sprintf("GPU-node3-0000|dcgm_fi_prof_nvlink_tx_bytes|%d", t0.UnixMicro()):                  1e9,
		fmt.Sprintf("GPU-node3-0000|dcgm_fi_prof_nvlink_tx_bytes|%d", t0.Add(time.Second).UnixMicro()): 2e9,
		fmt.Sprintf("GPU-node3-0000|gpu_temperature_celsius|%d", t0.UnixMicro()):                       41,
	} {
		if got[k].value != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if len(got) != 4 {
		t.Errorf("view has %d samples, want 4: %v", len(got), got)
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_samples_extra"); n != 2 {
		t.Errorf("extra rows = %d, want 2", n)
	}
	var pod string
	if err := c.QueryRow(ctx, "SELECT pod FROM gpu_metrics WHERE host = 'edge-1'").Scan(&pod); err != nil || pod != "train-0" {
		t.Errorf("pod = %q, %v", pod, err)
	}
}

// A row the database refuses (here: an operator's CHECK constraint) is
// isolated and rejected alone; the rest of the batch is written.
func TestBadRowIsolated(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	c := connect(t, url)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "ALTER TABLE gpu_samples ADD CONSTRAINT sane_temperature CHECK (gpu_temperature_celsius < 1e6)"); err != nil {
		t.Fatal(err)
	}
	b := scrape(50, 13, t0) // 13 metrics: includes gpu_temperature_celsius (index 12)
	for i := range b.Points {
		s := b.Sample(i)
		if u, _ := s.Labels.Get("gpu_uuid"); u == "GPU-node1-0017" && s.Name == "gpu_temperature_celsius" {
			b.Points[i].Value = 9.2e18 // a DCGM blank sentinel that slipped through
		}
	}
	if err := o.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Rejects) != 1 || !strings.Contains(b.Rejects[0].Reason, "sane_temperature") || !strings.Contains(string(b.Rejects[0].Raw), "GPU-node1-0017") {
		for _, r := range b.Rejects {
			t.Errorf("reject: %s at %s: %.100s", r.Reason, r.Position, r.Raw)
		}
		t.Fatalf("%d rejects, want 1", len(b.Rejects))
	}
	t.Logf("reject: %s at %s: %s", b.Rejects[0].Reason, b.Rejects[0].Position, b.Rejects[0].Raw)
	if n := count(t, c, "SELECT count(*) FROM gpu_samples"); n != 49 {
		t.Errorf("rows = %d, want 49", n)
	}
}

func TestRetryableWhenServerDown(t *testing.T) {
	// A server of its own: this test stops it.
	s := pgtest.New(t)
	ctx := context.Background()
	if err := s.CreateDB(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	o := newOutput(t, s.URL("app"))
	b := scrape(4, 5, t0)
	if err := o.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"fast", "kill"} {
		if mode == "kill" {
			if err := s.Kill(); err != nil {
				t.Fatal(err)
			}
		} else if err := s.Shutdown(mode); err != nil {
			t.Fatal(err)
		}
		b2 := scrape(4, 6, t0.Add(time.Minute))
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := o.Write(wctx, b2)
		cancel()
		if err == nil || sdk.IsPermanent(err) {
			t.Fatalf("%s: Write with the server down = %v, want a retryable error", mode, err)
		}
		if err := s.StartAgain(ctx); err != nil {
			t.Fatal(err)
		}
		if err := o.Write(ctx, b2); err != nil {
			t.Fatalf("%s: Write after restart: %v", mode, err)
		}
	}
	c := connect(t, s.URL("app"))
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 4*5+4*6 {
		t.Errorf("samples = %d, want %d", n, 4*5+4*6)
	}
}

func TestConnectionForms(t *testing.T) {
	url := newDB(t)
	db := strings.TrimPrefix(url[strings.LastIndex(url, "/"):], "/")
	db = strings.TrimSuffix(db, "?sslmode=disable")
	port := srv.Port()
	for _, tc := range []struct {
		name string
		set  func(o *Output, t *testing.T)
	}{
		{"url", func(o *Output, t *testing.T) { o.Connection = url }},
		{"key/value", func(o *Output, t *testing.T) {
			o.Connection = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", port, db)
		}},
		{"keys", func(o *Output, t *testing.T) {
			o.Host, o.Port, o.User, o.DBName, o.SSLMode = "127.0.0.1", port, "postgres", db, "disable"
		}},
		{"DATABASE_URL", func(o *Output, t *testing.T) { t.Setenv("DATABASE_URL", url) }},
		{"PG variables", func(o *Output, t *testing.T) {
			t.Setenv("DATABASE_URL", "")
			t.Setenv("PGHOST", "127.0.0.1")
			t.Setenv("PGPORT", fmt.Sprint(port))
			t.Setenv("PGUSER", "postgres")
			t.Setenv("PGDATABASE", db)
			t.Setenv("PGSSLMODE", "disable")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := New()
			tc.set(o, t)
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := o.Init(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer o.Close(context.Background())
			if err := o.Write(context.Background(), scrape(1, 1, t0)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConnectErrorsMaskPassword(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	l := freePort(t) // nothing listens there
	for _, tc := range []struct {
		name, want string
		permanent  bool
		set        func(o *Output)
	}{
		{"url refused", fmt.Sprintf("connect 127.0.0.1:%d: connection refused (is PostgreSQL running? set DATABASE_URL", l), false,
			func(o *Output) {
				o.Connection = fmt.Sprintf("postgres://bob:%s@127.0.0.1:%d/db?sslmode=disable", secret, l)
			}},
		{"key/value refused", "connection refused", false,
			func(o *Output) {
				o.Connection = fmt.Sprintf("host=127.0.0.1 port=%d user=bob password=%s sslmode=disable", l, secret)
			}},
		{"keys refused", "connection refused", false,
			func(o *Output) {
				o.Host, o.Port, o.User, o.Password, o.SSLMode = "127.0.0.1", l, "bob", secret, "disable"
			}},
		{"bad url", "connection settings", true,
			func(o *Output) { o.Connection = "postgres://bob:" + secret + "@127.0.0.1:notaport/db" }},
		{"no database", "create the database", true,
			func(o *Output) {
				o.Connection = fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/nosuchdb?sslmode=disable", secret, srv.Port())
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := New()
			o.ConnectTimeout = sdk.Duration(3 * time.Second)
			tc.set(o)
			err := o.Init(context.Background())
			if err == nil {
				o.Close(context.Background())
				t.Fatal("Init succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, secret) {
				t.Errorf("password in error: %s", msg)
			}
			if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "outputs.postgresql: ") {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if sdk.IsPermanent(err) != tc.permanent {
				t.Errorf("permanent = %v, want %v", sdk.IsPermanent(err), tc.permanent)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(o *Output)
		want string
	}{
		{"ok", func(o *Output) {}, ""},
		{"both forms", func(o *Output) { o.Connection = "postgres://x@h/db"; o.Host = "h" }, "not both"},
		{"sslmode", func(o *Output) { o.SSLMode = "sometimes" }, "sslmode"},
		{"interval", func(o *Output) { o.PartitionInterval = Interval(30 * time.Minute) }, "partition_interval"},
		{"retention", func(o *Output) { o.Retention = Interval(time.Hour) }, "retention"},
		{"port", func(o *Output) { o.Port = 70000 }, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := New()
			o.getenv = func(string) string { return "" }
			tc.set(o)
			err := o.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "6h": 6 * time.Hour, "": 0} {
		got, err := ParseInterval(in)
		if err != nil || got != want {
			t.Errorf("ParseInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"1x", "d", "-1d", "1.5d"} {
		if _, err := ParseInterval(bad); err == nil {
			t.Errorf("ParseInterval(%q) accepted", bad)
		}
	}
}

func TestRetention(t *testing.T) {
	url := newDB(t)
	o := New()
	o.Connection = url
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	o.now = func() time.Time { return now }
	o.Retention = Interval(48 * time.Hour)
	if err := o.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	b := scrape(2, 2, now.Add(-72*time.Hour), now.Add(-24*time.Hour), now)
	if err := o.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(b.Rejects) != 4 || !strings.Contains(b.Rejects[0].Reason, "retention") {
		t.Fatalf("rejects = %+v", b.Rejects)
	}
	c := connect(t, url)
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 8 {
		t.Errorf("samples = %d, want 8", n)
	}
	now = now.Add(48 * time.Hour) // the partition of now-24h expires
	if err := o.maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 4 {
		t.Errorf("after retention: samples = %d, want 4", n)
	}
}

func TestConcurrentWriters(t *testing.T) {
	url := newDB(t)
	o := newOutput(t, url)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every worker writes overlapping long-form fragments.
			for m := 0; m < 6; m++ {
				b := &sdk.Batch{}
				for g := 0; g < 30; g++ {
					b.Add(b.AddSeries(gpumetrics.Canonical[(m+w)%6].Name, gpuLabels("node4", g)), t0.UnixNano(), float64(g))
				}
				if err := o.Write(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := connect(t, url)
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 30*6 {
		t.Errorf("samples = %d, want %d", n, 30*6)
	}
}

func TestMaskText(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://bob:pw@h/db":            "postgres://bob:xxxxx@h/db",
		"host=h password=pw user=bob":       "host=h password=xxxxx user=bob",
		"host=h password='p w\\'x' user=b":  "host=h password=xxxxx user=b",
		"cannot parse `postgres://u:p@h:x`": "cannot parse `postgres://u:xxxxx@h:x`",
	} {
		if got := maskText(in, nil); got != want {
			t.Errorf("maskText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := maskText("failed for sekrit", []string{"sekrit"}); strings.Contains(got, "sekrit") {
		t.Error(got)
	}
	if redactURL("postgres://u:p@h/db") != "postgres://u:xxxxx@h/db" {
		t.Error(redactURL("postgres://u:p@h/db"))
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want errKind
	}{
		{errors.New("dial tcp: connection reset by peer"), errRetryable},
		{context.DeadlineExceeded, errRetryable},
		{&pgconn.PgError{Code: "57P01"}, errRetryable}, // admin_shutdown
		{&pgconn.PgError{Code: "57P03"}, errRetryable}, // cannot_connect_now
		{&pgconn.PgError{Code: "40001"}, errRetryable}, // serialization_failure
		{&pgconn.PgError{Code: "40P01"}, errRetryable}, // deadlock_detected
		{&pgconn.PgError{Code: "08006"}, errRetryable}, // connection_failure
		{&pgconn.PgError{Code: "22021"}, errData},      // character_not_in_repertoire
		{&pgconn.PgError{Code: "23514"}, errData},      // check_violation
		{&pgconn.PgError{Code: "42P01"}, errPermanent}, // undefined_table
		{&pgconn.PgError{Code: "42501"}, errPermanent}, // insufficient_privilege
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "22003"}), errData},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Every key of sample.conf (commented ones uncommented) is a config key of
// Output, or one of the agent's keys.
func TestSampleConfigKeys(t *testing.T) {
	var conf struct {
		Outputs struct {
			PostgreSQL []map[string]any `toml:"postgresql"`
		} `toml:"outputs"`
	}
	uncommented := regexp.MustCompile(`(?m)^\s*# ([a-z_]+ = .*)$`).ReplaceAllString(SampleConfig, "$1")
	if _, err := toml.Decode(uncommented, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Outputs.PostgreSQL) != 1 {
		t.Fatalf("sample.conf has %d [[outputs.postgresql]] tables", len(conf.Outputs.PostgreSQL))
	}
	known := map[string]bool{"batch_size": true, "workers": true}
	ty := reflect.TypeOf(Output{})
	for i := 0; i < ty.NumField(); i++ {
		if tag := ty.Field(i).Tag.Get("toml"); tag != "" {
			known[tag] = true
		}
	}
	keys := conf.Outputs.PostgreSQL[0]
	for k := range keys {
		if !known[k] {
			t.Errorf("sample.conf key %q is not a config key", k)
		}
	}
	for k := range known {
		if _, ok := keys[k]; !ok {
			t.Errorf("config key %q is not documented in sample.conf", k)
		}
	}
}
