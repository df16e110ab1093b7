package remedy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
)

// funcAction is an Action whose behaviour the test scripts per call.
type funcAction struct {
	calls atomic.Int32
	fn    func(call int) error
}

func (a *funcAction) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	n := int(a.calls.Add(1))
	if a.fn == nil {
		return actions.Result{Message: "done"}, nil
	}
	return actions.Result{}, a.fn(n)
}

// recorder is a Sink that lets the test wait for events.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ch     chan Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan Event, 1000)} }

func (r *recorder) Record(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.ch <- ev
}

// next waits (bounded, real time) for the next event of type t, skipping others.
func (r *recorder) next(t *testing.T, typ EventType) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-r.ch:
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within 5s; got %v", typ, r.types())
		}
	}
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		s := string(e.Type)
		if e.Reason != "" {
			s += "(" + e.Reason + ")"
		}
		out = append(out, s)
	}
	return out
}

type fixture struct {
	t   *testing.T
	clk *clock.Fake
	rec *recorder
	e   *Engine
	now time.Time
}

func constant(d time.Duration, attempts int) backoff.Config {
	return backoff.Config{Policy: backoff.PolicyConstant, Initial: cfg.Duration(d), Attempts: attempts}
}

// newFixture steps a Sync engine: decisions at chosen timestamps.
func newFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	o.Sync = true
	return startFixture(t, o)
}

// newLiveFixture runs a live engine (actions in goroutines, its own timer).
func newLiveFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	o.Sync = false
	return startFixture(t, o)
}

func startFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	base := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	f := &fixture{t: t, clk: clock.NewFake(base), rec: newRecorder(), now: base}
	o.Clock = f.clk
	o.Sinks = append(o.Sinks, f.rec)
	if o.Recheck == 0 {
		o.Recheck = 5 * time.Second
	}
	f.e = New(o)
	ctx, cancel := context.WithCancel(context.Background())
	f.e.Start(ctx)
	t.Cleanup(func() { cancel(); f.e.Wait() })
	return f
}

var alert = Alert{Key: "SyncFailing{}", Rule: "SyncFailing", Labels: map[string]string{"alertname": "SyncFailing"}, Value: 0.4}

func (f *fixture) fire(ladder ...string) {
	a := alert
	a.Ladder = ladder
	f.e.Observe(f.clk.Now(), []Alert{a})
}

func (f *fixture) resolve() { f.e.Observe(f.clk.Now(), nil) }

// advance moves the clock by d and makes every decision due on the way.
func (f *fixture) advance(d time.Duration) {
	f.t.Helper()
	f.clk.Advance(d)
	f.e.Advance(f.clk.Now())
}

func (f *fixture) incident() IncidentView {
	f.t.Helper()
	inc := f.e.Incidents()
	if len(inc) != 1 {
		f.t.Fatalf("%d incidents, want 1", len(inc))
	}
	return inc[0]
}

func TestFirstAttemptFixes(t *testing.T) {
	fix := &funcAction{}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"fix": {Name: "fix", Action: fix, Backoff: constant(10*time.Second, 3), Verify: 30 * time.Second},
	}})
	f.fire("fix")
	f.rec.next(t, RemediationStarted)
	f.advance(12 * time.Second)
	f.resolve()
	ev := f.rec.next(t, RemediationSucceeded)
	if ev.Attempt != 1 || ev.Result != ResultSucceeded {
		t.Fatalf("success event %+v", ev)
	}
	res := f.rec.next(t, IncidentResolved)
	if res.Duration != 12 {
		t.Errorf("duration %v, want 12", res.Duration)
	}
	inc := f.incident()
	if inc.State != StateResolved || inc.FixedBy != "fix" || len(inc.Attempts) != 1 || inc.Attempts[0].Result != ResultSucceeded {
		t.Fatalf("incident %+v", inc)
	}
	if fix.calls.Load() != 1 {
		t.Fatalf("action ran %d times", fix.calls.Load())
	}
}

func TestStepThatDoesNotFixRetriesThenEscalates(t *testing.T) {
	weak, strong := &funcAction{}, &funcAction{}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"reconnect": {Name: "reconnect", Action: weak, Backoff: constant(10*time.Second, 2), Verify: 5 * time.Second},
		"restart":   {Name: "restart", Action: strong, Backoff: constant(time.Minute, 1), Verify: 20 * time.Second},
	}})
	f.fire("reconnect", "restart")
	f.rec.next(t, RemediationStarted)
	f.advance(5 * time.Second) // verify of attempt 1 ends: still firing
	if ev := f.rec.next(t, RemediationFailed); ev.Reason != ReasonVerify || ev.Attempt != 1 {
		t.Fatalf("attempt 1: %+v", ev)
	}
	f.advance(10 * time.Second) // backoff
	if ev := f.rec.next(t, RemediationStarted); ev.Action != "reconnect" || ev.Attempt != 2 {
		t.Fatalf("attempt 2: %+v", ev)
	}
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationFailed)
	// Attempts spent: escalate at once to restart.
	if ev := f.rec.next(t, RemediationStarted); ev.Action != "restart" || ev.Step != 2 || ev.Attempt != 1 {
		t.Fatalf("escalation: %+v", ev)
	}
	f.resolve()
	f.rec.next(t, RemediationSucceeded)
	f.rec.next(t, IncidentResolved)
	inc := f.incident()
	if inc.FixedBy != "restart" || inc.Step != 2 || len(inc.Attempts) != 3 {
		t.Fatalf("incident %+v", inc)
	}
	if weak.calls.Load() != 2 || strong.calls.Load() != 1 {
		t.Fatalf("calls: reconnect %d restart %d", weak.calls.Load(), strong.calls.Load())
	}
}

func TestPermanentErrorSkipsRemainingAttempts(t *testing.T) {
	broken := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("no such peer")) }}
	next := &funcAction{}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"broken": {Name: "broken", Action: broken, Backoff: constant(time.Second, 5), Verify: time.Second},
		"next":   {Name: "next", Action: next, Backoff: constant(time.Second, 1), Verify: time.Second},
	}})
	f.fire("broken", "next")
	if ev := f.rec.next(t, RemediationFailed); ev.Reason != ReasonPermanent {
		t.Fatalf("want permanent failure, got %+v", ev)
	}
	if ev := f.rec.next(t, RemediationStarted); ev.Action != "next" {
		t.Fatalf("want escalation to next, got %+v", ev)
	}
	if broken.calls.Load() != 1 {
		t.Fatalf("permanent error retried: %d calls", broken.calls.Load())
	}
}

func TestRetryableErrorFollowsBackoffThenExhausts(t *testing.T) {
	flaky := &funcAction{fn: func(int) error { return errors.New("connection refused") }}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"flaky": {Name: "flaky", Action: flaky, Backoff: backoff.Config{Policy: backoff.PolicyExponential,
			Initial: cfg.Duration(time.Second), Max: cfg.Duration(time.Minute), Attempts: 3}, Verify: time.Minute},
	}})
	f.fire("flaky")
	f.rec.next(t, RemediationFailed)
	f.advance(time.Second) // exponential: 1s, then 2s
	f.rec.next(t, RemediationFailed)
	f.advance(2 * time.Second)
	f.rec.next(t, RemediationFailed)
	ex := f.rec.next(t, IncidentExhausted)
	if ex.IncidentID == "" {
		t.Fatal("no incident id")
	}
	if flaky.calls.Load() != 3 {
		t.Fatalf("calls %d, want 3", flaky.calls.Load())
	}
	if inc := f.incident(); inc.State != StateExhausted {
		t.Fatalf("state %s", inc.State)
	}
	// Exhausted: nothing more runs while it keeps firing.
	f.fire("flaky")
	f.advance(time.Hour)
	f.resolve()
	res := f.rec.next(t, IncidentResolved)
	if res.Details["previousState"] != StateExhausted {
		t.Fatalf("resolved event %+v", res)
	}
	if flaky.calls.Load() != 3 {
		t.Fatalf("acted on an exhausted incident: %d calls", flaky.calls.Load())
	}
}

func TestDryRunRecordsButDoesNotAct(t *testing.T) {
	act := &funcAction{}
	f := newFixture(t, Options{DryRun: true, Steps: map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 2), Verify: 10 * time.Second},
	}})
	f.fire("restart")
	if ev := f.rec.next(t, RemediationStarted); !ev.DryRun {
		t.Fatalf("started event not marked dry run: %+v", ev)
	}
	f.advance(10 * time.Second)
	if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonDryRun {
		t.Fatalf("want dryRun suppression, got %+v", ev)
	}
	f.advance(time.Second)
	f.rec.next(t, RemediationStarted)
	f.advance(10 * time.Second)
	f.rec.next(t, RemediationSuppressed)
	f.rec.next(t, IncidentExhausted)
	if act.calls.Load() != 0 {
		t.Fatalf("dry run acted %d times", act.calls.Load())
	}
}

type flagPauser struct{ on atomic.Bool }

func (p *flagPauser) Paused() (bool, string) { return p.on.Load(), "test" }

func TestPausedWaitsWithoutSpendingAttempts(t *testing.T) {
	act := &funcAction{}
	p := &flagPauser{}
	p.on.Store(true)
	f := newFixture(t, Options{Pausers: []Pauser{p}, Steps: map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	}})
	f.fire("restart")
	if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonPaused {
		t.Fatalf("want paused, got %+v", ev)
	}
	for range 3 { // several rechecks: suppression recorded once, nothing runs
		f.advance(5 * time.Second)
	}
	if act.calls.Load() != 0 {
		t.Fatal("ran while paused")
	}
	p.on.Store(false)
	f.advance(5 * time.Second)
	if ev := f.rec.next(t, RemediationStarted); ev.Attempt != 1 {
		t.Fatalf("after unpause: %+v", ev)
	}
	if got := f.rec.types(); countOf(got, "RemediationSuppressed(paused)") != 1 {
		t.Fatalf("paused suppression recorded %d times: %v", countOf(got, "RemediationSuppressed(paused)"), got)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func TestPreconditionHoldsTheLadder(t *testing.T) {
	act := &funcAction{}
	var reachable atomic.Bool
	f := newFixture(t, Options{
		Precondition: func(ctx context.Context, r Requirement, now time.Time) (bool, string, error) {
			return reachable.Load(), "", nil
		},
		Steps: map[string]*Step{
			"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second,
				Requires: []Requirement{{Expr: `medic_probe_up{probe="spire-server"} == 1`}}},
		}})
	f.fire("restart")
	if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonPrecondition {
		t.Fatalf("want precondition, got %+v", ev)
	}
	for range 5 {
		f.advance(5 * time.Second)
	}
	if act.calls.Load() != 0 {
		t.Fatal("restart ran while the server was unreachable")
	}
	if inc := f.incident(); inc.State != StateHeld || inc.HeldReason != ReasonPrecondition {
		t.Fatalf("ladder did not wait (held on the precondition): %s %q", inc.State, inc.HeldReason)
	}
	reachable.Store(true)
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
	if act.calls.Load() != 1 {
		t.Fatalf("calls %d", act.calls.Load())
	}
}

// requirementsFixture runs a one-step ladder whose requirements are
// answered by answer (by expression), for the requirement tests.
func requirementsFixture(t *testing.T, reqs []Requirement, answer func(r Requirement) (bool, string, error)) (*fixture, *funcAction) {
	t.Helper()
	act := &funcAction{}
	f := newFixture(t, Options{
		Precondition: func(ctx context.Context, r Requirement, now time.Time) (bool, string, error) { return answer(r) },
		Steps: map[string]*Step{
			"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second, Requires: reqs},
		}})
	return f, act
}

func TestRequirementErrorHoldsByDefault(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	f, act := requirementsFixture(t, []Requirement{{Expr: "up", Source: "fleet"}}, func(r Requirement) (bool, string, error) {
		if broken.Load() {
			return false, "", errors.New("connection refused")
		}
		return true, "", nil
	})
	f.fire("restart")
	ev := f.rec.next(t, RemediationSuppressed)
	if ev.Reason != ReasonPrecondition || !strings.Contains(ev.Message, "could not be evaluated: connection refused") ||
		!strings.Contains(ev.Message, "source fleet") {
		t.Fatalf("want a precondition hold saying it could not be evaluated, got %+v", ev)
	}
	f.advance(5 * time.Second)
	f.advance(5 * time.Second)
	if act.calls.Load() != 0 {
		t.Fatal("restart ran while its requirement could not be evaluated (onError: hold)")
	}
	if inc := f.incident(); inc.State != StateHeld || inc.HeldReason != ReasonPrecondition {
		t.Fatalf("not held: %s %q", inc.State, inc.HeldReason)
	}
	broken.Store(false)
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
}

func TestRequirementErrorProceeds(t *testing.T) {
	f, act := requirementsFixture(t, []Requirement{{Expr: "up", Source: "fleet", OnError: OnErrorProceed}},
		func(r Requirement) (bool, string, error) { return false, "", errors.New("timeout") })
	f.fire("restart")
	f.rec.next(t, RemediationStarted)
	if act.calls.Load() != 1 {
		t.Fatalf("calls %d, want 1 (onError: proceed)", act.calls.Load())
	}
	if got := f.rec.types(); countOf(got, "RemediationSuppressed(precondition)") != 0 {
		t.Fatalf("suppressed although onError is proceed: %v", got)
	}
}

// The fleet-outage detail comes before the expression in the message, so
// that a long expression cannot push it past the Event note's 1 KiB.
func TestFleetOutageDetailBeforeALongExpression(t *testing.T) {
	expr := "share < 0.3 or " + strings.Repeat(`count(medic_alerts{alert="SPIREAgentNotSyncing"}) > 0 or `, 40) + "vector(0)"
	f, _ := requirementsFixture(t, []Requirement{{Expr: expr, Source: "fleet", Reason: ReasonFleetOutage}},
		func(r Requirement) (bool, string, error) { return false, "31 of 50 = 0.62, needs < 0.3", nil })
	f.fire("restart")
	ev := f.rec.next(t, RemediationSuppressed)
	want := "precondition not met: 31 of 50 = 0.62, needs < 0.3; waiting (precondition "
	if ev.Reason != ReasonFleetOutage || !strings.HasPrefix(ev.Message, want) || !strings.Contains(ev.Message, fmt.Sprintf("%q", expr)) {
		t.Fatalf("message %.200q…, want it to start %q and name the expression", ev.Message, want)
	}
}

func TestFleetOutageRequirement(t *testing.T) {
	var share atomic.Int64
	share.Store(31)
	reqs := []Requirement{
		{Expr: `medic_probe_up{probe="spire-server"} == 1`},
		{Expr: `share < 0.3`, Source: "fleet", Reason: ReasonFleetOutage},
	}
	f, act := requirementsFixture(t, reqs, func(r Requirement) (bool, string, error) {
		if r.Source == "" {
			return true, "", nil
		}
		n := share.Load()
		return n < 15, fmt.Sprintf("%d of 50 peers fire SPIREAgentNotSyncing", n), nil
	})
	f.fire("restart")
	ev := f.rec.next(t, RemediationSuppressed)
	if ev.Reason != ReasonFleetOutage || !strings.Contains(ev.Message, "not met: 31 of 50 peers fire SPIREAgentNotSyncing") {
		t.Fatalf("want a fleet-outage hold with the detail, got %+v", ev)
	}
	share.Store(40) // a new count is not recorded again: one record per reason
	f.advance(5 * time.Second)
	f.advance(5 * time.Second)
	if act.calls.Load() != 0 {
		t.Fatal("restart ran during a fleet outage")
	}
	if got := f.rec.types(); countOf(got, "RemediationSuppressed(fleet-outage)") != 1 {
		t.Fatalf("fleet-outage recorded %d times: %v", countOf(got, "RemediationSuppressed(fleet-outage)"), got)
	}
	inc := f.incident()
	if inc.State != StateHeld || inc.HeldReason != ReasonFleetOutage || !strings.Contains(inc.HeldMessage, "40 of 50") {
		t.Fatalf("not held on fleet-outage with the current count: %s %q %q", inc.State, inc.HeldReason, inc.HeldMessage)
	}
	share.Store(2)
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
}

func TestEveryRequirementMustHold(t *testing.T) {
	var local atomic.Bool
	f, act := requirementsFixture(t, []Requirement{{Expr: "a"}, {Expr: "b", Source: "fleet"}},
		func(r Requirement) (bool, string, error) {
			if r.Expr == "a" {
				return local.Load(), "", nil
			}
			return true, "", nil
		})
	f.fire("restart")
	if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonPrecondition || !strings.Contains(ev.Message, `"a"`) {
		t.Fatalf("want the first requirement to hold it, got %+v", ev)
	}
	f.advance(5 * time.Second)
	if act.calls.Load() != 0 {
		t.Fatal("ran while one of two requirements was unmet")
	}
	local.Store(true)
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
}

func TestBudgetIsPersistedAndStopsTheFourthRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budgets.json")
	run := func(wantRun bool, advance time.Duration) {
		t.Helper()
		b, err := LoadBudgets(path)
		if err != nil {
			t.Fatal(err)
		}
		act := &funcAction{}
		f := newFixture(t, Options{Budgets: b, Steps: map[string]*Step{
			"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second,
				Budget: &Budget{Max: 3, Window: time.Hour}},
		}})
		f.clk.Set(f.now.Add(advance))
		f.fire("restart")
		if wantRun {
			f.rec.next(t, RemediationStarted)
			f.advance(10 * time.Second) // verify ends, still firing
		} else if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonBudget {
			t.Fatalf("want budget suppression, got %+v", ev)
		}
		f.rec.next(t, IncidentExhausted)
		if got := act.calls.Load() == 1; got != wantRun {
			t.Fatalf("ran=%v want %v", got, wantRun)
		}
	}
	// Each run is a fresh engine loading the same file: a restarted medic.
	run(true, 0)
	run(true, time.Minute)
	run(true, 2*time.Minute)
	run(false, 3*time.Minute)
	run(true, 61*time.Minute) // the first run left the window
}

// TestOneRemediationPerActionAtATime: while an action runs for one
// incident (live: in its goroutine, blocked here), another incident's
// attempt of the same action waits (concurrency) and runs once the first
// attempt has ended, verification included.
func TestOneRemediationPerActionAtATime(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 2)
	defer close(release)
	slow := &funcAction{}
	slow.fn = func(int) error { started <- struct{}{}; <-release; return nil }
	f := newLiveFixture(t, Options{Steps: map[string]*Step{
		"restart": {Name: "restart", Action: slow, Backoff: constant(time.Second, 1), Verify: time.Second},
	}})
	a, b := alert, alert
	a.Ladder, b.Ladder = []string{"restart"}, []string{"restart"}
	b.Key, b.Labels = "SyncFailing{host=b}", map[string]string{"alertname": "SyncFailing", "host": "b"}
	// One decision for both: a starts (its action blocks), b waits.
	f.e.Observe(f.clk.Now(), []Alert{a, b})
	<-started
	f.rec.next(t, RemediationSuppressed)
	if got := f.rec.types(); fmt.Sprint(got) != "[IncidentOpened IncidentOpened RemediationStarted RemediationSuppressed(concurrency)]" {
		t.Fatalf("events %v", got)
	}
	if slow.calls.Load() != 1 {
		t.Fatalf("both incidents ran restart at once")
	}
	// The snapshot is published right after the decision (live).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		inc := f.e.Incidents()
		if len(inc) == 2 && inc[0].State != inc[1].State {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incidents %+v: want one remediating, one held", inc)
		}
	}
}

// TestConcurrencySlotHeldThroughVerify (at chosen timestamps): the slot
// is held while the action is verified and given back when the attempt
// ends; the waiting incident runs at its next re-check.
func TestConcurrencySlotHeldThroughVerify(t *testing.T) {
	act := &funcAction{}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 7 * time.Second},
	}})
	a, b := alert, alert
	a.Ladder, b.Ladder = []string{"restart"}, []string{"restart"}
	b.Key, b.Labels = "SyncFailing{host=b}", map[string]string{"alertname": "SyncFailing", "host": "b"}
	both := []Alert{a, b}
	steps := []struct {
		at   time.Duration
		want string // events since the previous step
	}{
		{0, "[IncidentOpened IncidentOpened RemediationStarted RemediationSuppressed(concurrency)]"},
		{5 * time.Second, "[]"}, // b re-checks: a is verified, still waiting
		{7 * time.Second, "[RemediationFailed(verify) IncidentExhausted]"}, // a's verify ends: slot free
		{10 * time.Second, "[RemediationStarted]"},                         // b's next re-check runs it
	}
	seen := 0
	for _, s := range steps {
		f.clk.Set(f.now.Add(s.at))
		f.e.Advance(f.clk.Now())
		f.e.Observe(f.clk.Now(), both)
		got := f.rec.types()
		if fmt.Sprint(got[seen:]) != s.want {
			t.Fatalf("at +%s: events %v, want %s", s.at, got[seen:], s.want)
		}
		seen = len(got)
	}
	if act.calls.Load() != 2 {
		t.Fatalf("calls %d", act.calls.Load())
	}
}

// TestExhaustedLadderIsWalkedAgainAfterRetryExhaustedAfter: with
// retryExhaustedAfter an exhausted incident that still fires gets the whole
// ladder again (round 2), and a fix in round 2 resolves it; without it
// (TestRetryableErrorFollowsBackoffThenExhausts) nothing more runs.
func TestExhaustedLadderIsWalkedAgainAfterRetryExhaustedAfter(t *testing.T) {
	first := &funcAction{fn: func(int) error { return errors.New("still broken") }}
	second := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("cannot")) }}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"first":  {Name: "first", Action: first, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
		"second": {Name: "second", Action: second, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	}})
	a := alert
	a.Ladder, a.RetryExhaustedAfter = []string{"first", "second"}, 30*time.Minute
	f.e.Observe(f.clk.Now(), []Alert{a})
	f.rec.next(t, RemediationFailed) // first: error, no verify wait
	f.rec.next(t, RemediationFailed) // second: permanent
	ex := f.rec.next(t, IncidentExhausted)
	if !strings.Contains(ex.Message, "walking it again in 30m0s") {
		t.Fatalf("exhausted message %q", ex.Message)
	}
	if inc := f.incident(); inc.State != StateExhausted || inc.Round != 1 {
		t.Fatalf("state %s round %d", inc.State, inc.Round)
	}

	// Still firing during the cool-down: nothing runs.
	f.advance(29 * time.Minute)
	f.e.Observe(f.clk.Now(), []Alert{a})
	if n := first.calls.Load() + second.calls.Load(); n != 2 {
		t.Fatalf("%d runs during the cool-down, want 2 (round 1 only)", n)
	}

	// The cool-down passes: round 2 from step 1.
	f.advance(time.Minute)
	rt := f.rec.next(t, IncidentRetried)
	if rt.Details["round"] != 2 {
		t.Fatalf("retried event %+v", rt)
	}
	f.rec.next(t, RemediationFailed)
	f.rec.next(t, RemediationFailed)
	f.rec.next(t, IncidentExhausted)
	if first.calls.Load() != 2 || second.calls.Load() != 2 {
		t.Fatalf("round 2 calls: first %d second %d", first.calls.Load(), second.calls.Load())
	}

	// Round 3 fixes it: first succeeds and the alert resolves while verifying.
	first.fn = nil
	f.advance(30 * time.Minute)
	f.rec.next(t, IncidentRetried)
	f.rec.next(t, RemediationStarted)
	f.advance(time.Second) // into verify
	f.resolve()
	res := f.rec.next(t, IncidentResolved)
	if res.Action != "first" {
		t.Fatalf("resolved event %+v", res)
	}
	if inc := f.incident(); inc.State != StateResolved || inc.Round != 3 || inc.FixedBy != "first" {
		t.Fatalf("incident %+v", inc)
	}
}

// TestResolvedDuringCooldown: an exhausted incident whose alert resolves
// during the cool-down is closed without another round.
func TestResolvedDuringCooldown(t *testing.T) {
	act := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("no")) }}
	f := newFixture(t, Options{Steps: map[string]*Step{
		"only": {Name: "only", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	}})
	a := alert
	a.Ladder, a.RetryExhaustedAfter = []string{"only"}, 10*time.Minute
	f.e.Observe(f.clk.Now(), []Alert{a})
	f.rec.next(t, IncidentExhausted)
	f.advance(5 * time.Minute)
	f.resolve()
	if ev := f.rec.next(t, IncidentResolved); ev.Details["previousState"] != StateExhausted {
		t.Fatalf("resolved %+v", ev)
	}
	f.advance(time.Hour)
	if act.calls.Load() != 1 {
		t.Fatalf("%d runs, want 1", act.calls.Load())
	}
	for _, typ := range f.rec.types() {
		if typ == string(IncidentRetried) {
			t.Fatal("retried after the alert resolved")
		}
	}
}

// slotFleet is a test double of the Fleet interface (the Lease-backed one
// is tested against a real API server in supervisor/kube): free slots are
// a counter, every call is recorded.
type slotFleet struct {
	mu       sync.Mutex
	free     int
	err      error
	calls    []bool // dryRun of each Acquire
	released int
}

func (s *slotFleet) Acquire(_ context.Context, action string, l FleetLimit, _ time.Time, dryRun bool) (func(), bool, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, dryRun)
	if s.err != nil {
		return nil, false, "", s.err
	}
	if s.free == 0 {
		return nil, false, fmt.Sprintf("fleet limit: %d of %d %q slots held (node-b)", l.Max, l.Max, action), nil
	}
	if dryRun {
		return func() {}, true, "", nil
	}
	s.free--
	return func() { s.mu.Lock(); s.free++; s.released++; s.mu.Unlock() }, true, "", nil
}

func (s *slotFleet) set(free int, err error) { s.mu.Lock(); s.free, s.err = free, err; s.mu.Unlock() }

func TestFleetLimitWaitsForASlotAndHoldsItThroughVerify(t *testing.T) {
	act := &funcAction{}
	fl := &slotFleet{}
	f := newFixture(t, Options{Fleet: fl, Steps: map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second,
			Fleet: &FleetLimit{Max: 2}},
	}})
	f.fire("restart")
	ev := f.rec.next(t, RemediationSuppressed)
	if ev.Reason != ReasonFleet || !strings.Contains(ev.Message, "2 of 2") {
		t.Fatalf("want a fleet suppression naming the holders, got %+v", ev)
	}
	for range 3 {
		f.advance(5 * time.Second)
	}
	if act.calls.Load() != 0 {
		t.Fatal("ran without a fleet slot")
	}
	fl.set(1, nil)
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
	fl.mu.Lock()
	free, released := fl.free, fl.released
	fl.mu.Unlock()
	if free != 0 || released != 0 {
		t.Fatalf("slot not held during verify: free %d released %d", free, released)
	}
	f.resolve()
	f.rec.next(t, IncidentResolved)
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.released != 1 || fl.free != 1 {
		t.Fatalf("slot not given back: released %d free %d", fl.released, fl.free)
	}
}

func TestFleetAPIErrorWaitsOrProceeds(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		act := &funcAction{}
		fl := &slotFleet{err: errors.New("connection refused")}
		f := newFixture(t, Options{Fleet: fl, Steps: map[string]*Step{
			"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second,
				Fleet: &FleetLimit{Max: 1}, FleetFailOpen: failOpen},
		}})
		f.fire("restart")
		if failOpen {
			f.rec.next(t, RemediationStarted)
			continue
		}
		if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonFleet || !strings.Contains(ev.Message, "could not be checked") {
			t.Fatalf("want a fleet suppression, got %+v", ev)
		}
		f.advance(5 * time.Second)
		if act.calls.Load() != 0 {
			t.Fatal("ran although the fleet could not be asked")
		}
	}
}

func TestFleetInDryRunOnlyLooks(t *testing.T) {
	fl := &slotFleet{free: 1}
	f := newFixture(t, Options{DryRun: true, Fleet: fl, Steps: map[string]*Step{
		"restart": {Name: "restart", Action: &funcAction{}, Backoff: constant(time.Second, 1), Verify: 10 * time.Second,
			Fleet: &FleetLimit{Max: 1}},
	}})
	f.fire("restart")
	f.rec.next(t, RemediationStarted)
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if len(fl.calls) != 1 || !fl.calls[0] || fl.free != 1 {
		t.Fatalf("dry run took a slot: calls %v free %d", fl.calls, fl.free)
	}
}

// A spent budget escalates before a fleet slot is taken (a slot with a
// hold would otherwise be wasted fleet-wide on a run that never happens).
func TestBudgetCheckedBeforeFleet(t *testing.T) {
	fl := &slotFleet{free: 1}
	b, _ := LoadBudgets("")
	now := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	_ = b.Consume("restart", now, time.Hour)
	f := newFixture(t, Options{Budgets: b, Fleet: fl, Steps: map[string]*Step{
		"restart": {Name: "restart", Action: &funcAction{}, Backoff: constant(time.Second, 1), Verify: 10 * time.Second,
			Budget: &Budget{Max: 1, Window: time.Hour}, Fleet: &FleetLimit{Max: 1}},
	}})
	f.fire("restart")
	if ev := f.rec.next(t, RemediationSuppressed); ev.Reason != ReasonBudget {
		t.Fatalf("want budget, got %+v", ev)
	}
	f.rec.next(t, IncidentExhausted)
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if len(fl.calls) != 0 {
		t.Fatalf("fleet asked %d times for a step whose budget is spent", len(fl.calls))
	}
}
