package agent

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLogLimiter(10 * time.Second)
	l.now = func() time.Time { return now }
	steps := []struct {
		advance        time.Duration
		key            string
		wantOK         bool
		wantSuppressed int
	}{
		{0, "a", true, 0},
		{time.Second, "a", false, 0},
		{time.Second, "a", false, 0},
		{0, "b", true, 0}, // keys are independent
		{8 * time.Second, "a", true, 2},
		{time.Second, "a", false, 0},
		{10 * time.Second, "a", true, 1},
		{10 * time.Second, "a", true, 0},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, sup := l.allow(s.key)
		if ok != s.wantOK || sup != s.wantSuppressed {
			t.Fatalf("step %d: allow(%s) = %v, %d; want %v, %d", i, s.key, ok, sup, s.wantOK, s.wantSuppressed)
		}
	}
}
