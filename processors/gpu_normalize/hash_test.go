package gpunormalize

import (
	"context"
	"testing"
)

// TestCanonicalHashCollision: a canonical id found by its hash is checked
// against the stored series, so a collision (forced here by pointing every
// hash at canonical series 0) never moves points to another GPU's series.
func TestCanonicalHashCollision(t *testing.T) {
	n := New()
	if _, err := n.Process(context.Background(), syntheticBatch(2, 1)); err != nil {
		t.Fatal(err)
	}
	for h := range n.canonIDs {
		n.canonIDs[h] = 0
	}
	clear(n.cache) // resolve the source series again, through canonIDs
	b := syntheticBatch(2, 1)
	want := b.Sample(1).Labels.String()
	out, err := n.Process(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Len() != 2 {
		t.Fatalf("got %d batches", len(out))
	}
	a, c := out[0].Sample(0), out[0].Sample(1)
	if a.Labels.String() == c.Labels.String() {
		t.Fatalf("two GPUs share the series %s (source %s)", a.Labels, want)
	}
}
