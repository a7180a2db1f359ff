// Package main is a third-party processor plugin for telemetry-collector,
// built only on the public sdk: it adds a "cluster" label to every series
// from a host-to-cluster map in its TOML table.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"path"
	"sort"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

//go:embed sample.conf
var sampleConfig string

// ClusterLabel is the plugin. The agent decodes the [[processors.cluster_label]]
// table into it; Process is called serially (it does not implement
// sdk.Concurrent), so the cache needs no lock.
type ClusterLabel struct {
	Label    string            `toml:"label"`
	Default  string            `toml:"default"`
	Clusters map[string]string `toml:"clusters"`

	exact    map[string]string
	patterns []pattern
	cache    map[string]string // host -> cluster ("" = none), bounded
}

type pattern struct{ glob, cluster string }

const maxCache = 100000

func newClusterLabel() *ClusterLabel { return &ClusterLabel{Label: "cluster"} }

// Validate checks the configuration; every problem is reported.
func (c *ClusterLabel) Validate() error {
	var errs []error
	if c.Label == "" {
		errs = append(errs, errors.New("label: must not be empty"))
	}
	if c.Label == sdk.LabelHost {
		errs = append(errs, errors.New(`label: must not be "host", the label it is looked up from`))
	}
	if len(c.Clusters) == 0 && c.Default == "" {
		errs = append(errs, errors.New("clusters: give at least one host = cluster pair (or a default)"))
	}
	for host, cluster := range c.Clusters {
		if _, err := path.Match(host, ""); err != nil {
			errs = append(errs, fmt.Errorf("clusters: bad pattern %q: %w", host, err))
		}
		if cluster == "" {
			errs = append(errs, fmt.Errorf("clusters: host %q maps to an empty cluster", host))
		}
	}
	return errors.Join(errs...)
}

// Init splits the map into exact names and glob patterns.
func (c *ClusterLabel) Init(context.Context) error {
	c.exact = make(map[string]string)
	c.cache = make(map[string]string)
	for host, cluster := range c.Clusters {
		if hasMeta(host) {
			c.patterns = append(c.patterns, pattern{host, cluster})
		} else {
			c.exact[host] = cluster
		}
	}
	// Deterministic: the most specific (longest) pattern wins.
	sort.Slice(c.patterns, func(i, j int) bool {
		if len(c.patterns[i].glob) != len(c.patterns[j].glob) {
			return len(c.patterns[i].glob) > len(c.patterns[j].glob)
		}
		return c.patterns[i].glob < c.patterns[j].glob
	})
	return nil
}

func hasMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			return true
		}
	}
	return false
}

func (c *ClusterLabel) lookup(host string) string {
	if v, ok := c.cache[host]; ok {
		return v
	}
	v, ok := c.exact[host]
	if !ok {
		v = c.Default
		for _, p := range c.patterns {
			if m, _ := path.Match(p.glob, host); m {
				v = p.cluster
				break
			}
		}
	}
	if len(c.cache) >= maxCache {
		clear(c.cache)
	}
	c.cache[host] = v
	return v
}

// Process sets the label on every series whose host maps to a cluster. The
// work is per series, not per point.
func (c *ClusterLabel) Process(_ context.Context, b *sdk.Batch) ([]*sdk.Batch, error) {
	for i := range b.Series {
		s := &b.Series[i]
		host, _ := s.Labels.Get(sdk.LabelHost)
		cluster := c.lookup(host)
		if cluster == "" {
			continue
		}
		s.Labels = setLabel(s.Labels, c.Label, cluster)
	}
	return []*sdk.Batch{b}, nil
}

// setLabel returns ls with key set to value, kept sorted. It copies ls so a
// label slice shared by several series is never changed behind their back.
func setLabel(ls sdk.Labels, key, value string) sdk.Labels {
	out := make(sdk.Labels, 0, len(ls)+1)
	done := false
	for _, l := range ls {
		switch {
		case !done && l.Key == key:
			out = append(out, sdk.Label{Key: key, Value: value})
			done = true
			continue
		case !done && l.Key > key:
			out = append(out, sdk.Label{Key: key, Value: value})
			done = true
		}
		out = append(out, l)
	}
	if !done {
		out = append(out, sdk.Label{Key: key, Value: value})
	}
	return out
}

func registration() sdk.Registration {
	return sdk.Registration{
		Name:         "cluster_label",
		Kind:         sdk.KindProcessor,
		Description:  "Adds a cluster label looked up from the host label",
		SampleConfig: sampleConfig,
		New:          func() any { return newClusterLabel() },
	}
}

func main() {
	sdk.Serve(registration())
}
