// Package remedy turns firing alerts into incidents and walks each
// incident's remediation ladder: per step the action's own backoff,
// attempts and verification; guards (pause, dry run, budget, precondition,
// concurrency) before every attempt; every step reported to sinks.
package remedy

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/medic-sidecar/medic/actions"
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
	Backoff actions.BackoffConfig
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
}

// Engine owns all incidents.
type Engine struct {
	o    Options
	sems map[string]chan struct{}

	mu      sync.Mutex
	ctx     context.Context
	open    map[string]*incident // by alert key
	closing map[*incident]bool   // resolved, ladder goroutine still finishing
	closed  []*incident          // newest last
	wg      sync.WaitGroup
	seq     uint64
	stopped bool

	// Persistence (Options.StatePath).
	saveMu    sync.Mutex
	restored  map[string]savedIncident // by alert key, until its alert fires again
	restoreBy time.Time                // set at the first Observe
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
	e := &Engine{o: o, sems: map[string]chan struct{}{}, open: map[string]*incident{}, closing: map[*incident]bool{},
		restored: loadIncidents(o.StatePath, o.Logger, o.State, o.Clock.Now())}
	for name := range o.Steps {
		e.sems[name] = make(chan struct{}, 1)
		o.Metrics.init(name)
	}
	o.Metrics.engine.Store(e)
	return e
}

// Start sets the context incidents run under; cancelling it stops every ladder.
func (e *Engine) Start(ctx context.Context) {
	e.mu.Lock()
	e.ctx = ctx
	e.mu.Unlock()
}

// Wait blocks until every incident goroutine has returned (after ctx ends).
func (e *Engine) Wait() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.wg.Wait()
}

type incident struct {
	e      *Engine
	id     string
	key    string
	alert  string
	ladder []string
	retry  time.Duration // Alert.RetryExhaustedAfter
	start  time.Time
	// done is closed when the alert resolves.
	done chan struct{}

	mu          sync.Mutex
	labels      map[string]string
	annotations map[string]string
	value       float64
	state       State
	heldReason  string    // the guard holding the next attempt (StateHeld)
	heldMsg     string    // what the guard said
	attemptNo   int       // current attempt of the step (1-based)
	maxAttempts int       // the step's attempts
	nextAt      time.Time // when the next attempt is due (backoff, guard recheck, retry round)
	step        int       // 1-based
	action      string
	attempts    []AttemptView
	ended       time.Time
	fixedBy     string
	lastRan     string // action of the latest attempt that ran
	round       int    // 1 + how many times an exhausted ladder was walked again
	running     bool
	resolved    bool
	finalized   bool
	exhaustedAt time.Time // when the ladder was last exhausted
}

// Observe reconciles incidents with the alerts firing at now: new firing
// alerts with a ladder open incidents; open incidents whose alert no
// longer fires are resolved.
func (e *Engine) Observe(now time.Time, firing []Alert) {
	var toFinalize []*incident
	changed := false
	defer func() {
		for _, inc := range toFinalize {
			inc.finalize(now)
		}
		if changed {
			e.save()
		}
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil || e.stopped {
		return
	}
	if e.restoreBy.IsZero() {
		e.restoreBy = now.Add(e.o.RestoreGrace)
	}
	seen := make(map[string]bool, len(firing))
	for _, a := range firing {
		if len(a.Ladder) == 0 {
			continue
		}
		seen[a.Key] = true
		if inc, ok := e.open[a.Key]; ok {
			inc.mu.Lock()
			inc.value = a.Value
			inc.annotations = a.Annotations
			inc.mu.Unlock()
			continue
		}
		e.seq++
		inc := &incident{
			e: e, id: incidentID(now, a.Key, e.seq), key: a.Key, alert: a.Rule, ladder: a.Ladder,
			retry: a.RetryExhaustedAfter, round: 1, start: now, done: make(chan struct{}), labels: a.Labels, annotations: a.Annotations,
			value: a.Value, state: StateRemediating, running: true,
		}
		from := 0
		sv, restored := e.restored[a.Key]
		if restored {
			delete(e.restored, a.Key)
			from = inc.restore(sv)
		}
		ev := inc.event(now, IncidentOpened, "", 0, 0, 0)
		if restored {
			ev.Message = fmt.Sprintf("restored after medic restarted: %s at step %d of %v (round %d), opened %s",
				sv.State, max(sv.Step, 1), inc.ladder, inc.round, sv.Start.UTC().Format(time.RFC3339))
			ev.Details = map[string]any{"restored": true, "state": sv.State, "step": sv.Step}
		}
		e.open[a.Key] = inc
		changed = true
		e.o.Metrics.open.Inc()
		e.emit(ev)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			inc.run(e.ctx, from)
		}()
	}
	if len(e.restored) > 0 && !now.Before(e.restoreBy) {
		for key, sv := range e.restored {
			delete(e.restored, key)
			changed = true
			e.closeRestoredLocked(now, sv)
		}
	}
	for key, inc := range e.open {
		if seen[key] {
			continue
		}
		delete(e.open, key)
		changed = true
		e.closing[inc] = true
		inc.mu.Lock()
		inc.resolved = true
		inc.ended = now
		close(inc.done)
		finalize := !inc.running
		inc.mu.Unlock()
		if finalize {
			toFinalize = append(toFinalize, inc)
		}
	}
}

func incidentID(now time.Time, key string, seq uint64) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", key, seq)
	return fmt.Sprintf("%s-%06x", now.UTC().Format("20060102T150405Z"), h.Sum32()&0xffffff)
}

// finalize records the resolution once, after the ladder goroutine (if
// any) has stopped touching the incident.
func (inc *incident) finalize(now time.Time) {
	e := inc.e
	inc.mu.Lock()
	if inc.finalized {
		inc.mu.Unlock()
		return
	}
	inc.finalized = true
	prev := inc.state
	inc.state = StateResolved
	if inc.fixedBy == "" && (prev == StateRemediating || prev == StateHeld) {
		inc.fixedBy = inc.lastRan
	}
	ev := inc.eventLocked(now, IncidentResolved, inc.fixedBy, 0, 0, 0)
	ev.Duration = inc.ended.Sub(inc.start).Seconds()
	if inc.fixedBy != "" {
		ev.Message = fmt.Sprintf("resolved after %s; fixed by step %d (%s)", inc.ended.Sub(inc.start).Round(time.Millisecond), inc.step, inc.fixedBy)
	} else {
		ev.Message = fmt.Sprintf("resolved after %s without a remediation taking effect", inc.ended.Sub(inc.start).Round(time.Millisecond))
	}
	ev.Details = map[string]any{"previousState": prev}
	inc.mu.Unlock()
	e.o.Metrics.open.Dec()
	e.o.Metrics.incidents.WithLabelValues(inc.alert, StateResolved.String()).Inc()
	e.mu.Lock()
	delete(e.closing, inc)
	e.closed = append(e.closed, inc)
	if len(e.closed) > e.o.KeepClosed {
		e.closed = e.closed[len(e.closed)-e.o.KeepClosed:]
	}
	e.mu.Unlock()
	e.emit(ev)
	e.save()
}

func (inc *incident) isResolved() bool {
	select {
	case <-inc.done:
		return true
	default:
		return false
	}
}

// wait sleeps d on the engine clock; false if the alert resolved or ctx ended first.
func (inc *incident) wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-inc.done:
		return false
	case <-inc.e.o.Clock.After(d):
		return true
	}
}

// run walks the ladder from step index from (0: step 1) until the alert
// resolves, the ladder is exhausted (and, with retry, walks it again after
// the cool-down) or ctx ends. An incident restored as exhausted starts in
// the cool-down.
func (inc *incident) run(ctx context.Context, from int) {
	e := inc.e
	defer func() {
		inc.mu.Lock()
		inc.running = false
		finalize := inc.resolved
		inc.mu.Unlock()
		if finalize {
			inc.finalize(e.o.Clock.Now())
		}
	}()
	for {
		inc.mu.Lock()
		exhaustedAt := inc.exhaustedAt
		inc.mu.Unlock()
		if exhaustedAt.IsZero() {
			if !inc.walkLadder(ctx, from) {
				return
			}
			from = 0
			exhaustedAt = inc.exhaust()
		}
		if inc.retry <= 0 {
			return
		}
		if d := exhaustedAt.Add(inc.retry).Sub(e.o.Clock.Now()); d > 0 && !inc.wait(ctx, d) {
			return
		}
		if ctx.Err() != nil || inc.isResolved() {
			return
		}
		now := e.o.Clock.Now()
		inc.mu.Lock()
		inc.state, inc.round, inc.exhaustedAt = StateRemediating, inc.round+1, time.Time{}
		ev := inc.eventLocked(now, IncidentRetried, "", 0, 0, 0)
		ev.Message = fmt.Sprintf("still firing %s after the ladder was exhausted; walking it again from step 1 (round %d)", inc.retry, inc.round)
		ev.Details = map[string]any{"round": inc.round}
		inc.mu.Unlock()
		e.emit(ev)
		e.save()
	}
}

// exhaust marks the incident exhausted and reports it; it returns when.
func (inc *incident) exhaust() time.Time {
	e := inc.e
	now := e.o.Clock.Now()
	inc.mu.Lock()
	inc.state, inc.exhaustedAt, inc.nextAt = StateExhausted, now, time.Time{}
	if inc.retry > 0 {
		inc.nextAt = now.Add(inc.retry)
	}
	ev := inc.eventLocked(now, IncidentExhausted, "", 0, 0, 0)
	if inc.retry > 0 {
		ev.Message = fmt.Sprintf("every step of the ladder %v was tried; walking it again in %s if the alert still fires", inc.ladder, inc.retry)
	} else {
		ev.Message = fmt.Sprintf("every step of the ladder %v was tried; no further action until the alert resolves", inc.ladder)
	}
	inc.mu.Unlock()
	e.o.Metrics.incidents.WithLabelValues(inc.alert, StateExhausted.String()).Inc()
	e.emit(ev)
	e.save()
	return now
}

// walkLadder runs the steps in order from index from; true when every step
// escalated (the ladder is exhausted), false when the alert resolved or ctx
// ended.
func (inc *incident) walkLadder(ctx context.Context, from int) bool {
	e := inc.e
	for i, name := range inc.ladder {
		if i < from {
			continue
		}
		step := e.o.Steps[name]
		inc.mu.Lock()
		inc.step, inc.action = i+1, name
		inc.mu.Unlock()
		e.save()
		if step == nil {
			continue // config validation forbids this; be safe
		}
		if outcome := inc.runStep(ctx, i+1, step); outcome != stepEscalate {
			return false
		}
	}
	return ctx.Err() == nil && !inc.isResolved()
}

type stepOutcome int

const (
	stepEscalate stepOutcome = iota
	stepFixed                // the alert resolved
	stepStopped              // ctx ended
)

func (inc *incident) runStep(ctx context.Context, stepNo int, st *Step) stepOutcome {
	e := inc.e
	b := actions.NewBackoff(st.Backoff, e.o.Clock)
	maxAttempts := max(st.Backoff.Attempts, 1)
	stateMsg := "" // the last "state" suppression recorded, so a wait is recorded once
	for attempt := 1; ; attempt++ {
		inc.mu.Lock()
		inc.attemptNo, inc.maxAttempts = attempt, maxAttempts
		inc.mu.Unlock()
		// Guards: pause, precondition, concurrency and fleet wait; a spent
		// budget skips the step.
		release, g := inc.waitForGuards(ctx, stepNo, attempt, maxAttempts, st)
		switch g {
		case guardStop:
			return inc.stopOutcome(ctx)
		case guardBudget:
			return stepEscalate
		}
		now := e.o.Clock.Now()
		res, err, ran, stateErr := inc.attempt(ctx, now, stepNo, attempt, maxAttempts, st)
		if stateErr != nil {
			// Fail safe: the attempt could not be recorded, so it does not
			// run; wait and try the same attempt again.
			release()
			inc.hold(ReasonState, stateErr.Error(), now.Add(e.o.Recheck))
			if msg := stateErr.Error(); msg != stateMsg {
				inc.suppress(now, stepNo, attempt, maxAttempts, st, ReasonState, msg)
				stateMsg = msg
			}
			if !inc.wait(ctx, e.o.Recheck) {
				return inc.stopOutcome(ctx)
			}
			attempt--
			continue
		}
		stateMsg = ""
		if ctx.Err() != nil {
			release()
			inc.interrupted(stepNo, attempt, maxAttempts, st, res, err)
			return stepStopped
		}
		// Verify: the alert must stop firing within the window.
		resolved := inc.isResolved()
		if !resolved && err == nil {
			inc.wait(ctx, st.Verify)
			resolved = inc.isResolved()
		}
		release()
		if ctx.Err() != nil && !resolved {
			inc.interrupted(stepNo, attempt, maxAttempts, st, res, err)
			return stepStopped
		}
		inc.finishAttempt(stepNo, attempt, maxAttempts, st, res, err, ran, resolved && err == nil)
		if resolved {
			return stepFixed
		}
		if actions.IsPermanent(err) {
			return stepEscalate
		}
		d, stop := b.Next()
		if stop {
			return stepEscalate
		}
		inc.proceed(e.o.Clock.Now().Add(d))
		if !inc.wait(ctx, d) {
			return inc.stopOutcome(ctx)
		}
	}
}

// hold marks the incident held by a guard until (at least) next.
func (inc *incident) hold(reason, msg string, next time.Time) {
	inc.mu.Lock()
	defer inc.mu.Unlock()
	if inc.state == StateRemediating || inc.state == StateHeld {
		inc.state, inc.heldReason, inc.heldMsg, inc.nextAt = StateHeld, reason, msg, next
	}
}

// proceed marks the incident remediating, the next attempt due at next
// (zero: now).
func (inc *incident) proceed(next time.Time) {
	inc.mu.Lock()
	defer inc.mu.Unlock()
	if inc.state == StateRemediating || inc.state == StateHeld {
		inc.state, inc.heldReason, inc.heldMsg, inc.nextAt = StateRemediating, "", "", next
	}
}

func (inc *incident) stopOutcome(ctx context.Context) stepOutcome {
	if ctx.Err() != nil {
		return stepStopped
	}
	return stepFixed
}

type guardOutcome int

const (
	guardProceed guardOutcome = iota
	guardStop                 // the alert resolved or ctx ended while waiting
	guardBudget               // the budget is spent: escalate
)

// waitForGuards blocks while medic is paused, the step's precondition is
// unmet, another incident is running the same action, or the fleet has no
// free slot for it; a spent budget ends the wait with guardBudget. Each new
// reason to wait is recorded once as a suppression. On guardProceed it
// returns a release func for the action's concurrency and fleet slots.
func (inc *incident) waitForGuards(ctx context.Context, stepNo, attempt, maxAttempts int, st *Step) (func(), guardOutcome) {
	e := inc.e
	lastReason, lastMsg := "", ""
	for {
		now := e.o.Clock.Now()
		reason, msg := "", ""
		for _, p := range e.o.Pausers {
			if paused, why := p.Paused(); paused {
				reason, msg = ReasonPaused, "paused: "+why
				break
			}
		}
		if reason == "" {
			reason, msg = inc.checkRequires(ctx, st, now)
		}
		if reason == "" {
			sem := e.sems[st.Name]
			select {
			case sem <- struct{}{}:
				local := func() { <-sem }
				if st.Budget != nil {
					if allowed, _, why := e.o.Budgets.Check(st.Name, st.Budget.Max, st.Budget.Window, now); !allowed {
						local()
						inc.proceed(time.Time{})
						inc.suppress(now, stepNo, attempt, maxAttempts, st, ReasonBudget, why+"; escalating")
						return nil, guardBudget
					}
				}
				fleet, ok, why := inc.acquireFleet(ctx, st, now)
				if ok {
					inc.proceed(time.Time{})
					return func() { fleet(); local() }, guardProceed
				}
				local()
				reason, msg = ReasonFleet, why
			default:
				reason, msg = ReasonConcurrency, fmt.Sprintf("action %s is running for another incident; waiting", st.Name)
			}
		}
		inc.hold(reason, msg, now.Add(e.o.Recheck))
		// A fleet wait is recorded again when its holders change, so the
		// audit log shows who held the slots.
		if reason != lastReason || (reason == ReasonFleet && msg != lastMsg) {
			inc.suppress(now, stepNo, attempt, maxAttempts, st, reason, msg)
			lastReason, lastMsg = reason, msg
		}
		if !inc.wait(ctx, e.o.Recheck) {
			return nil, guardStop
		}
	}
}

// checkRequires evaluates st's requirements in order and returns the
// suppression reason and message of the first that holds the step back
// ("" when all hold).
func (inc *incident) checkRequires(ctx context.Context, st *Step, now time.Time) (reason, msg string) {
	e := inc.e
	if e.o.Precondition == nil {
		return "", ""
	}
	for _, r := range st.Requires {
		ok, detail, err := e.o.Precondition(ctx, r, now)
		switch {
		case err != nil && r.OnError == OnErrorProceed:
			e.o.Logger.Warn("precondition could not be evaluated; proceeding (onError: proceed)",
				"action", st.Name, "expr", r.Expr, "source", r.Source, "err", err)
		case err != nil:
			return r.SuppressReason(), fmt.Sprintf("precondition %s could not be evaluated: %v; waiting", r, err)
		case !ok && detail != "":
			return r.SuppressReason(), fmt.Sprintf("precondition %s not met: %s; waiting", r, detail)
		case !ok:
			return r.SuppressReason(), fmt.Sprintf("precondition %s not met; waiting", r)
		}
	}
	return "", ""
}

// acquireFleet takes a fleet slot for st when it has a fleet limit and
// medic runs in a fleet; ok=false with the reason otherwise.
func (inc *incident) acquireFleet(ctx context.Context, st *Step, now time.Time) (release func(), ok bool, why string) {
	e := inc.e
	if st.Fleet == nil || e.o.Fleet == nil {
		return func() {}, true, ""
	}
	release, ok, msg, err := e.o.Fleet.Acquire(ctx, st.Name, *st.Fleet, now, e.o.DryRun)
	switch {
	case err != nil && st.FleetFailOpen:
		e.o.Logger.Warn("fleet limit could not be checked; proceeding (onAPIError: proceed)", "action", st.Name, "err", err)
		return func() {}, true, ""
	case err != nil:
		return nil, false, fmt.Sprintf("fleet limit could not be checked: %v; waiting", err)
	case !ok:
		return nil, false, msg + "; waiting"
	}
	if release == nil {
		release = func() {}
	}
	return release, true, ""
}

// suppress records a suppressed attempt.
func (inc *incident) suppress(now time.Time, stepNo, attempt, maxAttempts int, st *Step, reason, msg string) {
	e := inc.e
	inc.mu.Lock()
	inc.attempts = append(inc.attempts, AttemptView{Action: st.Name, Step: stepNo, Attempt: attempt,
		MaxAttempts: maxAttempts, StartedAt: now, FinishedAt: now, Result: ResultSuppressed, Reason: reason,
		Message: msg, Value: inc.value})
	ev := inc.eventLocked(now, RemediationSuppress, st.Name, stepNo, attempt, maxAttempts)
	inc.mu.Unlock()
	ev.Result, ev.Reason, ev.Message = ResultSuppressed, reason, msg
	e.o.Metrics.suppressed.WithLabelValues(st.Name, reason).Inc()
	e.o.Metrics.attempts.WithLabelValues(st.Name, ResultSuppressed).Inc()
	e.emit(ev)
}

// attempt runs the action once (or, in dry run, records what it would do).
// Before a real run it records the run in the budget and its start in the
// journal, each durably; when either fails it returns stateErr and the
// action does not run (a budget run already recorded stays recorded: the
// safe side).
func (inc *incident) attempt(ctx context.Context, now time.Time, stepNo, attempt, maxAttempts int, st *Step) (res actions.Result, err error, ran bool, stateErr error) {
	e := inc.e
	inc.mu.Lock()
	ai := actions.Incident{ID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels),
		Annotations: maps.Clone(inc.annotations), Value: inc.value, Step: stepNo, Action: st.Name,
		Attempt: attempt, MaxAttempts: maxAttempts, Started: inc.start, DryRun: e.o.DryRun}
	ev := inc.eventLocked(now, RemediationStarted, st.Name, stepNo, attempt, maxAttempts)
	inc.mu.Unlock()
	ev.DryRun = e.o.DryRun
	ev.Message = fmt.Sprintf("%s attempt %d/%d (step %d, %s)", st.Name, attempt, maxAttempts, stepNo, st.Backoff)

	if !e.o.DryRun {
		if st.Budget != nil {
			err := e.o.Budgets.Consume(st.Name, now, st.Budget.Window)
			if e.o.State.Report(FileBudgets, err, now) && err == nil {
				e.o.Logger.Info("recording budget runs works again", "action", st.Name)
			}
			if err != nil {
				e.o.Logger.Error("budget run could not be recorded; not acting", "action", st.Name, "err", err)
				return res, nil, false, fmt.Errorf("not run: the budget run could not be recorded durably (%v); retrying every %s", err, e.o.Recheck)
			}
		}
		if e.o.Journal != nil {
			if err := e.appendJournal(ev); err != nil {
				return res, nil, false, fmt.Errorf("not run: its start could not be written to the audit log (%v); retrying every %s", err, e.o.Recheck)
			}
		}
	}
	inc.mu.Lock()
	inc.attempts = append(inc.attempts, AttemptView{Action: st.Name, Step: stepNo, Attempt: attempt,
		MaxAttempts: maxAttempts, StartedAt: now, Result: "running", Value: inc.value, DryRun: e.o.DryRun})
	if !e.o.DryRun {
		inc.lastRan = st.Name
	}
	inc.mu.Unlock()
	if e.o.DryRun {
		e.emit(ev)
		return actions.Result{Message: fmt.Sprintf("dry run: would run %s action %s", st.Kind, st.Name)}, nil, false, nil
	}
	if e.o.Journal == nil {
		e.emit(ev)
	} else {
		e.emitSinks(ev) // already in the journal
	}
	start := time.Now()
	res, err = safeRun(ctx, st.Action, ai)
	e.o.Metrics.duration.WithLabelValues(st.Name).Observe(time.Since(start).Seconds())
	// Nothing of the output leaves here unredacted (status, audit,
	// incidents.json, Events and logs all take it from res).
	res = st.Output.Apply(res)
	if err != nil {
		err = fmt.Errorf("%s: attempt %d/%d: %w", st.Name, attempt, maxAttempts, err)
	}
	return res, err, true, nil
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

// interrupted ends an attempt that medic's shutdown cut short (during the
// action or its verification) with a failed/interrupted record carrying
// the output, so every started attempt has an end record in the audit log.
func (inc *incident) interrupted(stepNo, attempt, maxAttempts int, st *Step, res actions.Result, err error) {
	e := inc.e
	now := e.o.Clock.Now()
	msg := "medic stopped during this attempt"
	switch {
	case err != nil:
		msg += ": " + st.Output.Redact(err.Error())
	case res.Message != "":
		msg += " (before verification ended); the action said: " + res.Message
	default:
		msg += " (before verification ended)"
	}
	inc.mu.Lock()
	for i := len(inc.attempts) - 1; i >= 0; i-- {
		a := &inc.attempts[i]
		if a.Step == stepNo && a.Attempt == attempt && a.Result == "running" {
			a.FinishedAt, a.Result, a.Reason, a.Message, a.Output, a.Details = now, ResultFailed, ReasonInterrupted, msg, res.Output, res.Details
			break
		}
	}
	ev := inc.eventLocked(now, RemediationFailed, st.Name, stepNo, attempt, maxAttempts)
	inc.mu.Unlock()
	ev.Result, ev.Reason, ev.Message, ev.Output, ev.Details, ev.DryRun = ResultFailed, ReasonInterrupted, msg, res.Output, res.Details, e.o.DryRun
	e.o.Metrics.attempts.WithLabelValues(st.Name, ResultFailed).Inc()
	e.emit(ev)
	e.save()
}

func (inc *incident) finishAttempt(stepNo, attempt, maxAttempts int, st *Step, res actions.Result, err error, ran, fixed bool) {
	e := inc.e
	now := e.o.Clock.Now()
	result, reason, evType := ResultFailed, "", RemediationFailed
	msg := res.Message
	switch {
	case !ran && e.o.DryRun:
		result, reason, evType = ResultSuppressed, ReasonDryRun, RemediationSuppress
		if fixed {
			msg += "; the alert resolved on its own"
		} else {
			msg += fmt.Sprintf("; alert still firing after verify %s", st.Verify)
		}
	case fixed:
		result, evType = ResultSucceeded, RemediationSuccess
		if msg == "" {
			msg = "ok"
		}
		msg += "; verified: alert resolved"
	case err != nil && actions.IsPermanent(err):
		reason = ReasonPermanent
		msg = st.Output.Redact(err.Error())
	case err != nil:
		reason = ReasonError
		msg = st.Output.Redact(err.Error())
	default:
		reason = ReasonVerify
		if msg != "" {
			msg += "; "
		}
		msg += fmt.Sprintf("alert still firing after verify %s", st.Verify)
	}
	inc.mu.Lock()
	for i := len(inc.attempts) - 1; i >= 0; i-- {
		a := &inc.attempts[i]
		if a.Step == stepNo && a.Attempt == attempt && a.Result == "running" {
			a.FinishedAt, a.Result, a.Reason, a.Message, a.Output, a.Details = now, result, reason, msg, res.Output, res.Details
			break
		}
	}
	if fixed && ran {
		inc.fixedBy = st.Name
	}
	ev := inc.eventLocked(now, evType, st.Name, stepNo, attempt, maxAttempts)
	inc.mu.Unlock()
	ev.Result, ev.Reason, ev.Message, ev.Output, ev.Details, ev.DryRun = result, reason, msg, res.Output, res.Details, !ran && e.o.DryRun
	e.o.Metrics.attempts.WithLabelValues(st.Name, result).Inc()
	if result == ResultSuppressed {
		e.o.Metrics.suppressed.WithLabelValues(st.Name, reason).Inc()
	}
	e.emit(ev)
}

func (inc *incident) event(now time.Time, t EventType, action string, step, attempt, maxAttempts int) Event {
	inc.mu.Lock()
	defer inc.mu.Unlock()
	return inc.eventLocked(now, t, action, step, attempt, maxAttempts)
}

func (inc *incident) eventLocked(now time.Time, t EventType, action string, step, attempt, maxAttempts int) Event {
	return Event{Time: now, Type: t, IncidentID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels),
		Value: inc.value, Action: action, Step: step, Attempt: attempt, MaxAttempts: maxAttempts}
}

// emit records ev in the journal (a failure is logged and shown as a
// state problem; the event still reaches the log and the sinks), then in
// the log and every sink.
func (e *Engine) emit(ev Event) {
	if e.o.Journal != nil {
		_ = e.appendJournal(ev)
	}
	e.emitSinks(ev)
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

func (e *Engine) emitSinks(ev Event) {
	e.log(ev)
	for _, s := range e.o.Sinks {
		s.Record(ev)
	}
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
	e.mu.Lock()
	list := make([]*incident, 0, len(e.open))
	for _, inc := range e.open {
		list = append(list, inc)
	}
	e.mu.Unlock()
	out := map[State]int{}
	for _, inc := range list {
		inc.mu.Lock()
		out[inc.state]++
		inc.mu.Unlock()
	}
	return out
}

// Incidents returns open incidents then recently closed ones, newest first.
func (e *Engine) Incidents() []IncidentView {
	e.mu.Lock()
	list := make([]*incident, 0, len(e.open)+len(e.closed))
	for _, inc := range e.open {
		list = append(list, inc)
	}
	for inc := range e.closing {
		list = append(list, inc)
	}
	list = append(list, e.closed...)
	e.mu.Unlock()
	out := make([]IncidentView, 0, len(list))
	for _, inc := range list {
		inc.mu.Lock()
		v := IncidentView{ID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels), Annotations: maps.Clone(inc.annotations),
			State: inc.state, Step: inc.step, Attempt: inc.attemptNo, MaxAttempts: inc.maxAttempts, HeldReason: inc.heldReason,
			HeldMessage: inc.heldMsg, NextAttemptAt: inc.nextAt, Action: inc.action, Ladder: inc.ladder, Value: inc.value, Started: inc.start,
			Ended: inc.ended, FixedBy: inc.fixedBy, Round: inc.round, Attempts: append([]AttemptView{}, inc.attempts...)}
		if inc.finalized {
			v.Duration = inc.ended.Sub(inc.start).Seconds()
		}
		inc.mu.Unlock()
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool {
		oi, oj := out[i].State != StateResolved, out[j].State != StateResolved
		if oi != oj {
			return oi
		}
		return out[i].Started.After(out[j].Started)
	})
	return out
}
