// Package config loads medic's configuration: strict YAML (every unknown
// key is an error), ${ENV} expansion, defaults in one place (Default and
// each kind's NewConfig), and a Validate that lists every problem with its
// field path and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/notify"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

// Config is medic's whole configuration.
type Config struct {
	// Listen is the address of the HTTP server (/metrics, /status, health).
	Listen string `yaml:"listen" json:"listen"`
	// StateDir holds the audit log, persisted budgets and the pause file.
	StateDir string `yaml:"stateDir" json:"stateDir"`
	// EvaluationInterval is how often rules are evaluated.
	EvaluationInterval cfg.Duration `yaml:"evaluationInterval" json:"evaluationInterval"`
	// DryRun makes every decision as live but performs no action.
	DryRun bool `yaml:"dryRun" json:"dryRun"`
	// Store bounds the in-memory series store.
	Store StoreConfig `yaml:"store" json:"store"`
	// Alerting sends medic's alerts to Alertmanager (firing and resolved).
	Alerting notify.Config `yaml:"alerting" json:"alerting,omitzero"`

	Probes  []*Probe           `yaml:"-" json:"probes"`
	Actions map[string]*Action `yaml:"-" json:"actions"`
	Rules   []*Rule            `yaml:"-" json:"rules"`
	// Plugins are the remediation plugin binaries (plugins.<name>) that
	// actions of kind plugin run.
	Plugins map[string]*plugins.Config `yaml:"-" json:"plugins,omitempty"`
}

// StoreConfig bounds the series store.
type StoreConfig struct {
	// MaxSeries is the hard cap on live series; new series beyond it are
	// dropped and counted in medic_store_dropped_series_total.
	MaxSeries int `yaml:"maxSeries" json:"maxSeries"`
	// Retention overrides the derived retention (longest rule range +
	// lookback + margin) when larger.
	Retention cfg.Duration `yaml:"retention" json:"retention"`
}

// Probe is one probes[] entry: a name and exactly one kind key.
type Probe struct {
	Name string `yaml:"name" json:"name"`
	Kind string `yaml:"-" json:"kind"`
	// Spec is the kind's decoded config (the pointer its NewConfig returned).
	Spec any `yaml:"-" json:"spec"`

	Kinds map[string]yaml.Node `yaml:",inline" json:"-"`
}

// Action is one actions.<name> entry: the common step settings and
// exactly one kind key (exec, reconnect, …).
type Action struct {
	Name string `yaml:"-" json:"name"`
	// Backoff is the action's own retry policy within a step.
	Backoff actions.BackoffConfig `yaml:"backoff" json:"backoff"`
	// Verify is how long after an attempt the alert must stop firing for
	// the attempt to count as a fix.
	Verify cfg.Duration `yaml:"verify" json:"verify"`
	// Budget caps runs of this action per window, across incidents and restarts.
	Budget *Budget `yaml:"budget" json:"budget,omitempty"`
	// Requires is a PromQL precondition: the step runs only while it
	// returns a non-empty result; otherwise the ladder waits.
	Requires string `yaml:"requires" json:"requires,omitempty"`
	// Fleet bounds the action across every medic instance in the
	// namespace (Kubernetes Leases); ignored outside Kubernetes.
	Fleet *Fleet `yaml:"fleet" json:"fleet,omitempty"`

	Kind  string               `yaml:"-" json:"kind"`
	Spec  any                  `yaml:"-" json:"spec"`
	Kinds map[string]yaml.Node `yaml:",inline" json:"-"`
}

// Budget is "at most Max runs per Window".
type Budget struct {
	Max    int          `yaml:"max" json:"max"`
	Window cfg.Duration `yaml:"window" json:"window"`
}

// Fleet onAPIError values.
const (
	FleetWait    = "wait"
	FleetProceed = "proceed"
)

// Fleet is actions.<name>.fleet: at most Max medic instances run the action
// at once; with Hold, a slot stays taken until Hold after it was taken, so
// at most Max runs start per Hold across the fleet.
type Fleet struct {
	Max  int          `yaml:"max" json:"max"`
	Hold cfg.Duration `yaml:"hold" json:"hold,omitempty"`
	// OnAPIError is "wait" (default: no slot, no run) or "proceed".
	OnAPIError string `yaml:"onAPIError" json:"onAPIError,omitempty"`
}

// Rule is an alerting rule in Prometheus's shape plus a remediation ladder.
type Rule struct {
	Alert         string            `yaml:"alert" json:"alert"`
	Expr          string            `yaml:"expr" json:"expr"`
	For           cfg.Duration      `yaml:"for" json:"for"`
	KeepFiringFor cfg.Duration      `yaml:"keep_firing_for" json:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels" json:"labels,omitempty"`
	Annotations   map[string]string `yaml:"annotations" json:"annotations,omitempty"`
	Remediate     []string          `yaml:"remediate" json:"remediate"`
	// RetryExhaustedAfter: once the ladder is exhausted and the alert still
	// fires this long after, walk the ladder again from step 1. 0 (the
	// default): an exhausted incident is left alone until it resolves.
	RetryExhaustedAfter cfg.Duration `yaml:"retryExhaustedAfter" json:"retryExhaustedAfter,omitempty"`
}

// file is the top level as written; lists of kinds are decoded per entry
// so each gets its own defaults.
type file struct {
	Config  `yaml:",inline"`
	Probes  []yaml.Node          `yaml:"probes"`
	Actions map[string]yaml.Node `yaml:"actions"`
	Rules   []yaml.Node          `yaml:"rules"`
	Plugins map[string]yaml.Node `yaml:"plugins"`
}

// Defaults.
const (
	DefaultListen             = ":9555"
	DefaultStateDir           = "/var/lib/medic"
	DefaultEvaluationInterval = 5 * time.Second
	DefaultMaxSeries          = 100_000
	DefaultVerify             = 30 * time.Second
)

// Default returns the configuration with every default filled in.
func Default() *Config {
	return &Config{
		Listen:             DefaultListen,
		StateDir:           DefaultStateDir,
		EvaluationInterval: cfg.Duration(DefaultEvaluationInterval),
		Store:              StoreConfig{MaxSeries: DefaultMaxSeries},
		Actions:            map[string]*Action{},
	}
}

// DefaultAction returns an action's step settings before its YAML is applied.
func DefaultAction() *Action {
	return &Action{Backoff: actions.DefaultBackoff(), Verify: cfg.Duration(DefaultVerify)}
}

// LoadFile reads and validates a config file.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse decodes and validates a config document. On error the returned
// error joins one cfg.FieldError per problem; use cfg.Sorted to list them.
func Parse(b []byte) (*Config, error) {
	return parse(b, os.LookupEnv)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parse(b []byte, lookup func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &cfg.FieldError{Msg: "config is empty"}
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			var line int
			fmt.Sscanf(m[1], "%d", &line)
			return nil, &cfg.FieldError{Line: line, Msg: "YAML syntax: " + m[2]}
		}
		return nil, &cfg.FieldError{Msg: "YAML syntax: " + err.Error()}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	lines := map[string]int{}
	indexLines(root, "", lines)

	var errs []error
	if err := cfg.ExpandEnv(root, lookup); err != nil {
		errs = append(errs, err)
	}
	c := Default()
	f := file{Config: *c}
	if err := cfg.Decode(root, &f, ""); err != nil {
		errs = append(errs, err)
	}
	c = &f.Config
	c.Actions = map[string]*Action{}
	for i := range f.Probes {
		p, err := decodeProbe(&f.Probes[i], fmt.Sprintf("probes[%d]", i))
		errs = append(errs, err)
		c.Probes = append(c.Probes, p)
	}
	for name, n := range f.Actions {
		a, err := decodeAction(name, &n, "actions."+name)
		errs = append(errs, err)
		c.Actions[name] = a
	}
	for name, n := range f.Plugins {
		if c.Plugins == nil {
			c.Plugins = map[string]*plugins.Config{}
		}
		pc := plugins.DefaultConfig()
		errs = append(errs, decodeSpec(&n, pc, "plugins."+name))
		c.Plugins[name] = pc
	}
	for i := range f.Rules {
		r := &Rule{}
		errs = append(errs, cfg.Decode(&f.Rules[i], r, fmt.Sprintf("rules[%d]", i)))
		c.Rules = append(c.Rules, r)
	}
	errs = append(errs, c.Validate())
	err := errors.Join(errs...)
	if err == nil {
		return c, nil
	}
	return nil, fillLines(err, lines)
}

func decodeProbe(n *yaml.Node, path string) (*Probe, error) {
	p := &Probe{}
	derr := cfg.Decode(n, p, path)
	kind, node, err := oneKind(p.Kinds, path, "probe", probe.Kinds())
	if err != nil {
		return p, errors.Join(derr, err)
	}
	k, _ := probe.Lookup(kind)
	p.Kind = kind
	p.Spec = k.NewConfig()
	return p, errors.Join(derr, decodeSpec(node, p.Spec, cfg.Join(path, kind)))
}

func decodeAction(name string, n *yaml.Node, path string) (*Action, error) {
	a := DefaultAction()
	a.Name = name
	derr := cfg.Decode(n, a, path)
	kind, node, err := oneKind(a.Kinds, path, "action", actions.Kinds())
	if err != nil {
		return a, errors.Join(derr, err)
	}
	k, _ := actions.Lookup(kind)
	a.Kind = kind
	a.Spec = k.NewConfig()
	return a, errors.Join(derr, decodeSpec(node, a.Spec, cfg.Join(path, kind)))
}

// decodeSpec decodes a kind's section and runs its Validate. Fields that
// failed to decode keep their defaults, so Validate still reports the
// other problems; duplicates are removed when the errors are listed.
func decodeSpec(n *yaml.Node, spec any, path string) error {
	err := cfg.Decode(n, spec, path)
	if v, ok := spec.(cfg.Validator); ok {
		err = errors.Join(err, cfg.Prefix(path, v.Validate()))
	}
	return err
}

// oneKind checks that exactly one registered kind key is present.
func oneKind(m map[string]yaml.Node, path, what string, known []string) (string, *yaml.Node, error) {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs []error
	var found []string
	for _, k := range names {
		if _, ok := lookupKind(what, k); ok {
			found = append(found, k)
			continue
		}
		errs = append(errs, cfg.Errorf(cfg.Join(path, k), "unknown field (%s kinds: %s)", what, strings.Join(known, ", ")))
	}
	switch {
	case len(errs) > 0:
		return "", nil, errors.Join(errs...)
	case len(found) == 0:
		return "", nil, cfg.Errorf(path, "no %s kind given (one of: %s)", what, strings.Join(known, ", "))
	case len(found) > 1:
		return "", nil, cfg.Errorf(path, "more than one %s kind given (%s): use one per entry", what, strings.Join(found, ", "))
	}
	n := m[found[0]]
	return found[0], &n, nil
}

func lookupKind(what, name string) (any, bool) {
	if what == "probe" {
		return probe.Lookup(name)
	}
	return actions.Lookup(name)
}

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	alertRe = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)
)

// ExprParser parses PromQL the way the rule engine does.
var ExprParser = parser.NewParser(parser.Options{})

// Validate checks cross-field rules; decoding already checked keys and types.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	if c.Listen == "" {
		add("listen", "must not be empty (e.g. \":9555\")")
	}
	if c.StateDir == "" {
		add("stateDir", "must not be empty")
	}
	if c.EvaluationInterval <= 0 {
		add("evaluationInterval", "must be greater than 0")
	}
	if c.Store.MaxSeries <= 0 {
		add("store.maxSeries", "must be greater than 0")
	}
	errs = append(errs, cfg.Prefix("alerting", c.Alerting.Validate()))
	seen := map[string]int{}
	for i, p := range c.Probes {
		path := fmt.Sprintf("probes[%d].name", i)
		switch {
		case p.Name == "":
			add(path, "is required")
		case !nameRe.MatchString(p.Name):
			add(path, "%q: use letters, digits, '_', '-', '.'", p.Name)
		default:
			if j, dup := seen[p.Name]; dup {
				add(path, "%q is already used by probes[%d]", p.Name, j)
			}
			seen[p.Name] = i
		}
	}
	names := make([]string, 0, len(c.Actions))
	for n := range c.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := c.Actions[n]
		path := "actions." + n
		if !nameRe.MatchString(n) {
			add(path, "action name %q: use letters, digits, '_', '-', '.'", n)
		}
		errs = append(errs, cfg.Prefix(path+".backoff", a.Backoff.Validate()))
		if a.Budget != nil {
			if a.Budget.Max < 1 {
				add(path+".budget.max", "must be at least 1")
			}
			if a.Budget.Window <= 0 {
				add(path+".budget.window", "must be greater than 0")
			}
		}
		if f := a.Fleet; f != nil {
			if f.Max < 1 {
				add(path+".fleet.max", "must be at least 1")
			}
			if f.Hold < 0 {
				add(path+".fleet.hold", "must not be negative")
			}
			switch f.OnAPIError {
			case "", FleetWait, FleetProceed:
			default:
				add(path+".fleet.onAPIError", "must be %q or %q, not %q", FleetWait, FleetProceed, f.OnAPIError)
			}
		}
		if a.Requires != "" {
			if err := checkExpr(a.Requires); err != nil {
				add(path+".requires", "%v", err)
			}
		}
		// Kinds that act on a probe (reconnect probe:) name it; check it exists.
		if pr, ok := a.Spec.(interface{ ProbeRefs() []string }); ok {
			for _, ref := range pr.ProbeRefs() {
				if _, ok := seen[ref]; !ok {
					add(cfg.Join(path, a.Kind)+".probe", "no probe named %q in probes[]", ref)
				}
			}
		}
		if pa, ok := a.Spec.(*plugins.ActionConfig); ok && pa.Name != "" {
			if _, ok := c.Plugins[pa.Name]; !ok {
				add(path+"."+plugins.KindName+".name", "unknown plugin %q (configured: %s)", pa.Name, strings.Join(sortedKeys(c.Plugins), ", "))
			}
		}
	}
	for _, n := range sortedKeys(c.Plugins) {
		if !plugins.ValidName(n) {
			add("plugins."+n, "plugin name %q: use letters, digits, '_', '-', '.'", n)
		}
	}
	alerts := map[string]int{}
	for i, r := range c.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		switch {
		case r.Alert == "":
			add(path+".alert", "is required")
		case !alertRe.MatchString(r.Alert):
			add(path+".alert", "%q is not a valid alert name", r.Alert)
		}
		if j, dup := alerts[r.Alert]; dup && r.Alert != "" {
			add(path+".alert", "%q is already defined by rules[%d]", r.Alert, j)
		}
		alerts[r.Alert] = i
		if r.Expr == "" {
			add(path+".expr", "is required")
		} else if err := checkExpr(r.Expr); err != nil {
			add(path+".expr", "%v", err)
		}
		for k := range r.Labels {
			if !alertRe.MatchString(k) || strings.Contains(k, ":") {
				add(path+".labels."+k, "invalid label name")
			}
		}
		switch ra := r.RetryExhaustedAfter.D(); {
		case ra < 0:
			add(path+".retryExhaustedAfter", "must not be negative")
		case ra > 0 && len(r.Remediate) == 0:
			add(path+".retryExhaustedAfter", "has no effect without remediate")
		case ra > 0 && ra < time.Minute:
			add(path+".retryExhaustedAfter", "must be at least 1m (0 disables), not %s", ra)
		}
		for j, a := range r.Remediate {
			if _, ok := c.Actions[a]; !ok {
				add(fmt.Sprintf("%s.remediate[%d]", path, j), "unknown action %q (defined: %s)", a, strings.Join(names, ", "))
			}
		}
	}
	return errors.Join(errs...)
}

func checkExpr(s string) error {
	e, err := ExprParser.ParseExpr(s)
	if err != nil {
		return fmt.Errorf("invalid PromQL: %w", err)
	}
	switch e.Type() {
	case parser.ValueTypeVector, parser.ValueTypeScalar:
		return nil
	}
	return fmt.Errorf("expression must return an instant vector or scalar, not a %s", e.Type())
}

// indexLines records the line of every path in the document.
func indexLines(n *yaml.Node, path string, out map[string]int) {
	if _, ok := out[path]; !ok {
		out[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := cfg.Join(path, n.Content[i].Value)
			out[p] = n.Content[i].Line
			indexLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			indexLines(c, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// fillLines gives FieldErrors without a line the line of their path, or of
// the nearest parent that exists in the document.
func fillLines(err error, lines map[string]int) error {
	var out []error
	for _, e := range cfg.Flatten(err) {
		var fe *cfg.FieldError
		if errors.As(e, &fe) && fe.Line == 0 {
			c := *fe
			for p := c.Path; p != ""; p = parent(p) {
				if l, ok := lines[p]; ok && l > 0 {
					c.Line = l
					break
				}
			}
			out = append(out, &c)
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
