package parsers

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPrometheusFile(t *testing.T) {
	payload := readTestdata(t, "dcgm-exporter-metrics.txt")
	b := parse(t, FormatPrometheus, Options{}, payload)
	if len(b.Rejects) != 0 {
		t.Fatalf("rejects %+v", b.Rejects)
	}
	if b.Len() != 25 || len(b.Series) != 25 {
		t.Fatalf("points %d series %d, want 25 and 25", b.Len(), len(b.Series))
	}
	for i := range b.Points {
		if s := b.Sample(i); !s.Time.Equal(testMsgTime) {
			t.Fatalf("%s: time %v, want the message time", s.Name, s.Time)
		}
	}
	common := "DCGM_FI_DRIVER_VERSION=580.95.05,Hostname=lke529760-766837-0a634ab30000,UUID=GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c,container=cuda,device=nvidia0,gpu=0,modelName=NVIDIA RTX 4000 Ada Generation,namespace=default,pci_bus_id=00000000:00:02.0,pod=cuda-75454ffb9f-8ljq7"
	tests := []struct {
		name   string
		value  float64
		labels string
	}{
		{"DCGM_FI_DEV_SM_CLOCK", 2310, common},
		{"DCGM_FI_DEV_POWER_USAGE", 40.979, common},
		{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 455497156, common},
		{"DCGM_FI_DEV_FB_FREE", 20015, common},
		{"DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.004656, common},
		{"DCGM_FI_PROF_PCIE_RX_BYTES", 45987793, common},
		{"DCGM_FI_DEV_XID_ERRORS", 0, "DCGM_FI_DRIVER_VERSION=580.95.05,Hostname=lke529760-766837-0a634ab30000,UUID=GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c,container=cuda,device=nvidia0,err_code=0,err_msg=No Error,gpu=0,modelName=NVIDIA RTX 4000 Ada Generation,namespace=default,pci_bus_id=00000000:00:02.0,pod=cuda-75454ffb9f-8ljq7"},
	}
	for _, tt := range tests {
		got := find(b, tt.name)
		if len(got) != 1 || got[0].Value != tt.value {
			t.Errorf("%s = %+v, want one sample %v", tt.name, got, tt.value)
			continue
		}
		if ls := labelString(got[0]); ls != tt.labels {
			t.Errorf("%s labels\n got %s\nwant %s", tt.name, ls, tt.labels)
		}
	}
}

func TestPrometheusTypesAndTimestamps(t *testing.T) {
	payload := `# TYPE req_seconds histogram
req_seconds_bucket{path="/a",le="0.1"} 3
req_seconds_bucket{path="/a",le="1"} 5
req_seconds_bucket{path="/a",le="+Inf"} 6
req_seconds_sum{path="/a"} 2.5
req_seconds_count{path="/a"} 6
# TYPE lat summary
lat{quantile="0.5"} 0.2
lat{quantile="0.99"} 0.9
lat_sum 12
lat_count 40
# TYPE up gauge
up{job="x"} 1 1700000000123
up{job="y"} NaN
plain 7
DCGM_FI_DEV_MEMORY_TEMP{gpu="0"} 9223372036854775794
`
	b := parse(t, FormatPrometheus, Options{}, []byte(payload))
	var got []string
	for i := range b.Points {
		s := b.Sample(i)
		ts := "msg"
		if !s.Time.Equal(testMsgTime) {
			ts = s.Time.Format(time.RFC3339Nano)
		}
		got = append(got, s.Name+"{"+labelString(s)+"} "+formatBound(s.Value)+" "+ts)
	}
	slices.Sort(got)
	want := []string{
		"lat_count{} 40 msg",
		"lat_sum{} 12 msg",
		"lat{quantile=0.5} 0.2 msg",
		"lat{quantile=0.99} 0.9 msg",
		"plain{} 7 msg",
		"req_seconds_bucket{le=+Inf,path=/a} 6 msg",
		"req_seconds_bucket{le=0.1,path=/a} 3 msg",
		"req_seconds_bucket{le=1,path=/a} 5 msg",
		"req_seconds_count{path=/a} 6 msg",
		"req_seconds_sum{path=/a} 2.5 msg",
		"up{job=x} 1 2023-11-14T22:13:20.123Z",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPrometheusBadLines(t *testing.T) {
	good := readTestdata(t, "dcgm-exporter-metrics.txt")
	lines := strings.Split(strings.TrimSuffix(string(good), "\n"), "\n")
	// Break line 9 (DCGM_FI_DEV_MEMORY_TEMP's sample: value) and line 21
	// (DCGM_FI_DEV_PCIE_REPLAY_COUNTER's sample: unterminated label set), and insert a
	// garbage line after line 30.
	lines[8] = strings.Replace(lines[8], "} 0", "} zero", 1)
	lines[20] = strings.Replace(lines[20], `pod_uid=""}`, `pod_uid="`, 1)
	lines = slices.Insert(lines, 30, "this is garbage")
	payload := []byte(strings.Join(lines, "\n") + "\n")

	b := parse(t, FormatPrometheus, Options{}, payload)
	if got, want := rejectPositions(b), []string{"msg-1 line 9", "msg-1 line 21", "msg-1 line 31"}; !slices.Equal(got, want) {
		t.Fatalf("rejects %q, want %q (%+v)", got, want, b.Rejects)
	}
	for i, r := range b.Rejects {
		if bytes.Contains(r.Raw, []byte("\n")) || len(r.Raw) == 0 {
			t.Errorf("reject %d raw %q: want the one line", i, r.Raw)
		}
	}
	if b.Len() != 23 {
		t.Errorf("points %d, want 23", b.Len())
	}
	for _, gone := range []string{"DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"} {
		if n := len(find(b, gone)); n != 0 {
			t.Errorf("%s: %d samples, want 0", gone, n)
		}
	}
	if v := find(b, "DCGM_FI_DEV_SM_CLOCK"); len(v) != 1 || v[0].Value != 2310 {
		t.Errorf("SM clock %+v", v)
	}
}
