package postgresql

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/telemetry-collector/telemetry-collector/sdk"
	"github.com/telemetry-collector/telemetry-collector/sdk/gpumetrics"
)

// TestMergeBegin covers the first query of a transaction on the merge path
// (BEGIN, the staging table's CREATE and its COPY): wide rows, extra rows
// and both merge into stored rows; and when the staging tables cannot be
// created
// (a role without the TEMPORARY privilege) the Write fails permanently with
// PostgreSQL's reason (as when the CREATE was a statement of its own), and
// once the role may, the same outputs (pools) merge.
func TestMergeBegin(t *testing.T) {
	u := newDB(t)
	ctx := context.Background()
	c := connect(t, u)
	role := fmt.Sprintf("notemp_%d", dbSeq.Add(1))
	db := strings.TrimPrefix(mustParse(t, u).Path, "/")
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT CREATE ON DATABASE " + db + " TO " + role,
		"GRANT ALL ON SCHEMA public TO " + role,
		"REVOKE TEMPORARY ON DATABASE " + db + " FROM PUBLIC",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ru := mustParse(t, u)
	ru.User = url.User(role)

	batch := func(ts time.Time, names ...string) *sdk.Batch {
		b := &sdk.Batch{}
		for g := 0; g < 20; g++ {
			ls := gpuLabels("node1", g)
			for m, n := range names {
				b.Add(b.AddSeries(n, ls), ts.UnixNano(), float64(g*10+m))
			}
		}
		return b
	}
	wide := []string{gpumetrics.Canonical[0].Name, gpumetrics.Canonical[1].Name}
	extra := []string{"vendor_specific_thing"}
	both := append(append([]string(nil), wide...), extra...)
	noTemp := func(names []string, err error) {
		t.Helper()
		if err == nil || !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "permission denied to create temporary tables") {
			t.Fatalf("%v: merge without TEMPORARY: %v (permanent %v)", names, err, sdk.IsPermanent(err))
		}
	}
	var outs []*Output
	for i, names := range [][]string{wide, extra, both} {
		ts := t0.Add(time.Duration(i) * time.Minute)
		o := newOutput(t, ru.String()) // no conflicts seen: COPY first
		outs = append(outs, o)
		err := o.Write(ctx, batch(ts, names...))
		if len(names) == len(extra) {
			// No wide rows: always the merge path.
			noTemp(names, err)
			continue
		}
		if err != nil {
			t.Fatalf("%v: first write: %v", names, err)
		}
		// Again: conflicts, so the merge path.
		noTemp(names, o.Write(ctx, batch(ts, names...)))
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 20*(len(wide)+len(both)) {
		t.Fatalf("%d samples stored", n)
	}
	// With TEMPORARY the same redeliveries merge (nothing changes), and
	// new values for stored rows replace the old ones: each output goes on
	// on the pool whose connection saw the failure.
	if _, err := c.Exec(ctx, "GRANT TEMPORARY ON DATABASE "+db+" TO "+role); err != nil {
		t.Fatal(err)
	}
	for i, names := range [][]string{wide, extra, both} {
		ts := t0.Add(time.Duration(i) * time.Minute)
		o := outs[i]
		b := batch(ts, names...)
		if err := o.Write(ctx, b); err != nil {
			t.Fatalf("%v: redelivery: %v", names, err)
		}
		for j := range b.Points {
			b.Points[j].Value += 0.5
		}
		if err := o.Write(ctx, b); err != nil {
			t.Fatalf("%v: new values: %v", names, err)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 20*(len(wide)+len(extra)+len(both)) {
		t.Fatalf("%d samples stored", n)
	}
	var frac float64
	if err := c.QueryRow(ctx, "SELECT sum(value - floor(value)) FROM gpu_metrics").Scan(&frac); err != nil || frac != 0.5*20*6 {
		t.Fatalf("merged values: fractions sum to %v (%v), want %v", frac, err, 0.5*20*6)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestTxPlans: txWrite's queries run the statements of a transaction run
// statement by statement, in the same order: BEGIN, per table (samples,
// then extra) COPY into it, or CREATE the staging table, COPY into it and
// merge, then COMMIT; every COPY query ends with its COPY.
func TestTxPlans(t *testing.T) {
	s := buildStatements("public")
	for path := 0; path < 2; path++ {
		for set := 1; set < 4; set++ {
			want := []string{"BEGIN"}
			for i, tb := range [2][4]string{
				{s.copySamples, s.stageSamples, s.copyStageSamples, s.mergeSamples},
				{s.copyExtra, s.stageExtra, s.copyStageExtra, s.mergeExtra},
			} {
				if set&(1<<i) == 0 {
					continue
				}
				if path == 0 {
					want = append(want, tb[0])
				} else {
					want = append(want, tb[1:]...)
				}
			}
			want = append(want, "COMMIT")
			var got []string
			for i, q := range s.txCopy[path][set] {
				if (q != "") != (set&(1<<i) != 0) {
					t.Fatalf("path %d tables %d: COPY query %d = %q", path, set, i, q)
				}
				if q == "" {
					continue
				}
				st := strings.Split(q, "; ")
				if last := st[len(st)-1]; !strings.HasPrefix(last, "COPY ") || !strings.HasSuffix(last, "FROM STDIN (FORMAT binary)") {
					t.Fatalf("path %d tables %d: query %d ends with %q", path, set, i, last)
				}
				got = append(got, st...)
			}
			got = append(got, strings.Split(s.txEnd[path][set], "; ")...)
			if !slices.Equal(got, want) {
				t.Fatalf("path %d tables %d:\n got %q\nwant %q", path, set, got, want)
			}
		}
	}
}

// TestMergePathRefusedRow: on the merge path, a row the database refuses
// (a CHECK constraint) fails the samples' INSERT, which runs in the same
// query as the extra rows' CREATE and COPY (whose data the server then
// ignores); the batch is written again row by row, the refused row is
// rejected, and every other value, wide and extra, is merged. Later
// Writes go on on the same pool.
func TestMergePathRefusedRow(t *testing.T) {
	u := newDB(t)
	o := newOutput(t, u)
	c := connect(t, u)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "ALTER TABLE gpu_samples ADD CONSTRAINT sane_power CHECK (gpu_power_watts < 1e6)"); err != nil {
		t.Fatal(err)
	}
	power := "gpu_power_watts"
	if _, ok := o.cache.canon[power]; !ok {
		t.Fatalf("%s is not canonical", power)
	}
	names := []string{gpumetrics.Canonical[0].Name, power, "vendor_specific_thing"}
	batch := func(ts time.Time, add float64, bad int) *sdk.Batch {
		b := &sdk.Batch{}
		for g := 0; g < 30; g++ {
			ls := gpuLabels("node1", g)
			for m, n := range names {
				v := float64(g*10+m) + add
				if g == bad && n == power {
					v = 9.2e18
				}
				b.Add(b.AddSeries(n, ls), ts.UnixNano(), v)
			}
		}
		return b
	}
	if err := o.Write(ctx, batch(t0, 0, -1)); err != nil {
		t.Fatal(err)
	}
	b := batch(t0, 0.5, 7) // the same rows: the merge path
	if err := o.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Rejects) != 1 || !strings.Contains(b.Rejects[0].Reason, "sane_power") || !strings.Contains(string(b.Rejects[0].Raw), "GPU-node1-0007") {
		t.Fatalf("rejects: %+v", b.Rejects)
	}
	var n int
	var frac float64
	if err := c.QueryRow(ctx, "SELECT count(*), sum(value - floor(value)) FROM gpu_metrics").Scan(&n, &frac); err != nil {
		t.Fatal(err)
	}
	// GPU 7's row kept its old values (its row was refused as a whole).
	if want := 0.5 * float64(30*len(names)-2); n != 30*len(names) || frac != want {
		t.Fatalf("%d samples, fractions sum to %v, want %d and %v", n, frac, 30*len(names), want)
	}
	for i := 1; i <= 3; i++ {
		if err := o.Write(ctx, batch(t0.Add(time.Duration(i)*time.Second), 0, -1)); err != nil {
			t.Fatalf("write %d after the refused row: %v", i, err)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM gpu_metrics"); n != 4*30*len(names) {
		t.Fatalf("%d samples, want %d", n, 4*30*len(names))
	}
}

// TestConflictSpan: a batch that collides with stored rows is merged and
// says so at debug level; the next batches take the merge path directly
// for a span (4 batches after a first collision, doubling while
// collisions go on); once the span is spent a batch tries the plain COPY
// again, and a COPY that succeeds halves the span.
func TestConflictSpan(t *testing.T) {
	u := newDB(t)
	ctx := context.Background()
	var logs bytes.Buffer
	o := newOutput(t, u, func(o *Output) {
		o.SetLogger(hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}))
	})
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	batch := func(i int) *sdk.Batch { // 20 wide rows at instant i
		b := &sdk.Batch{}
		for g := 0; g < 20; g++ {
			b.Add(b.AddSeries(gpumetrics.Canonical[0].Name, gpuLabels("node1", g)), t0.Add(time.Duration(i)*time.Second).UnixNano(), float64(g))
		}
		return b
	}
	write := func(i int) {
		t.Helper()
		if err := o.Write(ctx, batch(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	state := func() (credit, span int32) { return o.conflictCredit.Load(), o.conflictSpan.Load() }

	write(0) // new rows: plain COPY
	if c, s := state(); c != 0 || s != 0 || strings.Contains(logs.String(), "collides") {
		t.Fatalf("after a plain COPY: credit %d span %d, log %q", c, s, logs.String())
	}
	write(0) // the same rows again: collides, merged
	if c, s := state(); c != 4 || s != 4 {
		t.Fatalf("after a collision: credit %d span %d, want 4 and 4", c, s)
	}
	if !strings.Contains(logs.String(), "batch collides with stored rows") || !strings.Contains(logs.String(), "next_batches=4") {
		t.Fatalf("no debug line for the collision: %q", logs.String())
	}
	for i := 1; i <= 4; i++ { // new rows, but within the span: merge path directly
		write(i)
		if c, _ := state(); c != int32(4-i) {
			t.Fatalf("batch %d of the span: credit %d, want %d", i, c, 4-i)
		}
	}
	write(3) // span spent: tries COPY, collides again, the span doubles
	if c, s := state(); c != 8 || s != 8 {
		t.Fatalf("after a second collision: credit %d span %d, want 8 and 8", c, s)
	}
	for i := 5; i < 5+8; i++ {
		write(i)
	}
	write(20) // span spent, new rows: the plain COPY succeeds and halves it
	if c, s := state(); c != 0 || s != 4 {
		t.Fatalf("after a plain COPY: credit %d span %d, want 0 and 4", c, s)
	}
	if n := count(t, connect(t, u), "SELECT count(*) FROM gpu_metrics"); n != 20*14 {
		t.Fatalf("%d samples stored, want %d", n, 20*14)
	}
}
