// Package remedy turns firing alerts into incidents and walks each
// incident's remediation ladder: per step the action's own backoff,
// attempts and verification; guards (pause, dry run, budget, precondition,
// concurrency, fleet, state) before every attempt; every step reported to
// sinks. The decisions are made by a pure core (core.go); Engine performs
// them.
package remedy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/clock"
)

// State is where an incident is in its life. It marshals as its name.
type State string

// Incident states.
const (
	// StateRemediating: an attempt runs or is verified, or the step waits
	// out its backoff before the next attempt.
	StateRemediating State = "remediating"
	// StateHeld: the next attempt waits on a guard (pause, precondition,
	// concurrency, fleet, state); IncidentView.HeldReason says which.
	StateHeld State = "held"
	// StateExhausted: every step was tried; nothing more is done until the
	// alert resolves or retryExhaustedAfter passes.
	StateExhausted State = "exhausted"
	// StateResolved: the alert stopped firing; the incident is closed.
	StateResolved State = "resolved"
)

// States lists every incident state (for metrics).
var States = []State{StateRemediating, StateHeld, StateExhausted, StateResolved}

// String returns the state's name.
func (s State) String() string { return string(s) }

// Attempt results.
const (
	ResultSucceeded  = "succeeded"
	ResultFailed     = "failed"
	ResultSuppressed = "suppressed"
)

// Suppression reasons.
const (
	ReasonDryRun       = "dryRun"
	ReasonPaused       = "paused"
	ReasonBudget       = "budget"
	ReasonPrecondition = "precondition"
	ReasonConcurrency  = "concurrency"
	ReasonFleet        = "fleet"
	// ReasonFleetOutage: a requirement with this reason (the fleet share
	// guard) is not met: too much of the fleet fires the same alert, so
	// the fault is upstream and a local action would not help.
	ReasonFleetOutage = "fleet-outage"
	// ReasonState: medic could not durably record the attempt (its budget
	// run in budgets.json, or its start in the audit log), so it did not
	// act; it tries again every Recheck.
	ReasonState = "state"
)

// Failure reasons.
const (
	ReasonError     = "error"
	ReasonPermanent = "permanent"
	ReasonVerify    = "verify"
	// ReasonInterrupted: medic stopped (SIGTERM) while the attempt ran or
	// was being verified.
	ReasonInterrupted = "interrupted"
)

// Step is one configured action with its policy.
type Step struct {
	Name    string
	Kind    string
	Action  actions.Action
	Backoff backoff.Config
	Verify  time.Duration
	Budget  *Budget
	// Requires are the step's preconditions; all must hold before an
	// attempt (actions.<name>.requires).
	Requires []Requirement
	// Fleet, when set and Options.Fleet is not nil, bounds the action
	// across every medic instance (actions.<name>.fleet).
	Fleet *FleetLimit
	// FleetFailOpen runs the action when the fleet cannot be asked (API
	// error) instead of waiting.
	FleetFailOpen bool
	// Output is what medic keeps of the action's output and how it is
	// redacted (actions.<name>.output, redact); nil: tail, default patterns.
	Output *OutputPolicy
}

// Budget is "at most Max runs per Window".
type Budget struct {
	Max    int
	Window time.Duration
}

// Alert is a firing alert as the rules engine sees it at one evaluation.
type Alert struct {
	Key         string // rule name + label hash; identifies the incident
	Rule        string
	Labels      map[string]string
	Annotations map[string]string
	Value       float64
	Ladder      []string
	// RetryExhaustedAfter, when > 0, walks the ladder again from step 1
	// once this long has passed since it was exhausted with the alert
	// still firing (budgets and guards apply as always). 0: never.
	RetryExhaustedAfter time.Duration
}

// OnError is what a step does when its requirement cannot be evaluated.
type OnError string

// OnError values.
const (
	// OnErrorHold (the default): wait, as if the requirement were not met.
	OnErrorHold OnError = "hold"
	// OnErrorProceed: go on as if the requirement held.
	OnErrorProceed OnError = "proceed"
)

// Requirement is one precondition of a step: a PromQL expression that
// must return a non-empty result, evaluated against the local store
// (Source "") or a named remote source.
type Requirement struct {
	Expr   string
	Source string
	// OnError: "" is OnErrorHold.
	OnError OnError
	// Reason is the suppression reason when the requirement is not met
	// (or cannot be evaluated and OnError holds); "" is ReasonPrecondition.
	Reason string
}

// SuppressReason returns r's suppression reason.
func (r Requirement) SuppressReason() string {
	if r.Reason == "" {
		return ReasonPrecondition
	}
	return r.Reason
}

// String describes r for messages: the expression, and its source if remote.
func (r Requirement) String() string {
	if r.Source == "" {
		return fmt.Sprintf("%q", r.Expr)
	}
	return fmt.Sprintf("%q (source %s)", r.Expr, r.Source)
}

// PreconditionFunc evaluates one requirement at now: ok reports whether it
// holds; detail, when not empty, says what it saw (e.g. "31 of 50 peers
// fire SPIREAgentNotSyncing"); err means it could not be evaluated.
type PreconditionFunc func(ctx context.Context, r Requirement, now time.Time) (ok bool, detail string, err error)

// Options configures an Engine.
type Options struct {
	Steps   map[string]*Step
	Clock   clock.Clock
	Logger  *slog.Logger
	DryRun  bool
	Budgets *Budgets
	Pausers []Pauser
	Sinks   []Sink
	// Journal, when set, receives every event before the sinks, and an
	// attempt runs only after its start record was appended to it
	// (write-ahead: medic never acts when it cannot remember acting).
	Journal Journal
	// State collects state-dir write failures (nil: not collected).
	State        *StateHealth
	Precondition PreconditionFunc
	// Fleet enforces steps' fleet limits; nil outside Kubernetes (limits
	// are then not enforced).
	Fleet Fleet
	// Recheck is how often a waiting guard (paused, precondition) is re-checked.
	Recheck time.Duration
	// KeepClosed is how many closed incidents /status keeps (default 100).
	KeepClosed int
	Metrics    *Metrics
	// StatePath, when set, is where open incidents are persisted
	// (atomically, on every state change) and restored from at start, so a
	// restarted medic resumes a ladder at its step and leaves an exhausted
	// incident alone instead of walking the ladder from step 1 again.
	StatePath string
	// RestoreGrace is how long after the first evaluation a restored
	// incident waits for its alert to fire again (the rule's `for` starts
	// over after a restart) before it is closed as resolved.
	RestoreGrace time.Duration
	// Sync runs actions inline and sets no timer: the caller moves time
	// with Advance and Observe (replay, `medic test rules`, tests at chosen
	// timestamps). The decisions are the same as live.
	Sync bool
}

// Engine is the shell around the decision core (Core): it feeds the core
// the firing alerts, the guards' answers and the actions' results, performs
// the effects the core decides (events to the journal, log, sinks and
// metrics; incidents.json; slots given back), runs each started action in
// a goroutine (never one per incident), and wakes the core when it asked
// to be woken (one timer).
//
// Live, one goroutine (loop) makes the decisions: Observe only queues the
// firing alerts for it, so a slow guard (a remote precondition, the
// Kubernetes API) never stalls the caller's evaluation loop, and
// Incidents reads the snapshot published after each decision. With
// Options.Sync nothing runs on its own: Observe decides at once, actions
// run inline and the caller moves time with Advance (replay, `medic test
// rules`, tests at chosen timestamps).
type Engine struct {
	o       Options
	budgets *Budgets // o.Budgets; in a dry run an in-memory copy

	mu      sync.Mutex // the core and the timer
	core    *Core
	ctx     context.Context
	stopped bool
	last    time.Time // the latest decision time
	timer   <-chan time.Time
	armedAt time.Time
	kick    chan struct{}
	quit    chan struct{} // closed by Wait
	quitOne sync.Once
	wg      sync.WaitGroup

	inMu    sync.Mutex // the observations queued for the loop (live)
	inbox   []observation
	started bool

	viewMu  sync.Mutex // the snapshot for Incidents (live)
	views   []IncidentView
	byState map[State]int
}

type observation struct {
	now    time.Time
	firing []Alert
}

// New returns an Engine; call Start before Observe.
func New(o Options) *Engine {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Recheck <= 0 {
		o.Recheck = 5 * time.Second
	}
	if o.KeepClosed <= 0 {
		o.KeepClosed = 100
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Budgets == nil {
		o.Budgets = OpenBudgets("", time.Time{}, nil)
	}
	e := &Engine{o: o, budgets: o.Budgets, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	if o.DryRun {
		// A dry run counts its would-be runs against the budgets, as live
		// would, without writing budgets.json.
		e.budgets = o.Budgets.memoryCopy()
	}
	e.core = NewCore(CoreOptions{Steps: o.Steps, DryRun: o.DryRun, Recheck: o.Recheck, KeepClosed: o.KeepClosed,
		RestoreGrace: o.RestoreGrace, Restored: loadIncidents(o.StatePath, o.Logger, o.State, o.Clock.Now())})
	for name := range o.Steps {
		o.Metrics.init(name)
	}
	o.Metrics.engine.Store(e)
	return e
}

// Start sets the context attempts run under; cancelling it stops the
// engine (attempts running or being verified end interrupted).
func (e *Engine) Start(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ctx = ctx
	e.inMu.Lock()
	e.started = true
	e.inMu.Unlock()
	if !e.o.Sync {
		e.wg.Add(1)
		go e.loop(ctx)
	}
}

// Wait stops the engine (as ctx ending does: attempts being verified end
// interrupted, nothing more is decided) and blocks until every running
// action has returned (actions run under ctx: cancel it first to cut them
// short).
func (e *Engine) Wait() {
	e.quitOne.Do(func() { close(e.quit) })
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.o.Clock.Now()
	if e.o.Sync && !e.last.IsZero() {
		now = e.last // a stepped engine stops at its own time
	}
	e.stop(now)
}

func (e *Engine) stop(now time.Time) {
	e.apply(now, e.core.Stop(now))
	e.stopped = true
	e.publish()
}

// Observe reconciles incidents with the alerts firing at now: new firing
// alerts with a ladder open incidents; open incidents whose alert no
// longer fires are resolved; incidents due at now are advanced.
//
// Live, the decisions are made by the engine's goroutine right after.
func (e *Engine) Observe(now time.Time, firing []Alert) {
	if !e.o.Sync {
		e.inMu.Lock()
		if e.started && e.ctx.Err() == nil { // ctx is set before started
			e.inbox = append(e.inbox, observation{now, firing})
		}
		e.inMu.Unlock()
		select {
		case e.kick <- struct{}{}:
		default:
		}
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil || e.stopped {
		return
	}
	e.last = now
	e.apply(now, e.core.Observe(now, firing, guards{e}))
}

// drain decides on the queued observations. Called with e.mu held.
func (e *Engine) drain() {
	e.inMu.Lock()
	in := e.inbox
	e.inbox = nil
	e.inMu.Unlock()
	for _, ob := range in {
		if e.stopped {
			return
		}
		// Time never goes back between decisions (an observation queued
		// while a timer's decision was being made is a little older).
		now := e.monotonic(ob.now)
		e.apply(now, e.core.Observe(now, ob.firing, guards{e}))
	}
}

// monotonic returns now, or the latest decision time if that is later.
func (e *Engine) monotonic(now time.Time) time.Time {
	if now.Before(e.last) {
		return e.last
	}
	e.last = now
	return now
}

// Advance makes, in order, every decision due up to now (Sync engines:
// the caller's clock moves time).
func (e *Engine) Advance(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil || e.stopped {
		return
	}
	if now.After(e.last) {
		e.last = now
	}
	for {
		w, ok := e.core.NextWake()
		if !ok || w.After(now) {
			return
		}
		e.apply(w, e.core.Tick(w, guards{e}))
		if w2, ok := e.core.NextWake(); ok && !w2.After(w) {
			e.o.Logger.Error("remedy: a decision due did not advance; skipping to the next evaluation", "at", w)
			return
		}
	}
}

// NextWake is when the engine next has a decision due without new input.
func (e *Engine) NextWake() (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.core.NextWake()
}

// loop wakes the core when it asked to be woken, and stops it when ctx ends.
func (e *Engine) loop(ctx context.Context) {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		ch := e.timer
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			e.shutdown()
			return
		case <-e.quit:
			e.shutdown()
			return
		case <-e.kick:
			e.mu.Lock()
			if !e.stopped {
				e.drain()
				e.arm()
				e.publish()
			}
			e.mu.Unlock()
		case <-ch:
			e.mu.Lock()
			if e.timer == ch {
				e.timer, e.armedAt = nil, time.Time{}
			}
			if !e.stopped {
				e.drain()
				now := e.monotonic(e.o.Clock.Now())
				e.apply(now, e.core.Tick(now, guards{e}))
				e.arm()
				e.publish()
			}
			e.mu.Unlock()
		}
	}
}

func (e *Engine) shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stop(e.o.Clock.Now())
}

// arm sets the engine's timer for the core's next wake-up when that is
// earlier than the one set (a later timer that fires early only wakes the
// core to find nothing due). Called with e.mu held.
func (e *Engine) arm() {
	if e.o.Sync || e.stopped {
		return
	}
	next, ok := e.core.NextWake()
	if !ok || (!e.armedAt.IsZero() && !next.Before(e.armedAt)) {
		return
	}
	e.armedAt = next
	e.timer = e.o.Clock.After(next.Sub(e.o.Clock.Now()))
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// apply performs a decision's effects in order. Called with e.mu held.
func (e *Engine) apply(now time.Time, d Decision) {
	queue, save := d.Effects, false
	for len(queue) > 0 {
		ef := queue[0]
		queue = queue[1:]
		switch ef.Kind {
		case EffectEmit:
			e.record(ef.Event, ef.Journaled)
		case EffectRelease:
			ef.Release()
		case EffectSave:
			save = true
		case EffectRun:
			st := ef.Run.Step
			switch {
			case e.o.DryRun:
				r := AttemptResult{Run: ef.Run.ID, Result: actions.Result{Message: fmt.Sprintf("dry run: would run %s action %s", st.Kind, st.Name)}}
				queue = append(e.core.Finish(now, r, guards{e}).Effects, queue...)
			case e.o.Sync:
				r := e.run(ef.Run)
				queue = append(e.core.Finish(now, r, guards{e}).Effects, queue...)
			default:
				e.wg.Add(1)
				go e.runAsync(ef.Run)
			}
		}
	}
	if save {
		e.save(now)
	}
}

// run runs an attempt's action and returns its (redacted) result.
func (e *Engine) run(r *Run) AttemptResult {
	st := r.Step
	start := time.Now()
	res, err := safeRun(e.ctx, st.Action, r.Incident)
	e.o.Metrics.duration.WithLabelValues(st.Name).Observe(time.Since(start).Seconds())
	// Nothing of the output leaves here unredacted (status, audit,
	// incidents.json, Events and logs all take it from res).
	res = st.Output.Apply(res)
	if err != nil {
		err = fmt.Errorf("%s: attempt %d/%d: %w", st.Name, r.Incident.Attempt, r.Incident.MaxAttempts, err)
	}
	return AttemptResult{Run: r.ID, Result: res, Err: err, Ran: true}
}

func (e *Engine) runAsync(r *Run) {
	defer e.wg.Done()
	res := e.run(r)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.monotonic(e.o.Clock.Now())
	if e.ctx.Err() != nil && !e.stopped {
		e.stop(now)
	}
	e.apply(now, e.core.Finish(now, res, guards{e}))
	e.arm()
	e.publish()
}

// publish updates the snapshot Incidents reads (live). Called with e.mu held.
func (e *Engine) publish() {
	if e.o.Sync {
		return
	}
	views, by := e.core.Incidents(), e.core.openByState()
	e.viewMu.Lock()
	e.views, e.byState = views, by
	e.viewMu.Unlock()
}

// safeRun turns an action's panic into a permanent error.
func safeRun(ctx context.Context, a actions.Action, inc actions.Incident) (res actions.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = actions.Permanent(fmt.Errorf("action panicked: %v", r))
		}
	}()
	return a.Run(ctx, inc)
}

// guards answers the core's questions from the engine's options.
type guards struct{ e *Engine }

var _ Guards = guards{}

// PauserAt is a Pauser that answers for a given time (replay's recorded
// pause windows); the engine prefers it to Paused.
type PauserAt interface {
	PausedAt(now time.Time) (bool, string)
}

func (g guards) Paused(now time.Time) (bool, string) {
	for _, p := range g.e.o.Pausers {
		if pa, ok := p.(PauserAt); ok {
			if paused, why := pa.PausedAt(now); paused {
				return true, why
			}
			continue
		}
		if paused, why := p.Paused(); paused {
			return true, why
		}
	}
	return false, ""
}

func (g guards) Precondition(st *Step, r Requirement, now time.Time) (bool, string, error) {
	if g.e.o.Precondition == nil {
		return true, "", nil
	}
	ok, detail, err := g.e.o.Precondition(g.e.ctx, r, now)
	if err != nil && r.OnError == OnErrorProceed {
		g.e.o.Logger.Warn("precondition could not be evaluated; proceeding (onError: proceed)",
			"action", st.Name, "expr", r.Expr, "source", r.Source, "err", err)
	}
	return ok, detail, err
}

func (g guards) Budget(st *Step, now time.Time) (bool, string) {
	ok, _, why := g.e.budgets.Check(st.Name, st.Budget.Max, st.Budget.Window, now)
	return ok, why
}

func (g guards) Fleet(st *Step, now time.Time) (func(), bool, string, error) {
	e := g.e
	if e.o.Fleet == nil {
		return nil, true, "", nil
	}
	release, ok, msg, err := e.o.Fleet.Acquire(e.ctx, st.Name, *st.Fleet, now, e.o.DryRun)
	if err != nil && st.FleetFailOpen {
		e.o.Logger.Warn("fleet limit could not be checked; proceeding (onAPIError: proceed)", "action", st.Name, "err", err)
	}
	return release, ok, msg, err
}

// Record is the write-ahead: the budget run (budgets.json; a dry run
// counts it in memory) and the start record in the journal, each durably.
// When either fails the action does not run (a budget run already
// recorded stays recorded: the safe side).
func (g guards) Record(st *Step, start Event, now time.Time) (bool, error) {
	e := g.e
	if st.Budget != nil {
		err := e.budgets.Consume(st.Name, now, st.Budget.Window)
		if !e.o.DryRun && e.o.State.Report(FileBudgets, err, now) && err == nil {
			e.o.Logger.Info("recording budget runs works again", "action", st.Name)
		}
		if err != nil {
			e.o.Logger.Error("budget run could not be recorded; not acting", "action", st.Name, "err", err)
			return false, fmt.Errorf("not run: the budget run could not be recorded durably (%v); retrying every %s", err, e.o.Recheck)
		}
	}
	if e.o.Journal == nil {
		return false, nil
	}
	if err := e.appendJournal(start); err != nil {
		return false, fmt.Errorf("not run: its start could not be written to the audit log (%v); retrying every %s", err, e.o.Recheck)
	}
	return true, nil
}

// record sends ev to the journal (unless it is there already; a failure is
// logged and shown as a state problem, the event still reaches the log and
// the sinks), the log, every sink and the metrics.
func (e *Engine) record(ev Event, journaled bool) {
	if e.o.Journal != nil && !journaled {
		_ = e.appendJournal(ev)
	}
	e.count(ev)
	e.log(ev)
	for _, s := range e.o.Sinks {
		s.Record(ev)
	}
}

// count updates the metrics for ev.
func (e *Engine) count(ev Event) {
	m := e.o.Metrics
	switch ev.Type {
	case IncidentOpened:
		m.open.Inc()
	case RemediationSuppressed:
		m.suppressed.WithLabelValues(ev.Action, ev.Reason).Inc()
		m.attempts.WithLabelValues(ev.Action, ResultSuppressed).Inc()
	case RemediationSucceeded:
		m.attempts.WithLabelValues(ev.Action, ResultSucceeded).Inc()
	case RemediationFailed:
		m.attempts.WithLabelValues(ev.Action, ResultFailed).Inc()
	case IncidentExhausted:
		m.incidents.WithLabelValues(ev.Alert, StateExhausted.String()).Inc()
	case IncidentResolved:
		m.incidents.WithLabelValues(ev.Alert, StateResolved.String()).Inc()
		if ev.Details["restored"] != true { // a restored incident closed unseen was never open here
			m.open.Dec()
		}
	}
}

// appendJournal appends ev to the journal and reports the outcome to
// State, logging once per change.
func (e *Engine) appendJournal(ev Event) error {
	err := e.o.Journal.Append(ev)
	if e.o.State.Report(FileAudit, err, ev.Time) {
		if err != nil {
			e.o.Logger.Error("audit log write failed; attempts do not run until it works again", "err", err)
		} else {
			e.o.Logger.Info("audit log writes work again")
		}
	}
	return err
}

func (e *Engine) log(ev Event) {
	attrs := []any{"incident", ev.IncidentID, "alert", ev.Alert}
	if ev.Action != "" {
		attrs = append(attrs, "action", ev.Action, "step", ev.Step, "attempt", fmt.Sprintf("%d/%d", ev.Attempt, ev.MaxAttempts))
	}
	if ev.Reason != "" {
		attrs = append(attrs, "reason", ev.Reason)
	}
	if ev.Message != "" {
		attrs = append(attrs, "msg", ev.Message)
	}
	attrs = append(attrs, "value", ev.Value)
	if ev.DryRun {
		attrs = append(attrs, "dryRun", true)
	}
	level := slog.LevelInfo
	switch ev.Type {
	case RemediationFailed, IncidentExhausted, IncidentRetried:
		level = slog.LevelWarn
	}
	e.o.Logger.Log(context.Background(), level, string(ev.Type), attrs...)
}

// AttemptView is one attempt on /status.
type AttemptView struct {
	Action      string         `json:"action"`
	Step        int            `json:"step"`
	Attempt     int            `json:"attempt"`
	MaxAttempts int            `json:"maxAttempts"`
	StartedAt   time.Time      `json:"startedAt"`
	FinishedAt  time.Time      `json:"finishedAt,omitzero"`
	Result      string         `json:"result"` // running | succeeded | failed | suppressed
	Reason      string         `json:"reason,omitempty"`
	Message     string         `json:"message,omitempty"`
	Output      string         `json:"output,omitempty"`
	Details     map[string]any `json:"details,omitempty"`
	Value       float64        `json:"value"`
	DryRun      bool           `json:"dryRun,omitempty"`
}

// IncidentView is one incident on /status.
type IncidentView struct {
	ID          string            `json:"id"`
	Alert       string            `json:"alert"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	State       State             `json:"state"`
	Step        int               `json:"step"`
	// Attempt and MaxAttempts are the position within the current step.
	Attempt     int `json:"attempt,omitempty"`
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// HeldReason is the guard the next attempt waits on (state held):
	// paused | precondition | concurrency | fleet | fleet-outage | state; HeldMessage says more.
	HeldReason  string `json:"heldReason,omitempty"`
	HeldMessage string `json:"heldMessage,omitempty"`
	// NextAttemptAt is when the next attempt is due: the end of a backoff
	// delay, the next guard re-check, or the next retry round.
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
	Action        string    `json:"action"`
	Ladder        []string  `json:"ladder"`
	Value         float64   `json:"value"`
	Started       time.Time `json:"startedAt"`
	Ended         time.Time `json:"endedAt,omitzero"`
	Duration      float64   `json:"durationSeconds,omitempty"`
	FixedBy       string    `json:"fixedBy,omitempty"`
	// Round counts walks of the ladder (rules[].retryExhaustedAfter).
	Round    int           `json:"round"`
	Attempts []AttemptView `json:"attempts"`
}

// openByState counts open incidents by state.
func (e *Engine) openByState() map[State]int {
	if !e.o.Sync {
		e.viewMu.Lock()
		defer e.viewMu.Unlock()
		return maps.Clone(e.byState)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.core.openByState()
}

// Incidents returns open incidents then recently closed ones, newest first
// (live: as of the engine's latest decision; it never waits for one).
func (e *Engine) Incidents() []IncidentView {
	if !e.o.Sync {
		e.viewMu.Lock()
		defer e.viewMu.Unlock()
		return append([]IncidentView{}, e.views...)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.core.Incidents()
}
