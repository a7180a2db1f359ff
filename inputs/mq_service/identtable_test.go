package mq_service

import (
	"testing"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestIdentTable: entries are found until the next reset, across growth;
// absent identities (another slice, another length, another name) are not
// found; a reset empties the table, and generations wrapping around do not
// resurrect old entries.
func TestIdentTable(t *testing.T) {
	names := make([]string, 3000)
	sets := make([]sdk.Labels, 3000)
	for i := range names {
		names[i] = string(rune('a'+i%26)) + string(rune('A'+i/26%26)) + string(rune('0'+i/676))
		sets[i] = sdk.Labels{{Key: "k", Value: names[i]}, {Key: "x", Value: "y"}}
	}
	ident := func(i int, ls sdk.Labels) seriesIdent { return identOf(names[i], ls) }
	for _, tc := range []struct {
		name  string
		n     int
		reset int // resets before the round
	}{
		{"empty", 0, 1},
		{"one", 1, 1},
		{"below growth", 500, 1},
		{"grows", 3000, 1},
		{"after many resets", 3000, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tb identTable
			for r := 0; r < tc.reset; r++ {
				tb.reset()
				if r < tc.reset-1 { // stale entries of an earlier generation
					for i := 0; i < tc.n; i++ {
						tb.put(ident(i, sets[i]), 99)
					}
				}
			}
			for i := 0; i < tc.n; i++ {
				if _, ok := tb.get(ident(i, sets[i])); ok {
					t.Fatalf("entry %d present before put", i)
				}
				tb.put(ident(i, sets[i]), uint32(i))
			}
			for i := 0; i < tc.n; i++ {
				id, ok := tb.get(ident(i, sets[i]))
				if !ok || id != uint32(i) {
					t.Fatalf("entry %d: got %d, %v", i, id, ok)
				}
				if _, ok := tb.get(ident(i, sets[i][:1])); ok {
					t.Fatalf("entry %d found with another length", i)
				}
				other := append(sdk.Labels(nil), sets[i]...)
				if _, ok := tb.get(ident(i, other)); ok {
					t.Fatalf("entry %d found with another slice of equal contents", i)
				}
			}
			tb.reset()
			for i := 0; i < tc.n; i++ {
				if _, ok := tb.get(ident(i, sets[i])); ok {
					t.Fatalf("entry %d present after reset", i)
				}
			}
		})
	}
	// Generation wrap-around.
	var tb identTable
	tb.reset()
	tb.put(ident(0, sets[0]), 7)
	tb.gen = ^uint32(0)
	tb.put(ident(1, sets[1]), 8)
	tb.reset() // wraps to 0: everything is cleared
	if _, ok := tb.get(ident(1, sets[1])); ok {
		t.Fatal("entry survived the generation wrap-around")
	}
}
