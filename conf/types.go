// Package conf loads the agent's TOML configuration: the main file, drop-in
// files from a directory, ${VAR} substitution and strict validation whose
// errors name the file, the line and the key.
package conf

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Position is where something was written in a configuration file.
type Position struct {
	File string
	Line int
}

func (p Position) String() string {
	if p.File == "" {
		return "<config>"
	}
	if p.Line <= 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Config is a fully merged, validated configuration.
type Config struct {
	Agent      Agent
	Inputs     []Plugin
	Processors []Plugin // in file order (main file first, then drop-ins in name order)
	Outputs    []Plugin
	// Files lists the files that were read, in merge order.
	Files []string
}

// Agent holds the [agent] table.
type Agent struct {
	MetricsAddress  string        // metrics_address; "" disables the HTTP server
	LogLevel        string        // log_level: debug | info | warn | error (default info)
	LogFormat       string        // log_format: text | json (default text)
	FlushInterval   time.Duration // flush_interval (default 1s): default for outputs
	ShutdownTimeout time.Duration // shutdown_timeout (default 30s)
	DeadLetterDir   string        // dead_letter_dir (default "dead-letter")
	PluginDir       string        // plugin_dir: where built-in plugin binaries live (default: bin/plugins next to the executable)
	QueueSize       int           // queue_size: batches buffered between stages (default 8)
	InputCredits    int           // input_credits: batches an input may have in the pipeline, unacknowledged (default 64)
	// MemoryLimit (memory_limit) is the collector process's soft memory
	// limit in bytes (Go's GOMEMLIMIT); 0: none (or GOMEMLIMIT from the
	// environment). PluginMemoryLimit (plugin_memory_limit) is the default
	// of every plugin's memory_limit.
	MemoryLimit, PluginMemoryLimit int64
	// MaxProcs (max_procs) is the most CPUs the collector process runs Go
	// code on at once (Go's GOMAXPROCS); 0: Go's default (the CPUs the
	// process may use). PluginMaxProcs (plugin_max_procs) is the default
	// of every plugin's max_procs.
	MaxProcs, PluginMaxProcs int
	// GOGC (gogc) is the collector process's garbage collection target
	// percentage (Go's GOGC: the heap may grow by this much of the live
	// data before a collection); 0: Go's default (100, or GOGC from the
	// environment). PluginGOGC (plugin_gogc) is the default of every
	// plugin's gogc.
	GOGC, PluginGOGC int
	Positions        map[string]Position
}

// Kind is a plugin kind.
type Kind string

// Plugin kinds.
const (
	KindInput     Kind = "input"
	KindProcessor Kind = "processor"
	KindOutput    Kind = "output"
)

// Plugin is one [[inputs.X]], [[processors.X]] or [[outputs.X]] table.
//
// Keys the agent understands for every plugin (alias, command, memory_limit,
// max_procs, gogc), for processors (process_group) and for outputs (batch_size, flush_interval, workers, required, queue_size,
// max_retries) are lifted out of the table into fields; everything else stays
// in Settings and is decoded strictly by the plugin itself.
type Plugin struct {
	Kind    Kind
	Name    string // the X in [[outputs.X]]
	Alias   string // alias; defaults to Name, made unique ("postgresql-2") when repeated
	Command string // command: path of a third-party plugin binary; "" = built-in
	// ProcessGroup (process_group, processors only) names the plugin
	// process the processor runs in: consecutive processors with the same
	// non-empty group share one process (one binary, one memory_limit,
	// max_procs and gogc; Load checks that), and a batch goes through all
	// of them in it without a hop through the agent; "" = its own process.
	// Use Config.ProcessorGroups to get the processors grouped.
	ProcessGroup string
	// MemoryLimit (memory_limit) is the plugin process's soft memory limit
	// in bytes, passed as GOMEMLIMIT (Go plugins honour it); 0: none
	// (default: the agent's plugin_memory_limit).
	MemoryLimit int64
	// MaxProcs (max_procs) is the most CPUs the plugin process runs Go
	// code on at once, passed as GOMAXPROCS; 0: Go's default (default:
	// the agent's plugin_max_procs).
	MaxProcs int
	// GOGC (gogc) is the plugin process's garbage collection target
	// percentage, passed as GOGC; 0: Go's default (default: the agent's
	// plugin_gogc).
	GOGC int

	// Output-only (zero for other kinds after defaults are applied).
	BatchSize     int           // batch_size: max points per Write (default 10000)
	FlushInterval time.Duration // flush_interval (default: agent flush_interval)
	Workers       int           // workers: concurrent Write calls (default 1)
	Required      bool          // required (default true)
	QueueSize     int           // queue_size: batches queued for this output (default: agent queue_size)
	MaxRetries    int           // max_retries: retryable failures before a batch is dead-lettered; 0 = retry forever (default 0)

	// Settings is the rest of the table, after ${VAR} substitution.
	Settings map[string]any
	// Source is where the table starts ([[outputs.X]] line).
	Source Position
	// Positions maps each key of the table (dotted for nested tables) to
	// where it was written.
	Positions map[string]Position
}

// KeyPosition returns where key (a path inside the table: "connection",
// "tls.ca_file", "filters[1].name" or "filters.1.name") was written, falling
// back to its closest written parent and then to the table itself.
func (p *Plugin) KeyPosition(key string) Position {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "/"), ".")
	if pos, ok := p.Positions[key]; ok {
		return pos
	}
	for k := bracketIndices(key); k != ""; {
		if pos, ok := p.Positions[k]; ok {
			return pos
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return p.Source
}

// bracketIndices turns "a.1.b" (or "a/1/b") into "a[1].b".
func bracketIndices(key string) string {
	parts := strings.FieldsFunc(key, func(r rune) bool { return r == '.' || r == '/' })
	var b strings.Builder
	for i, part := range parts {
		if _, err := strconv.Atoi(part); err == nil && i > 0 {
			b.WriteString("[" + part + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// ID is "kind.name[alias]" for logs and metrics labels, e.g.
// "outputs.postgresql" or "outputs.postgresql[archive]".
func (p *Plugin) ID() string {
	id := string(p.Kind) + "s." + p.Name
	if p.Alias != "" && p.Alias != p.Name {
		id += "[" + p.Alias + "]"
	}
	return id
}

// ProcessorGroups returns the processors in order, grouped by the process
// they run in: the consecutive members of a process group together (in
// their order), every processor without a group alone. The agent builds one
// pipeline stage, one plugin process, per returned group; flattened, the
// groups are c.Processors in order. Load guarantees that the members of a
// group are consecutive and agree on command, memory_limit, max_procs and
// gogc; in a Config built by hand, members that are not consecutive form
// separate groups, and nothing else is checked.
//
// The pointers point into c.Processors (nothing is copied); the slices are
// new on every call and belong to the caller. Like every read of a Config,
// it is safe for concurrent use as long as nobody modifies c.
func (c *Config) ProcessorGroups() [][]*Plugin {
	var groups [][]*Plugin
	for i := range c.Processors {
		p := &c.Processors[i]
		if n := len(groups); n > 0 && p.ProcessGroup != "" && groups[n-1][0].ProcessGroup == p.ProcessGroup {
			groups[n-1] = append(groups[n-1], p)
			continue
		}
		groups = append(groups, []*Plugin{p})
	}
	return groups
}
