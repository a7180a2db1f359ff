package metric

import (
	"testing"
	"time"
)

func TestLabels(t *testing.T) {
	ls := Labels{{"z", "1"}, {"a", "2"}, {"m", "3"}}.Sort()
	if got := ls.String(); got != `{a="2",m="3",z="1"}` {
		t.Fatalf("String() = %s", got)
	}
	if v, ok := ls.Get("m"); !ok || v != "3" {
		t.Fatalf("Get(m) = %q %v", v, ok)
	}
	if _, ok := ls.Get("nope"); ok {
		t.Fatal("Get of a missing key succeeded")
	}
	if Labels(nil).String() != "{}" {
		t.Fatal("empty labels")
	}
}

func TestSeriesIndexInterns(t *testing.T) {
	b := &Batch{}
	x := NewSeriesIndex(b)
	a := x.ID("m", Labels{{"host", "h1"}})
	tests := []struct {
		name   string
		labels Labels
		same   bool
	}{
		{"m", Labels{{"host", "h1"}}, true},
		{"m", Labels{{"host", "h2"}}, false},
		{"m2", Labels{{"host", "h1"}}, false},
		// The key separates name, keys and values: no ambiguity from
		// concatenation.
		{"m", Labels{{"hos", "th1"}}, false},
		{"m", nil, false},
	}
	for _, tt := range tests {
		id := x.ID(tt.name, tt.labels)
		if (id == a) != tt.same {
			t.Errorf("ID(%s%v) = %d, first series %d, want same=%v", tt.name, tt.labels, id, a, tt.same)
		}
	}
	if len(b.Series) != 5 {
		t.Fatalf("%d series, want 5", len(b.Series))
	}
}

func TestCompact(t *testing.T) {
	b := &Batch{}
	s0 := b.AddSeries("a", nil)
	s1 := b.AddSeries("b", nil)
	s2 := b.AddSeries("c", nil)
	b.Add(s2, 1, 1)
	b.Add(s0, 2, 2)
	b.Add(s2, 3, 3)
	_ = s1
	b.Compact()
	if len(b.Series) != 2 || b.Series[0].Name != "a" || b.Series[1].Name != "c" {
		t.Fatalf("series after Compact: %+v", b.Series)
	}
	want := []string{"c", "a", "c"}
	for i, w := range want {
		if got := b.Sample(i).Name; got != w {
			t.Errorf("point %d refers to %q, want %q", i, got, w)
		}
	}
	empty := &Batch{}
	empty.AddSeries("x", nil)
	empty.Compact()
	if len(empty.Series) != 0 {
		t.Fatal("a batch without points keeps unused series")
	}
}

func TestSampleAndReset(t *testing.T) {
	b := &Batch{}
	when := time.Date(2025, 7, 18, 20, 42, 34, 5, time.UTC)
	b.AddSample(Sample{Name: "gpu_power_watts", Labels: Labels{{"gpu_uuid", "GPU-1"}}, Time: when, Value: 689.457})
	b.Reject("bad", "line 3", []byte("x"))
	s := b.Sample(0)
	if s.Name != "gpu_power_watts" || !s.Time.Equal(when) || s.Value != 689.457 || s.Time.Location() != time.UTC {
		t.Fatalf("Sample(0) = %+v", s)
	}
	if b.Len() != 1 || len(b.Rejects) != 1 {
		t.Fatal("Len or Rejects wrong")
	}
	b.Reset()
	if b.Len() != 0 || len(b.Series) != 0 || len(b.Rejects) != 0 {
		t.Fatal("Reset left data")
	}
}
