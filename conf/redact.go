package conf

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Mask replaces secrets in rendered configuration.
const Mask = "xxxxx"

// libpqPassword matches password=VALUE in libpq key=value strings and URL
// query strings; VALUE is a single-quoted libpq string or a bare word.
var libpqPassword = regexp.MustCompile(`(?i)(^|[\s?&;])(password|passwd|pwd|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&#;]*)`)

// Redact masks passwords in s: the password of every URL with user
// information ("postgres://user:secret@host" -> "postgres://user:xxxxx@host")
// and password=VALUE pairs of libpq connection strings and URL queries. The
// rest of s is kept, so the result still helps to find a wrong host or port.
func Redact(s string) string {
	s = redactURLs(s)
	return libpqPassword.ReplaceAllString(s, "${1}${2}${3}"+Mask)
}

func redactURLs(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		// The authority ends at the first '/', '?', '#' or whitespace; the
		// user information ends at its last '@' (a password may hold '@').
		end := strings.IndexAny(s, "/?# \t\r\n")
		if end < 0 {
			end = len(s)
		}
		auth := s[:end]
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			user := auth[:at]
			if c := strings.IndexByte(user, ':'); c >= 0 {
				b.WriteString(user[:c+1])
				b.WriteString(Mask)
				b.WriteString(auth[at:])
				s = s[end:]
				continue
			}
		}
		b.WriteString(auth)
		s = s[end:]
	}
}

// secretKey reports whether a setting's name says it holds a secret.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	for _, w := range []string{"password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "credential"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// RedactSettings returns a copy of settings fit for logs and `check`:
// values of keys named like password/secret/token are masked entirely,
// every other string goes through Redact.
func RedactSettings(settings map[string]any) map[string]any {
	out, _ := redactValue("", settings).(map[string]any)
	return out
}

func redactValue(key string, v any) any {
	switch t := v.(type) {
	case string:
		if secretKey(key) && t != "" {
			return Mask
		}
		return Redact(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			if secretKey(key) {
				out[k] = redactValue(key, e)
			} else {
				out[k] = redactValue(k, e)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = redactValue(key, e)
		}
		return out
	default:
		if secretKey(key) {
			return Mask
		}
		return v
	}
}

// SettingsJSON is the JSON the agent sends the plugin at Configure: the
// plugin's Settings (after ${VAR} substitution, without the generic keys the
// agent keeps), with date-time values as RFC 3339 strings. It holds secrets:
// never log it.
func (p *Plugin) SettingsJSON() ([]byte, error) {
	s := p.Settings
	if s == nil {
		s = map[string]any{}
	}
	b, err := json.Marshal(jsonValue(s))
	if err != nil {
		return nil, fmt.Errorf("%s: encode settings: %w", p.ID(), err)
	}
	return b, nil
}

func jsonValue(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.Format(time.RFC3339Nano)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonValue(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}

// Describe renders the resolved pipeline for `telemetry-collector check`:
// the files read, the agent settings, then inputs -> processors (in order)
// -> outputs (fan-out), each plugin with its alias, where it was defined,
// the settings of its process (process_group, memory_limit, max_procs, gogc)
// and its settings, secrets masked. The members of a process group appear
// in the pipeline line as [GROUP: processors.a -> processors.b].
func (c *Config) Describe() string {
	var b strings.Builder
	b.WriteString("Files (merge order):\n")
	for _, f := range c.Files {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	a := c.Agent
	b.WriteString("\n[agent]\n")
	agentLine := func(key, val string) {
		src := "default"
		if pos, ok := a.Positions[key]; ok {
			src = pos.String()
		}
		fmt.Fprintf(&b, "  %-17s = %-28s # %s\n", key, val, src)
	}
	metrics := strconv.Quote(a.MetricsAddress)
	if a.MetricsAddress == "" {
		metrics = `"" (disabled)`
	}
	agentLine("metrics_address", metrics)
	agentLine("log_level", strconv.Quote(a.LogLevel))
	agentLine("log_format", strconv.Quote(a.LogFormat))
	agentLine("flush_interval", strconv.Quote(a.FlushInterval.String()))
	agentLine("shutdown_timeout", strconv.Quote(a.ShutdownTimeout.String()))
	agentLine("dead_letter_dir", strconv.Quote(Redact(a.DeadLetterDir)))
	agentLine("plugin_dir", strconv.Quote(a.PluginDir))
	agentLine("queue_size", strconv.Itoa(a.QueueSize))
	agentLine("input_credits", strconv.Itoa(a.InputCredits))
	agentLine("memory_limit", FormatSize(a.MemoryLimit))
	agentLine("plugin_memory_limit", FormatSize(a.PluginMemoryLimit))
	agentLine("max_procs", strconv.Itoa(a.MaxProcs))
	agentLine("plugin_max_procs", strconv.Itoa(a.PluginMaxProcs))
	agentLine("gogc", strconv.Itoa(a.GOGC))
	agentLine("plugin_gogc", strconv.Itoa(a.PluginGOGC))

	b.WriteString("\nPipeline:\n  ")
	b.WriteString(flow(c))
	b.WriteString("\n")

	section := func(title string, ps []Plugin, numbered bool) {
		fmt.Fprintf(&b, "\n%s (%d)\n", title, len(ps))
		for i, p := range ps {
			b.WriteString("  ")
			if numbered {
				fmt.Fprintf(&b, "%d. ", i+1)
			}
			fmt.Fprintf(&b, "%s  alias=%q  (%s)", p.tableName(), p.Alias, p.Source)
			if p.Command != "" {
				fmt.Fprintf(&b, "  command=%q", p.Command)
			} else {
				b.WriteString("  built-in")
			}
			if p.ProcessGroup != "" {
				fmt.Fprintf(&b, "  process_group=%q", p.ProcessGroup)
			}
			if p.MemoryLimit > 0 {
				fmt.Fprintf(&b, "  memory_limit=%s", FormatSize(p.MemoryLimit))
			}
			if p.MaxProcs > 0 {
				fmt.Fprintf(&b, "  max_procs=%d", p.MaxProcs)
			}
			if p.GOGC > 0 {
				fmt.Fprintf(&b, "  gogc=%d", p.GOGC)
			}
			b.WriteString("\n")
			if p.Kind == KindOutput {
				fmt.Fprintf(&b, "      batch_size=%d flush_interval=%s workers=%d required=%t queue_size=%d max_retries=%d\n",
					p.BatchSize, p.FlushInterval, p.Workers, p.Required, p.QueueSize, p.MaxRetries)
			}
			writeSettings(&b, "      ", "", RedactSettings(p.Settings), &p)
		}
	}
	section("Inputs", c.Inputs, false)
	section("Processors, in order", c.Processors, true)
	section("Outputs, each receives every batch", c.Outputs, false)
	return b.String()
}

// flow is the one-line picture: inputs -> processors -> {outputs}, the
// members of a process group written [group: a -> b].
func flow(c *Config) string {
	ids := func(ps []Plugin) []string {
		out := make([]string, len(ps))
		for i := range ps {
			out[i] = ps[i].ID()
		}
		return out
	}
	parts := []string{}
	in := ids(c.Inputs)
	if len(in) == 1 {
		parts = append(parts, in[0])
	} else {
		parts = append(parts, "{"+strings.Join(in, ", ")+"}")
	}
	for _, g := range c.ProcessorGroups() {
		if len(g) == 1 {
			parts = append(parts, g[0].ID())
			continue
		}
		// One process runs the members one after the other.
		members := make([]string, len(g))
		for i, p := range g {
			members[i] = p.ID()
		}
		parts = append(parts, "["+g[0].ProcessGroup+": "+strings.Join(members, " -> ")+"]")
	}
	out := ids(c.Outputs)
	if len(out) == 1 {
		parts = append(parts, out[0])
	} else {
		parts = append(parts, "{"+strings.Join(out, ", ")+"}")
	}
	return strings.Join(parts, " -> ")
}

func writeSettings(b *strings.Builder, indent, prefix string, m map[string]any, p *Plugin) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		if sub, ok := m[k].(map[string]any); ok {
			writeSettings(b, indent, path, sub, p)
			continue
		}
		line := ""
		if pos, ok := p.Positions[path]; ok && pos.Line > 0 {
			line = fmt.Sprintf("  # line %d", pos.Line)
		}
		fmt.Fprintf(b, "%s%s = %s%s\n", indent, path, tomlValue(m[k]), line)
	}
}

func tomlValue(v any) string {
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	case time.Time:
		return t.Format(time.RFC3339Nano)
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = tomlValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " = " + tomlValue(t[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	default:
		return fmt.Sprint(v)
	}
}

// FormatSize renders a memory limit: "64MiB" when it is a whole number of
// MiB, else bytes; "none" for 0.
func FormatSize(n int64) string {
	switch {
	case n <= 0:
		return `"none"`
	case n%(1<<20) == 0:
		return strconv.Quote(strconv.FormatInt(n>>20, 10) + "MiB")
	}
	return strconv.FormatInt(n, 10)
}
