package conf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// LoadOptions tunes Load. The zero value is ready to use.
type LoadOptions struct {
	// LookupEnv resolves ${VAR}; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Executable returns the running binary's path, used for the default
	// plugin_dir ("plugins" next to the executable); nil means os.Executable.
	Executable func() (string, error)
}

// Defaults for keys that are not set.
const (
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultFlushInterval   = time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultDeadLetterDir   = "dead-letter"
	DefaultQueueSize       = 8
	DefaultInputCredits    = 64
	DefaultBatchSize       = 10000
	DefaultWorkers         = 1
	DefaultMaxRetries      = 0
)

// Limits enforced on numeric keys.
const (
	maxFileSize     = 8 << 20
	MaxBatchSize    = 1_000_000
	MaxWorkers      = 64
	MaxQueueSize    = 65536
	MaxInputCredits = 1_000_000
	MaxMaxRetries   = 1_000_000
	MaxMaxProcs     = 4096
	MaxGOGC         = 100_000
)

// agentKeys lists the keys of the [agent] table (read-only).
var agentKeys = []string{
	"metrics_address", "log_level", "log_format", "flush_interval", "shutdown_timeout",
	"dead_letter_dir", "plugin_dir", "queue_size", "input_credits", "memory_limit", "plugin_memory_limit",
	"max_procs", "plugin_max_procs", "gogc", "plugin_gogc",
}

// sections are the plugin sections; the values are their kinds (read-only).
var sections = map[string]Kind{"inputs": KindInput, "processors": KindProcessor, "outputs": KindOutput}

var topLevel = []string{"agent", "inputs", "processors", "outputs"}

// Load reads mainFile, then every *.toml file in dropInDir (if not "") in
// name order, and merges them: [[inputs.X]], [[processors.X]] and
// [[outputs.X]] tables add instances (processors run in the order they were
// written, main file first), [agent] keys in later files override earlier
// ones. ${VAR} and ${VAR:-default} are substituted in string values. Every
// problem found is reported, each as an *Error naming FILE:LINE and the key,
// joined with errors.Join; the returned Config is nil then.
//
// A configuration must define at least one input and one output.
//
// Load is safe for concurrent use; the returned Config belongs to the caller
// and shares nothing with other calls. Its Settings hold resolved secrets:
// log Describe or RedactSettings, never the raw values.
func Load(mainFile, dropInDir string, opts LoadOptions) (*Config, error) {
	l := &loader{lookup: opts.LookupEnv}
	if l.lookup == nil {
		l.lookup = os.LookupEnv
	}
	files := []string{mainFile}
	if dropInDir != "" {
		entries, err := os.ReadDir(dropInDir)
		if err != nil {
			return nil, &Error{Pos: Position{File: dropInDir}, Msg: fmt.Sprintf("cannot read the configuration directory: %v", err), Err: err}
		}
		var names []string
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".toml") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(dropInDir, e.Name())
			if st, err := os.Stat(path); err != nil || st.IsDir() {
				continue // dangling link or a directory named *.toml
			}
			names = append(names, path)
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	l.errs.files = files
	for _, f := range files {
		l.loadFile(f)
	}
	l.finish(opts)
	if err := l.errs.err(); err != nil {
		return nil, err
	}
	l.cfg.Files = files
	return &l.cfg, nil
}

type loader struct {
	lookup func(string) (string, bool)
	cfg    Config
	errs   errorList

	agentSet map[string]bool
	// per output (same index as cfg.Outputs): whether flush_interval /
	// queue_size were set, so the agent defaults can be applied at the end.
	outFlushSet, outQueueSet []bool
	// explicit aliases per plugin (parallel to the cfg slices).
	explicitAlias map[*[]Plugin][]bool
	// per processor (same index as cfg.Processors): the keys the process
	// group check compares that were written but refused, so that a bad
	// value is reported once, not again as a difference within its group.
	procBad []map[string]bool
}

// fileCtx is what is known while processing one file.
type fileCtx struct {
	file string
	idx  keyIndex
	keys []string // idx's keys, sorted
}

// pos returns where path was written, falling back to its closest recorded
// parent and then to the file.
func (f *fileCtx) pos(path string) Position {
	for p := path; p != ""; {
		if line, ok := f.idx[p]; ok {
			return Position{File: f.file, Line: line}
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return Position{File: f.file}
}

func (l *loader) loadFile(file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		l.errs.addErr(&Error{Pos: Position{File: file}, Msg: fmt.Sprintf("cannot read the configuration file: %v", err), Err: err})
		return
	}
	if len(data) > maxFileSize {
		l.errs.add(Position{File: file}, "", "file is larger than %d MiB: is this the configuration file?", maxFileSize>>20)
		return
	}
	if line := checkNesting(data); line > 0 {
		l.errs.add(Position{File: file, Line: line}, "", "arrays and inline tables nest deeper than %d levels: flatten the value", maxNesting)
		return
	}
	raw := map[string]any{}
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// toml's Line sometimes counts a newline the error sits on;
			// the byte offset is exact.
			line := pe.Position.Line
			if st := pe.Position.Start; st >= 0 && st <= len(data) {
				line = 1 + bytes.Count(data[:st], []byte{'\n'})
			}
			msg := "TOML syntax error: " + pe.Message
			l.errs.addErr(&Error{Pos: Position{File: file, Line: line}, Key: pe.LastKey, Msg: msg, Err: err})
		} else {
			l.errs.addErr(&Error{Pos: Position{File: file}, Msg: "TOML error: " + err.Error(), Err: err})
		}
		return
	}
	f := &fileCtx{file: file, idx: buildIndex(data)}
	f.keys = f.idx.sortedKeys()

	keys := sortedByLine(f, "", raw)
	for _, k := range keys {
		v := raw[k]
		switch {
		case k == "agent":
			m, ok := v.(map[string]any)
			if !ok {
				l.errs.add(f.pos(k), k, "must be a table: write [agent] followed by its keys")
				continue
			}
			l.agent(f, m)
		case sections[k] != "":
			m, ok := v.(map[string]any)
			if !ok {
				l.errs.add(f.pos(k), k, "must be a table of plugins: write [[%s.NAME]]", k)
				continue
			}
			l.section(f, k, sections[k], m)
		default:
			l.errs.add(f.pos(k), k, "unknown table%s: the configuration has [agent], [[inputs.NAME]], [[processors.NAME]] and [[outputs.NAME]]",
				suggest(k, topLevel))
		}
	}
}

// sortedByLine returns m's keys in the order they were written (path is the
// resolved path of m; keys not found in the index come last, by name).
func sortedByLine(f *fileCtx, path string, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	line := func(k string) int {
		if l, ok := f.idx[joinPath(path, []string{k})]; ok {
			return l
		}
		return math.MaxInt
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := line(keys[i]), line(keys[j])
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func (l *loader) agent(f *fileCtx, m map[string]any) {
	if l.agentSet == nil {
		l.agentSet = map[string]bool{}
	}
	a := &l.cfg.Agent
	if a.Positions == nil {
		a.Positions = map[string]Position{}
	}
	for _, k := range sortedByLine(f, "agent", m) {
		v := m[k]
		path := "agent." + k
		pos := f.pos(path)
		key := path
		ok := true
		switch k {
		case "metrics_address":
			a.MetricsAddress, ok = l.str(v, pos, key)
		case "log_level":
			var s string
			if s, ok = l.str(v, pos, key); ok {
				s = strings.ToLower(s)
				if s == "warning" {
					s = "warn"
				}
				switch s {
				case "debug", "info", "warn", "error":
					a.LogLevel = s
				default:
					l.errs.add(pos, key, "invalid log level %q: use debug, info, warn or error", s)
					ok = false
				}
			}
		case "log_format":
			var s string
			if s, ok = l.str(v, pos, key); ok {
				switch s = strings.ToLower(s); s {
				case "text", "json":
					a.LogFormat = s
				default:
					l.errs.add(pos, key, "invalid log format %q: use text or json", s)
					ok = false
				}
			}
		case "flush_interval":
			a.FlushInterval, ok = l.duration(v, pos, key)
		case "shutdown_timeout":
			a.ShutdownTimeout, ok = l.duration(v, pos, key)
		case "dead_letter_dir":
			a.DeadLetterDir, ok = l.nonEmptyStr(v, pos, key)
		case "plugin_dir":
			a.PluginDir, ok = l.nonEmptyStr(v, pos, key)
		case "queue_size":
			a.QueueSize, ok = l.intRange(v, pos, key, 1, MaxQueueSize)
		case "input_credits":
			a.InputCredits, ok = l.intRange(v, pos, key, 1, MaxInputCredits)
		case "memory_limit":
			a.MemoryLimit, ok = l.size(v, pos, key)
		case "plugin_memory_limit":
			a.PluginMemoryLimit, ok = l.size(v, pos, key)
		case "max_procs":
			a.MaxProcs, ok = l.intRange(v, pos, key, 1, MaxMaxProcs)
		case "plugin_max_procs":
			a.PluginMaxProcs, ok = l.intRange(v, pos, key, 1, MaxMaxProcs)
		case "gogc":
			a.GOGC, ok = l.intRange(v, pos, key, 1, MaxGOGC)
		case "plugin_gogc":
			a.PluginGOGC, ok = l.intRange(v, pos, key, 1, MaxGOGC)
		default:
			l.errs.add(pos, key, "unknown key in [agent]%s: known keys are %s", suggest(k, agentKeys), strings.Join(agentKeys, ", "))
			ok = false
		}
		if ok {
			l.agentSet[k] = true
			a.Positions[k] = pos
		}
	}
}

// section handles [inputs], [processors] or [outputs]: a table of plugin
// names, each an array of tables (or a single table).
func (l *loader) section(f *fileCtx, sec string, kind Kind, m map[string]any) {
	type inst struct {
		name  string
		path  string
		table map[string]any
		line  int
	}
	var insts []inst
	for name, v := range m {
		base := sec + "." + name
		switch t := v.(type) {
		case map[string]any:
			insts = append(insts, inst{name, base, t, f.pos(base).Line})
		case []map[string]any:
			for i, tab := range t {
				p := base + "[" + strconv.Itoa(i) + "]"
				insts = append(insts, inst{name, p, tab, f.pos(p).Line})
			}
		case []any:
			for i, e := range t {
				p := base + "[" + strconv.Itoa(i) + "]"
				tab, ok := e.(map[string]any)
				if !ok {
					l.errs.add(f.pos(p), base, "must be a table: write [[%s]] followed by its keys", base)
					continue
				}
				insts = append(insts, inst{name, p, tab, f.pos(p).Line})
			}
		default:
			l.errs.add(f.pos(base), base, "must be a table: write [[%s]] followed by its keys", base)
		}
	}
	// File order: processors run in the order they were written.
	sort.SliceStable(insts, func(i, j int) bool {
		if insts[i].line != insts[j].line {
			return insts[i].line < insts[j].line
		}
		return insts[i].path < insts[j].path
	})
	for _, in := range insts {
		if !validName(in.name) {
			l.errs.add(f.pos(in.path), sec+"."+in.name, "invalid plugin name %q: use letters, digits, _ and -", in.name)
			continue
		}
		l.plugin(f, kind, in.name, in.path, in.table)
	}
}

func validName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isBareKeyChar(n[i]) {
			return false
		}
	}
	return true
}

func (l *loader) plugin(f *fileCtx, kind Kind, name, path string, t map[string]any) {
	p := Plugin{
		Kind:      kind,
		Name:      name,
		Source:    f.pos(path),
		Settings:  map[string]any{},
		Positions: map[string]Position{},
	}
	for k, line := range f.idx.under(f.keys, path+".") {
		p.Positions[k] = Position{File: f.file, Line: line}
	}
	table := p.tableName()
	explicitAlias := false
	flushSet, queueSet, memSet, procsSet, gogcSet := false, false, false, false, false
	if kind == KindOutput {
		p.BatchSize = DefaultBatchSize
		p.Workers = DefaultWorkers
		p.Required = true
		p.MaxRetries = DefaultMaxRetries
	}
	for _, k := range sortedByLine(f, path, t) {
		v := t[k]
		pos := p.KeyPosition(k)
		key := table + "." + k
		switch {
		case k == "alias":
			if s, ok := l.nonEmptyStr(v, pos, key); ok {
				if strings.ContainsAny(s, " \t\r\n[]\"") {
					l.errs.add(pos, key, "invalid alias %q: use a name without spaces, brackets or quotes", s)
				} else {
					p.Alias, explicitAlias = s, true
				}
			}
		case k == "command":
			p.Command, _ = l.nonEmptyStr(v, pos, key)
		case k == "process_group":
			if kind != KindProcessor {
				l.errs.add(pos, key, "process groups are for processors: remove process_group (every %s runs in its own process)", kind)
			} else if s, ok := l.nonEmptyStr(v, pos, key); ok {
				if validName(s) {
					p.ProcessGroup = s
				} else {
					l.errs.add(pos, key, "invalid process group %q: use letters, digits, _ and -", s)
				}
			}
		case k == "memory_limit":
			p.MemoryLimit, memSet = l.size(v, pos, key)
		case k == "max_procs":
			p.MaxProcs, procsSet = l.intRange(v, pos, key, 1, MaxMaxProcs)
		case k == "gogc":
			p.GOGC, gogcSet = l.intRange(v, pos, key, 1, MaxGOGC)
		case kind == KindOutput && k == "batch_size":
			p.BatchSize, _ = l.intRange(v, pos, key, 1, MaxBatchSize)
		case kind == KindOutput && k == "flush_interval":
			p.FlushInterval, flushSet = l.duration(v, pos, key)
		case kind == KindOutput && k == "workers":
			p.Workers, _ = l.intRange(v, pos, key, 1, MaxWorkers)
		case kind == KindOutput && k == "required":
			p.Required, _ = l.boolean(v, pos, key)
		case kind == KindOutput && k == "queue_size":
			p.QueueSize, queueSet = l.intRange(v, pos, key, 1, MaxQueueSize)
		case kind == KindOutput && k == "max_retries":
			p.MaxRetries, _ = l.intRange(v, pos, key, 0, MaxMaxRetries)
		default:
			if sv, ok := l.settingValue(&p, k, v); ok {
				p.Settings[k] = sv
			}
		}
	}
	if !memSet {
		p.MemoryLimit = -1 // the agent's plugin_memory_limit, applied once all files are read
	}
	if !procsSet {
		p.MaxProcs = -1 // the agent's plugin_max_procs, likewise
	}
	if !gogcSet {
		p.GOGC = -1 // the agent's plugin_gogc, likewise
	}
	switch kind {
	case KindInput:
		l.cfg.Inputs = append(l.cfg.Inputs, p)
	case KindProcessor:
		l.cfg.Processors = append(l.cfg.Processors, p)
		var bad map[string]bool
		for k, set := range map[string]bool{"memory_limit": memSet, "max_procs": procsSet, "gogc": gogcSet,
			"command": p.Command != "", "process_group": p.ProcessGroup != ""} {
			if _, written := t[k]; written && !set {
				if bad == nil {
					bad = map[string]bool{}
				}
				bad[k] = true
			}
		}
		l.procBad = append(l.procBad, bad)
	case KindOutput:
		l.cfg.Outputs = append(l.cfg.Outputs, p)
		l.outFlushSet = append(l.outFlushSet, flushSet)
		l.outQueueSet = append(l.outQueueSet, queueSet)
	}
	if l.explicitAlias == nil {
		l.explicitAlias = map[*[]Plugin][]bool{}
	}
	slot := l.slot(kind)
	l.explicitAlias[slot] = append(l.explicitAlias[slot], explicitAlias)
}

func (l *loader) slot(kind Kind) *[]Plugin {
	switch kind {
	case KindInput:
		return &l.cfg.Inputs
	case KindProcessor:
		return &l.cfg.Processors
	default:
		return &l.cfg.Outputs
	}
}

// settingValue copies a plugin setting, substituting ${VAR} in strings and
// refusing floats JSON cannot carry. key is the path inside the table.
func (l *loader) settingValue(p *Plugin, key string, v any) (any, bool) {
	switch t := v.(type) {
	case string:
		s, err := expand(t, l.lookup)
		if err != nil {
			l.errs.add(p.KeyPosition(key), p.tableName()+"."+key, "%v", err)
			return nil, false
		}
		return s, true
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			l.errs.add(p.KeyPosition(key), p.tableName()+"."+key, "%v cannot be passed to a plugin: use a finite number", t)
			return nil, false
		}
		return t, true
	case map[string]any:
		out := make(map[string]any, len(t))
		ok := true
		for k, e := range t {
			if c, good := l.settingValue(p, key+"."+k, e); good {
				out[k] = c
			} else {
				ok = false
			}
		}
		return out, ok
	case []map[string]any:
		out := make([]any, len(t))
		ok := true
		for i, e := range t {
			c, good := l.settingValue(p, key+"["+strconv.Itoa(i)+"]", e)
			out[i], ok = c, ok && good
		}
		return out, ok
	case []any:
		out := make([]any, len(t))
		ok := true
		for i, e := range t {
			c, good := l.settingValue(p, key+"["+strconv.Itoa(i)+"]", e)
			out[i], ok = c, ok && good
		}
		return out, ok
	default: // int64, bool, time.Time
		return v, true
	}
}

// finish applies defaults, numbers repeated aliases and checks the whole.
func (l *loader) finish(opts LoadOptions) {
	a := &l.cfg.Agent
	if a.Positions == nil {
		a.Positions = map[string]Position{}
	}
	set := func(k string) bool { return l.agentSet[k] }
	if !set("log_level") {
		a.LogLevel = DefaultLogLevel
	}
	if !set("log_format") {
		a.LogFormat = DefaultLogFormat
	}
	if !set("flush_interval") {
		a.FlushInterval = DefaultFlushInterval
	}
	if !set("shutdown_timeout") {
		a.ShutdownTimeout = DefaultShutdownTimeout
	}
	if !set("dead_letter_dir") {
		a.DeadLetterDir = DefaultDeadLetterDir
	}
	if !set("queue_size") {
		a.QueueSize = DefaultQueueSize
	}
	if !set("input_credits") {
		a.InputCredits = DefaultInputCredits
	}
	if !set("plugin_dir") {
		a.PluginDir = defaultPluginDir(opts.Executable)
	}
	for _, ps := range [][]Plugin{l.cfg.Inputs, l.cfg.Processors, l.cfg.Outputs} {
		for i := range ps {
			if ps[i].MemoryLimit < 0 {
				ps[i].MemoryLimit = a.PluginMemoryLimit
			}
			if ps[i].MaxProcs < 0 {
				ps[i].MaxProcs = a.PluginMaxProcs
			}
			if ps[i].GOGC < 0 {
				ps[i].GOGC = a.PluginGOGC
			}
		}
	}
	for i := range l.cfg.Outputs {
		o := &l.cfg.Outputs[i]
		if !l.outFlushSet[i] {
			o.FlushInterval = a.FlushInterval
		}
		if !l.outQueueSet[i] {
			o.QueueSize = a.QueueSize
		}
	}
	for _, kind := range []Kind{KindInput, KindProcessor, KindOutput} {
		slot := l.slot(kind)
		l.aliases(*slot, l.explicitAlias[slot])
	}
	l.processGroups()
	main := Position{File: l.errs.files[0]}
	if len(l.errs.errs) == 0 {
		if len(l.cfg.Inputs) == 0 {
			l.errs.add(main, "inputs", "no input configured: add an [[inputs.NAME]] table, e.g. [[inputs.mq_service]]")
		}
		if len(l.cfg.Outputs) == 0 {
			l.errs.add(main, "outputs", "no output configured: add an [[outputs.NAME]] table, e.g. [[outputs.postgresql]]")
		}
	}
}

// aliases checks explicit aliases are unique within a kind and gives the
// others their name, numbered when repeated ("postgresql-2").
func (l *loader) aliases(ps []Plugin, explicit []bool) {
	taken := map[string]*Plugin{}
	for i := range ps {
		p := &ps[i]
		if !explicit[i] {
			continue
		}
		if prev, dup := taken[p.Alias]; dup {
			l.errs.add(p.KeyPosition("alias"), p.tableName()+".alias",
				"alias %q is already used by %s at %s: give each %s instance its own alias",
				p.Alias, prev.tableName(), prev.KeyPosition("alias"), p.Kind)
			continue
		}
		taken[p.Alias] = p
	}
	count := map[string]int{}
	for i := range ps {
		p := &ps[i]
		if explicit[i] {
			continue
		}
		alias := p.Name
		for n := count[p.Name] + 1; ; n++ {
			if n > 1 {
				alias = p.Name + "-" + strconv.Itoa(n)
			}
			if _, dup := taken[alias]; !dup {
				count[p.Name] = n
				break
			}
		}
		p.Alias = alias
		taken[alias] = p
	}
}

// processGroups checks the process groups of the processors, with the
// defaults applied: the members of a group must be consecutive and agree on
// everything that belongs to their one process (the binary, memory_limit,
// max_procs and gogc). Each problem is reported at the member's
// process_group key.
func (l *loader) processGroups() {
	ps := l.cfg.Processors
	first := map[string]int{} // group -> index of its first member
	last := map[string]int{}  // group -> index of its latest member so far
	for i := range ps {
		p := &ps[i]
		g := p.ProcessGroup
		if g == "" {
			continue
		}
		f, seen := first[g]
		if !seen {
			first[g], last[g] = i, i
			continue
		}
		pos, key := p.KeyPosition("process_group"), p.tableName()+".process_group"
		prev := &ps[last[g]]
		for j := last[g] + 1; j < i; j++ {
			if l.procBad[j]["process_group"] {
				continue // its group is unknown; its own error says why
			}
			in := "in no process group"
			if ps[j].ProcessGroup != "" {
				in = fmt.Sprintf("in process group %q", ps[j].ProcessGroup)
			}
			l.errs.add(pos, key, "process group %q is split: %s (%s, %s) runs between %s (%s) and this processor; "+
				"the members of a group run one after the other in one process, so they must be consecutive: "+
				"move this table next to the group's other members, or give it another process_group",
				g, ps[j].ID(), ps[j].Source, in, prev.ID(), prev.KeyPosition("process_group"))
			break
		}
		last[g] = i
		l.compareGroupMember(&ps[f], f, p, i, pos, key)
	}
}

// compareGroupMember reports each process setting in which member p (index
// i) differs from its group's first member fp (index fi).
func (l *loader) compareGroupMember(fp *Plugin, fi int, p *Plugin, i int, pos Position, key string) {
	differs := func(k, mine, theirs, fix string) {
		if l.procBad[i][k] || l.procBad[fi][k] {
			return // the refused value has its own error
		}
		l.errs.add(pos, key, "%s %s differs from %s of %s (%s), the first member of process group %q: %s",
			k, mine, theirs, fp.ID(), fp.KeyPosition("process_group"), p.ProcessGroup, fix)
	}
	if p.Command != fp.Command {
		command := func(c string) string {
			if c == "" {
				return "built-in"
			}
			return strconv.Quote(c)
		}
		differs("command", command(p.Command), command(fp.Command),
			"one binary runs every member of a group: give every member the same command (none for the built-in plugins), or put them in different groups")
	}
	const share = "the members share one process: give every member the same %s, or write %s on none of them so that [agent] %s applies to all"
	if p.MemoryLimit != fp.MemoryLimit {
		differs("memory_limit", FormatSize(p.MemoryLimit), FormatSize(fp.MemoryLimit),
			fmt.Sprintf(share, "memory_limit", "memory_limit", "plugin_memory_limit"))
	}
	orDefault := func(n int) string {
		if n == 0 {
			return "unset (Go's default)"
		}
		return strconv.Itoa(n)
	}
	if p.MaxProcs != fp.MaxProcs {
		differs("max_procs", orDefault(p.MaxProcs), orDefault(fp.MaxProcs),
			fmt.Sprintf(share, "max_procs", "max_procs", "plugin_max_procs"))
	}
	if p.GOGC != fp.GOGC {
		differs("gogc", orDefault(p.GOGC), orDefault(fp.GOGC),
			fmt.Sprintf(share, "gogc", "gogc", "plugin_gogc"))
	}
}

func defaultPluginDir(exe func() (string, error)) string {
	if exe == nil {
		exe = os.Executable
	}
	path, err := exe()
	if err != nil || path == "" {
		return filepath.Join("bin", "plugins")
	}
	return filepath.Join(filepath.Dir(path), "plugins")
}

// ---- typed value helpers; each reports its own error and returns ok ----

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

func (l *loader) str(v any, pos Position, key string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		l.errs.add(pos, key, "must be a string, not %s: put the value in double quotes", typeName(v))
		return "", false
	}
	out, err := expand(s, l.lookup)
	if err != nil {
		l.errs.add(pos, key, "%v", err)
		return "", false
	}
	return out, true
}

func (l *loader) nonEmptyStr(v any, pos Position, key string) (string, bool) {
	s, ok := l.str(v, pos, key)
	if ok && s == "" {
		l.errs.add(pos, key, "must not be empty: remove the key to use the default")
		return "", false
	}
	return s, ok
}

func (l *loader) duration(v any, pos Position, key string) (time.Duration, bool) {
	raw, isStr := v.(string)
	if !isStr {
		l.errs.add(pos, key, "must be a duration string such as \"500ms\", \"1s\" or \"2m\", not %s", typeName(v))
		return 0, false
	}
	s, err := expand(raw, l.lookup)
	if err != nil {
		l.errs.add(pos, key, "%v", err)
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		l.errs.add(pos, key, "invalid duration %q: use a number with a unit, such as \"500ms\", \"1s\" or \"2m\"", s)
		return 0, false
	}
	if d <= 0 {
		l.errs.add(pos, key, "duration %q must be positive", s)
		return 0, false
	}
	return d, true
}

// MinMemoryLimit is the smallest memory_limit accepted: below it a Go
// process spends its time collecting garbage.
const MinMemoryLimit = 8 << 20

// size accepts a memory size: a TOML integer (bytes), or a string such as
// "64MiB" (units B, KiB, MiB, GiB; K/M/G and KB/MB/GB are read as the
// binary units too), possibly from ${VAR}; at least MinMemoryLimit.
func (l *loader) size(v any, pos Position, key string) (int64, bool) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		s, err := expand(x, l.lookup)
		if err != nil {
			l.errs.add(pos, key, "%v", err)
			return 0, false
		}
		n, err = parseSize(s)
		if err != nil {
			l.errs.add(pos, key, "%v", err)
			return 0, false
		}
	default:
		l.errs.add(pos, key, "must be a size such as \"64MiB\" or a number of bytes, not %s", typeName(v))
		return 0, false
	}
	if n < MinMemoryLimit {
		l.errs.add(pos, key, "size %d bytes is too small: use at least %dMiB", n, MinMemoryLimit>>20)
		return 0, false
	}
	return n, true
}

// parseSize parses "64MiB", "1.5GiB", "512k" or "1048576" into bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || f < 0 || f*mult > float64(1<<62) {
		return 0, fmt.Errorf("invalid size %q: use a number of bytes or a number with a unit, such as \"64MiB\" (units B, KiB, MiB, GiB)", s)
	}
	return int64(f * mult), nil
}

// intRange accepts a TOML integer, or a string holding ${VAR} that expands
// to one (so numbers can come from the environment).
func (l *loader) intRange(v any, pos Position, key string, lo, hi int64) (int, bool) {
	var n int64
	switch t := v.(type) {
	case int64:
		n = t
	case string:
		if !strings.Contains(t, "${") {
			l.errs.add(pos, key, "must be an integer from %d to %d, not a string (%q): remove the quotes", lo, hi, t)
			return 0, false
		}
		s, err := expand(t, l.lookup)
		if err != nil {
			l.errs.add(pos, key, "%v", err)
			return 0, false
		}
		n, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			l.errs.add(pos, key, "must be an integer from %d to %d, but %q expands to %q", lo, hi, t, s)
			return 0, false
		}
	default:
		l.errs.add(pos, key, "must be an integer from %d to %d, not %s", lo, hi, typeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		l.errs.add(pos, key, "%d is out of range: use an integer from %d to %d", n, lo, hi)
		return 0, false
	}
	return int(n), true
}

func (l *loader) boolean(v any, pos Position, key string) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		if strings.Contains(t, "${") {
			s, err := expand(t, l.lookup)
			if err != nil {
				l.errs.add(pos, key, "%v", err)
				return false, false
			}
			if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
				return b, true
			}
			l.errs.add(pos, key, "must be true or false, but %q expands to %q", t, s)
			return false, false
		}
	}
	l.errs.add(pos, key, "must be true or false (without quotes), not %s", typeName(v))
	return false, false
}
