package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// explain turns a launcher error into one that names file and line.
func explain(p *conf.Plugin, err error) error {
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		out := &configError{plugin: p.ID()}
		for _, is := range ce.Issues {
			out.issues = append(out.issues, p.KeyError(is.Key, is.Message).Error())
		}
		return out
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
		return nil, explain(p, err)
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
		return nil, explain(p, err)
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
		return nil, explain(p, err)
	}
	return out, nil
}

// checkPlugin starts the plugin's binary and has it accept its config.
func checkPlugin(ctx context.Context, l *plugins.Launcher, p *conf.Plugin) error {
	s, err := spec(p)
	if err != nil {
		return err
	}
	issues, err := l.Check(ctx, s)
	if err != nil {
		return explain(p, err)
	}
	if len(issues) > 0 {
		return explain(p, &sdk.ConfigError{Issues: issues})
	}
	return nil
}
