package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"gopkg.in/yaml.v3"
)

// Requirement is one precondition of an action: a PromQL expression that
// must return a non-empty result before an attempt.
type Requirement struct {
	// Expr is the PromQL expression.
	Expr string `yaml:"expr" json:"expr"`
	// Source is the name of a sources: entry to evaluate Expr on; empty:
	// medic's own store.
	Source string `yaml:"source" json:"source,omitempty"`
	// OnError is what to do when Expr cannot be evaluated: hold (the
	// default: wait, as if it were not met) or proceed.
	OnError string `yaml:"onError" json:"onError,omitempty"`
	// Reason is the suppression reason while Expr is not met:
	// precondition (the default) or fleet-outage.
	Reason string `yaml:"reason" json:"reason,omitempty"`
}

// Requirements is actions.<name>.requires: a string (an expression on the
// local store), a mapping {expr, source, onError, reason}, or a list of
// either; every one must hold.
type Requirements []Requirement

// UnmarshalYAML accepts a string, a mapping or a list of those. It uses the
// decoder's own unmarshal so unknown keys are errors (strict decoding).
func (rs *Requirements) UnmarshalYAML(unmarshal func(any) error) error {
	n := cfg.NodeOf(unmarshal)
	switch n.Kind {
	case yaml.SequenceNode:
		var items []requirementItem
		if err := unmarshal(&items); err != nil {
			return err
		}
		out := make(Requirements, 0, len(items))
		for _, it := range items {
			out = append(out, Requirement(it))
		}
		*rs = out
		return nil
	case yaml.ScalarNode, yaml.MappingNode:
		var it requirementItem
		if err := unmarshal(&it); err != nil {
			return err
		}
		*rs = Requirements{Requirement(it)}
		return nil
	}
	return cfg.NodeError(n, "expected an expression, a mapping {expr, source, onError, reason} or a list of those, got %s", cfg.KindName(n))
}

// requirementItem is one list entry: a string or a mapping.
type requirementItem Requirement

func (it *requirementItem) UnmarshalYAML(unmarshal func(any) error) error {
	n := cfg.NodeOf(unmarshal)
	switch n.Kind {
	case yaml.ScalarNode:
		*it = requirementItem{Expr: n.Value}
		return nil
	case yaml.MappingNode:
		var r Requirement // no method: strict field decoding
		err := unmarshal(&r)
		*it = requirementItem(r)
		return err
	}
	return cfg.NodeError(n, "expected an expression or a mapping {expr, source, onError, reason}, got %s", cfg.KindName(n))
}

// local reports whether r is a plain local expression with defaults (the
// string form).
func (r Requirement) local() bool { return r == Requirement{Expr: r.Expr} }

// form returns what Requirements marshal as: the string form when it is
// one plain local expression, else the list.
func (rs Requirements) form() any {
	if len(rs) == 1 && rs[0].local() {
		return rs[0].Expr
	}
	return []Requirement(rs)
}

// MarshalYAML writes the string form when it is one plain local expression.
func (rs Requirements) MarshalYAML() (any, error) { return rs.form(), nil }

// MarshalJSON writes the string form when it is one plain local
// expression (as "requires" always was), else the list.
func (rs Requirements) MarshalJSON() ([]byte, error) { return json.Marshal(rs.form()) }

// Local returns the expressions on medic's own store.
func (rs Requirements) Local() []string {
	var out []string
	for _, r := range rs {
		if r.Source == "" {
			out = append(out, r.Expr)
		}
	}
	return out
}

// Remedy returns the requirements as the remedy engine takes them, with
// defaults filled in (onError hold, reason precondition).
func (rs Requirements) Remedy() []remedy.Requirement {
	var out []remedy.Requirement
	for _, r := range rs {
		rr := remedy.Requirement{Expr: r.Expr, Source: r.Source, OnError: remedy.OnError(r.OnError), Reason: r.Reason}
		if rr.OnError == "" {
			rr.OnError = remedy.OnErrorHold
		}
		if rr.Reason == "" {
			rr.Reason = remedy.ReasonPrecondition
		}
		out = append(out, rr)
	}
	return out
}

// validate checks each requirement; sources are the configured source
// names.
func (rs Requirements) validate(path string, sources map[string]bool) []error {
	var errs []error
	add := func(p, format string, args ...any) { errs = append(errs, cfg.Errorf(p, format, args...)) }
	for i, r := range rs {
		p := path
		if len(rs) > 1 {
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		switch {
		case r.Expr == "":
			add(p+".expr", "is required")
		default:
			if err := checkExpr(r.Expr); err != nil {
				add(p+exprSuffix(r), "%v", err)
			}
		}
		if r.Source != "" && !sources[r.Source] {
			add(p+".source", "no source named %q in sources:", r.Source)
		}
		switch remedy.OnError(r.OnError) {
		case "", remedy.OnErrorHold, remedy.OnErrorProceed:
		default:
			add(p+".onError", "must be %q or %q, not %q", remedy.OnErrorHold, remedy.OnErrorProceed, r.OnError)
		}
		switch r.Reason {
		case "", remedy.ReasonPrecondition, remedy.ReasonFleetOutage:
		default:
			add(p+".reason", "must be %q or %q, not %q", remedy.ReasonPrecondition, remedy.ReasonFleetOutage, r.Reason)
		}
	}
	return errs
}

// exprSuffix is where an expression error is reported: at the string
// itself for the string form, at .expr for a mapping.
func exprSuffix(r Requirement) string {
	if r.local() {
		return ""
	}
	return ".expr"
}

// sourceNames are the names requires: may refer to in source:.
func (c *Config) sourceNames() map[string]bool {
	out := map[string]bool{}
	for n := range c.Sources {
		out[n] = true
	}
	return out
}

func (c *Config) validateSources() []error {
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(c.Sources)) {
		path := "sources." + n
		if !nameRe.MatchString(n) {
			errs = append(errs, cfg.Errorf(path, "source name %q: %s", n, nameRule))
		}
		errs = append(errs, cfg.Prefix(path, c.Sources[n].Validate()))
	}
	return errs
}
