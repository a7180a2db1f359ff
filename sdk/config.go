package sdk

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	suggestpkg "github.com/telemetry-collector/telemetry-collector/internal/suggest"
)

// ConfigIssue is one problem in a plugin's configuration. Key is the dotted
// key path inside the plugin's table ("" when the problem is not about one
// key); the agent maps it to a file and line. A ConfigIssue is an error, so
// a Validate method may return errors.Join(&sdk.ConfigIssue{Key: "window",
// Message: "must be positive"}, ...) to name the key it complains about.
type ConfigIssue struct {
	Key     string
	Message string
	// Member is set by the agent's side for a process group: the index of
	// the group's processor whose table the issue is about (0: the first).
	// Plugins leave it 0.
	Member int
}

func (i *ConfigIssue) Error() string {
	if i.Key == "" {
		return i.Message
	}
	return i.Key + ": " + i.Message
}

// ConfigError lists every problem found in a plugin's configuration.
type ConfigError struct {
	Issues []ConfigIssue
}

func (e *ConfigError) Error() string {
	parts := make([]string, len(e.Issues))
	for i := range e.Issues {
		parts[i] = e.Issues[i].Error()
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// IssuesOf flattens err into configuration issues: a *ConfigError gives its
// issues, a *ConfigIssue itself, errors.Join trees are walked, and any other
// error becomes an issue without a key. nil gives nil.
func IssuesOf(err error) []ConfigIssue {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) && ce.Error() == err.Error() {
		return append([]ConfigIssue(nil), ce.Issues...)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []ConfigIssue
		for _, e := range j.Unwrap() {
			out = append(out, IssuesOf(e)...)
		}
		return out
	}
	var ci *ConfigIssue
	if errors.As(err, &ci) && ci.Error() == err.Error() {
		return []ConfigIssue{*ci}
	}
	return []ConfigIssue{{Message: err.Error()}}
}

// UnmarshalTOML lets a Duration decode from a string ("30s") or an integer
// (nanoseconds) in plugin configurations.
func (d *Duration) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		return d.UnmarshalText([]byte(x))
	case int64:
		*d = Duration(x)
		return nil
	case float64:
		if x != math.Trunc(x) {
			return fmt.Errorf("duration %v: not a whole number of nanoseconds (write a string such as \"1.5s\")", x)
		}
		*d = Duration(int64(x))
		return nil
	default:
		return fmt.Errorf("a duration must be a string such as \"30s\", not %T", v)
	}
}

// DecodeConfig decodes a plugin's configuration, given as the JSON of its
// TOML table (what the agent sends), strictly into v (a pointer to a struct
// whose fields carry `toml:"key"` tags; encoding.TextUnmarshaler and
// toml.Unmarshaler fields such as Duration are supported). Empty input or
// "null" means an empty table. Unknown keys and values of the wrong type are
// reported together as a *ConfigError whose issues name the key path; an
// unknown key's message suggests the closest known key.
func DecodeConfig(configJSON []byte, v any) error {
	trimmed := bytes.TrimSpace(configJSON)
	table := map[string]any{}
	if len(trimmed) > 0 && !bytes.Equal(trimmed, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		var raw any
		if err := dec.Decode(&raw); err != nil {
			return &ConfigError{Issues: []ConfigIssue{{Message: fmt.Sprintf("configuration is not valid JSON: %v", err)}}}
		}
		m, ok := raw.(map[string]any)
		if !ok {
			return &ConfigError{Issues: []ConfigIssue{{Message: fmt.Sprintf("configuration must be a table, not %T", raw)}}}
		}
		table = fromJSON(m).(map[string]any)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(table); err != nil {
		return &ConfigError{Issues: []ConfigIssue{{Message: fmt.Sprintf("configuration cannot be expressed as TOML: %v", err)}}}
	}
	md, err := toml.Decode(buf.String(), v)
	var issues []ConfigIssue
	if err != nil {
		issues = append(issues, decodeIssue(err))
	}
	if err == nil {
		for _, k := range md.Undecoded() {
			key := k.String()
			// Undecoded lists a table and its keys; report the table only
			// when the parent was decoded (a whole unknown table).
			if parentUndecoded(md, k) {
				continue
			}
			msg := "unknown key"
			if s := suggest(reflect.TypeOf(v), k); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			issues = append(issues, ConfigIssue{Key: key, Message: msg})
		}
	}
	if len(issues) > 0 {
		return &ConfigError{Issues: issues}
	}
	return nil
}

// fromJSON turns json.Number into int64 (integral) or float64 and drops
// JSON nulls, which TOML cannot express.
func fromJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = fromJSON(e)
		}
		return x
	case []any:
		out := x[:0]
		for _, e := range x {
			if e != nil {
				out = append(out, fromJSON(e))
			}
		}
		return out
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	default:
		return v
	}
}

func parentUndecoded(md toml.MetaData, k toml.Key) bool {
	if len(k) < 2 {
		return false
	}
	parent := k[:len(k)-1]
	for _, u := range md.Undecoded() {
		if u.String() == parent.String() {
			return true
		}
	}
	return false
}

var lastKeyRe = regexp.MustCompile(`^toml: line \d+ \(last key "([^"]*)"\): `)
var lineRe = regexp.MustCompile(`^toml: line \d+: `)

// decodeIssue turns a toml decode error into an issue naming the key.
func decodeIssue(err error) ConfigIssue {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return ConfigIssue{Key: pe.LastKey, Message: humanType(pe.Message)}
	}
	s := err.Error()
	if m := lastKeyRe.FindStringSubmatch(s); m != nil {
		return ConfigIssue{Key: m[1], Message: humanType(s[len(m[0]):])}
	}
	return ConfigIssue{Message: humanType(lineRe.ReplaceAllString(s, ""))}
}

func humanType(msg string) string {
	msg = strings.NewReplacer("TOML value has type", "value has type", "destination has type", "want type").Replace(msg)
	return strings.NewReplacer("type int64", "type integer", "type float64", "type float").Replace(msg)
}

// suggest returns the known key closest to the last element of k, looking at
// the struct type found by following k's parents through t.
func suggest(t reflect.Type, k toml.Key) string {
	for _, part := range k[:len(k)-1] {
		t = structOf(t)
		if t == nil {
			return ""
		}
		f, ok := fieldByKey(t, part)
		if !ok {
			return ""
		}
		t = f.Type
	}
	t = structOf(t)
	if t == nil {
		return ""
	}
	return suggestpkg.Closest(k[len(k)-1], keysOf(t))
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func structOf(t reflect.Type) reflect.Type {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	return t
}

func keyOf(f reflect.StructField) string {
	tag := f.Tag.Get("toml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func keysOf(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Tag.Get("toml") == "" {
			if st := structOf(f.Type); st != nil {
				out = append(out, keysOf(st)...)
				continue
			}
		}
		if k := keyOf(f); k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Tag.Get("toml") == "" {
			if st := structOf(f.Type); st != nil {
				if sf, ok := fieldByKey(st, key); ok {
					return sf, true
				}
				continue
			}
		}
		if k := keyOf(f); k == key || strings.EqualFold(k, key) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
