package remedy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
)

// tableGuards answers the core's questions as functions of time, so a
// test states the world at chosen timestamps.
type tableGuards struct {
	paused       func(now time.Time) string // "" = not paused
	precondition func(now time.Time) (bool, error)
	budgets      *Budgets
	fleet        func(now time.Time) (bool, string, error)
	record       func(now time.Time) error
	released     int
}

func (g *tableGuards) Paused(now time.Time) (bool, string) {
	if g.paused == nil {
		return false, ""
	}
	why := g.paused(now)
	return why != "", why
}

func (g *tableGuards) Precondition(st *Step, r Requirement, now time.Time) (bool, string, error) {
	if g.precondition == nil {
		return true, "", nil
	}
	ok, err := g.precondition(now)
	return ok, "", err
}

func (g *tableGuards) Budget(st *Step, now time.Time) (bool, string) {
	ok, _, why := g.budgets.Check(st.Name, st.Budget.Max, st.Budget.Window, now)
	return ok, why
}

func (g *tableGuards) Fleet(st *Step, now time.Time) (func(), bool, string, error) {
	if g.fleet == nil {
		return func() { g.released++ }, true, "", nil
	}
	ok, msg, err := g.fleet(now)
	if !ok || err != nil {
		return nil, ok, msg, err
	}
	return func() { g.released++ }, true, "", nil
}

func (g *tableGuards) Record(st *Step, ev Event, now time.Time) (bool, error) {
	if g.record != nil {
		if err := g.record(now); err != nil {
			return false, err
		}
	}
	if st.Budget != nil {
		return false, g.budgets.Consume(st.Name, now, st.Budget.Window)
	}
	return false, nil
}

// render is a decision's effects in short: events with their attempt
// position and reason, runs, releases (saves are left out).
func render(d Decision) string {
	var out []string
	for _, ef := range d.Effects {
		switch ef.Kind {
		case EffectEmit:
			ev := ef.Event
			s := strings.TrimPrefix(strings.TrimPrefix(string(ev.Type), "Remediation"), "Incident")
			if ev.Action != "" && ev.Step > 0 {
				s += fmt.Sprintf(" %s %d/%d", ev.Action, ev.Attempt, ev.MaxAttempts)
			}
			if ev.Reason != "" {
				s += " (" + ev.Reason + ")"
			}
			out = append(out, s)
		case EffectRun:
			out = append(out, "run "+ef.Run.Step.Name)
		case EffectRelease:
			out = append(out, "release")
		}
	}
	return strings.Join(out, ", ")
}

// coreStep is one input at a chosen offset from t0 and what the core must
// decide: fire/clear (Observe with or without the alert), tick, and
// ok/fail/perm (the running attempt returned: no error, an error, a
// permanent error).
type coreStep struct {
	at   time.Duration
	do   string
	want string
	wake time.Duration // the next wake-up after the decision; -1: none
	// state, when set, is the incident's state after the decision.
	state State
}

var t0 = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)

func runCore(t *testing.T, c *Core, g *tableGuards, a Alert, steps []coreStep) {
	t.Helper()
	var run uint64
	for i, s := range steps {
		now := t0.Add(s.at)
		var d Decision
		switch s.do {
		case "fire":
			d = c.Observe(now, []Alert{a}, g)
		case "clear":
			d = c.Observe(now, nil, g)
		case "tick":
			d = c.Tick(now, g)
		case "ok", "fail", "perm":
			var err error
			switch s.do {
			case "fail":
				err = errors.New("connection refused")
			case "perm":
				err = actions.Permanent(errors.New("no such peer"))
			}
			d = c.Finish(now, AttemptResult{Run: run, Result: actions.Result{Message: "done"}, Err: err, Ran: true}, g)
		default:
			t.Fatalf("step %d: unknown input %q", i, s.do)
		}
		for _, ef := range d.Effects {
			if ef.Kind == EffectRun {
				run = ef.Run.ID
			}
			if ef.Kind == EffectRelease {
				ef.Release()
			}
		}
		if got := render(d); got != s.want {
			t.Fatalf("step %d (+%s %s): decided\n  %s\nwant\n  %s", i, s.at, s.do, got, s.want)
		}
		wantWake := time.Time{}
		if s.wake >= 0 {
			wantWake = t0.Add(s.wake)
		}
		if !d.NextWake.Equal(wantWake) {
			t.Fatalf("step %d (+%s %s): next wake %s, want %s", i, s.at, s.do, d.NextWake.Sub(t0), s.wake)
		}
		if s.state != "" {
			if v := c.Incidents(); len(v) == 0 || v[0].State != s.state {
				t.Fatalf("step %d (+%s %s): incidents %+v, want state %s", i, s.at, s.do, v, s.state)
			}
		}
	}
}

func ladderAlert(ladder ...string) Alert {
	a := alert
	a.Ladder = ladder
	return a
}

func twoSteps() map[string]*Step {
	return map[string]*Step{
		"reconnect": {Name: "reconnect", Backoff: constant(10*time.Second, 2), Verify: 5 * time.Second},
		"restart":   {Name: "restart", Backoff: constant(time.Minute, 1), Verify: 20 * time.Second},
	}
}

const none = -1

// TestCoreEscalationAndExhaustion: verify failures follow the backoff,
// spent attempts escalate, a permanent error escalates at once, and past
// the last step the incident is exhausted and nothing more is due.
func TestCoreEscalationAndExhaustion(t *testing.T) {
	c := NewCore(CoreOptions{Steps: twoSteps(), Recheck: 5 * time.Second})
	g := &tableGuards{budgets: OpenBudgets("", t0, nil)}
	runCore(t, c, g, ladderAlert("reconnect", "restart"), []coreStep{
		{0, "fire", "Opened, Started reconnect 1/2, run reconnect", none, StateRemediating},
		{time.Second, "ok", "", 6 * time.Second, StateRemediating}, // verifying until +6s
		{6 * time.Second, "tick", "Failed reconnect 1/2 (verify)", 16 * time.Second, StateRemediating},
		{10 * time.Second, "fire", "", 16 * time.Second, ""}, // still firing, nothing due
		{16 * time.Second, "tick", "Started reconnect 2/2, run reconnect", none, ""},
		{16 * time.Second, "fail", "Failed reconnect 2/2 (error), Started restart 1/1, run restart", none, ""},
		{17 * time.Second, "perm", "Failed restart 1/1 (permanent), Exhausted", none, StateExhausted},
		{time.Hour, "fire", "", none, StateExhausted},
		{time.Hour + time.Second, "clear", "Resolved", none, StateResolved},
	})
}

// TestCoreResolutionMidAttempt: an alert that resolves while the action
// runs closes the incident when the action returns (fixed by it); one that
// resolves while the action is verified closes at once.
func TestCoreResolutionMidAttempt(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		c := NewCore(CoreOptions{Steps: twoSteps()})
		runCore(t, c, &tableGuards{budgets: OpenBudgets("", t0, nil)}, ladderAlert("reconnect"), []coreStep{
			{0, "fire", "Opened, Started reconnect 1/2, run reconnect", none, ""},
			{2 * time.Second, "clear", "", none, StateRemediating}, // closing: the action still runs
			{3 * time.Second, "ok", "Succeeded reconnect 1/2, Resolved", none, StateResolved},
		})
		if v := c.Incidents()[0]; v.FixedBy != "reconnect" || v.Duration != 2 {
			t.Fatalf("incident %+v", v)
		}
	})
	t.Run("verifying", func(t *testing.T) {
		c := NewCore(CoreOptions{Steps: twoSteps()})
		runCore(t, c, &tableGuards{budgets: OpenBudgets("", t0, nil)}, ladderAlert("reconnect"), []coreStep{
			{0, "fire", "Opened, Started reconnect 1/2, run reconnect", none, ""},
			{time.Second, "ok", "", 6 * time.Second, ""},
			{4 * time.Second, "clear", "Succeeded reconnect 1/2, Resolved", none, StateResolved},
		})
	})
	t.Run("failed, then resolved during the backoff", func(t *testing.T) {
		c := NewCore(CoreOptions{Steps: twoSteps()})
		runCore(t, c, &tableGuards{budgets: OpenBudgets("", t0, nil)}, ladderAlert("reconnect", "restart"), []coreStep{
			{0, "fire", "Opened, Started reconnect 1/2, run reconnect", none, ""},
			{time.Second, "fail", "Failed reconnect 1/2 (error)", 11 * time.Second, StateRemediating},
			{5 * time.Second, "clear", "Resolved", none, StateResolved},
		})
		if v := c.Incidents()[0]; v.FixedBy != "reconnect" { // the last action that ran
			t.Fatalf("fixedBy %q", v.FixedBy)
		}
	})
}

// TestCoreGuards: each guard holds the attempt (recorded once per reason,
// re-checked every Recheck) or, for a spent budget, escalates.
func TestCoreGuards(t *testing.T) {
	between := func(from, to time.Duration) func(time.Time) bool {
		return func(now time.Time) bool { return !now.Before(t0.Add(from)) && now.Before(t0.Add(to)) }
	}
	pausedEarly := between(0, 12*time.Second)
	restart := map[string]*Step{"restart": {Name: "restart", Backoff: constant(time.Minute, 1), Verify: 20 * time.Second,
		Requires: []Requirement{{Expr: "up"}}, Fleet: &FleetLimit{Max: 1}, Budget: &Budget{Max: 1, Window: time.Hour}}}
	for _, tc := range []struct {
		name  string
		g     *tableGuards
		steps []coreStep
	}{
		{"paused", &tableGuards{paused: func(now time.Time) string {
			if pausedEarly(now) {
				return "test"
			}
			return ""
		}}, []coreStep{
			{0, "fire", "Opened, Suppressed restart 1/1 (paused)", 5 * time.Second, StateHeld},
			{5 * time.Second, "tick", "", 10 * time.Second, StateHeld},
			{10 * time.Second, "tick", "", 15 * time.Second, StateHeld},
			{15 * time.Second, "tick", "Started restart 1/1, run restart", none, StateRemediating},
		}},
		{"precondition not met, then an error", &tableGuards{precondition: func(now time.Time) (bool, error) {
			switch {
			case now.Before(t0.Add(5 * time.Second)):
				return false, nil
			case now.Before(t0.Add(10 * time.Second)):
				return false, errors.New("bad query")
			}
			return true, nil
		}}, []coreStep{
			{0, "fire", "Opened, Suppressed restart 1/1 (precondition)", 5 * time.Second, StateHeld},
			{5 * time.Second, "tick", "", 10 * time.Second, StateHeld}, // same reason: not recorded again
			{10 * time.Second, "tick", "Started restart 1/1, run restart", none, StateRemediating},
		}},
		{"fleet full, then API error, then a slot", &tableGuards{fleet: func(now time.Time) (bool, string, error) {
			switch {
			case now.Before(t0.Add(5 * time.Second)):
				return false, "1 of 1 slots held (node-b)", nil
			case now.Before(t0.Add(10 * time.Second)):
				return false, "1 of 1 slots held (node-c)", nil
			case now.Before(t0.Add(15 * time.Second)):
				return false, "", errors.New("connection refused")
			}
			return true, "", nil
		}}, []coreStep{
			{0, "fire", "Opened, Suppressed restart 1/1 (fleet)", 5 * time.Second, StateHeld},
			{5 * time.Second, "tick", "Suppressed restart 1/1 (fleet)", 10 * time.Second, StateHeld}, // new holders: recorded
			{10 * time.Second, "tick", "Suppressed restart 1/1 (fleet)", 15 * time.Second, StateHeld},
			{15 * time.Second, "tick", "Started restart 1/1, run restart", none, StateRemediating},
			{16 * time.Second, "ok", "", 36 * time.Second, ""},
			{36 * time.Second, "tick", "release, Failed restart 1/1 (verify), Exhausted", none, StateExhausted},
		}},
		{"state: the start cannot be recorded", &tableGuards{record: func(now time.Time) error {
			if now.Before(t0.Add(10 * time.Second)) {
				return errors.New("not run: no space left on device")
			}
			return nil
		}}, []coreStep{
			{0, "fire", "Opened, release, Suppressed restart 1/1 (state)", 5 * time.Second, StateHeld},
			{5 * time.Second, "tick", "release", 10 * time.Second, StateHeld}, // the fleet slot goes back each time
			{10 * time.Second, "tick", "Started restart 1/1, run restart", none, StateRemediating},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.g.budgets = OpenBudgets("", t0, nil)
			runCore(t, NewCore(CoreOptions{Steps: restart, Recheck: 5 * time.Second}), tc.g, ladderAlert("restart"), tc.steps)
		})
	}
}

// TestCoreBudgetWindowRollsOver: a spent budget escalates (here: past the
// last step, exhausted); with retryExhaustedAfter the ladder is walked
// again, and once the first run has left the window the action runs again.
func TestCoreBudgetWindowRollsOver(t *testing.T) {
	steps := map[string]*Step{"restart": {Name: "restart", Backoff: constant(time.Minute, 1), Verify: time.Minute,
		Budget: &Budget{Max: 1, Window: time.Hour}}}
	a := ladderAlert("restart")
	a.RetryExhaustedAfter = 40 * time.Minute
	g := &tableGuards{budgets: OpenBudgets("", t0, nil)}
	runCore(t, NewCore(CoreOptions{Steps: steps}), g, a, []coreStep{
		{0, "fire", "Opened, Started restart 1/1, run restart", none, ""},
		{0, "ok", "", time.Minute, ""},
		{time.Minute, "tick", "Failed restart 1/1 (verify), Exhausted", 41 * time.Minute, StateExhausted},
		// Round 2 at +41m: the run at +0 is still in the 1h window.
		{41 * time.Minute, "tick", "Retried, Suppressed restart 1/1 (budget), Exhausted", 81 * time.Minute, StateExhausted},
		// Round 3 at +81m: the window has rolled over.
		{81 * time.Minute, "tick", "Retried, Started restart 1/1, run restart", none, StateRemediating},
	})
}

// TestCoreConcurrency: a second incident of the same action waits while
// the first one's attempt runs and is verified.
func TestCoreConcurrency(t *testing.T) {
	steps := map[string]*Step{"restart": {Name: "restart", Backoff: constant(time.Minute, 1), Verify: 7 * time.Second}}
	c := NewCore(CoreOptions{Steps: steps, Recheck: 5 * time.Second})
	g := &tableGuards{budgets: OpenBudgets("", t0, nil)}
	a, b := ladderAlert("restart"), ladderAlert("restart")
	b.Key = "other"
	d := c.Observe(t0, []Alert{a, b}, g)
	if got := render(d); got != "Opened, Opened, Started restart 1/1, run restart, Suppressed restart 1/1 (concurrency)" {
		t.Fatal(got)
	}
	var run uint64
	for _, ef := range d.Effects {
		if ef.Kind == EffectRun {
			run = ef.Run.ID
		}
	}
	d = c.Finish(t0.Add(time.Second), AttemptResult{Run: run, Ran: true}, g)
	if got := render(d); got != "" || !d.NextWake.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("%q %s", got, d.NextWake)
	}
	if got := render(c.Tick(t0.Add(5*time.Second), g)); got != "" { // verified until +8s
		t.Fatal(got)
	}
	if got := render(c.Tick(t0.Add(8*time.Second), g)); got != "Failed restart 1/1 (verify), Exhausted" {
		t.Fatal(got)
	}
	if got := render(c.Tick(t0.Add(10*time.Second), g)); got != "Started restart 1/1, run restart" {
		t.Fatal(got)
	}
}

// TestCoreRestartResume: a restored remediating incident resumes at its
// step; a restored exhausted one waits for its retry round; one whose
// alert does not fire again within the grace is closed.
func TestCoreRestartResume(t *testing.T) {
	restored := map[string]savedIncident{
		"remediating": {Key: "remediating", ID: "r1", Alert: "A", Ladder: []string{"reconnect", "restart"}, Start: t0.Add(-time.Hour),
			State: StateRemediating, Step: 2, Round: 1, Attempts: []AttemptView{{Action: "reconnect", Step: 1, Attempt: 1, Result: "running"}}},
		"exhausted": {Key: "exhausted", ID: "e1", Alert: "B", Ladder: []string{"reconnect"}, Start: t0.Add(-time.Hour),
			State: StateExhausted, Step: 1, Round: 1, ExhaustedAt: t0.Add(-10 * time.Minute)},
		"gone": {Key: "gone", ID: "g1", Alert: "C", Ladder: []string{"reconnect"}, State: StateExhausted, Step: 1},
	}
	c := NewCore(CoreOptions{Steps: twoSteps(), Restored: restored, RestoreGrace: time.Minute})
	g := &tableGuards{budgets: OpenBudgets("", t0, nil)}
	rem := Alert{Key: "remediating", Rule: "A", Ladder: []string{"reconnect", "restart"}}
	exh := Alert{Key: "exhausted", Rule: "B", Ladder: []string{"reconnect"}, RetryExhaustedAfter: 30 * time.Minute}
	if got := render(c.Observe(t0, []Alert{rem, exh}, g)); got != "Opened, Opened, Started restart 1/1, run restart" {
		t.Fatal(got)
	}
	for _, v := range c.Incidents() {
		switch v.ID {
		case "r1":
			if v.Step != 2 || v.Attempts[0].Result != ResultFailed || v.Attempts[0].Reason != ReasonInterrupted {
				t.Fatalf("resumed %+v", v)
			}
		case "e1":
			if v.State != StateExhausted || !v.NextAttemptAt.Equal(t0.Add(20*time.Minute)) {
				t.Fatalf("restored exhausted %+v", v)
			}
		default:
			t.Fatalf("unexpected %+v", v)
		}
	}
	if got := render(c.Observe(t0.Add(time.Minute), []Alert{rem, exh}, g)); got != "Resolved" { // "gone": grace over
		t.Fatal(got)
	}
	if got := render(c.Tick(t0.Add(20*time.Minute), g)); got != "Retried, Started reconnect 1/2, run reconnect" {
		t.Fatal(got)
	}
}
