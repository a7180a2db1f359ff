package e2e

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// TestMalformedInput: a bad row inside a good DCGM message is rejected
// alone (counted, dead-lettered with its position), the good rows land; a
// message of random bytes is dead-lettered and acknowledged; the pipeline
// keeps flowing afterwards.
func TestMalformedInput(t *testing.T) {
	e, mq, c := startPipeline(t, CollectorConfig{})

	// testdata/dcgm_bad_row.csv: the header and the first 12 rows of the
	// export, with the value of file line 7 (GPU-36d6a969..., gpu 6 of
	// mtv5-dgx1-hgpu-031) replaced by "not-a-number".
	bad, err := os.ReadFile("testdata/dcgm_bad_row.csv")
	if err != nil {
		t.Fatal(err)
	}
	const goodRows = 11
	e.Publish(mq.Addr, &mqpb.Message{Id: "bad-row-msg", Topic: "gpu-telemetry", Payload: bad,
		Metadata: map[string]string{"content-type": "dcgm-csv"}})
	e.WaitCount(20*time.Second, goodRows, `SELECT count(*) FROM gpu_metrics`)
	if n := e.Count(`SELECT count(*) FROM gpu_metrics WHERE gpu_uuid = 'GPU-36d6a969-caf0-2674-26d9-1eb517893df7'`); n != 0 {
		t.Errorf("the bad row's GPU has %d samples, want 0", n)
	}
	e.Eventually(10*time.Second, "the bad row to be counted as a reject", func() (bool, string) {
		m := c.Metrics()
		v, _ := m.Get("collector_errors_total", "plugin", "inputs.mq_service", "type", "reject")
		return v == 1, strings.Join(m.Matching("collector_errors_total"), "; ")
	})
	dl := deadLetters(t, c)
	if len(dl) != 1 {
		t.Fatalf("dead letters: %+v, want one", dl)
	}
	if d := dl[0]; d.Kind != "reject" || d.Plugin != "inputs.mq_service" || d.Position != "message bad-row-msg line 7" ||
		!strings.Contains(d.Raw, "not-a-number") || !strings.Contains(d.Raw, "GPU-36d6a969") || d.Reason == "" {
		t.Errorf("dead letter %+v; want a reject of inputs.mq_service at \"message bad-row-msg line 7\" holding the row", d)
	}

	// Random bytes labelled dcgm-csv: dead-lettered and acknowledged.
	rng := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rng.UintN(256))
	}
	e.Publish(mq.Addr, &mqpb.Message{Id: "junk-msg", Topic: "gpu-telemetry", Payload: junk,
		Metadata: map[string]string{"content-type": "dcgm-csv"}})
	st := mq.WaitDrained(20*time.Second, "gpu-telemetry")
	if st.Published != 2 || st.Acked != 2 || st.Nacked != 0 || st.DeadLettered != 0 {
		t.Errorf("broker: %+v; want both messages acknowledged (none nacked or dead-lettered by the broker)", st)
	}
	var junkDL []DeadLetter
	e.Eventually(10*time.Second, "a dead letter for the junk message", func() (bool, string) {
		junkDL = junkDL[:0]
		for _, d := range deadLetters(t, c) {
			if strings.HasPrefix(d.Position, "message junk-msg") {
				junkDL = append(junkDL, d)
			}
		}
		return len(junkDL) > 0, ""
	})
	for _, d := range junkDL {
		if d.Kind != "reject" || d.Plugin != "inputs.mq_service" || d.Reason == "" || d.Raw == "" && d.RawBase64 == "" {
			t.Errorf("junk dead letter %+v: want a reject of inputs.mq_service with a reason and the raw input", d)
		}
	}
	m := c.Metrics()
	if v, _ := m.Get("collector_errors_total", "plugin", "inputs.mq_service", "type", "reject"); v != float64(1+len(junkDL)) {
		t.Errorf("collector_errors_total{inputs.mq_service,reject} = %v, want %d: %v", v, 1+len(junkDL), m.Matching("collector_errors_total"))
	}
	if n := e.Count(`SELECT count(*) FROM gpu_metrics`); n != goodRows {
		t.Errorf("%d samples after the junk message, want %d", n, goodRows)
	}

	// Still flowing.
	e.Stream(StreamOptions{Address: mq.Addr, Format: "dcgm-csv"}, dcgmFile)
	e.WaitCount(30*time.Second, dcgmRows, `SELECT count(*) FROM gpu_metrics`)
	mq.WaitDrained(20*time.Second, "gpu-telemetry")
}

func deadLetters(t *testing.T, c *Collector) []DeadLetter {
	t.Helper()
	dl, err := c.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	return dl
}
