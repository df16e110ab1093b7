// Package replay runs medic's decisions in simulated time: recorded
// samples → rules (supervisor/rules) → the remedy engine, with budgets,
// preconditions and pause, and reports what medic would have done. `medic
// replay` feeds it from a Prometheus server; `medic test rules` feeds it
// a unit test's input series (remediation_test).
package replay

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// Window is a time range [From, To).
type Window struct {
	From, To time.Time
	Why      string
}

// SimOptions configures a Sim.
type SimOptions struct {
	Config *config.Config
	// Query evaluates preconditions (actions' requires:) at a time.
	Query func(ctx context.Context, expr string, t time.Time) (promql.Vector, error)
	// Start is the simulated time the engine starts at.
	Start time.Time
	// Pauses are windows in which medic was paused.
	Pauses []Window
	// Recheck is how often a waiting guard is re-checked (the evaluation interval).
	Recheck time.Duration
	Logger  *slog.Logger
}

// Sim drives the remedy engine (remedy.Options.Sync: the same decision
// core as live, stepped) in simulated time: between two evaluations it
// makes every decision due (a backoff, verification window or guard
// re-check ending) at its own time, in order. It is not safe for
// concurrent use.
type Sim struct {
	o      SimOptions
	clk    *simClock
	eng    *remedy.Engine
	cancel context.CancelFunc
	rec    *recorder
	ladder map[string][]string
	retry  map[string]time.Duration
	// Wakes counts the decisions made between evaluations (a cost figure
	// for benchmarks).
	Wakes int
}

// simAction is what every action becomes in a simulation: it "runs"
// instantly and successfully; whether it fixed anything is decided, as
// live, by the alert resolving within the action's verify window in the
// recorded data.
type simAction struct{ kind string }

func (a simAction) Run(_ context.Context, inc actions.Incident) (actions.Result, error) {
	return actions.Result{Message: fmt.Sprintf("simulated %s", a.kind)}, nil
}

type recorder struct {
	mu     sync.Mutex
	events []remedy.Event
}

func (r *recorder) Record(ev remedy.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// pauser answers "paused?" from the recorded pause windows at the time
// the engine asks about.
type pauser struct {
	windows []Window
}

var _ remedy.PauserAt = pauser{}

func (p pauser) Paused() (bool, string) { return false, "" }

func (p pauser) PausedAt(now time.Time) (bool, string) {
	for _, w := range p.windows {
		if !now.Before(w.From) && now.Before(w.To) {
			why := w.Why
			if why == "" {
				why = "replay pause window"
			}
			return true, why
		}
	}
	return false, ""
}

// NewSim builds the engine from the config's actions and ladders.
func NewSim(o SimOptions) (*Sim, error) {
	c := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Recheck <= 0 {
		o.Recheck = c.EvaluationInterval.D()
	}
	s := &Sim{o: o, clk: newSimClock(o.Start), rec: &recorder{}, ladder: c.Ladders(), retry: c.RetryExhaustedAfter()}
	steps := map[string]*remedy.Step{}
	for name, ac := range c.Actions {
		st := &remedy.Step{Name: name, Kind: ac.Kind, Action: simAction{ac.Kind}, Backoff: ac.Backoff,
			Verify: ac.Verify.D(), Requires: ac.Requires.Remedy()}
		if ac.Budget != nil {
			st.Budget = &remedy.Budget{Max: ac.Budget.Max, Window: ac.Budget.Window.D()}
		}
		steps[name] = st
	}
	budgets, err := remedy.LoadBudgets("")
	if err != nil {
		return nil, err
	}
	// Requirements on a remote source (the fleet) are not replayed: one
	// node's history says nothing about its peers; they count as met.
	prec := func(ctx context.Context, r remedy.Requirement, now time.Time) (bool, string, error) {
		if r.Source != "" {
			return true, "", nil
		}
		v, err := o.Query(ctx, r.Expr, now)
		return len(v) > 0, "", err
	}
	s.eng = remedy.New(remedy.Options{Steps: steps, Clock: s.clk, Logger: o.Logger, Budgets: budgets,
		Pausers: []remedy.Pauser{pauser{o.Pauses}}, Sinks: []remedy.Sink{s.rec},
		Precondition: prec, Recheck: o.Recheck, KeepClosed: 1 << 30, Sync: true})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.eng.Start(ctx)
	return s, nil
}

// Step makes every decision due before ts, then hands the engine the
// alerts firing at ts.
func (s *Sim) Step(ts time.Time, firing []rules.Alert) {
	s.AdvanceTo(ts)
	var in []remedy.Alert
	for _, a := range firing {
		in = append(in, remedy.Alert{Key: a.Rule + a.Labels.String(), Rule: a.Rule, Labels: a.Labels.Map(),
			Annotations: a.Annotations, Value: a.Value, Ladder: s.ladder[a.Rule], RetryExhaustedAfter: s.retry[a.Rule]})
	}
	s.eng.Observe(ts, in)
}

// AdvanceTo makes every decision due up to ts, each at its own time.
func (s *Sim) AdvanceTo(ts time.Time) {
	for {
		w, ok := s.eng.NextWake()
		if !ok || w.After(ts) {
			break
		}
		s.Wakes++
		s.clk.set(w)
		s.eng.Advance(w)
	}
	s.clk.set(ts)
}

// Events returns every incident event so far.
func (s *Sim) Events() []remedy.Event {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return append([]remedy.Event(nil), s.rec.events...)
}

// Incidents returns every incident, oldest first.
func (s *Sim) Incidents() []remedy.IncidentView {
	v := s.eng.Incidents()
	sort.SliceStable(v, func(i, j int) bool { return v[i].Started.Before(v[j].Started) })
	return v
}

// Close stops the engine.
func (s *Sim) Close() {
	s.cancel()
	s.eng.Wait()
}

// simClock is the simulation's time (the engine takes every decision's
// time as an argument; this only answers Now).
type simClock struct {
	mu  sync.Mutex
	now time.Time
}

func newSimClock(t time.Time) *simClock { return &simClock{now: t} }

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After is never used by a Sync engine.
func (c *simClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

func (c *simClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
}
