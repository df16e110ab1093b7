package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// InlineGroup is the name of the group formed by the config's own rules[].
const InlineGroup = "medic"

// parseAndLoad parses a config document, then loads its ruleFiles (relative
// globs against dir) and checks remediations against the alerts they define.
func parseAndLoad(b []byte, dir string, hostChecks ...func(*Config) error) (*Config, error) {
	c, err := parse(b, os.LookupEnv, hostChecks...)
	if err != nil {
		return nil, err
	}
	if err := c.loadRuleFiles(b, dir); err != nil {
		return nil, err
	}
	return c, nil
}

// loadRuleFiles reads ruleFiles and validates remediations; problems carry
// the rule file's name and line, or the config's path and line.
func (c *Config) loadRuleFiles(b []byte, dir string) error {
	var errs []error
	for i, g := range c.RuleFiles {
		files, err := rules.ExpandGlobs([]string{g}, dir)
		if err != nil {
			errs = append(errs, cfg.Errorf(fmt.Sprintf("ruleFiles[%d]", i), "%v", err))
			continue
		}
		// Problems inside a rule file carry that file's name and line.
		gs, err := rules.LoadFiles(files)
		errs = append(errs, err)
		c.FileGroups = append(c.FileGroups, gs...)
	}
	if errors.Join(errs...) == nil {
		// Only with every rule loaded can a remediation be said to name no alert.
		errs = append(errs, c.validateRemediations())
	}
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	// Locate config paths (ruleFiles[i], remediations.X) on their lines.
	var any map[string]any
	if doc, _ := cfg.Load(b, &any, os.LookupEnv); doc != nil {
		if located := doc.Locate(err, ""); located != nil {
			return located
		}
	}
	return err
}

func (c *Config) validateRemediations() error {
	var errs []error
	defined := map[string]bool{}
	for _, r := range c.Rules {
		defined[r.Alert] = true
	}
	actions := slices.Sorted(maps.Keys(c.Actions))
	checkAction := func(path, a string) {
		if _, ok := c.Actions[a]; !ok {
			errs = append(errs, cfg.Errorf(path, "unknown action %q (defined: %s)", a, strings.Join(actions, ", ")))
		}
	}
	annotated := map[string][]string{}
	for _, g := range c.FileGroups {
		for _, r := range g.FileRules() {
			if r.Alert == "" {
				continue
			}
			if defined[r.Alert] && !fileAlert(c, r.Alert) {
				errs = append(errs, fmt.Errorf("%s: alert %q is also defined in the config's rules[]", r.Where(), r.Alert))
			}
			defined[r.Alert] = true
			if rn, rv, ok := rules.RetryAnnotationOf(r.Annotations); ok {
				if _, err := retryAnnotation(c, r.Alert, rv); err != nil {
					errs = append(errs, fmt.Errorf("%s: alert %q: %s: %w", r.Where(), r.Alert, rn, err))
				}
			}
			annName, ann, ok := rules.LadderAnnotation(r.Annotations)
			if !ok {
				continue
			}
			ladder := rules.ParseLadder(ann)
			if prev, seen := annotated[r.Alert]; seen && strings.Join(prev, ",") != strings.Join(ladder, ",") {
				errs = append(errs, fmt.Errorf("%s: alert %q: %s %q differs from another rule of the same name (%v)",
					r.Where(), r.Alert, annName, ann, prev))
			}
			annotated[r.Alert] = ladder
			if _, mapped := c.Remediations[r.Alert]; mapped {
				continue // the config's mapping wins
			}
			for _, a := range ladder {
				if _, ok := c.Actions[a]; !ok {
					errs = append(errs, fmt.Errorf("%s: alert %q: %s names unknown action %q (defined: %s)",
						r.Where(), r.Alert, annName, a, strings.Join(actions, ", ")))
				}
			}
		}
	}
	for _, alert := range slices.Sorted(maps.Keys(c.Remediations)) {
		path := "remediations." + alert
		if !defined[alert] {
			errs = append(errs, cfg.Errorf(path, "no alerting rule named %q in rules[] or ruleFiles", alert))
		}
		for j, a := range c.Remediations[alert] {
			checkAction(fmt.Sprintf("%s[%d]", path, j), a)
		}
	}
	return errors.Join(errs...)
}

func fileAlert(c *Config, name string) bool {
	for _, r := range c.Rules {
		if r.Alert == name {
			return false
		}
	}
	return true
}

// RuleGroups returns every rule group to evaluate, in order: the config's
// own rules[] (group "medic", every evaluation), then the rule files' groups.
func (c *Config) RuleGroups() []rules.GroupSpec {
	var out []rules.GroupSpec
	if len(c.Rules) > 0 {
		g := rules.GroupSpec{Name: InlineGroup}
		for _, r := range c.Rules {
			g.Rules = append(g.Rules, rules.RuleSpec{Alert: r.Alert, Expr: r.Expr, For: r.For.D(),
				KeepFiringFor: r.KeepFiringFor.D(), Labels: r.Labels, Annotations: r.Annotations})
		}
		out = append(out, g)
	}
	for _, fg := range c.FileGroups {
		g := rules.GroupSpec{Name: fg.Name, File: fg.File, Interval: time.Duration(fg.Interval), Labels: fg.Labels}
		if fg.QueryOffset != nil {
			g.QueryOffset = time.Duration(*fg.QueryOffset)
		}
		for _, r := range fg.FileRules() {
			g.Rules = append(g.Rules, rules.RuleSpec{Alert: r.Alert, Record: r.Record, Expr: r.Expr,
				For: time.Duration(r.For), KeepFiringFor: time.Duration(r.KeepFiringFor),
				Labels: r.Labels, Annotations: r.Annotations, Where: r.Where()})
		}
		out = append(out, g)
	}
	return out
}

// Ladders returns each alert's remediation ladder: rules[].remediate, then
// for rule-file alerts remediations.<alert> or else the rule's
// medic.io/remediate (or medic_remediate) annotation. Alerts without a ladder are absent.
func (c *Config) Ladders() map[string][]string {
	out := map[string][]string{}
	for _, r := range c.Rules {
		if len(r.Remediate) > 0 {
			out[r.Alert] = r.Remediate
		}
	}
	for _, g := range c.FileGroups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if l, ok := c.Remediations[r.Alert]; ok {
				if len(l) > 0 {
					out[r.Alert] = l
				}
			} else if _, ann, ok := rules.LadderAnnotation(r.Annotations); ok {
				if l := rules.ParseLadder(ann); len(l) > 0 {
					out[r.Alert] = l
				}
			}
		}
	}
	return out
}

// RetryExhaustedAfter returns each alert's retryExhaustedAfter:
// rules[].retryExhaustedAfter, and for rule-file alerts the rule's
// medic.io/retry-exhausted-after (or medic_retry_exhausted_after)
// annotation.
func (c *Config) RetryExhaustedAfter() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, r := range c.Rules {
		if d := r.RetryExhaustedAfter.D(); d > 0 {
			out[r.Alert] = d
		}
	}
	for _, g := range c.FileGroups {
		for _, r := range g.Rules {
			if _, v, ok := rules.RetryAnnotationOf(r.Annotations); ok && r.Alert != "" {
				if d, err := retryAnnotation(c, r.Alert, v); err == nil && d > 0 {
					out[r.Alert] = d
				}
			}
		}
	}
	return out
}

// retryAnnotation parses a rule-file alert's retry annotation: a
// Prometheus duration of at least 1m ("0" disables) on an alert that has
// a ladder.
func retryAnnotation(c *Config, alert, v string) (time.Duration, error) {
	md, err := model.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, err
	}
	d := time.Duration(md)
	switch {
	case d > 0 && d < time.Minute:
		return 0, fmt.Errorf("must be at least 1m (0 disables), not %s", v)
	case d > 0 && len(c.Ladders()[alert]) == 0:
		return 0, fmt.Errorf("has no effect without a remediation (remediations.%s or the medic_remediate annotation)", alert)
	}
	return d, nil
}

// AllExprs returns every PromQL expression the config evaluates: rules
// (inline and from files) and actions' preconditions.
func (c *Config) AllExprs() []string {
	var out []string
	for _, g := range c.RuleGroups() {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(c.Actions)) {
		out = append(out, c.Actions[n].Requires.Local()...)
	}
	return out
}
