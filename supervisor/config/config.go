// Package config loads medic's configuration: strict YAML (every unknown
// key is an error), ${ENV} expansion, defaults in one place (Default and
// each kind's NewConfig), and a Validate that lists every problem with its
// field path and line.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/notify"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/sources"
)

// Config is medic's whole configuration.
type Config struct {
	// Listen is the address of the HTTP server (/status, /metrics, health,
	// /livez/agent, /api/v1). The default is loopback only: set ":9555"
	// where kubelet probes or Prometheus reach it over the pod IP.
	Listen string `yaml:"listen" json:"listen"`
	// MetricsListen, when set (e.g. ":9556"), is a second address serving
	// only the read-only /metrics, /healthz and /readyz.
	MetricsListen string `yaml:"metricsListen" json:"metricsListen,omitempty"`
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
	// Sources are remote PromQL sources (the cluster's Prometheus) that
	// actions' requires: entries name with source: (docs/fleet.md).
	Sources map[string]*sources.Config `yaml:"sources" json:"sources,omitempty"`

	Probes  []*Probe           `yaml:"probes" json:"probes"`
	Actions map[string]*Action `yaml:"actions" json:"actions"`
	Rules   []*Rule            `yaml:"rules" json:"rules"`
	// RuleFiles are globs of Prometheus rule files (groups:) or
	// PrometheusRule manifests, relative to the config file's directory.
	RuleFiles []string `yaml:"ruleFiles" json:"ruleFiles,omitempty"`
	// Remediations attach ladders to rule-file alerts: alert name → actions.
	Remediations map[string][]string `yaml:"remediations" json:"remediations,omitempty"`
	// FileGroups are the groups loaded from RuleFiles.
	FileGroups []rules.FileGroup `yaml:"-" json:"-"`
	// Plugins are the remediation plugin binaries (plugins.<name>) that
	// actions of kind plugin run.
	Plugins map[string]*plugins.Config `yaml:"-" json:"plugins,omitempty"`
	// Warnings are what decoding noticed but accepted (deprecated keys),
	// as cfg.FieldErrors with Warning set; medic validate and run print them.
	Warnings []error `yaml:"-" json:"-"`
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

	problems error // decoding problems, reported by Parse (see decodeKind)
}

// Action is one actions.<name> entry: the common step settings and
// exactly one kind key (exec, reconnect, …).
type Action struct {
	Name string `yaml:"-" json:"name"`
	// Backoff is the action's own retry policy within a step.
	Backoff backoff.Config `yaml:"backoff" json:"backoff"`
	// Verify is how long after an attempt the alert must stop firing for
	// the attempt to count as a fix.
	Verify cfg.Duration `yaml:"verify" json:"verify"`
	// Budget caps runs of this action per window, across incidents and restarts.
	Budget *Budget `yaml:"budget" json:"budget,omitempty"`
	// Requires are PromQL preconditions (local, or on a named source):
	// the step runs only while each returns a non-empty result; otherwise
	// the ladder waits. See Requirements for the accepted forms.
	Requires Requirements `yaml:"requires" json:"requires,omitempty"`
	// Fleet bounds the action across every medic instance in the
	// namespace (Kubernetes Leases); ignored outside Kubernetes.
	Fleet *Fleet `yaml:"fleet" json:"fleet,omitempty"`
	// Output is how much of the action's output medic keeps in /status,
	// the audit log, incidents.json, Events and logs: full | tail
	// (default: the last 2 KiB) | none.
	Output string `yaml:"output" json:"output,omitempty"`
	// Redact are extra regular expressions whose matches (or capture
	// groups) are replaced by [REDACTED] in output, messages and details,
	// after the built-in token/secret/password/authorization patterns.
	Redact []string `yaml:"redact" json:"redact,omitempty"`

	Kind string `yaml:"-" json:"kind"`
	Spec any    `yaml:"-" json:"spec"`

	problems error
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

// file is the top level as written: Config's fields plus the plugins
// section, whose entries start from plugins.DefaultConfig.
type file struct {
	Config  `yaml:",inline"`
	Plugins map[string]*pluginConfig `yaml:"plugins"`
}

// Defaults.
const (
	DefaultListen             = "127.0.0.1:9555"
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
	return &Action{Backoff: backoff.Default(), Verify: cfg.Duration(DefaultVerify)}
}

// LoadFile reads and validates a config file, and checks what the host
// must provide (a stateDir medic can create or write). `medic validate` and
// `medic run` both load through it, so they accept and reject the same
// files; it creates nothing.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseAndLoad(b, filepath.Dir(path), checkStateDir)
}

// checkStateDir checks that the stateDir is a writable directory, or can
// be created as one, without creating it.
func checkStateDir(c *Config) error {
	dir := c.StateDir
	if dir == "" {
		return nil
	}
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir() && p == filepath.Clean(dir):
			return cfg.Errorf("stateDir", "%s is a file, not a directory", dir)
		case err == nil && !fi.IsDir():
			return cfg.Errorf("stateDir", "cannot create %s: %s is a file", dir, p)
		case err == nil:
			if unix.Access(p, unix.W_OK|unix.X_OK) != nil {
				if p == filepath.Clean(dir) {
					return cfg.Errorf("stateDir", "%s is not writable", dir)
				}
				return cfg.Errorf("stateDir", "cannot create %s: %s is not writable", dir, p)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR):
			return cfg.Errorf("stateDir", "%v", err)
		case p == filepath.Dir(p):
			return nil
		}
	}
}

// Parse decodes and validates a config document. On error the returned
// error joins one cfg.FieldError per problem; use cfg.Sorted to list them.
func Parse(b []byte) (*Config, error) {
	return parseAndLoad(b, "")
}

// parse decodes strictly (yaml.v3 KnownFields, through cfg.Load), then
// runs each kind's Validate and Config.Validate; every problem gets the
// line of its path.
func parse(b []byte, lookup func(string) (string, bool), hostChecks ...func(*Config) error) (*Config, error) {
	f := &file{Config: *Default()}
	doc, err := cfg.Load(b, f, lookup)
	if doc == nil {
		return nil, err
	}
	c := &f.Config
	errs := []error{err}
	if c.Actions == nil {
		c.Actions = map[string]*Action{}
	}
	// An empty list item or map value ("probes:\n-", "- ~") decodes to
	// nil: one problem with its path, and an empty entry in its place so
	// the entries after it keep their index in later problems; what the
	// checks below say about the empty entry itself is noise (empty).
	empty := map[string]bool{}
	for i, p := range c.Probes {
		path := fmt.Sprintf("probes[%d]", i)
		if p == nil {
			c.Probes[i] = &Probe{}
			empty[path] = true
			errs = append(errs, cfg.Errorf(path, "is empty"))
			continue
		}
		errs = append(errs, doc.Problems(p.problems), validateSpec(p.Spec, cfg.Join(path, p.Kind)))
	}
	for name, a := range c.Actions {
		if a == nil {
			c.Actions[name] = &Action{Name: name}
			empty["actions."+name] = true
			errs = append(errs, cfg.Errorf("actions."+name, "is empty"))
			continue
		}
		a.Name = name
		errs = append(errs, doc.Problems(a.problems), validateSpec(a.Spec, cfg.Join("actions."+name, a.Kind)))
	}
	for i, r := range c.Rules {
		if r == nil {
			c.Rules[i] = &Rule{}
			empty[fmt.Sprintf("rules[%d]", i)] = true
			errs = append(errs, cfg.Errorf(fmt.Sprintf("rules[%d]", i), "is empty"))
		}
	}
	for name, pc := range f.Plugins {
		if pc == nil || pc.Config == nil {
			errs = append(errs, cfg.Errorf("plugins."+name, "is empty"))
			continue
		}
		if c.Plugins == nil {
			c.Plugins = map[string]*plugins.Config{}
		}
		c.Plugins[name] = pc.Config
		errs = append(errs, doc.Problems(pc.problems), validateSpec(pc.Config, "plugins."+name))
	}
	// A section yaml could not decode (duplicate keys) is empty here;
	// checking references against it would only add noise.
	refs := len(c.Actions) == len(doc.Keys("actions"))
	errs = append(errs, c.validate(refs))
	for _, check := range hostChecks {
		errs = append(errs, check(c))
	}
	warnings, err := cfg.Warnings(doc.Locate(withoutEmptyNoise(errors.Join(errs...), empty), ""))
	if err != nil {
		return nil, err
	}
	c.Warnings = warnings
	return c, nil
}

// withoutEmptyNoise drops the problems found inside an entry that is
// reported as empty (its own "is empty" stays).
func withoutEmptyNoise(err error, empty map[string]bool) error {
	if len(empty) == 0 {
		return err
	}
	var keep []error
	for _, e := range cfg.Flatten(err) {
		var fe *cfg.FieldError
		// "probes[0].name" is inside "probes[0]"; "actions.a.x" inside "actions.a".
		if errors.As(e, &fe) && emptyEntry(fe.Path, empty) != "" && !empty[fe.Path] {
			continue
		}
		keep = append(keep, e)
	}
	return errors.Join(keep...)
}

// emptyEntry returns the empty entry that path is inside of (or is), or "".
func emptyEntry(path string, empty map[string]bool) string {
	for p := range empty {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return p
		}
	}
	return ""
}

// validateSpec runs a kind's Validate and checks its durations against
// the minimums, with paths under path.
func validateSpec(spec any, path string) error {
	var err error
	if v, ok := spec.(cfg.Validator); ok {
		err = cfg.Prefix(path, v.Validate())
	}
	return errors.Join(err, checkMinimums(spec, path))
}

// Minimum durations: below them medic only burns CPU (1ns intervals and
// backoffs ran at 129 % CPU, 580 execs/s). docs/configuration.md lists them.
const (
	MinInterval       = 100 * time.Millisecond // evaluationInterval, every probe's interval
	MinTimeout        = 10 * time.Millisecond  // every probe's and action's timeout, dialTimeout
	MinBackoffInitial = 10 * time.Millisecond  // actions.<name>.backoff.initial
)

// specMinimums are the minimums of a kind's own keys (0 means "use the
// default" and is left to the kind's Validate).
var specMinimums = map[string]time.Duration{"interval": MinInterval, "timeout": MinTimeout, "dialTimeout": MinTimeout}

// Interval is the probe's own interval setting (its kind's `interval`
// key as the library encodes it), or 0 when the kind has none or leaves
// it to its default.
func (p *Probe) Interval() time.Duration {
	var n yaml.Node
	if p == nil || p.Spec == nil || n.Encode(p.Spec) != nil {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "interval" {
			if d, err := cfg.ParseDuration(n.Content[i+1].Value); err == nil {
				return d.D()
			}
		}
	}
	return 0
}

// checkMinimums reads the kind's keys as the library encodes them, so
// every kind is covered without knowing its Go type.
func checkMinimums(spec any, path string) error {
	var n yaml.Node
	if spec == nil || n.Encode(spec) != nil {
		return nil
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if d, err := cfg.ParseDuration(n.Content[i+1].Value); err == nil {
			errs = append(errs, atLeast(cfg.Join(path, k), d, specMinimums[k]))
		}
	}
	return errors.Join(errs...)
}

// atLeast reports a duration below min; 0 (a default or "off") passes.
func atLeast(path string, d cfg.Duration, min time.Duration) error {
	if min == 0 || d == 0 || d.D() >= min {
		return nil
	}
	return cfg.Errorf(path, "%s is below the minimum of %s", d, cfg.Duration(min))
}

// UnmarshalYAML decodes the name and the one kind key, whose config
// starts from the kind's NewConfig.
func (p *Probe) UnmarshalYAML(unmarshal func(any) error) error {
	type fields Probe // without this method
	f := fields{}
	kind, spec, err := decodeKind(unmarshal, &f, probeKinds)
	*p = Probe(f)
	p.Kind, p.Spec, p.problems = kind, spec, err
	return nil
}

// MarshalYAML writes the probe as configured (name and kind key).
func (p *Probe) MarshalYAML() (any, error) {
	type fields Probe
	return withKind((*fields)(p), p.Kind, p.Spec)
}

// UnmarshalYAML decodes the step settings over DefaultAction and the one
// kind key, whose config starts from the kind's NewConfig.
func (a *Action) UnmarshalYAML(unmarshal func(any) error) error {
	type fields Action
	f := fields(*DefaultAction())
	kind, spec, err := decodeKind(unmarshal, &f, actionKinds)
	*a = Action(f)
	a.Kind, a.Spec, a.problems = kind, spec, err
	return nil
}

// MarshalYAML writes the action as configured (settings and kind key).
func (a *Action) MarshalYAML() (any, error) {
	type fields Action
	return withKind((*fields)(a), a.Kind, a.Spec)
}

// pluginConfig is one plugins.<name> entry, decoded over plugins.DefaultConfig.
type pluginConfig struct {
	*plugins.Config
	problems error
}

func (p *pluginConfig) UnmarshalYAML(unmarshal func(any) error) error {
	p.Config = plugins.DefaultConfig()
	p.problems = unmarshal(p.Config)
	return nil
}

func (p *pluginConfig) MarshalYAML() (any, error) { return p.Config, nil }

// kindTable is a registry of kinds as config decoding sees it.
type kindTable struct {
	what      string
	names     func() []string
	newConfig func(name string) (any, bool)
}

var (
	probeKinds = kindTable{"probe", probe.Kinds, func(n string) (any, bool) {
		k, ok := probe.Lookup(n)
		if !ok {
			return nil, false
		}
		return k.NewConfig(), true
	}}
	actionKinds = kindTable{"action", actions.Kinds, func(n string) (any, bool) {
		k, ok := actions.Lookup(n)
		if !ok {
			return nil, false
		}
		return k.NewConfig(), true
	}}
)

// decodeKind decodes a mapping of common fields (into common, a pointer
// to a struct pre-filled with defaults) plus exactly one registered kind
// key (into a fresh NewConfig of that kind), in one strict pass: the
// target is a struct built for this kind key, so yaml itself checks every
// field of both. Problems are returned, not passed to yaml, because yaml
// drops a list or map entry whose UnmarshalYAML fails, and the entry must
// stay for the checks that follow.
func decodeKind[F any](unmarshal func(any) error, common *F, t kindTable) (string, any, error) {
	n := cfg.NodeOf(unmarshal)
	if n.Kind != yaml.MappingNode {
		return "", nil, cfg.NodeError(n, "expected a mapping, got %s", cfg.KindName(n))
	}
	var errs []error
	var kinds []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if _, ok := t.newConfig(n.Content[i].Value); ok {
			kinds = append(kinds, n.Content[i])
		}
	}
	kind, spec := "", any(nil)
	switch len(kinds) {
	case 0:
		errs = append(errs, cfg.NodeError(n, "no %s kind given (one of: %s)", t.what, strings.Join(t.names(), ", ")))
	case 1:
		kind, spec = kinds[0].Value, must(t.newConfig(kinds[0].Value))
	default:
		var names []string
		for _, k := range kinds {
			names = append(names, k.Value)
		}
		errs = append(errs, cfg.NodeError(kinds[1], "more than one %s kind given (%s): use one per entry", t.what, strings.Join(names, ", ")))
	}
	fields := []reflect.StructField{{Name: "Common", Type: reflect.TypeFor[F](), Tag: `yaml:",inline"`}}
	if spec != nil {
		fields = append(fields, reflect.StructField{Name: "Spec", Type: reflect.TypeOf(spec), Tag: reflect.StructTag(fmt.Sprintf("yaml:%q", kind))})
	}
	fields = append(fields, reflect.StructField{Name: "Rest", Type: reflect.TypeFor[map[string]yaml.Node](), Tag: `yaml:",inline"`})
	v := reflect.New(reflect.StructOf(fields)).Elem()
	v.Field(0).Set(reflect.ValueOf(*common))
	if spec != nil {
		v.Field(1).Set(reflect.ValueOf(spec))
	}
	errs = append(errs, unmarshal(v.Addr().Interface()))
	*common = v.Field(0).Interface().(F)
	if spec != nil {
		if v.Field(1).IsNil() { // "exec:" with no value keeps the defaults
			spec = must(t.newConfig(kind))
		} else {
			spec = v.Field(1).Interface()
		}
	}
	// Keys that are neither common fields nor the kind: unknown.
	known := append(cfg.FieldNames(common), t.names()...)
	rest := v.FieldByName("Rest").Interface().(map[string]yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if _, ok := rest[k.Value]; !ok {
			continue
		}
		if _, isKind := t.newConfig(k.Value); isKind {
			continue // reported above
		}
		hint := cfg.Suggest(k.Value, known)
		if !strings.Contains(hint, "did you mean") {
			hint = fmt.Sprintf(" (%s kinds: %s)", t.what, strings.Join(t.names(), ", "))
		}
		errs = append(errs, cfg.NodeError(k, "unknown field%s", hint))
	}
	return kind, spec, cfg.TypeErrors(errs...)
}

func must(v any, _ bool) any { return v }

// withKind encodes fields and appends the kind key with its spec.
func withKind(fields any, kind string, spec any) (any, error) {
	var n yaml.Node
	if err := n.Encode(fields); err != nil {
		return nil, err
	}
	if kind != "" {
		var s yaml.Node
		if err := s.Encode(spec); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: kind}, &s)
	}
	return &n, nil
}

// nameRule says what nameRe accepts.
const nameRule = "must start with a letter or '_', followed by letters, digits, '_', '-' or '.'"

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	alertRe = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)
)

// ExprParser parses PromQL the way the rule engine does.
var ExprParser = parser.NewParser(parser.Options{})

// Validate checks cross-field rules; decoding already checked keys and types.
func (c *Config) Validate() error { return c.validate(true) }

// validate checks cross-field rules; refs=false skips the check that
// rules name defined actions.
func (c *Config) validate(refs bool) error {
	errs := c.validateServer()
	errs = append(errs, cfg.Prefix("alerting", c.Alerting.Validate()))
	errs = append(errs, c.validateSources()...)
	probes, perrs := c.validateProbes()
	errs = append(errs, perrs...)
	errs = append(errs, c.validateActions(probes)...)
	errs = append(errs, c.validatePluginNames()...)
	errs = append(errs, c.validateRules(refs)...)
	return errors.Join(errs...)
}

// validateServer checks the listen addresses, the state directory, the
// evaluation interval and the store.
func (c *Config) validateServer() []error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	if c.Listen == "" {
		add("listen", "must not be empty (e.g. \":9555\")")
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			add("metricsListen", "%q: not a host:port address (e.g. \":9556\")", c.MetricsListen)
		} else if c.MetricsListen == c.Listen {
			add("metricsListen", "%q is also listen: use another port", c.MetricsListen)
		}
	}
	if c.StateDir == "" {
		add("stateDir", "must not be empty")
	}
	if c.EvaluationInterval <= 0 {
		add("evaluationInterval", "must be greater than 0")
	}
	errs = append(errs, atLeast("evaluationInterval", c.EvaluationInterval, MinInterval))
	if err := checkListen(c.Listen); err != nil && c.Listen != "" {
		add("listen", "%v", err)
	}
	if c.Store.MaxSeries <= 0 {
		add("store.maxSeries", "must be greater than 0")
	}
	return errs
}

// validateProbes checks probe names (set, well-formed, unique) and
// returns the index of each name.
func (c *Config) validateProbes() (map[string]int, []error) {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	seen := map[string]int{}
	for i, p := range c.Probes {
		path := fmt.Sprintf("probes[%d].name", i)
		switch {
		case p.Name == "":
			add(path, "is required")
		case !nameRe.MatchString(p.Name):
			add(path, "%q: %s", p.Name, nameRule)
		default:
			if j, dup := seen[p.Name]; dup {
				add(path, "%q is already used by probes[%d]", p.Name, j)
			}
			seen[p.Name] = i
		}
	}
	return seen, errs
}

// validateActions checks each action's name, backoff, output, budget,
// fleet limit, requires and the probe or plugin it names.
func (c *Config) validateActions(seen map[string]int) []error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	names := slices.Sorted(maps.Keys(c.Actions))
	for _, n := range names {
		a := c.Actions[n]
		path := "actions." + n
		if !nameRe.MatchString(n) {
			add(path, "action name %q: %s", n, nameRule)
		}
		errs = append(errs, cfg.Prefix(path+".backoff", a.Backoff.Validate()),
			atLeast(path+".backoff.initial", a.Backoff.Initial, MinBackoffInitial))
		errs = append(errs, cfg.Prefix(path, remedy.ValidateOutput(a.Output, a.Redact)))
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
		errs = append(errs, a.Requires.validate(path+".requires", c.sourceNames())...)
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
				add(path+"."+plugins.KindName+".name", "unknown plugin %q (configured: %s)", pa.Name, strings.Join(slices.Sorted(maps.Keys(c.Plugins)), ", "))
			}
		}
	}
	return errs
}

// validatePluginNames checks the names under plugins:.
func (c *Config) validatePluginNames() []error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	for _, n := range slices.Sorted(maps.Keys(c.Plugins)) {
		if !plugins.ValidName(n) {
			add("plugins."+n, "plugin name %q: %s", n, nameRule)
		}
	}
	return errs
}

// validateRules checks each rule's alert name, expression, labels,
// annotations and retry setting, and (refs) that its ladder names
// defined actions.
func (c *Config) validateRules(refs bool) []error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	names := slices.Sorted(maps.Keys(c.Actions))
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
		for where, m := range map[string]map[string]string{"labels": r.Labels, "annotations": r.Annotations} {
			for k, v := range m { // compiled as the rule engine compiles them
				if _, err := rules.NewRule(r.Alert, r.Expr, 0, 0, nil, map[string]string{k: v}); err != nil {
					add(path+"."+where+"."+k, "%v", errors.Unwrap(err))
				}
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
			if _, ok := c.Actions[a]; !ok && refs {
				add(fmt.Sprintf("%s.remediate[%d]", path, j), "unknown action %q (defined: %s)", a, strings.Join(names, ", "))
			}
		}
	}
	return errs
}

// checkListen checks a host:port listen address.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \"127.0.0.1:9555\" or \":9555\")", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	return nil
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
