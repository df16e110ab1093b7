package remedy

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/sethvargo/go-retry"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/backoff"
)

// The decision core: every incident is plain data, and every decision is a
// method of Core that takes now and its inputs (the firing alerts, an
// attempt's result, the guards' answers) and returns the effects to
// perform, like Prometheus's AlertingRule.Eval(ts). Core does no I/O and
// starts nothing: the Engine (live or dry run) and replay's Sim perform
// the effects, run actions, and feed results back with Finish. Only an
// action's run is asynchronous; everything else, including the wait of a
// backoff, a guard re-check or a verification window, is a time the core
// asks to be woken at (NextWake).

// Guards answers the questions the core asks before an attempt, in this
// order: pause, preconditions, (concurrency: the core's own state),
// budget, fleet, and finally whether the start could be recorded
// (write-ahead). The live engine answers from the pause file, the store,
// budgets.json, Kubernetes Leases and the state dir; tests and replay
// answer from tables or recorded data. Answers are inputs: the core
// decides with them, it does not know where they come from.
type Guards interface {
	// Paused reports whether medic must not act now, and why.
	Paused(now time.Time) (bool, string)
	// Precondition evaluates one of a step's requirements at now: ok
	// reports whether it holds, detail what it saw, err that it could not
	// be evaluated (the core applies the requirement's OnError).
	Precondition(st *Step, r Requirement, now time.Time) (ok bool, detail string, err error)
	// Budget reports whether st may run once more at now, and why not.
	Budget(st *Step, now time.Time) (ok bool, why string)
	// Fleet takes a fleet slot for st (only asked when st has a fleet
	// limit). release is called when the attempt ends; err is an API
	// failure (the core applies FleetFailOpen).
	Fleet(st *Step, now time.Time) (release func(), ok bool, msg string, err error)
	// Record durably records that st starts (its budget run, its
	// RemediationStarted record) before it runs; on error it does not run.
	// journaled reports that start was appended to the journal.
	Record(st *Step, start Event, now time.Time) (journaled bool, err error)
}

// EffectKind says what an Effect asks the shell to do.
type EffectKind int

// Effect kinds.
const (
	// EffectEmit: record Event in the journal (unless Journaled), the log,
	// the sinks and the metrics.
	EffectEmit EffectKind = iota
	// EffectRun: run Run's action (live: in a goroutine; dry run: not at
	// all) and report its result with Finish.
	EffectRun
	// EffectRelease: give back an attempt's concurrency and fleet slots.
	EffectRelease
	// EffectSave: persist the open incidents (incidents.json).
	EffectSave
)

// Effect is one thing the shell does for a decision, in order.
type Effect struct {
	Kind      EffectKind
	Event     Event
	Journaled bool
	Run       *Run
	Release   func()
}

// Run is an attempt the shell runs.
type Run struct {
	ID       uint64
	Step     *Step
	Incident actions.Incident
}

// AttemptResult is what an attempt's run returned.
type AttemptResult struct {
	Run    uint64
	Result actions.Result
	Err    error
	// Ran is false in a dry run (the action was not run).
	Ran bool
}

// Decision is what one call of the core decided.
type Decision struct {
	Effects []Effect
	// NextWake is when the core next has something to decide without new
	// input (zero: nothing scheduled).
	NextWake time.Time
}

// CoreOptions configures a Core.
type CoreOptions struct {
	Steps  map[string]*Step
	DryRun bool
	// Recheck is how often a waiting guard is re-checked.
	Recheck time.Duration
	// KeepClosed is how many closed incidents are kept for Incidents.
	KeepClosed int
	// RestoreGrace: see Options.RestoreGrace.
	RestoreGrace time.Duration
	// Restored are the incidents persisted by a previous medic, by key.
	Restored map[string]savedIncident
}

// Core holds every incident and decides what happens to them.
type Core struct {
	o         CoreOptions
	open      map[string]*incident // by alert key
	closing   map[*incident]bool   // resolved while its action runs
	closed    []*incident          // newest last
	busy      map[string]*incident // action → incident whose attempt runs or is verified
	runs      map[uint64]*incident // running attempts by run id
	seq       uint64
	runSeq    uint64
	stopped   bool
	restored  map[string]savedIncident
	restoreBy time.Time

	now time.Time // of the call being decided (the backoffs' clock)
	out []Effect
}

// phase is where an open incident is within StateRemediating/StateHeld.
type phase int

const (
	phaseDue       phase = iota // the next attempt is due at nextAt
	phaseRunning                // the action runs (the core waits for Finish)
	phaseVerifying              // the action returned; verification ends at verifyUntil
)

type incident struct {
	seq         uint64
	id          string
	key         string
	alert       string
	ladder      []string
	retry       time.Duration // Alert.RetryExhaustedAfter
	start       time.Time
	labels      map[string]string
	annotations map[string]string
	value       float64

	state       State
	phase       phase
	heldReason  string // the guard holding the next attempt (StateHeld)
	heldMsg     string
	step        int // 1-based
	action      string
	attemptNo   int       // current attempt of the step (1-based)
	maxAttempts int       // the step's attempts
	nextAt      time.Time // next attempt due (backoff end, guard re-check, retry round)
	backoff     retry.Backoff
	lastGuard   string // the guard suppression last recorded for this attempt
	lastGuardM  string
	stateMsg    string // the "state" suppression last recorded for this step
	// nextAttempt: the backoff after attemptNo runs; the attempt count
	// moves on when the next attempt comes due.
	nextAttempt bool

	// The attempt running or being verified.
	runID       uint64
	result      AttemptResult
	verifyUntil time.Time
	release     []func()

	attempts    []AttemptView
	ended       time.Time
	fixedBy     string
	lastRan     string // action of the latest attempt that ran
	round       int    // 1 + how many times an exhausted ladder was walked again
	exhaustedAt time.Time
	resolved    bool // the alert stopped firing
	finalized   bool
}

// NewCore returns a Core with no incidents (but o.Restored waiting).
func NewCore(o CoreOptions) *Core {
	if o.Recheck <= 0 {
		o.Recheck = 5 * time.Second
	}
	if o.KeepClosed <= 0 {
		o.KeepClosed = 100
	}
	r := o.Restored
	if r == nil {
		r = map[string]savedIncident{}
	}
	return &Core{o: o, open: map[string]*incident{}, closing: map[*incident]bool{}, busy: map[string]*incident{},
		runs: map[uint64]*incident{}, restored: r}
}

// coreClock is the core's current decision time; it is the clock of the
// steps' backoffs (maxDuration).
type coreClock struct{ c *Core }

func (k coreClock) Now() time.Time { return k.c.now }

func (k coreClock) After(time.Duration) <-chan time.Time {
	panic("remedy: the decision core never waits")
}

func (c *Core) begin(now time.Time) {
	c.now = now
	c.out = nil
}

func (c *Core) done() Decision {
	d := Decision{Effects: c.out}
	d.NextWake, _ = c.NextWake()
	c.out = nil
	return d
}

func (c *Core) emit(ev Event) { c.out = append(c.out, Effect{Kind: EffectEmit, Event: ev}) }
func (c *Core) save()         { c.out = append(c.out, Effect{Kind: EffectSave}) }
func (c *Core) releaseAll(f []func()) {
	for _, r := range f {
		c.out = append(c.out, Effect{Kind: EffectRelease, Release: r})
	}
}

// Observe reconciles incidents with the alerts firing at now: a new
// firing alert with a ladder opens an incident (restored from the state
// file when a previous medic left one), an open incident whose alert no
// longer fires resolves; then every incident due at now is advanced.
func (c *Core) Observe(now time.Time, firing []Alert, g Guards) Decision {
	c.begin(now)
	if c.stopped {
		return c.done()
	}
	if c.restoreBy.IsZero() {
		c.restoreBy = now.Add(c.o.RestoreGrace)
	}
	changed := false
	seen := make(map[string]bool, len(firing))
	var opened []*incident
	for _, a := range firing {
		if len(a.Ladder) == 0 {
			continue
		}
		seen[a.Key] = true
		if inc, ok := c.open[a.Key]; ok {
			inc.value, inc.annotations = a.Value, a.Annotations
			continue
		}
		c.seq++
		inc := &incident{seq: c.seq, id: incidentID(now, a.Key, c.seq), key: a.Key, alert: a.Rule, ladder: a.Ladder,
			retry: a.RetryExhaustedAfter, round: 1, start: now, labels: a.Labels, annotations: a.Annotations,
			value: a.Value, state: StateRemediating}
		from := 0
		sv, restored := c.restored[a.Key]
		if restored {
			delete(c.restored, a.Key)
			from = inc.restore(sv)
		}
		ev := inc.event(now, IncidentOpened, "", 0, 0, 0)
		if restored {
			ev.Message = fmt.Sprintf("restored after medic restarted: %s at step %d of %v (round %d), opened %s",
				sv.State, max(sv.Step, 1), inc.ladder, inc.round, sv.Start.UTC().Format(time.RFC3339))
			ev.Details = map[string]any{"restored": true, "state": sv.State, "step": sv.Step}
		}
		c.open[a.Key] = inc
		changed = true
		c.emit(ev)
		if inc.state != StateExhausted {
			c.enterStep(inc, from)
		}
		opened = append(opened, inc)
	}
	if len(c.restored) > 0 && !now.Before(c.restoreBy) {
		for _, key := range slices.Sorted(maps.Keys(c.restored)) {
			sv := c.restored[key]
			delete(c.restored, key)
			changed = true
			c.closeRestored(now, sv)
		}
	}
	for _, inc := range c.sortedOpen() {
		if !seen[inc.key] {
			changed = true
			c.resolve(inc)
		}
	}
	for _, inc := range c.sortedOpen() {
		c.advance(inc, g)
	}
	if changed {
		c.save()
	}
	return c.done()
}

// Tick advances every incident whose next decision is due at now (a
// backoff, a guard re-check, a verification window or a retry round ended).
func (c *Core) Tick(now time.Time, g Guards) Decision {
	c.begin(now)
	if !c.stopped {
		for _, inc := range c.sortedOpen() {
			c.advance(inc, g)
		}
	}
	return c.done()
}

// Finish takes an attempt's result: with an error, or when the alert
// resolved meanwhile, the attempt ends at once; otherwise it is verified
// until the step's verify window ends. After Stop it ends interrupted.
func (c *Core) Finish(now time.Time, r AttemptResult, g Guards) Decision {
	c.begin(now)
	inc := c.runs[r.Run]
	if inc == nil {
		return c.done()
	}
	delete(c.runs, r.Run)
	inc.result = r
	if c.stopped {
		c.interrupted(inc)
		if inc.resolved {
			c.finalize(inc)
		}
		return c.done()
	}
	st := c.o.Steps[inc.action]
	inc.phase, inc.verifyUntil = phaseVerifying, now.Add(st.Verify)
	if inc.resolved || r.Err != nil {
		c.endAttempt(inc, inc.resolved && r.Err == nil)
	}
	if !inc.finalized {
		c.advance(inc, g)
	}
	return c.done()
}

// Stop ends decision making (medic shuts down): attempts being verified
// end interrupted now; running ones end interrupted when they return.
func (c *Core) Stop(now time.Time) Decision {
	c.begin(now)
	if !c.stopped {
		c.stopped = true
		for _, inc := range c.sortedAll() {
			if inc.runID != 0 && inc.phase == phaseVerifying {
				c.interrupted(inc)
			}
		}
	}
	return c.done()
}

// NextWake is when the core next has a decision due without new input.
func (c *Core) NextWake() (time.Time, bool) {
	var next time.Time
	for _, inc := range c.open {
		if w, ok := inc.wake(); ok && (next.IsZero() || w.Before(next)) {
			next = w
		}
	}
	for inc := range c.closing {
		if w, ok := inc.wake(); ok && (next.IsZero() || w.Before(next)) {
			next = w
		}
	}
	return next, !next.IsZero()
}

func (inc *incident) wake() (time.Time, bool) {
	switch {
	case inc.finalized:
		return time.Time{}, false
	case inc.runID != 0 && inc.phase == phaseVerifying:
		return inc.verifyUntil, true
	case inc.runID != 0:
		return time.Time{}, false
	case inc.state == StateExhausted:
		if inc.retry > 0 && !inc.resolved {
			return inc.exhaustedAt.Add(inc.retry), true
		}
		return time.Time{}, false
	case inc.state == StateRemediating || inc.state == StateHeld:
		return inc.nextAt, true
	}
	return time.Time{}, false
}

func (c *Core) sortedOpen() []*incident {
	out := make([]*incident, 0, len(c.open))
	for _, inc := range c.open {
		out = append(out, inc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (c *Core) sortedAll() []*incident {
	out := c.sortedOpen()
	for inc := range c.closing {
		out = append(out, inc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// advance makes every decision due for inc at c.now.
func (c *Core) advance(inc *incident, g Guards) {
	now := c.now
	for !inc.finalized && !c.stopped {
		switch {
		case inc.runID != 0 && inc.phase == phaseRunning:
			return
		case inc.runID != 0: // verifying
			if now.Before(inc.verifyUntil) {
				return
			}
			c.endAttempt(inc, false)
		case inc.resolved:
			return
		case inc.state == StateExhausted:
			if inc.retry <= 0 || now.Before(inc.exhaustedAt.Add(inc.retry)) {
				return
			}
			inc.state, inc.round, inc.exhaustedAt = StateRemediating, inc.round+1, time.Time{}
			ev := inc.event(now, IncidentRetried, "", 0, 0, 0)
			ev.Message = fmt.Sprintf("still firing %s after the ladder was exhausted; walking it again from step 1 (round %d)", inc.retry, inc.round)
			ev.Details = map[string]any{"round": inc.round}
			c.emit(ev)
			c.save()
			c.enterStep(inc, 0)
		default:
			if now.Before(inc.nextAt) {
				return
			}
			if inc.nextAttempt {
				inc.attemptNo, inc.nextAttempt = inc.attemptNo+1, false
			}
			c.tryAttempt(inc, g)
			if inc.runID == 0 && inc.state == StateHeld {
				return
			}
		}
	}
}

// enterStep starts the ladder at index i (0: step 1); past the last step
// the incident is exhausted.
func (c *Core) enterStep(inc *incident, i int) {
	for ; i < len(inc.ladder); i++ {
		name := inc.ladder[i]
		inc.step, inc.action = i+1, name
		c.save()
		st := c.o.Steps[name]
		if st == nil {
			continue // config validation forbids this; be safe
		}
		inc.backoff = backoff.New(st.Backoff, coreClock{c})
		inc.attemptNo, inc.maxAttempts = 1, max(st.Backoff.Attempts, 1)
		inc.phase, inc.nextAttempt = phaseDue, false
		inc.lastGuard, inc.lastGuardM, inc.stateMsg = "", "", ""
		inc.proceed(time.Time{})
		return
	}
	c.exhaust(inc)
}

// escalate moves inc to the step after its current one.
func (c *Core) escalate(inc *incident) { c.enterStep(inc, inc.step) }

func (c *Core) exhaust(inc *incident) {
	now := c.now
	inc.state, inc.exhaustedAt, inc.nextAt, inc.heldReason, inc.heldMsg = StateExhausted, now, time.Time{}, "", ""
	if inc.retry > 0 {
		inc.nextAt = now.Add(inc.retry)
	}
	ev := inc.event(now, IncidentExhausted, "", 0, 0, 0)
	if inc.retry > 0 {
		ev.Message = fmt.Sprintf("every step of the ladder %v was tried; walking it again in %s if the alert still fires", inc.ladder, inc.retry)
	} else {
		ev.Message = fmt.Sprintf("every step of the ladder %v was tried; no further action until the alert resolves", inc.ladder)
	}
	c.emit(ev)
	c.save()
}

// hold marks inc held by a guard until next.
func (inc *incident) hold(reason, msg string, next time.Time) {
	inc.state, inc.heldReason, inc.heldMsg, inc.nextAt = StateHeld, reason, msg, next
}

// proceed marks inc remediating, its next attempt due at next (zero: now).
func (inc *incident) proceed(next time.Time) {
	inc.state, inc.heldReason, inc.heldMsg, inc.nextAt = StateRemediating, "", "", next
}

// tryAttempt asks the guards whether the due attempt may start, and
// starts it, holds the incident, or (budget spent) escalates.
func (c *Core) tryAttempt(inc *incident, g Guards) {
	now := c.now
	st := c.o.Steps[inc.action]
	reason, msg := "", ""
	if paused, why := g.Paused(now); paused {
		reason, msg = ReasonPaused, "paused: "+why
	}
	if reason == "" {
		reason, msg = checkRequires(g, st, now)
	}
	var release []func()
	if reason == "" {
		if other := c.busy[st.Name]; other != nil && other != inc {
			reason, msg = ReasonConcurrency, fmt.Sprintf("action %s is running for another incident; waiting", st.Name)
		}
	}
	if reason == "" && st.Budget != nil {
		if ok, why := g.Budget(st, now); !ok {
			inc.proceed(time.Time{})
			c.suppress(inc, st, ReasonBudget, why+"; escalating")
			c.escalate(inc)
			return
		}
	}
	if reason == "" && st.Fleet != nil {
		rel, ok, fmsg, err := g.Fleet(st, now)
		switch {
		case err != nil && st.FleetFailOpen:
		case err != nil:
			reason, msg = ReasonFleet, fmt.Sprintf("fleet limit could not be checked: %v; waiting", err)
		case !ok:
			reason, msg = ReasonFleet, fmsg+"; waiting"
		case rel != nil:
			release = append(release, rel)
		}
	}
	if reason != "" {
		inc.hold(reason, msg, now.Add(c.o.Recheck))
		// A fleet wait is recorded again when its holders change, so the
		// audit log shows who held the slots.
		if reason != inc.lastGuard || (reason == ReasonFleet && msg != inc.lastGuardM) {
			c.suppress(inc, st, reason, msg)
			inc.lastGuard, inc.lastGuardM = reason, msg
		}
		return
	}

	// Every guard lets it through: record the start durably, then run.
	ev := inc.event(now, RemediationStarted, st.Name, inc.step, inc.attemptNo, inc.maxAttempts)
	ev.DryRun = c.o.DryRun
	ev.Message = fmt.Sprintf("%s attempt %d/%d (step %d, %s)", st.Name, inc.attemptNo, inc.maxAttempts, inc.step, st.Backoff)
	journaled, err := g.Record(st, ev, now)
	if err != nil {
		// Fail safe: the attempt could not be recorded, so it does not
		// run; the same attempt is tried again after Recheck.
		c.releaseAll(release)
		msg := err.Error()
		inc.hold(ReasonState, msg, now.Add(c.o.Recheck))
		if msg != inc.stateMsg {
			c.suppress(inc, st, ReasonState, msg)
			inc.stateMsg = msg
		}
		inc.lastGuard, inc.lastGuardM = "", ""
		return
	}
	inc.stateMsg = ""
	inc.proceed(time.Time{})
	inc.attempts = append(inc.attempts, AttemptView{Action: st.Name, Step: inc.step, Attempt: inc.attemptNo,
		MaxAttempts: inc.maxAttempts, StartedAt: now, Result: "running", Value: inc.value, DryRun: c.o.DryRun})
	if !c.o.DryRun {
		inc.lastRan = st.Name
	}
	c.out = append(c.out, Effect{Kind: EffectEmit, Event: ev, Journaled: journaled})
	c.runSeq++
	inc.runID, inc.phase, inc.release, inc.result = c.runSeq, phaseRunning, release, AttemptResult{}
	c.busy[st.Name] = inc
	c.runs[inc.runID] = inc
	c.out = append(c.out, Effect{Kind: EffectRun, Run: &Run{ID: inc.runID, Step: st, Incident: actions.Incident{
		ID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels), Annotations: maps.Clone(inc.annotations),
		Value: inc.value, Step: inc.step, Action: st.Name, Attempt: inc.attemptNo, MaxAttempts: inc.maxAttempts,
		Started: inc.start, DryRun: c.o.DryRun}}})
}

// checkRequires evaluates st's requirements in order and returns the
// suppression reason and message of the first that holds the step back
// ("" when all hold). One that cannot be evaluated holds it too, unless
// its OnError is proceed.
func checkRequires(g Guards, st *Step, now time.Time) (reason, msg string) {
	for _, r := range st.Requires {
		ok, detail, err := g.Precondition(st, r, now)
		switch {
		case err != nil && r.OnError == OnErrorProceed:
		case err != nil:
			return r.SuppressReason(), fmt.Sprintf("precondition %s could not be evaluated: %v; waiting", r, err)
		case !ok && detail != "":
			// The detail ("31 of 50 = 0.62, needs < 0.3") before the
			// expression, which can be long: an Event's note is cut at 1 KiB.
			return r.SuppressReason(), fmt.Sprintf("precondition not met: %s; waiting (precondition %s)", detail, r)
		case !ok:
			return r.SuppressReason(), fmt.Sprintf("precondition %s not met; waiting", r)
		}
	}
	return "", ""
}

// freeSlots gives back the attempt's concurrency and fleet slots.
func (c *Core) freeSlots(inc *incident) {
	if c.busy[inc.action] == inc {
		delete(c.busy, inc.action)
	}
	c.releaseAll(inc.release)
	inc.release, inc.runID = nil, 0
}

// endAttempt records the end of inc's attempt (fixed: the alert resolved
// and the action returned no error) and decides what comes next: the
// incident resolves, the step escalates, or the next attempt waits out
// its backoff.
func (c *Core) endAttempt(inc *incident, fixed bool) {
	now := c.now
	st := c.o.Steps[inc.action]
	r := inc.result
	c.freeSlots(inc)
	res, err := r.Result, r.Err
	result, reason, evType := ResultFailed, "", RemediationFailed
	msg := res.Message
	var details map[string]any = res.Details
	switch {
	case !r.Ran && c.o.DryRun:
		result, reason, evType = ResultSuppressed, ReasonDryRun, RemediationSuppressed
		if fixed {
			msg += "; the alert resolved on its own"
		} else {
			msg += fmt.Sprintf("; alert still firing after verify %s", st.Verify)
		}
		details = map[string]any{"alertResolved": fixed}
	case fixed:
		result, evType = ResultSucceeded, RemediationSucceeded
		if msg == "" {
			msg = "ok"
		}
		msg += "; verified: alert resolved"
	case err != nil && actions.IsPermanent(err):
		reason, msg = ReasonPermanent, st.Output.Redact(err.Error())
	case err != nil:
		reason, msg = ReasonError, st.Output.Redact(err.Error())
	default:
		reason = ReasonVerify
		if msg != "" {
			msg += "; "
		}
		msg += fmt.Sprintf("alert still firing after verify %s", st.Verify)
	}
	inc.endRecord(now, result, reason, msg, res.Output, details)
	if fixed && r.Ran {
		inc.fixedBy = st.Name
	}
	ev := inc.event(now, evType, st.Name, inc.step, inc.attemptNo, inc.maxAttempts)
	ev.Result, ev.Reason, ev.Message, ev.Output, ev.Details, ev.DryRun = result, reason, msg, res.Output, details, !r.Ran && c.o.DryRun
	c.emit(ev)
	switch {
	case inc.resolved:
		c.finalize(inc)
	case actions.IsPermanent(err):
		c.escalate(inc)
	default:
		d, stop := inc.backoff.Next()
		if stop {
			c.escalate(inc)
			return
		}
		inc.phase, inc.nextAttempt, inc.lastGuard, inc.lastGuardM = phaseDue, true, "", ""
		inc.proceed(now.Add(d))
	}
}

// endRecord ends the running attempt record of inc.
func (inc *incident) endRecord(now time.Time, result, reason, msg, output string, details map[string]any) {
	for i := len(inc.attempts) - 1; i >= 0; i-- {
		a := &inc.attempts[i]
		if a.Step == inc.step && a.Attempt == inc.attemptNo && a.Result == "running" {
			a.FinishedAt, a.Result, a.Reason, a.Message, a.Output, a.Details = now, result, reason, msg, output, details
			break
		}
	}
}

// interrupted ends an attempt that medic's shutdown cut short (during the
// action or its verification) with a failed/interrupted record carrying
// the output, so every started attempt has an end record in the audit log.
func (c *Core) interrupted(inc *incident) {
	now := c.now
	st := c.o.Steps[inc.action]
	res, err := inc.result.Result, inc.result.Err
	c.freeSlots(inc)
	msg := "medic stopped during this attempt"
	switch {
	case err != nil:
		msg += ": " + st.Output.Redact(err.Error())
	case res.Message != "":
		msg += " (before verification ended); the action said: " + res.Message
	default:
		msg += " (before verification ended)"
	}
	inc.endRecord(now, ResultFailed, ReasonInterrupted, msg, res.Output, res.Details)
	ev := inc.event(now, RemediationFailed, st.Name, inc.step, inc.attemptNo, inc.maxAttempts)
	ev.Result, ev.Reason, ev.Message, ev.Output, ev.Details, ev.DryRun = ResultFailed, ReasonInterrupted, msg, res.Output, res.Details, c.o.DryRun
	c.emit(ev)
	c.save()
}

// suppress records a suppressed attempt.
func (c *Core) suppress(inc *incident, st *Step, reason, msg string) {
	now := c.now
	inc.attempts = append(inc.attempts, AttemptView{Action: st.Name, Step: inc.step, Attempt: inc.attemptNo,
		MaxAttempts: inc.maxAttempts, StartedAt: now, FinishedAt: now, Result: ResultSuppressed, Reason: reason,
		Message: msg, Value: inc.value})
	ev := inc.event(now, RemediationSuppressed, st.Name, inc.step, inc.attemptNo, inc.maxAttempts)
	ev.Result, ev.Reason, ev.Message = ResultSuppressed, reason, msg
	c.emit(ev)
}

// resolve handles inc's alert no longer firing: a verified attempt
// succeeds, a running one ends when it returns, then the incident closes.
func (c *Core) resolve(inc *incident) {
	delete(c.open, inc.key)
	inc.resolved, inc.ended = true, c.now
	switch {
	case inc.runID != 0 && inc.phase == phaseRunning:
		c.closing[inc] = true
	case inc.runID != 0:
		c.endAttempt(inc, inc.result.Err == nil) // endAttempt finalizes
	default:
		c.finalize(inc)
	}
}

// finalize records the resolution.
func (c *Core) finalize(inc *incident) {
	if inc.finalized {
		return
	}
	now := c.now
	inc.finalized = true
	delete(c.closing, inc)
	prev := inc.state
	inc.state, inc.nextAt, inc.heldReason, inc.heldMsg = StateResolved, time.Time{}, "", ""
	if inc.fixedBy == "" && (prev == StateRemediating || prev == StateHeld) {
		inc.fixedBy = inc.lastRan
	}
	ev := inc.event(now, IncidentResolved, inc.fixedBy, 0, 0, 0)
	ev.Duration = inc.ended.Sub(inc.start).Seconds()
	if inc.fixedBy != "" {
		ev.Message = fmt.Sprintf("resolved after %s; fixed by step %d (%s)", inc.ended.Sub(inc.start).Round(time.Millisecond), inc.step, inc.fixedBy)
	} else {
		ev.Message = fmt.Sprintf("resolved after %s without a remediation taking effect", inc.ended.Sub(inc.start).Round(time.Millisecond))
	}
	ev.Details = map[string]any{"previousState": prev}
	c.addClosed(inc)
	c.emit(ev)
	c.save()
}

func (c *Core) addClosed(inc *incident) {
	c.closed = append(c.closed, inc)
	if len(c.closed) > c.o.KeepClosed {
		c.closed = c.closed[len(c.closed)-c.o.KeepClosed:]
	}
}

// closeRestored closes a restored incident whose alert did not fire
// again within RestoreGrace of medic's first evaluation.
func (c *Core) closeRestored(now time.Time, sv savedIncident) {
	inc := &incident{id: sv.ID, key: sv.Key, alert: sv.Alert, ladder: sv.Ladder, start: sv.Start,
		labels: sv.Labels, state: StateResolved, step: sv.Step, round: max(sv.Round, 1), ended: now,
		attempts: sv.Attempts, finalized: true}
	c.addClosed(inc)
	c.emit(Event{Time: now, Type: IncidentResolved, IncidentID: sv.ID, Alert: sv.Alert, Labels: maps.Clone(sv.Labels),
		Duration: now.Sub(sv.Start).Seconds(),
		Message: fmt.Sprintf("restored after medic restarted, but the alert did not fire again within %s; closed as resolved",
			c.o.RestoreGrace),
		Details: map[string]any{"previousState": sv.State, "restored": true}})
}

func incidentID(now time.Time, key string, seq uint64) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", key, seq)
	return fmt.Sprintf("%s-%06x", now.UTC().Format("20060102T150405Z"), h.Sum32()&0xffffff)
}

func (inc *incident) event(now time.Time, t EventType, action string, step, attempt, maxAttempts int) Event {
	return Event{Time: now, Type: t, IncidentID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels),
		Value: inc.value, Action: action, Step: step, Attempt: attempt, MaxAttempts: maxAttempts}
}

// view is inc on /status.
func (inc *incident) view() IncidentView {
	v := IncidentView{ID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels), Annotations: maps.Clone(inc.annotations),
		State: inc.state, Step: inc.step, Attempt: inc.attemptNo, MaxAttempts: inc.maxAttempts, HeldReason: inc.heldReason,
		HeldMessage: inc.heldMsg, NextAttemptAt: inc.nextAt, Action: inc.action, Ladder: inc.ladder, Value: inc.value, Started: inc.start,
		Ended: inc.ended, FixedBy: inc.fixedBy, Round: inc.round, Attempts: append([]AttemptView{}, inc.attempts...)}
	if inc.finalized {
		v.Duration = inc.ended.Sub(inc.start).Seconds()
	}
	return v
}

// Incidents returns open incidents then recently closed ones, newest first.
func (c *Core) Incidents() []IncidentView {
	out := make([]IncidentView, 0, len(c.open)+len(c.closing)+len(c.closed))
	for _, inc := range c.open {
		out = append(out, inc.view())
	}
	for inc := range c.closing {
		out = append(out, inc.view())
	}
	for _, inc := range c.closed {
		out = append(out, inc.view())
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

// openByState counts open incidents by state.
func (c *Core) openByState() map[State]int {
	out := map[State]int{}
	for _, inc := range c.open {
		out[inc.state]++
	}
	return out
}

// savedState is what incidents.json holds: the open incidents and the
// restored ones not yet claimed.
func (c *Core) savedState() incidentFile {
	f := incidentFile{Version: incidentsVersion, Incidents: make([]savedIncident, 0, len(c.open)+len(c.restored))}
	for _, inc := range c.sortedOpen() {
		f.Incidents = append(f.Incidents, inc.saved())
	}
	for _, key := range slices.Sorted(maps.Keys(c.restored)) {
		f.Incidents = append(f.Incidents, c.restored[key])
	}
	return f
}
