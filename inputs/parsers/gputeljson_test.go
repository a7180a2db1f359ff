package parsers

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const telObj = `{"timestamp":"2025-07-18T20:42:34Z","metric_name":"DCGM_FI_DEV_POWER_USAGE","gpu_id":0,"device":"nvidia0","uuid":"GPU-5fd4","model_name":"NVIDIA H100 80GB HBM3","hostname":"host1","container":"","pod":"","namespace":"","value":689.457,"labels_raw":"DCGM_FI_DRIVER_VERSION=\"535.129.03\",Hostname=\"host1\",__name__=\"DCGM_FI_DEV_POWER_USAGE\",instance=\"host1:9400\""}`

func telWith(metric, value, gpu string) string {
	return `{"timestamp":"2025-07-18T20:42:35Z","metric_name":"` + metric + `","gpu_id":` + gpu + `,"uuid":"GPU-1","hostname":"h","value":` + value + `}`
}

func TestGPUTelJSONSingle(t *testing.T) {
	b := parse(t, FormatGPUTelJSON, Options{}, []byte(telObj))
	if b.Len() != 1 || len(b.Rejects) != 0 {
		t.Fatalf("points %d rejects %+v", b.Len(), b.Rejects)
	}
	s := b.Sample(0)
	want := "DCGM_FI_DRIVER_VERSION=535.129.03,Hostname=host1,UUID=GPU-5fd4,device=nvidia0,gpu=0,instance=host1:9400,modelName=NVIDIA H100 80GB HBM3"
	if s.Name != "DCGM_FI_DEV_POWER_USAGE" || s.Value != 689.457 || labelString(s) != want ||
		!s.Time.Equal(time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)) {
		t.Errorf("got %s %v %s %v", s.Name, s.Value, labelString(s), s.Time)
	}
}

func TestGPUTelJSONShapes(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		values  []float64
		rejects []string
	}{
		{"pretty single", "{\n  \"metric_name\": \"A\",\n  \"value\": \"42.5\",\n  \"gpu_id\": \"3\"\n}\n", []float64{42.5}, nil},
		{"array", "[" + telWith("A", "1", "0") + ",\n" + telWith("B", `"2"`, `"1"`) + "]", []float64{1, 2}, nil},
		{"ndjson", telWith("A", "1", "0") + "\n" + telWith("B", "2", "0") + "\n\n" + telWith("C", "3", "0") + "\n", []float64{1, 2, 3}, nil},
		{"concatenated pretty", "{\"metric_name\":\"A\",\n\"value\":1}\n{\"metric_name\":\"B\",\n\"value\":2}", []float64{1, 2}, nil},
		{"missing values", "[" + telWith("A", `"N/A"`, "0") + "," + telWith("B", "null", "0") + "," + telWith("C", `""`, "0") + "," +
			telWith("D", "9223372036854775794", "0") + "," + telWith("E", `"[N/A]"`, "0") + "," + telWith("F", "5", "0") + "]", []float64{5}, nil},
		{"ndjson bad lines", telWith("A", "1", "0") + "\n" +
			`{"metric_name":"B","value":"abc"}` + "\n" +
			`{"metric_name":` + "\n" +
			`{"value":1}` + "\n" +
			`{"metric_name":"C","value":1,"timestamp":"yesterday"}` + "\n" +
			`{"metric_name":"D","value":[1]}` + "\n" +
			`{"metric_name":"E","value":1,"labels_raw":"a=1"}` + "\n" +
			`[1]` + "\n" +
			telWith("Z", "9", "0") + "\n",
			[]float64{1, 9}, []string{"m line 2", "m line 3", "m line 4", "m line 5", "m line 6", "m line 7", "m line 8"}},
		{"array bad element", "[\n" + telWith("A", "1", "0") + ",\n" + `{"metric_name":"B","value":true,"gpu_id":{}}` + ",\n" + `"str"` + ",\n" + telWith("C", "3", "0") + "\n]",
			[]float64{1, 3}, []string{"m line 3", "m line 4"}},
		{"array syntax error keeps the head", "[\n" + telWith("A", "1", "0") + ",\n" + `{"metric_name": }` + "\n]", []float64{1}, []string{"m line 3"}},
		{"labels_raw object", `{"metric_name":"A","value":1,"labels_raw":{"job":"j","n":2,"__name__":"A"}}`, []float64{1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := parseWith(t, mustParser(t, FormatGPUTelJSON, Options{}), tt.payload)
			var vals []float64
			for _, p := range b.Points {
				vals = append(vals, p.Value)
			}
			if !slices.Equal(vals, tt.values) {
				t.Errorf("values %v, want %v", vals, tt.values)
			}
			if got := rejectPositions(b); !slices.Equal(got, tt.rejects) {
				t.Errorf("rejects %q, want %q (%+v)", got, tt.rejects, b.Rejects)
			}
		})
	}
}

func TestGPUTelJSONLabels(t *testing.T) {
	b := parseWith(t, mustParser(t, FormatGPUTelJSON, Options{}),
		`{"metric_name":"A","value":1,"gpu_id":"2","modelName":"M","UUID":"U","Hostname":"H","pod":"p","labels_raw":{"job":"j","n":2}}`)
	if got, want := labelString(b.Sample(0)), "Hostname=H,UUID=U,gpu=2,job=j,modelName=M,n=2,pod=p"; got != want {
		t.Errorf("labels %s, want %s", got, want)
	}
	if !b.Sample(0).Time.Equal(testMsgTime) {
		t.Errorf("time %v, want message time", b.Sample(0).Time)
	}
	// Numeric timestamps: seconds or milliseconds since the epoch.
	for _, ts := range []string{"1752871354", "1752871354000", `"1752871354.5"`} {
		b := parseWith(t, mustParser(t, FormatGPUTelJSON, Options{}), `{"metric_name":"A","value":1,"timestamp":`+ts+`}`)
		if got := b.Sample(0).Time.Unix(); got != 1752871354 {
			t.Errorf("timestamp %s -> %v", ts, b.Sample(0).Time)
		}
	}
	// Equal series share one entry.
	b = parseWith(t, mustParser(t, FormatGPUTelJSON, Options{}), strings.Repeat(telWith("A", "1", "0")+"\n", 3))
	if b.Len() != 3 || len(b.Series) != 1 {
		t.Errorf("points %d series %d, want 3 and 1", b.Len(), len(b.Series))
	}
}
