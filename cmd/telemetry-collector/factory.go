package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/telemetry-collector/telemetry-collector/agent"
	"github.com/telemetry-collector/telemetry-collector/conf"
	"github.com/telemetry-collector/telemetry-collector/plugins"
	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// pluginFactory launches each configured plugin as a supervised process. It
// implements agent.Factory.
type pluginFactory struct {
	launcher *plugins.Launcher
}

// configError is a plugin's refusal of its configuration, with every issue
// mapped back to the file and line of the key.
type configError struct {
	plugin string
	issues []string
}

func (e *configError) Error() string {
	return strings.Join(e.issues, "\n")
}

func spec(p *conf.Plugin) (plugins.Spec, error) {
	js, err := p.SettingsJSON()
	if err != nil {
		return plugins.Spec{}, fmt.Errorf("%s (%s): encode settings: %w", p.ID(), p.Source, err)
	}
	return plugins.Spec{
		Kind:        string(p.Kind),
		Name:        p.Name,
		Alias:       p.Alias,
		Command:     p.Command,
		ConfigJSON:  js,
		Workers:     p.Workers,
		BatchSize:   p.BatchSize,
		MemoryLimit: p.MemoryLimit,
		MaxProcs:    p.MaxProcs,
		GOGC:        p.GOGC,
	}, nil
}

// groupSpec is the spec of a process group: the first member's, with the
// others in Group (conf checked they share the process settings).
func groupSpec(ps []*conf.Plugin) (plugins.Spec, error) {
	s, err := spec(ps[0])
	if err != nil {
		return plugins.Spec{}, err
	}
	for _, p := range ps[1:] {
		js, err := p.SettingsJSON()
		if err != nil {
			return plugins.Spec{}, fmt.Errorf("%s (%s): encode settings: %w", p.ID(), p.Source, err)
		}
		s.Group = append(s.Group, plugins.Member{Name: p.Name, Alias: p.Alias, ConfigJSON: js})
	}
	return s, nil
}

// explain turns a launcher error into one that names file and line. ps
// are the plugins the error may be about: one, or a process group's
// members (a config issue names its member).
func explain(err error, ps ...*conf.Plugin) error {
	p := ps[0]
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		out := &configError{plugin: p.ID()}
		for _, is := range ce.Issues {
			m := p
			if is.Member > 0 && is.Member < len(ps) {
				m = ps[is.Member]
			}
			out.issues = append(out.issues, m.KeyError(is.Key, is.Message).Error())
		}
		return out
	}
	if len(ps) > 1 {
		ids := make([]string, len(ps))
		for i, m := range ps {
			ids[i] = m.ID()
		}
		return fmt.Errorf("process_group %q (%s; %s): %w", p.ProcessGroup, strings.Join(ids, ", "), p.KeyPosition("process_group"), err)
	}
	return fmt.Errorf("%s (%s): %w", p.ID(), p.Source, err)
}

func (f *pluginFactory) NewInput(ctx context.Context, p *conf.Plugin) (sdk.Input, error) {
	s, err := spec(p)
	if err != nil {
		return nil, err
	}
	in, err := f.launcher.Input(ctx, s)
	if err != nil {
		return nil, explain(err, p)
	}
	return in, nil
}

func (f *pluginFactory) NewProcessor(ctx context.Context, p *conf.Plugin) (sdk.Processor, error) {
	s, err := spec(p)
	if err != nil {
		return nil, err
	}
	pr, err := f.launcher.Processor(ctx, s)
	if err != nil {
		return nil, explain(err, p)
	}
	return pr, nil
}

// NewProcessorGroup implements agent.GroupFactory: one plugin process runs
// the members of a process group.
func (f *pluginFactory) NewProcessorGroup(ctx context.Context, ps []*conf.Plugin) (agent.GroupProcessor, error) {
	s, err := groupSpec(ps)
	if err != nil {
		return nil, err
	}
	pr, err := f.launcher.Processor(ctx, s)
	if err != nil {
		return nil, explain(err, ps...)
	}
	return pr, nil
}

func (f *pluginFactory) NewOutput(ctx context.Context, p *conf.Plugin) (sdk.Output, error) {
	s, err := spec(p)
	if err != nil {
		return nil, err
	}
	out, err := f.launcher.Output(ctx, s)
	if err != nil {
		return nil, explain(err, p)
	}
	return out, nil
}

// checkPlugin starts the binary of a plugin, or of a process group's
// members (ps in order), and has it accept their configuration.
func checkPlugin(ctx context.Context, l *plugins.Launcher, ps ...*conf.Plugin) error {
	s, err := groupSpec(ps)
	if err != nil {
		return err
	}
	issues, err := l.Check(ctx, s)
	if err != nil {
		return explain(err, ps...)
	}
	if len(issues) > 0 {
		return explain(&sdk.ConfigError{Issues: issues}, ps...)
	}
	return nil
}
