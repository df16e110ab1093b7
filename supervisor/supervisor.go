// Package supervisor wires medic together from a config: probes append to
// the store, rules evaluate it with PromQL, the remedy engine walks ladders
// of actions, and the server reports it all. New builds everything (so a
// bad config starts nothing); Run runs it until the context ends.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/jsonfloat"
	"github.com/medic-sidecar/medic/internal/livez"
	"github.com/medic-sidecar/medic/internal/version"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/api"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/kube"
	"github.com/medic-sidecar/medic/supervisor/notify"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/server"
	"github.com/medic-sidecar/medic/supervisor/sources"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// Version is medic's version (internal/version: -ldflags -X or the build info).
var Version = version.Get().Version

// Options configures a Supervisor.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	Clock  clock.Clock
	// Listener overrides config.Listen (tests and the demo use port 0).
	Listener net.Listener
	// MetricsListener overrides config.MetricsListen.
	MetricsListener net.Listener
	// Sinks receive every incident event in addition to the audit log.
	Sinks []remedy.Sink
	// OnTransition is called for every alert state change (the demo prints them).
	OnTransition func(rules.Transition)
	// Kube is the Kubernetes integration (Events, pause annotation, API
	// access for actions); nil outside a cluster.
	Kube *kube.Integration
	// NoProcessMetrics leaves out the Go runtime and process collectors:
	// for many supervisors in one process (the fleet simulation), where
	// they would describe that process, not a medic, a thousand times.
	NoProcessMetrics bool
}

// Supervisor is a running medic.
type Supervisor struct {
	o       Options
	cfg     *config.Config
	log     *slog.Logger
	clk     clock.Clock
	reg     *prometheus.Registry
	store   *store.Store
	engine  *rules.Engine
	mgr     *rules.Manager
	remedy  *remedy.Engine
	audit   *remedy.Audit
	server  *server.Server
	probes  []*probeRunner
	plugins *plugins.Host
	ladders map[string][]string      // alert -> ladder
	retries map[string]time.Duration // alert -> rules[].retryExhaustedAfter
	started atomic.Int64             // unix nanos when Run began

	lastEval  atomic.Int64 // unix nanos of the last completed evaluation
	evalCount atomic.Int64
	pausers   []remedy.Pauser
	livez     *livez.Switch
	budgets   *remedy.Budgets
	notifier  *notify.Notifier // nil without alerting.alertmanagers
	sources   *sources.Set     // remote PromQL sources (sources:)
	state     *remedy.StateHealth
}

type probeRunner struct {
	name, kind string
	p          probe.Probe
	app        probe.Appender
	committed  atomic.Bool
	health     probeHealth
}

// probeSet finds running probes by name for actions (reconnect probe:).
type probeSet map[string]probe.Probe

func (ps probeSet) Probe(name string) (probe.Probe, bool) { p, ok := ps[name]; return p, ok }

// New builds every part from cfg. It fails, before anything runs, on
// what would make medic act blind: a state directory it cannot write, a
// probe or action it cannot build, a plugin binary whose sha256 differs
// or a plugin that rejects its actions' config (plugins start to check
// it; lazy ones stop again), a port it cannot bind. Probes, rule
// evaluation, remedy, the HTTP server and eager plugins start in Run.
func New(o Options) (*Supervisor, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	c := o.Config
	s := &Supervisor{o: o, cfg: c, log: o.Logger, clk: o.Clock, ladders: map[string][]string{}, retries: map[string]time.Duration{}}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("stateDir: %w", err)
	}
	s.openState()
	built := false
	defer func() {
		if !built {
			if s.plugins != nil {
				s.plugins.Stop()
			}
			s.audit.Close()
		}
	}()
	s.newStore()
	found, err := s.newProbes()
	if err != nil {
		return nil, err
	}
	// The agent-liveness endpoint the restart action's probe mode flips.
	s.livez = livez.New(o.Clock)
	pluginHost, err := s.newPlugins()
	if err != nil {
		return nil, err
	}
	steps, err := s.newSteps(found, pluginHost)
	if err != nil {
		return nil, err
	}
	if err := s.newRules(); err != nil {
		return nil, err
	}
	metrics := s.newRemedy(steps)
	if s.sources, err = sources.New(c.Sources, sources.Options{TTL: c.EvaluationInterval.D(), Logger: o.Logger.With("component", "sources")}); err != nil {
		return nil, err
	}
	if err := s.registerMetrics(metrics); err != nil {
		return nil, err
	}
	if err := s.newServer(); err != nil {
		return nil, err
	}
	built = true
	return s, nil
}

// newStore makes the store, keeping just enough history for the longest
// range any rule reads, and the PromQL engine over it.
func (s *Supervisor) newStore() {
	c := s.cfg
	retention := rules.LongestRange(config.ExprParser, c.AllExprs()...) + rules.DefaultLookback + 2*c.EvaluationInterval.D() + time.Minute
	retention = max(retention, c.Store.Retention.D())
	s.store = store.New(store.Options{MaxSeries: c.Store.MaxSeries, Retention: retention, Logger: s.log.With("component", "store")})
	s.engine = rules.NewEngine(s.store, rules.DefaultLookback, s.log.With("component", "promql"))
}

// newProbes builds every probe with its appender into the store; it
// returns them by name for the actions that find a probe (reconnect).
func (s *Supervisor) newProbes() (probeSet, error) {
	found := probeSet{}
	for _, pc := range s.cfg.Probes {
		k, _ := probe.Lookup(pc.Kind)
		p, err := k.New(pc.Spec, probe.Env{Name: pc.Name, Logger: s.log.With("probe", pc.Name), Clock: s.clk})
		if err != nil {
			return nil, fmt.Errorf("probe %s: %w", pc.Name, err)
		}
		found[pc.Name] = p
		s.probes = append(s.probes, &probeRunner{name: pc.Name, kind: pc.Kind, p: p, app: s.store.Appender(pc.Name)})
	}
	return found, nil
}

// newPlugins verifies the plugin binaries (a sha256 mismatch refuses
// start-up); processes start when actions validate their config, in Run
// (eager ones), or on first use. It returns nil without plugins.
func (s *Supervisor) newPlugins() (actions.PluginHost, error) {
	if len(s.cfg.Plugins) == 0 {
		return nil, nil
	}
	h, err := plugins.New(s.cfg.Plugins, plugins.Options{Logger: s.log.With("component", "plugins"), Clock: s.clk, OnEvent: s.pluginEvent})
	if err != nil {
		return nil, err
	}
	if err := h.Check(); err != nil {
		return nil, err
	}
	s.plugins = h
	return h, nil
}

// newSteps builds every action and the remedy step around it (backoff,
// verify, requires, output, budget, fleet limit).
func (s *Supervisor) newSteps(found probeSet, pluginHost actions.PluginHost) (map[string]*remedy.Step, error) {
	c, o := s.cfg, s.o
	steps := map[string]*remedy.Step{}
	for name, ac := range c.Actions {
		k, _ := actions.Lookup(ac.Kind)
		a, err := k.New(ac.Spec, actions.Env{Name: name, Logger: s.log.With("action", name), Clock: s.clk,
			StateDir: c.StateDir, Probes: found, AgentLiveness: s.livez, Kube: o.Kube.ActionsEnv(), Plugins: pluginHost})
		if err != nil {
			return nil, fmt.Errorf("action %s: %w", name, err)
		}
		st := &remedy.Step{Name: name, Kind: ac.Kind, Action: a, Backoff: ac.Backoff, Verify: ac.Verify.D(), Requires: ac.Requires.Remedy()}
		if st.Output, err = remedy.NewOutputPolicy(ac.Output, ac.Redact); err != nil {
			return nil, fmt.Errorf("action %s: %w", name, err)
		}
		if ac.Budget != nil {
			st.Budget = &remedy.Budget{Max: ac.Budget.Max, Window: ac.Budget.Window.D()}
		}
		if f := ac.Fleet; f != nil {
			st.Fleet = &remedy.FleetLimit{Max: f.Max, Hold: f.Hold.D()}
			st.FleetFailOpen = f.OnAPIError == config.FleetProceed
			if o.Kube.Fleet() == nil {
				s.log.Warn("fleet limit not enforced: not in Kubernetes, or POD_NAME/POD_NAMESPACE unset", "action", name)
			}
		}
		steps[name] = st
	}
	return steps, nil
}

// newRules builds the config's rules[] then the rule files' groups
// (recording rules write into the store), the ladders, and the notifier.
func (s *Supervisor) newRules() error {
	c := s.cfg
	groups, err := rules.NewGroups(c.RuleGroups())
	if err != nil {
		return err
	}
	s.ladders, s.retries = c.Ladders(), c.RetryExhaustedAfter()
	s.mgr = rules.NewGroupManager(s.engine, groups, s.store, s.log.With("component", "rules"))
	if s.notifier, err = newNotifier(s, c, s.o.Listener); err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	return nil
}

// newRemedy builds the remedy engine over steps with its guards and
// sinks, and returns its metrics.
func (s *Supervisor) newRemedy(steps map[string]*remedy.Step) *remedy.Metrics {
	c, o := s.cfg, s.o
	s.pausers = append([]remedy.Pauser{remedy.FilePauser{Path: filepath.Join(c.StateDir, "paused")}}, o.Kube.Pausers()...)
	metrics := remedy.NewMetrics()
	for alert, ladder := range s.ladders {
		if len(ladder) > 0 {
			metrics.InitAlert(alert)
		}
	}
	s.remedy = remedy.New(remedy.Options{
		Steps: steps, Clock: s.clk, Logger: s.log.With("component", "remedy"), DryRun: c.DryRun,
		Budgets: s.budgets, Pausers: s.pausers, Sinks: append(append([]remedy.Sink(nil), o.Sinks...), o.Kube.Sinks()...),
		Journal: s.audit, State: s.state,
		Precondition: s.precondition, Recheck: c.EvaluationInterval.D(), Metrics: metrics, Fleet: o.Kube.Fleet(),
		StatePath: filepath.Join(c.StateDir, "incidents.json"), RestoreGrace: restoreGrace(c),
	})
	return metrics
}

// registerMetrics fills medic's own registry (never the global default).
func (s *Supervisor) registerMetrics(metrics *remedy.Metrics) error {
	s.reg = prometheus.NewRegistry()
	cs := []prometheus.Collector{
		newStoreCollector(s.store), probeSeriesCollector{s.store}, newBuildInfo(), newBudgetCollector(s),
	}
	if !s.o.NoProcessMetrics {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	cs = append(cs, s.mgr.Collectors()...)
	cs = append(cs, metrics.Collectors()...)
	cs = append(cs, s.o.Kube.Collectors()...)
	cs = append(cs, s.sources.Metrics().Collectors()...)
	if s.plugins != nil {
		cs = append(cs, s.plugins.Collectors()...)
	}
	if s.notifier != nil {
		cs = append(cs, s.notifier.Collectors()...)
	}
	for _, col := range cs {
		if err := s.reg.Register(col); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// newServer binds the listeners (unless given) and builds the HTTP
// server; it serves from Run.
func (s *Supervisor) newServer() error {
	c := s.cfg
	ln := s.o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", c.Listen); err != nil {
			return fmt.Errorf("listen %s: %w", c.Listen, err)
		}
	}
	mln := s.o.MetricsListener
	if mln == nil && c.MetricsListen != "" {
		var err error
		if mln, err = net.Listen("tcp", c.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("metricsListen %s: %w", c.MetricsListen, err)
		}
	}
	s.auditRecovered()
	s.server = server.New(server.Options{
		Listener: ln, MetricsListener: mln, Gatherer: s.reg, Healthy: s.healthy, Ready: s.ready, Status: func() any { return s.Status() },
		Logger: s.log.With("component", "http"), Extra: map[string]http.Handler{"/livez/agent": s.livez, api.Prefix: s.api()},
	})
	return nil
}

// Addr returns the HTTP listener's address.
func (s *Supervisor) Addr() string { return s.server.Addr() }

// Registry exposes medic's metrics registry.
func (s *Supervisor) Registry() *prometheus.Registry { return s.reg }

// Store exposes the series store (tests, benchmarks).
func (s *Supervisor) Store() *store.Store { return s.store }

// Run starts probes, the evaluation loop and the server, and returns after
// ctx ends and everything has stopped (bounded: actions are cancelled).
func (s *Supervisor) Run(ctx context.Context) error {
	now := s.clk.Now()
	s.started.Store(now.UnixNano())
	s.lastEval.Store(now.UnixNano())
	s.log.Info("medic starting", "version", Version, "listen", s.Addr(), "metricsListen", s.server.MetricsAddr(), "probes", len(s.probes),
		"rules", len(s.mgr.Status()), "ladders", len(s.ladders), "actions", len(s.cfg.Actions), "dryRun", s.cfg.DryRun,
		"stateDir", s.cfg.StateDir, "retention", s.store.Retention().String())
	if s.cfg.DryRun {
		s.log.Warn("dry run: decisions are made and recorded, but no action is performed")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.remedy.Start(ctx)
	if s.plugins != nil {
		if err := s.plugins.Start(ctx); err != nil {
			return fmt.Errorf("plugins: %w", err)
		}
	}

	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.server.Run(ctx); err != nil {
			select {
			case errc <- fmt.Errorf("http server: %w", err):
			default:
			}
			cancel()
		}
	}()
	for _, pr := range s.probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runProbe(ctx, pr)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.evalLoop(ctx)
	}()
	if s.notifier != nil {
		wg.Go(func() { s.notifier.Run(ctx) })
	}
	if s.o.Kube != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.o.Kube.Run(ctx)
		}()
	}
	<-ctx.Done()
	s.log.Info("medic stopping")
	wg.Wait()
	s.remedy.Wait()
	if s.plugins != nil {
		s.plugins.Stop()
	}
	s.audit.Close()
	s.log.Info("medic stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// runProbe runs a probe, restarting it with a capped backoff if it fails
// or panics; a broken probe never takes medic down.
func (s *Supervisor) runProbe(ctx context.Context, pr *probeRunner) {
	app := &trackingAppender{Appender: pr.app, first: &pr.committed, health: &pr.health}
	delay := time.Second
	for {
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
				}
			}()
			return pr.p.Run(ctx, app)
		}()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("probe returned without an error")
		}
		s.log.Error("probe stopped; restarting", "probe", pr.name, "err", err, "in", delay)
		pr.health.restarted(s.clk.Now(), err)
		select {
		case <-ctx.Done():
			return
		case <-s.clk.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

var (
	_ probe.CounterAppender = (*trackingAppender)(nil)
	_ probe.ErrorRecorder   = (*trackingAppender)(nil)
)

type trackingAppender struct {
	probe.Appender
	first  *atomic.Bool
	health *probeHealth
}

// RecordError keeps the probe's reported failure for /status.
func (t *trackingAppender) RecordError(reason string) { t.health.report(reason) }

// AddCounterRaw keeps the store's zero-start of new counters reachable
// through the wrapper (probe.CounterAppender).
func (t *trackingAppender) AddCounterRaw(key []byte, mk func() labels.Labels, v float64) {
	if ca, ok := t.Appender.(probe.CounterAppender); ok {
		ca.AddCounterRaw(key, mk, v)
		return
	}
	t.Appender.AddRaw(key, mk, v)
}

// AddPageRaw keeps the store's separation of page series from medic's own
// reachable through the wrapper (the scrape probe's pageAppender).
func (t *trackingAppender) AddPageRaw(key []byte, mk func() labels.Labels, v float64, counter bool) {
	if pa, ok := t.Appender.(interface {
		AddPageRaw([]byte, func() labels.Labels, float64, bool)
	}); ok {
		pa.AddPageRaw(key, mk, v, counter)
		return
	}
	if counter {
		t.AddCounterRaw(key, mk, v)
		return
	}
	t.Appender.AddRaw(key, mk, v)
}

func (t *trackingAppender) Commit(now time.Time) (int, error) {
	n, err := t.Appender.Commit(now)
	t.health.commit(now)
	t.first.Store(true)
	return n, err
}

func (s *Supervisor) evalLoop(ctx context.Context) {
	interval := s.cfg.EvaluationInterval.D()
	ticks := 0
	probe.Ticker(ctx, s.clk, interval, func(now time.Time) {
		if ctx.Err() != nil {
			return
		}
		s.EvalOnce(ctx, now)
		ticks++
		if ticks%12 == 0 {
			s.store.GC(now)
		}
	})
}

// EvalOnce evaluates every rule at now and hands firing alerts to the
// remedy engine. Run calls it every evaluationInterval.
func (s *Supervisor) EvalOnce(ctx context.Context, now time.Time) {
	trs := s.mgr.Eval(ctx, now)
	for _, t := range trs {
		attrs := []any{"alert", t.Alert.Rule, "from", t.From.String(), "to", t.To.String(), "value", t.Alert.Value,
			"labels", t.Alert.Labels.String()}
		switch {
		case t.Resolved():
			s.log.Info("alert resolved", attrs...)
		case t.To == rules.StateFiring:
			s.log.Warn("alert firing", attrs...)
		default:
			s.log.Info("alert "+t.To.String(), attrs...)
		}
		if s.o.OnTransition != nil {
			s.o.OnTransition(t)
		}
	}
	var firing []remedy.Alert
	firingNow := s.mgr.Firing()
	s.notifyFiring(now, firingNow)
	for _, a := range firingNow {
		firing = append(firing, remedy.Alert{
			Key: a.Rule + a.Labels.String(), Rule: a.Rule, Labels: a.Labels.Map(), Annotations: a.Annotations,
			Value: a.Value, Ladder: s.ladders[a.Rule], RetryExhaustedAfter: s.retries[a.Rule],
		})
	}
	s.remedy.Observe(now, firing)
	s.lastEval.Store(now.UnixNano())
	s.evalCount.Add(1)
}

// restoreGrace is how long a restored incident waits for its alert to fire
// again after a restart: the longest `for` (the pending phase starts over)
// plus three evaluation intervals, plus three intervals of the slowest
// probe (the store starts empty: a rule over a range needs two fresh
// samples before it has a value at all, and the first scrape is not
// instantaneous).
func restoreGrace(c *config.Config) time.Duration {
	var longest, probe time.Duration
	for _, g := range c.RuleGroups() {
		for _, r := range g.Rules {
			longest = max(longest, r.For)
		}
	}
	for _, p := range c.Probes {
		probe = max(probe, p.Interval())
	}
	return longest + 3*c.EvaluationInterval.D() + 3*probe
}

func (s *Supervisor) precondition(ctx context.Context, r remedy.Requirement, now time.Time) (bool, string, error) {
	if r.Source != "" {
		return s.sources.Check(ctx, r.Source, r.Expr, now)
	}
	v, err := s.engine.Query(ctx, r.Expr, now)
	if err != nil {
		return false, "", err
	}
	return len(v) > 0, "", nil
}

func (s *Supervisor) healthy() (bool, string) {
	interval := s.cfg.EvaluationInterval.D()
	last := time.Unix(0, s.lastEval.Load())
	if lag := s.clk.Now().Sub(last); lag > 3*interval {
		return false, fmt.Sprintf("evaluation loop stalled: last evaluation %s ago (interval %s)", lag.Round(time.Millisecond), interval)
	}
	return true, "ok"
}

func (s *Supervisor) ready() (bool, string) {
	if ok, why := s.stateWritable(); !ok {
		return false, why
	}
	var waiting []string
	for _, pr := range s.probes {
		if !pr.committed.Load() {
			waiting = append(waiting, pr.name)
		}
	}
	if len(waiting) > 0 {
		return false, "waiting for first observation from probes: " + strings.Join(waiting, ", ")
	}
	if s.evalCount.Load() == 0 {
		return false, "waiting for the first rule evaluation"
	}
	return true, "ok"
}

// ProbeStatus is one probe on /status.
type ProbeStatus struct {
	Name     string             `json:"name"`
	Kind     string             `json:"kind"`
	Up       float64            `json:"up"`
	LastSeen time.Time          `json:"lastSeen,omitzero"`
	Samples  float64            `json:"samples"`
	Duration float64            `json:"durationSeconds"`
	Values   map[string]float64 `json:"values,omitempty"`
	// LastError is the probe's most recent failure (kept after it recovers).
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// FailingSince is when the current run of failed checks began; zero while the last check succeeded.
	FailingSince time.Time `json:"failingSince,omitzero"`
	// Restarts counts how often the probe stopped and was restarted.
	Restarts int `json:"restarts,omitempty"`

	// SeriesDropped is how many page series the store's series cap
	// refused in the probe's last scrape (0: not limited).
	SeriesDropped float64 `json:"seriesDropped"`
}

// MarshalJSON writes non-finite values (a scraped NaN) as "NaN", "+Inf"
// or "-Inf" instead of failing the whole /status document.
func (p ProbeStatus) MarshalJSON() ([]byte, error) {
	type plain ProbeStatus
	return json.Marshal(struct {
		plain
		Up       jsonfloat.Float            `json:"up"`
		Samples  jsonfloat.Float            `json:"samples"`
		Duration jsonfloat.Float            `json:"durationSeconds"`
		Values   map[string]jsonfloat.Float `json:"values,omitempty"`
	}{plain(p), jsonfloat.Float(p.Up), jsonfloat.Float(p.Samples), jsonfloat.Float(p.Duration), jsonfloat.Map(p.Values)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *ProbeStatus) UnmarshalJSON(b []byte) error {
	type plain ProbeStatus
	var v struct {
		*plain
		Up       jsonfloat.Float            `json:"up"`
		Samples  jsonfloat.Float            `json:"samples"`
		Duration jsonfloat.Float            `json:"durationSeconds"`
		Values   map[string]jsonfloat.Float `json:"values,omitempty"`
	}
	v.plain = (*plain)(p)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p.Up, p.Samples, p.Duration, p.Values = float64(v.Up), float64(v.Samples), float64(v.Duration), jsonfloat.Floats(v.Values)
	return nil
}

// Status is the /status document.
type Status struct {
	Version   string                `json:"version"`
	StartedAt time.Time             `json:"startedAt"`
	Now       time.Time             `json:"now"`
	DryRun    bool                  `json:"dryRun"`
	Paused    bool                  `json:"paused"`
	PausedBy  string                `json:"pausedBy,omitempty"`
	Probes    []ProbeStatus         `json:"probes"`
	Alerts    []rules.Alert         `json:"alerts"`
	Rules     []rules.RuleStatus    `json:"rules"`
	Incidents []remedy.IncidentView `json:"incidents"`
	Store     store.Stats           `json:"store"`
	Plugins   []plugins.Status      `json:"plugins,omitempty"`
	Budgets   []BudgetStatus        `json:"budgets,omitempty"`
	Fleet     []FleetStatus         `json:"fleet,omitempty"`
	// Sources are the remote PromQL sources, with their query counts and
	// last error.
	Sources []sources.Status `json:"sources,omitempty"`
	// Guards are each action's guards and whether they are active.
	Guards []config.ActionGuards `json:"guards,omitempty"`
	// Summary counts what needs attention (the page's banner).
	Summary Summary `json:"summary"`
	// State is the state dir's health: while Writable is false medic does
	// not act (attempts are suppressed with reason "state") and /readyz fails.
	State StateStatus `json:"state"`
}

// StateStatus is the state dir on /status.
type StateStatus struct {
	Dir      string `json:"dir"`
	Writable bool   `json:"writable"`
	// Problems are the state files medic cannot write now.
	Problems []remedy.StateProblem `json:"problems,omitempty"`
	// Recovered are state files found damaged at start and recovered from.
	Recovered []remedy.StateNote `json:"recovered,omitempty"`
}

// FleetStatus is one action's fleet limit on /status.
type FleetStatus struct {
	Action string `json:"action"`
	Max    int    `json:"max"`
	Hold   string `json:"hold,omitempty"`
	// Enforced is false outside Kubernetes (no Leases to coordinate on).
	Enforced bool `json:"enforced"`
	// Held is how many of the fleet's slots this instance holds now.
	Held int `json:"held"`
}

// BudgetStatus is one action's budget on /status.
type BudgetStatus struct {
	Action string    `json:"action"`
	Max    int       `json:"max"`
	Window string    `json:"window"`
	Used   int       `json:"used"`
	Next   time.Time `json:"nextFreeAt,omitzero"` // when a spent budget frees a run
	Note   string    `json:"note,omitempty"`
}

// Status returns the current status document.
func (s *Supervisor) Status() Status {
	st := Status{Version: Version, Now: s.clk.Now(), DryRun: s.cfg.DryRun,
		Rules: s.mgr.Status(), Incidents: s.remedy.Incidents(), Store: s.store.Stats(), Alerts: []rules.Alert{}}
	if ns := s.started.Load(); ns != 0 {
		st.StartedAt = time.Unix(0, ns)
	}
	if s.plugins != nil {
		st.Plugins = s.plugins.Status()
	}
	st.Budgets = s.budgetStatus(st.Now)
	s.state.Check(st.Now, stateCheckEvery)
	st.State = StateStatus{Dir: s.cfg.StateDir, Problems: s.state.Problems(), Recovered: s.state.Notes()}
	st.State.Writable = len(st.State.Problems) == 0
	st.Fleet = s.fleetStatus()
	st.Sources = s.sources.Status()
	inCluster := s.o.Kube.Fleet() != nil
	st.Guards = s.cfg.Guards(&inCluster)
	for _, p := range s.pausers {
		if ok, why := p.Paused(); ok {
			st.Paused, st.PausedBy = true, why
			break
		}
	}
	own := s.store.Latest(func(n string) bool { return strings.HasPrefix(n, "medic_") })
	byProbe := map[string]*ProbeStatus{}
	for _, pr := range s.probes {
		ps := &ProbeStatus{Name: pr.name, Kind: pr.kind, Values: map[string]float64{}}
		pr.health.fill(ps)
		byProbe[pr.name] = ps
	}
	for _, pt := range own {
		ps := byProbe[pt.Labels.Get(store.ProbeLabel)]
		if ps == nil {
			continue
		}
		name := pt.Labels.Get(labels.MetricName)
		switch name {
		case "medic_probe_up":
			ps.Up, ps.LastSeen = pt.V, pt.T
		case "medic_probe_samples":
			ps.Samples = pt.V
		case "medic_probe_duration_seconds":
			ps.Duration = pt.V
		case store.MetricSeriesDropped:
			ps.SeriesDropped = pt.V
		default:
			key := name
			pt.Labels.Range(func(l labels.Label) {
				if l.Name != labels.MetricName && l.Name != store.ProbeLabel {
					key += "{" + l.Name + "=" + l.Value + "}"
				}
			})
			ps.Values[key] = pt.V
		}
	}
	for _, pr := range s.probes {
		st.Probes = append(st.Probes, *byProbe[pr.name])
	}
	sort.SliceStable(st.Probes, func(i, j int) bool { return st.Probes[i].Name < st.Probes[j].Name })
	s.explain(&st)
	return st
}

func (s *Supervisor) budgetStatus(now time.Time) []BudgetStatus {
	var out []BudgetStatus
	for name, a := range s.cfg.Actions {
		if a.Budget == nil {
			continue
		}
		w := a.Budget.Window.D()
		b := BudgetStatus{Action: name, Max: a.Budget.Max, Window: a.Budget.Window.String()}
		var inWindow []time.Time
		for _, t := range s.budgets.Used(name) {
			if now.Sub(t) < w {
				inWindow = append(inWindow, t)
			}
		}
		b.Used = len(inWindow)
		if b.Used >= b.Max && len(inWindow) > 0 {
			b.Next = inWindow[len(inWindow)-b.Max].Add(w)
		}
		if lost := s.budgets.LostAt(); !lost.IsZero() && now.Sub(lost) < w {
			b.Used, b.Next = b.Max, lost.Add(w)
			b.Note = "budget record lost; treated as spent: " + s.budgets.Problem()
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Action < out[j].Action })
	return out
}

func (s *Supervisor) fleetStatus() []FleetStatus {
	var held map[string]int
	if s.o.Kube != nil && s.o.Kube.FleetSem != nil {
		held = s.o.Kube.FleetSem.Held()
	}
	var out []FleetStatus
	for name, a := range s.cfg.Actions {
		if a.Fleet == nil {
			continue
		}
		f := FleetStatus{Action: name, Max: a.Fleet.Max, Enforced: s.o.Kube.Fleet() != nil, Held: held[name]}
		if a.Fleet.Hold > 0 {
			f.Hold = a.Fleet.Hold.String()
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Action < out[j].Action })
	return out
}

// pluginEvent logs a plugin's lifecycle event and records crashes,
// quarantines and releases like incident events: in the audit log and, in
// Kubernetes, as Events on the pod.
func (s *Supervisor) pluginEvent(ev plugins.Event) {
	s.log.Info("plugin "+string(ev.Type), "plugin", ev.Plugin, "msg", ev.Message)
	var t remedy.EventType
	switch ev.Type {
	case plugins.PluginCrashed:
		t = remedy.PluginCrashed
	case plugins.PluginQuarantined:
		t = remedy.PluginQuarantined
	case plugins.PluginReleased:
		t = remedy.PluginReleased
	default:
		return
	}
	rec := remedy.Event{Time: ev.Time, Type: t, Plugin: ev.Plugin, Message: ev.Message}
	if ev.Crashes > 0 {
		rec.Details = map[string]any{"crashesInWindow": ev.Crashes}
	}
	if a := s.audit; a != nil {
		a.Record(rec)
	}
	for _, sink := range s.o.Kube.Sinks() {
		sink.Record(rec)
	}
}

// stateCheckEvery is how often readiness and /status re-check that the
// state dir takes a write.
const stateCheckEvery = 10 * time.Second

// openState opens the audit log and the budgets in the state dir and
// checks that the dir takes a write. Damaged files are recovered from (and
// noted); a state dir that cannot be written does not stop medic from
// starting: it reports not ready and acts on nothing until it can record.
func (s *Supervisor) openState() {
	c, log, now := s.cfg, s.log, s.clk.Now()
	s.state = remedy.NewStateHealth(c.StateDir)
	if err := s.state.Check(now, 0); err != nil {
		log.Error("state dir cannot be written: medic will not act until it can record what it does", "err", err)
	}
	audit := remedy.NewAudit(filepath.Join(c.StateDir, remedy.FileAudit))
	if err := audit.Err(); err != nil {
		s.state.Report(remedy.FileAudit, err, now)
		log.Error("audit log cannot be opened: medic will not act until it can record what it does", "err", err)
	}
	audit.OnError = func(err error) {
		if err != nil {
			log.Error("audit log write failed", "err", err)
		}
	}
	if audit.Repaired != "" {
		log.Warn("audit log repaired", "msg", audit.Repaired)
		s.state.Note(remedy.FileAudit, audit.Repaired, now)
	}
	s.audit = audit
	s.budgets = remedy.OpenBudgets(filepath.Join(c.StateDir, remedy.FileBudgets), now, log.With("component", "remedy"))
	s.state.Note(remedy.FileBudgets, s.budgets.Problem(), now)
}

// auditRecovered writes an audit record for every state file recovered
// from at start (the audit log's own repair is recorded by OpenAudit).
func (s *Supervisor) auditRecovered() {
	for _, n := range s.state.Notes() {
		if n.File != remedy.FileAudit {
			s.audit.Record(remedy.Event{Time: n.At, Type: remedy.StateRecovered, Message: n.File + ": " + n.Message})
		}
	}
}

// stateWritable is false, with the problems, while a state file cannot be
// written.
func (s *Supervisor) stateWritable() (bool, string) {
	s.state.Check(s.clk.Now(), stateCheckEvery)
	probs := s.state.Problems()
	if len(probs) == 0 {
		return true, ""
	}
	var parts []string
	for _, p := range probs {
		parts = append(parts, p.File+": "+p.Error)
	}
	return false, "state dir " + s.cfg.StateDir + " cannot be written (medic does not act until it can record): " + strings.Join(parts, "; ")
}
