package parsers

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

func TestDCGMCSVExport(t *testing.T) {
	b := parse(t, FormatDCGMCSV, Options{}, readTestdata(t, "dcgm_metrics.csv"))
	if len(b.Rejects) != 0 {
		t.Fatalf("rejects: %+v", b.Rejects[0])
	}
	if b.Len() != 2470 {
		t.Errorf("points = %d, want 2470", b.Len())
	}
	if n := distinct(b, "UUID"); n != 247 {
		t.Errorf("distinct UUID = %d, want 247", n)
	}
	if n := distinct(b, "Hostname"); n != 31 {
		t.Errorf("distinct Hostname = %d, want 31", n)
	}
	maxPower := 0.0
	for _, s := range find(b, "DCGM_FI_DEV_POWER_USAGE") {
		maxPower = max(maxPower, s.Value)
	}
	if maxPower != 689.457 {
		t.Errorf("max power = %v, want 689.457", maxPower)
	}
	// FB_USED + FB_FREE = 81007 MiB on every GPU.
	fb := map[string]float64{}
	for _, name := range []string{"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"} {
		for _, s := range find(b, name) {
			u, _ := s.Labels.Get("UUID")
			fb[u] += s.Value
		}
	}
	if len(fb) != 247 {
		t.Errorf("GPUs with FB values = %d, want 247", len(fb))
	}
	for u, sum := range fb {
		if sum != 81007 {
			t.Errorf("%s: FB_USED+FB_FREE = %v, want 81007", u, sum)
		}
	}

	// Spot checks (lines 2, 1236 and 2471 of the file).
	spots := []struct {
		name, uuid string
		time       string
		value      float64
		labels     string
	}{
		{"DCGM_FI_DEV_GPU_UTIL", "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "2025-07-18T20:42:34Z", 0,
			"DCGM_FI_DRIVER_VERSION=535.129.03,Hostname=mtv5-dgx1-hgpu-031,UUID=GPU-5fd4f087-86f3-7a43-b711-4771313afc50,device=nvidia0,gpu=0,instance=mtv5-dgx1-hgpu-031:9400,job=dgx_dcgm_exporter,modelName=NVIDIA H100 80GB HBM3"},
		{"DCGM_FI_DEV_FB_USED", "GPU-6babf988-9820-274a-1df1-585720ae19cf", "2025-07-18T20:42:35Z", 75819,
			"DCGM_FI_DRIVER_VERSION=535.129.03,Hostname=mtv5-dgx1-hgpu-026,UUID=GPU-6babf988-9820-274a-1df1-585720ae19cf,device=nvidia6,gpu=6,instance=mtv5-dgx1-hgpu-026:9400,job=dgx_dcgm_exporter,modelName=NVIDIA H100 80GB HBM3"},
		{"DCGM_FI_DEV_MEM_CLOCK", "GPU-6babf988-9820-274a-1df1-585720ae19cf", "2025-07-18T20:42:37Z", 2619,
			"DCGM_FI_DRIVER_VERSION=535.129.03,Hostname=mtv5-dgx1-hgpu-026,UUID=GPU-6babf988-9820-274a-1df1-585720ae19cf,device=nvidia6,gpu=6,instance=mtv5-dgx1-hgpu-026:9400,job=dgx_dcgm_exporter,modelName=NVIDIA H100 80GB HBM3"},
	}
	for _, sp := range spots {
		want, _ := time.Parse(time.RFC3339, sp.time)
		var hit int
		for _, s := range find(b, sp.name, "UUID", sp.uuid) {
			if !s.Time.Equal(want) {
				continue
			}
			hit++
			if s.Value != sp.value {
				t.Errorf("%s %s: value %v, want %v", sp.name, sp.uuid, s.Value, sp.value)
			}
			if got := labelString(s); got != sp.labels {
				t.Errorf("%s %s: labels\n got %s\nwant %s", sp.name, sp.uuid, got, sp.labels)
			}
		}
		if hit != 1 {
			t.Errorf("%s %s at %s: %d samples, want 1", sp.name, sp.uuid, sp.time, hit)
		}
	}
}

const dcgmHeader = `timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw`

func TestDCGMCSVRows(t *testing.T) {
	row := func(metric, value, labels string) string {
		return `"2025-07-18T20:42:34Z","` + metric + `","0","nvidia0","GPU-1","H100","host1","","","","` + value + `","` + labels + `"`
	}
	lr := `DCGM_FI_DRIVER_VERSION=""535"",Hostname=""host1"",__name__=""X"",gpu=""0"",job=""j""`
	tests := []struct {
		name      string
		payload   string
		points    int
		rejects   []string // positions
		wantValue []float64
	}{
		{"ok", dcgmHeader + "\n" + row("A", "1.5", lr) + "\n", 1, nil, []float64{1.5}},
		{"crlf and no final newline", dcgmHeader + "\r\n" + row("A", "2", lr), 1, nil, []float64{2}},
		{"header repeated", dcgmHeader + "\n" + row("A", "1", lr) + "\n" + dcgmHeader + "\n" + row("B", "2", lr) + "\n", 2, nil, []float64{1, 2}},
		{"missing values", dcgmHeader + "\n" + row("A", "", lr) + "\n" + row("B", "N/A", lr) + "\n" + row("C", "[N/A]", lr) + "\n" + row("D", "NaN", lr) + "\n" + row("E", "3", lr) + "\n", 1, nil, []float64{3}},
		{"blank sentinels", dcgmHeader + "\n" + row("A", "9223372036854775794", lr) + "\n" + row("B", "2147483632", lr) + "\n" + row("C", "140737488355328", lr) + "\n" + row("D", "7", lr) + "\n", 1, nil, []float64{7}},
		{"garbage value rejected alone", dcgmHeader + "\n" + row("A", "1", lr) + "\n" + row("B", "abc", lr) + "\n" + row("C", "3", lr) + "\n", 2, []string{"m line 3"}, []float64{1, 3}},
		{"bad rows", dcgmHeader + "\n" +
			`"2025-07-18T20:42:34Z","A","0"` + "\n" + // too few fields
			row("B", "1", lr) + "\n" +
			`"2025-07-18T20:42:34Z","A","0","nvidia0","GPU-1","H100","host1","","","","1","unterminated` + "\n" +
			`"yesterday","A","0","nvidia0","GPU-1","H100","host1","","","","1",""` + "\n" +
			row("", "1", lr) + "\n" +
			row("C", "1", `broken`) + "\n" +
			"\n" +
			row("D", "4", lr) + "\n",
			2, []string{"m line 2", "m line 4", "m line 5", "m line 6", "m line 7"}, []float64{1, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParser(t, FormatDCGMCSV, Options{})
			b := parseWith(t, p, tt.payload)
			if b.Len() != tt.points {
				t.Errorf("points = %d, want %d", b.Len(), tt.points)
			}
			if got := rejectPositions(b); !slices.Equal(got, tt.rejects) {
				t.Errorf("reject positions = %q, want %q (%+v)", got, tt.rejects, b.Rejects)
			}
			var vals []float64
			for _, p := range b.Points {
				vals = append(vals, p.Value)
			}
			if !slices.Equal(vals, tt.wantValue) {
				t.Errorf("values = %v, want %v", vals, tt.wantValue)
			}
			for _, r := range b.Rejects {
				if len(r.Raw) == 0 || bytes.Contains(r.Raw, []byte("\n")) {
					t.Errorf("reject raw %q: want the one row", r.Raw)
				}
			}
		})
	}
}

func TestDCGMCSVHeaderByName(t *testing.T) {
	// Columns reordered, upper case, extra column, no labels_raw.
	payload := "VALUE,Extra,METRIC_NAME,UUID,TIMESTAMP,hostname\n" +
		"42,x,DCGM_FI_DEV_GPU_TEMP,GPU-9,2025-07-18T20:42:34.5Z,h9\n"
	b := parseWith(t, mustParser(t, FormatDCGMCSV, Options{}), payload)
	if b.Len() != 1 {
		t.Fatalf("points = %d (rejects %+v)", b.Len(), b.Rejects)
	}
	s := b.Sample(0)
	want := time.Date(2025, 7, 18, 20, 42, 34, 5e8, time.UTC)
	if s.Name != "DCGM_FI_DEV_GPU_TEMP" || s.Value != 42 || !s.Time.Equal(want) || labelString(s) != "Hostname=h9,UUID=GPU-9" {
		t.Errorf("got %+v", s)
	}
	// No timestamp column: message time.
	b = parseWith(t, mustParser(t, FormatDCGMCSV, Options{}), "metric_name,value\nA,1\n")
	if b.Len() != 1 || !b.Sample(0).Time.Equal(testMsgTime) {
		t.Errorf("msgTime fallback: %+v", b.Points)
	}
}

func TestDCGMCSVSeriesShared(t *testing.T) {
	payload := dcgmHeader + "\n" +
		`"2025-07-18T20:42:34Z","A","0","nvidia0","GPU-1","H100","host1","c","p","ns","1",""` + "\n" +
		`"2025-07-18T20:42:35Z","A","0","nvidia0","GPU-1","H100","host1","c","p","ns","2",""` + "\n"
	b := parseWith(t, mustParser(t, FormatDCGMCSV, Options{}), payload)
	if b.Len() != 2 || len(b.Series) != 1 {
		t.Fatalf("points %d series %d, want 2 and 1", b.Len(), len(b.Series))
	}
	if got := labelString(b.Sample(0)); got != "Hostname=host1,UUID=GPU-1,container=c,device=nvidia0,gpu=0,modelName=H100,namespace=ns,pod=p" {
		t.Errorf("labels %s", got)
	}
}

func parseWith(t testing.TB, p Parser, payload string) *sdkBatch {
	t.Helper()
	var b sdkBatch
	if err := p.Parse([]byte(payload), testMsgTime, "m", &b); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkBatch(t, &b)
	return &b
}
