package conf

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	suggestpkg "github.com/telemetry-collector/telemetry-collector/internal/suggest"
)

// Error is one configuration problem. Load returns every problem it finds,
// joined with errors.Join; use Errors to get them back as a slice.
type Error struct {
	Pos Position // where the offending key or table was written
	Key string   // dotted key, e.g. "agent.log_level" or "outputs.postgresql.batch_size"; may be ""
	Msg string   // what is wrong and what to do about it
	Err error    // underlying error, if any (for errors.Is/As)
}

// Error renders "FILE:LINE: key: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Errors flattens err (as returned by Load, possibly joined) into its
// *Error parts. Errors that are not *Error are wrapped in one without a
// position.
func Errors(err error) []*Error {
	if err == nil {
		return nil
	}
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *Error
		if errors.As(err, &ce) {
			out = append(out, ce)
			return
		}
		out = append(out, &Error{Msg: err.Error(), Err: err})
	}
	walk(err)
	return out
}

// KeyError builds an *Error for key (a path inside the plugin's table, as in
// Positions) positioned where the key was written. The agent uses it to
// turn a plugin's Configure/Validate complaint into "FILE:LINE: key: msg".
func (p *Plugin) KeyError(key, msg string) *Error {
	k := p.tableName()
	if key != "" {
		k += "." + key
	}
	return &Error{Pos: p.KeyPosition(key), Key: k, Msg: msg}
}

// tableName is "outputs.postgresql", the name the user wrote.
func (p *Plugin) tableName() string { return string(p.Kind) + "s." + p.Name }

// errorList collects errors in the order they are found and sorts them by
// file (merge order) and line at the end.
type errorList struct {
	files []string
	errs  []*Error
}

func (l *errorList) add(pos Position, key, format string, args ...any) {
	l.errs = append(l.errs, &Error{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (l *errorList) addErr(e *Error) { l.errs = append(l.errs, e) }

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	order := map[string]int{}
	for i, f := range l.files {
		if _, ok := order[f]; !ok {
			order[f] = i
		}
	}
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i].Pos, l.errs[j].Pos
		if oa, ob := order[a.File], order[b.File]; oa != ob {
			return oa < ob
		}
		return a.Line < b.Line
	})
	errs := make([]error, len(l.errs))
	for i, e := range l.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// suggest returns ` (did you mean "x"?)` when word is close to a candidate.
func suggest(word string, candidates []string) string {
	if c := suggestpkg.Closest(word, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}
