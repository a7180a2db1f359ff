package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestSlicer: each piece holds exactly its points, with the series they
// use (renumbered in first-use order); labels are shared with the source
// only for outputs that read labels only; the scratch state is clean for
// the next piece, also of another batch.
func TestSlicer(t *testing.T) {
	src := &sdk.Batch{}
	a := src.AddSeries("a", sdk.Labels{{Key: "gpu", Value: "0"}})
	b := src.AddSeries("b", sdk.Labels{{Key: "gpu", Value: "1"}})
	c := src.AddSeries("c", nil)
	for i, s := range []uint32{b, a, b, c, a, a, c} {
		src.Add(s, int64(i), float64(i))
	}
	tests := []struct {
		i, j   int
		series string // names of the piece's series, in order
		refs   string // the points' series indexes
	}{
		{0, 3, "b a", "0 1 0"},
		{3, 7, "c a", "0 1 1 0"},
		{0, 7, "b a c", "0 1 0 2 1 1 2"},
		{6, 7, "c", "0"},
	}
	var sl slicer
	for _, share := range []bool{true, false} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("share=%v/%d-%d", share, tt.i, tt.j), func(t *testing.T) {
				p := sl.slice(src, tt.i, tt.j, share)
				var names, refs string
				for k, s := range p.Series {
					if k > 0 {
						names += " "
					}
					names += s.Name
				}
				for k, pt := range p.Points {
					if k > 0 {
						refs += " "
					}
					refs += fmt.Sprint(pt.Series)
					if want := src.Points[tt.i+k]; pt.Time != want.Time || pt.Value != want.Value ||
						p.Series[pt.Series].Name != src.Series[want.Series].Name {
						t.Errorf("point %d = %+v, want %+v of series %s", k, pt, want, src.Series[want.Series].Name)
					}
				}
				if names != tt.series || refs != tt.refs {
					t.Fatalf("series %q refs %q, want %q %q", names, refs, tt.series, tt.refs)
				}
				for _, s := range p.Series {
					if len(s.Labels) == 0 {
						continue
					}
					orig := src.Series[map[string]uint32{"a": a, "b": b}[s.Name]].Labels
					if shared := &s.Labels[0] == &orig[0]; shared != share {
						t.Errorf("series %s: labels shared %v, want %v", s.Name, shared, share)
					}
					if !share {
						s.Labels[0].Value = "changed" // the output owns its copy
						if orig[0].Value == "changed" {
							t.Fatal("a copy changed the source's labels")
						}
					}
				}
			})
		}
	}
	// A smaller batch next: the scratch state holds nothing of the last.
	small := &sdk.Batch{}
	small.Add(small.AddSeries("z", nil), 1, 1)
	if p := sl.slice(small, 0, 1, true); len(p.Series) != 1 || p.Series[0].Name != "z" || p.Points[0].Series != 0 {
		t.Fatalf("piece of the next batch: %+v", p)
	}
}

// TestCloneBatch: a fan-out copy has its own series and points, and its
// own labels unless every output reads labels only.
func TestCloneBatch(t *testing.T) {
	src := batchOf(0, 4)
	for _, share := range []bool{true, false} {
		c := cloneBatch(src, share)
		if fmt.Sprint(c.Points) != fmt.Sprint(src.Points) || fmt.Sprint(c.Series) != fmt.Sprint(src.Series) {
			t.Fatalf("share=%v: copy %+v differs from %+v", share, c, src)
		}
		if &c.Points[0] == &src.Points[0] || &c.Series[0] == &src.Series[0] {
			t.Fatalf("share=%v: points or series not copied", share)
		}
		if shared := &c.Series[0].Labels[0] == &src.Series[0].Labels[0]; shared != share {
			t.Errorf("share=%v: labels shared %v", share, shared)
		}
	}
}

// labelReadingOutput is a testOutput that promises to read labels only.
type labelReadingOutput struct{ *testOutput }

func (labelReadingOutput) ReadsLabelsOnly() bool { return true }

// TestFanoutSharesLabelsOnlyWithLabelReaders: the two required outputs'
// batches share label slices when both read labels only, and do not when
// one of them may change labels.
func TestFanoutSharesLabelsOnlyWithLabelReaders(t *testing.T) {
	for _, bothRead := range []bool{true, false} {
		t.Run(fmt.Sprintf("both_read=%v", bothRead), func(t *testing.T) {
			var mu sync.Mutex
			var firsts []*sdk.Label
			record := func(_ context.Context, b *sdk.Batch) error {
				mu.Lock()
				defer mu.Unlock()
				firsts = append(firsts, &b.Series[0].Labels[0])
				return nil
			}
			a := &testOutput{hook: record}
			bo := &testOutput{hook: record}
			var second sdk.Output = bo
			if bothRead {
				second = labelReadingOutput{bo}
			}
			h := start(t, setup{
				outputs: []conf.Plugin{outputPlugin("a", nil), outputPlugin("b", nil)},
				outImpl: map[string]sdk.Output{"a": labelReadingOutput{a}, "b": second},
			})
			h.emit(t, 1, batchOf(0, 4))
			h.acks.wait(t, 1, 5*time.Second)
			if err := h.stop(t); err != nil {
				t.Fatal(err)
			}
			if len(firsts) != 2 {
				t.Fatalf("%d writes, want 2", len(firsts))
			}
			if shared := firsts[0] == firsts[1]; shared != bothRead {
				t.Errorf("labels shared %v, want %v", shared, bothRead)
			}
		})
	}
}
