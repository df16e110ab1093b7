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
	"runtime"
	"sort"
	"strings"
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

// Sim drives the remedy engine in simulated time. It is not safe for
// concurrent use.
type Sim struct {
	o      SimOptions
	clk    *simClock
	eng    *remedy.Engine
	cancel context.CancelFunc
	rec    *recorder
	ladder map[string][]string
	retry  map[string]time.Duration
	// Settles counts quiescence waits (a cost figure for benchmarks).
	Settles int
	idle    int // IncidentOpened events seen when no incident goroutine was left
	buf     []byte
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
	opened int
}

func (r *recorder) Record(ev remedy.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	if ev.Type == remedy.IncidentOpened {
		r.opened++
	}
	r.mu.Unlock()
}

func (r *recorder) openedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opened
}

type pauser struct {
	clk     *simClock
	windows []Window
}

func (p pauser) Paused() (bool, string) {
	now := p.clk.Now()
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
		Pausers: []remedy.Pauser{pauser{s.clk, o.Pauses}}, Sinks: []remedy.Sink{s.rec},
		Precondition: prec, Recheck: o.Recheck, KeepClosed: 1 << 30})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.eng.Start(ctx)
	s.buf = make([]byte, 1<<16)
	return s, nil
}

// Step advances simulated time to ts, firing every engine timer due on
// the way in order, then hands the engine the alerts firing at ts.
func (s *Sim) Step(ts time.Time, firing []rules.Alert) {
	s.AdvanceTo(ts)
	var in []remedy.Alert
	for _, a := range firing {
		in = append(in, remedy.Alert{Key: a.Rule + a.Labels.String(), Rule: a.Rule, Labels: a.Labels.Map(),
			Annotations: a.Annotations, Value: a.Value, Ladder: s.ladder[a.Rule], RetryExhaustedAfter: s.retry[a.Rule]})
	}
	s.eng.Observe(ts, in)
	s.settle()
}

// AdvanceTo moves the clock to ts, one due timer at a time, letting the
// engine settle after each.
func (s *Sim) AdvanceTo(ts time.Time) {
	for {
		at, ok := s.clk.next()
		if !ok || at.After(ts) {
			break
		}
		s.clk.set(at)
		s.settle()
	}
	s.clk.set(ts)
	s.settle()
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

// settle waits until every incident goroutine of the engine is parked on
// a timer (or gone). The remedy engine runs one goroutine per incident;
// simulated time may only move on once they are all waiting for it, and
// the engine offers no way to know that, so settle inspects the
// goroutines' stacks: a goroutine blocked in select inside
// (*incident).wait is parked; anything else is still working. Sends and
// closes make their receivers runnable synchronously, so this is exact,
// not a guess with a timeout.
func (s *Sim) settle() {
	// Incident goroutines are only started with an IncidentOpened event:
	// with none since the last check that found none, there is nothing to wait for.
	opened := s.rec.openedCount()
	if opened == s.idle {
		return
	}
	s.Settles++
	buf := s.buf
	for spins := 0; ; spins++ {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			s.buf = buf
			continue
		}
		if q, none := quiescent(string(buf[:n])); q {
			if none {
				s.idle = opened
			}
			return
		}
		if spins < 10000 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// incidentGoroutine marks the engine's per-incident goroutines (also
// before they have started running).
const incidentGoroutine = "created by github.com/medic-sidecar/medic/supervisor/remedy.(*Engine).Observe"

// quiescent reports whether every incident goroutine in dump is parked,
// and whether there is none at all.
func quiescent(dump string) (parked, none bool) {
	none = true
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.Contains(g, incidentGoroutine) {
			continue
		}
		none = false
		head, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(head, "[select") || !strings.Contains(g, "supervisor/remedy.(*incident).wait(") {
			return false, false
		}
	}
	return true, none
}

// simClock is a clock the simulation moves by hand; it exposes when its
// next timer is due so time advances timer by timer.
type simClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []simWaiter
}

type simWaiter struct {
	at time.Time
	ch chan time.Time
}

func newSimClock(t time.Time) *simClock { return &simClock{now: t} }

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, simWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *simClock) next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return time.Time{}, false
	}
	m := c.waiters[0].at
	for _, w := range c.waiters[1:] {
		if w.at.Before(m) {
			m = w.at
		}
	}
	return m, true
}

func (c *simClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			continue
		}
		keep = append(keep, w)
	}
	c.waiters = keep
}
