package agent

import (
	"sync"
	"time"
)

// logLimiter lets one log line per key through per interval and counts the
// lines it held back, so a flood of bad input cannot flood the log. The
// counters (collector_errors_total) and the dead-letter store still see
// every event. Safe for concurrent use.
type logLimiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, now: time.Now, keys: make(map[string]*limitState)}
}

// allow reports whether a line for key may be logged now and, if so, how
// many lines for key were held back since the last one let through.
func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.keys[key]
	if st == nil {
		st = &limitState{}
		l.keys[key] = st // keys are plugin IDs: a small, fixed set
	}
	if !st.last.IsZero() && now.Sub(st.last) < l.every {
		st.suppressed++
		return false, 0
	}
	suppressed, st.suppressed, st.last = st.suppressed, 0, now
	return true, suppressed
}
