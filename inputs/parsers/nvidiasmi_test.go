package parsers

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNvidiaSMIFile(t *testing.T) {
	zone := time.FixedZone("UTC-5", -5*3600)
	b := parse(t, FormatNvidiaSMICSV, Options{Location: zone}, readTestdata(t, "nvidia-smi-query-gpu.csv"))
	if len(b.Rejects) != 0 {
		t.Fatalf("rejects: %+v", b.Rejects[0])
	}
	// 49 columns: timestamp, 7 identity fields, a repeated
	// clocks_event_reasons.active, compute_mode (text), fan.speed and
	// retired_pages.pending ([N/A]) leave 37 samples per row; 40 rows.
	perTime := map[int64]int{}
	for _, p := range b.Points {
		perTime[p.Time]++
	}
	if len(perTime) != 40 {
		t.Errorf("rows = %d, want 40", len(perTime))
	}
	for ts, n := range perTime {
		if n != 37 {
			t.Errorf("row at %v: %d samples, want 37", time.Unix(0, ts), n)
		}
	}
	if b.Len() != 40*37 {
		t.Errorf("points = %d, want %d", b.Len(), 40*37)
	}
	// Every series of the file has 40 points (one per row).
	if len(b.Series) != 37 {
		t.Errorf("series = %d, want 37", len(b.Series))
	}
	for _, absent := range []string{"fan.speed", "retired_pages.pending", "timestamp", "index", "uuid", "name", "serial", "compute_mode"} {
		if n := len(find(b, absent)); n != 0 {
			t.Errorf("%s: %d samples, want none", absent, n)
		}
	}
	first := time.Date(2026, 11, 26, 20, 58, 55, 944e6, zone)
	last := time.Date(2026, 11, 26, 20, 59, 6, 78e6, zone)
	wantLabels := "compute_mode=Default,driver_version=580.159.04,index=0,name=NVIDIA H100 80GB HBM3,pci.bus_id=00000000:00:06.0,serial=1652724134506,uuid=GPU-75646445-1f40-4f29-9273-53c0002830cf,vbios_version=96.00.DA.00.0C"
	tests := []struct {
		name string
		at   time.Time
		want float64
	}{
		{"pstate", first, 0},                                   // P0
		{"clocks_event_reasons.active", first, 1},              // 0x0000000000000001
		{"clocks_event_reasons.active", last, 0},               // 0x0000000000000000
		{"clocks_event_reasons.hw_thermal_slowdown", first, 0}, // Not Active
		{"persistence_mode", first, 1},                         // Enabled
		{"mig.mode.current", first, 0},                         // Disabled
		{"utilization.gpu", first, 0},                          // 0 %
		{"memory.total", first, 81559},                         // 81559 MiB
		{"power.draw", first, 73.97},                           // 73.97 W
		{"power.draw", last, 128.46},                           // 128.46 W
		{"clocks.current.sm", last, 1980},                      // 1980 MHz
		{"temperature.memory", first, 51},                      // no unit
		{"compute_cap", first, 9.0},                            // 9.0
		{"memory.free", last, 80295},                           // 80295 MiB
		{"ecc.errors.uncorrected.volatile.total", last, 0},     // 0
		{"protected_memory.used", last, 0},                     // 0 MiB
		{"clocks_event_reasons.sw_thermal_slowdown", last, 0},  // Not Active
		{"enforced.power.limit", last, 700},                    // 700.00 W
		{"pcie.link.width.current", last, 16},                  // 16
		{"clocks.current.video", last, 1545},                   // 1545 MHz
		{"remapped_rows.correctable", first, 0},                // 0
		{"power.draw.instant", first, 73.80},                   // 73.80 W
		{"utilization.memory", last, 0},                        // 0 %
		{"clocks.max.memory", first, 2619},                     // 2619 MHz
		{"temperature.gpu", last, 49},                          // 49
		{"memory.used", last, 785},                             // 785 MiB
		{"pcie.link.gen.current", first, 5},                    // 5
		{"clocks_event_reasons.sw_power_cap", first, 0},        // Not Active
		{"power.max_limit", first, 700},                        // 700.00 W
		{"clocks.current.graphics", first, 345},                // 345 MHz
		{"ecc.errors.corrected.volatile.total", first, 0},      // 0
		{"remapped_rows.uncorrectable", first, 0},              // 0
		{"memory.reserved", first, 480},                        // 480 MiB
		{"power.limit", first, 700},                            // 700.00 W
		{"power.draw.average", first, 73.97},                   // 73.97 W
		{"clocks.current.memory", first, 2619},                 // 2619 MHz
		{"utilization.decoder", first, 0},                      // 0 %
	}
	for _, tt := range tests {
		var got []float64
		for _, s := range find(b, tt.name) {
			if s.Time.Equal(tt.at) {
				got = append(got, s.Value)
				if ls := labelString(s); ls != wantLabels {
					t.Errorf("%s labels\n got %s\nwant %s", tt.name, ls, wantLabels)
				}
			}
		}
		if !slices.Equal(got, []float64{tt.want}) {
			t.Errorf("%s at %v = %v, want [%v]", tt.name, tt.at, got, tt.want)
		}
	}
}

func TestNvidiaSMIRows(t *testing.T) {
	hdr := "timestamp, index, uuid, power.draw [W], pstate, temperature.gpu, compute_mode, clocks_event_reasons.active, clocks_event_reasons.active\n"
	tests := []struct {
		name    string
		payload string
		points  int
		rejects []string
	}{
		{"ok", hdr + "2026/11/26 20:58:55.944, 0, GPU-a, 68.12 W, P2, 40, Default, 0x01, 0x01\n", 4, nil},
		{"missing values", hdr + "2026/11/26 20:58:55.944, 0, GPU-a, [N/A], [Not Supported], N/A, Default, , 0x01\n", 0, nil},
		{"garbage in a measured field", hdr +
			"2026/11/26 20:58:55.944, 0, GPU-a, lots W, P2, 40, Default, 0x01, 0x01\n" +
			"2026/11/26 20:58:56.944, 0, GPU-a, 1 W, P2, hot, Default, 0x01, 0x01\n" +
			"2026/11/26 20:58:57.944, 0, GPU-a, 1 W, P2, 40, Default, 0x01, 0x01\n", 4, []string{"m line 2", "m line 3"}},
		{"bad rows", hdr +
			"2026/11/26 20:58:55.944, 0, GPU-a\n" +
			"yesterday, 0, GPU-a, 1 W, P2, 40, Default, 0x01, 0x01\n" +
			"2026/11/26 20:58:55.944, \"0, GPU-a, 1 W, P2, 40, Default, 0x01, 0x01\n" +
			"\n" + hdr +
			"2026/11/26 20:58:57.944, 0, GPU-a, 1 W, P2, 40, Default, 0x01, 0x01\n", 4, []string{"m line 2", "m line 3", "m line 4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := parseWith(t, mustParser(t, FormatNvidiaSMICSV, Options{Location: time.UTC}), tt.payload)
			if b.Len() != tt.points {
				t.Errorf("points = %d, want %d", b.Len(), tt.points)
			}
			if got := rejectPositions(b); !slices.Equal(got, tt.rejects) {
				t.Errorf("rejects %q, want %q (%+v)", got, tt.rejects, b.Rejects)
			}
		})
	}
}

func TestNvidiaSMILabelsAndDuplicates(t *testing.T) {
	payload := "timestamp, index, uuid, power.draw [W], pstate, compute_mode, x.flag, x.flag\n" +
		"2026/11/26 20:58:55.944, 0, GPU-a, 68.12 W, P2, Default, 1, 2\n" +
		"2026/11/26 20:58:56.944, 0, GPU-a, 70 W, P3, Exclusive_Process, 1, 2\n"
	b := parseWith(t, mustParser(t, FormatNvidiaSMICSV, Options{Location: time.UTC}), payload)
	got := map[string][]string{}
	for i := range b.Points {
		s := b.Sample(i)
		got[s.Name] = append(got[s.Name], labelString(s)+" "+s.Time.Format(time.RFC3339Nano)+" "+strings.TrimSpace(formatBound(s.Value)))
	}
	want := map[string][]string{
		"power.draw": {"compute_mode=Default,index=0,uuid=GPU-a 2026-11-26T20:58:55.944Z 68.12", "compute_mode=Exclusive_Process,index=0,uuid=GPU-a 2026-11-26T20:58:56.944Z 70"},
		"pstate":     {"compute_mode=Default,index=0,uuid=GPU-a 2026-11-26T20:58:55.944Z 2", "compute_mode=Exclusive_Process,index=0,uuid=GPU-a 2026-11-26T20:58:56.944Z 3"},
		"x.flag":     {"compute_mode=Default,index=0,uuid=GPU-a 2026-11-26T20:58:55.944Z 1", "compute_mode=Exclusive_Process,index=0,uuid=GPU-a 2026-11-26T20:58:56.944Z 1"},
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("%s:\n got %q\nwant %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("names %v", got)
	}
	// No timestamp column: message time; nil Location: time.Local is used.
	b = parseWith(t, mustParser(t, FormatNvidiaSMICSV, Options{}), "index, power.draw [W]\n0, 5 W\n")
	if b.Len() != 1 || !b.Sample(0).Time.Equal(testMsgTime) {
		t.Errorf("msgTime fallback: %+v", b.Points)
	}
}
