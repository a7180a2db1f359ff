//go:build faults

package faults

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/internal/e2e"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// poisonRow is a bad row placed in an otherwise good message, and where its
// dead-letter record must come from.
type poisonRow struct {
	what, row string
	plugin    string // ID of the plugin that must dead-letter it
	reason    string // part of the record's reason
}

// TestPoisonInput publishes, between two good streams, messages that do not
// parse, rows that do not parse, values and timestamps out of range, a
// sample of no identifiable GPU, a 20 MiB message and random bytes. Each
// bad piece is counted (collector_errors_total{type="reject"}) and written
// to the dead-letter file where an operator can read it; every good row
// around it is stored; the broker dead-letters nothing (nothing loops) and
// the pipeline keeps flowing.
func TestPoisonInput(t *testing.T) {
	r := newRun(t, e2e.CollectorConfig{LogLevel: "info"})
	defer r.report()
	r.phase("good stream before the poison", 50, 0, nil)
	began := time.Now()

	// One good message with six rows replaced by poison.
	m := r.next
	r.next++
	ts := `"` + r.plan.Time(m).UTC().Format(time.RFC3339Nano) + `"`
	bad := []poisonRow{
		{"truncated row", ts + `,"DCGM_FI_DEV_GPU_TEMP","0"` + "\n", "inputs.mq_service", "3 fields"},
		{"timestamp that is not one", `"yesterday","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031","","","","41",""` + "\n", "inputs.mq_service", "timestamp"},
		{"timestamp out of range", `"1e30","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031","","","","41",""` + "\n", "inputs.mq_service", "out of range"},
		{"value that is not a number", ts + `,"DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031","","","","abc",""` + "\n", "inputs.mq_service", "abc"},
		{"value out of range", ts + `,"DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031","","","","0x1FFFFFFFFFFFFFFFFFFFF",""` + "\n", "inputs.mq_service", "0x1FFFFFFFFFFFFFFFFFFFF"},
		{"unknown GPU (no uuid, index or host)", ts + `,"DCGM_FI_DEV_GPU_TEMP","","","","NVIDIA H100 80GB HBM3","","","","","41","job=""dgx"""` + "\n", "outputs.postgresql", "GPU identity"},
	}
	lines := bytes.SplitAfter(r.plan.AppendRows(nil, m), []byte("\n"))
	payload := append([]byte(nil), r.plan.Src.Header...)
	for i, l := range lines {
		if len(l) == 0 {
			continue
		}
		if i >= 10 && i < 10+len(bad) {
			payload = append(payload, bad[i-10].row...)
			continue
		}
		payload = append(payload, l...)
	}
	good := int64(RowsPerMessage - len(bad))
	r.sent += good

	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	huge := append(append([]byte(nil), r.plan.Src.Header...), bytes.Repeat([]byte("x"), 20<<20)...)
	huge = append(huge, '\n')
	msgs := []*mqpb.Message{
		{Id: "poison-rows", Payload: payload, Metadata: map[string]string{"content-type": "dcgm-csv"}},
		{Id: "poison-huge", Payload: huge, Metadata: map[string]string{"content-type": "dcgm-csv"}},
		{Id: "poison-random-csv", Payload: random, Metadata: map[string]string{"content-type": "dcgm-csv"}},
		{Id: "poison-random-json", Payload: random[:4096], Metadata: map[string]string{"content-type": "gpu-tel-json"}},
		{Id: "poison-unknown-format", Payload: r.plan.Payload(m), Metadata: map[string]string{"content-type": "application/x-unknown"}},
	}
	for _, msg := range msgs {
		msg.Topic = topic
	}
	r.e.Publish(r.mq.Addr, msgs...)

	r.phase("good stream after the poison", 50, 0, nil)

	dls, err := r.c.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	find := func(pred func(e2e.DeadLetter) bool) []e2e.DeadLetter {
		var out []e2e.DeadLetter
		for _, d := range dls {
			if pred(d) {
				out = append(out, d)
			}
		}
		return out
	}
	// Each bad row of poison-rows: one record, with the row as raw.
	for _, b := range bad {
		raw := strings.TrimSuffix(b.row, "\n")
		got := find(func(d e2e.DeadLetter) bool {
			if d.Plugin != b.plugin || d.Kind != "reject" || !strings.Contains(d.Reason, b.reason) {
				return false
			}
			if b.plugin == "inputs.mq_service" {
				return strings.Contains(d.Position, "message poison-rows") && strings.Contains(d.Raw, raw)
			}
			return true // the output names the series, not the message
		})
		if len(got) != 1 {
			t.Errorf("%s: %d dead-letter records from %s with reason ~%q, want 1", b.what, len(got), b.plugin, b.reason)
		}
	}
	// Each whole bad message: at least one record naming it.
	for _, id := range []string{"poison-huge", "poison-random-csv", "poison-random-json", "poison-unknown-format"} {
		got := find(func(d e2e.DeadLetter) bool {
			return d.Plugin == "inputs.mq_service" && strings.Contains(d.Position, "message "+id)
		})
		if len(got) == 0 {
			t.Errorf("%s: no dead-letter record", id)
			continue
		}
		if id == "poison-huge" {
			for _, d := range got {
				if len(d.Raw)+len(d.RawBase64) > 100<<10 {
					t.Errorf("%s: a dead-letter record keeps %d bytes of raw input; it must be truncated", id, len(d.Raw)+len(d.RawBase64))
				}
			}
		}
		t.Logf("   %-22s -> %d record(s), first: plugin=%s position=%q reason=%q", id, len(got), got[0].Plugin, got[0].Position, trunc(got[0].Reason, 120))
	}
	rejects := 0
	for _, d := range dls {
		if d.Kind == "reject" {
			rejects++
		}
	}
	ms := r.c.Metrics()
	if n := ms.Sum("collector_errors_total", "type", "reject"); int(n) != rejects {
		t.Errorf("collector_errors_total{type=reject} = %v, but the dead-letter file holds %d reject records", n, rejects)
	}
	if n := ms.Sum("collector_plugin_restarts_total"); n != 0 {
		t.Errorf("%v plugin restarts: poison must not crash a plugin", n)
	}
	r.record(result{phase: "poison (6 bad rows, 4 bad messages incl. 20 MiB)", sent: good, stored: r.e.Count(countSQL),
		took: time.Since(began), note: fmt.Sprintf("%d dead-letter records (%d rejects); collector_errors_total{type=reject} %v",
			len(dls), rejects, ms.Sum("collector_errors_total", "type", "reject"))})
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
