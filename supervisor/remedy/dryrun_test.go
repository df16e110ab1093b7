package remedy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A scenario is a recorded input: per 5 s slot, which alerts fire and
// what every guard answers (pause, precondition, fleet, whether the audit
// log takes a write). Guards asked between slots answer from the slot the
// time falls in.
type scenario struct {
	slots []slot
}

type slot struct {
	fireA, fireB bool
	paused       bool
	precondition int // 0 met, 1 not met, 2 error
	fleet        int // 0 free, 1 full, 2 API error
	journalFails bool
	actionSlow   bool // the action reports output (live only sees it)
}

const slotLen = 5 * time.Second

// decode turns fuzz bytes into a scenario: one byte per slot.
func decode(data []byte) scenario {
	var sc scenario
	for _, b := range data {
		sc.slots = append(sc.slots, slot{fireA: b&1 != 0 || b&0xc0 == 0xc0, fireB: b&2 != 0, paused: b&0x1c == 0x1c,
			precondition: int(b>>2) % 5 % 3, fleet: int(b>>4) % 7 % 3, journalFails: b&0x60 == 0x60, actionSlow: b&0x80 != 0})
	}
	return sc
}

func (sc scenario) at(now time.Time) slot {
	i := int(now.Sub(t0) / slotLen)
	if i < 0 || i >= len(sc.slots) {
		return slot{}
	}
	return sc.slots[i]
}

type scriptPauser struct{ sc scenario }

func (p scriptPauser) Paused() (bool, string) { return false, "" }
func (p scriptPauser) PausedAt(now time.Time) (bool, string) {
	return p.sc.at(now).paused, "recorded pause"
}

type scriptFleet struct{ sc scenario }

func (f scriptFleet) Acquire(_ context.Context, action string, l FleetLimit, now time.Time, _ bool) (func(), bool, string, error) {
	switch f.sc.at(now).fleet {
	case 1:
		return nil, false, fmt.Sprintf("%d of %d %q slots held (node-b)", l.Max, l.Max, action), nil
	case 2:
		return nil, false, "", errors.New("connection refused")
	}
	return func() {}, true, "", nil
}

type scriptJournal struct {
	sc  scenario
	all []Event
}

func (j *scriptJournal) Append(ev Event) error {
	if j.sc.at(ev.Time).journalFails {
		return errors.New("read-only file system")
	}
	j.all = append(j.all, ev)
	return nil
}

// decisions runs sc through an engine (live or dry run: the only
// difference) and returns its decision sequence: every event, reduced to
// what was decided. A dry run's "would have run" end record is the same
// decision as live's verified end: fixed or not.
func decisions(t *testing.T, sc scenario, dryRun bool) []string {
	t.Helper()
	steps := map[string]*Step{
		"reconnect": {Name: "reconnect", Kind: "reconnect", Action: &funcAction{}, Backoff: constant(10*time.Second, 2),
			Verify: 5 * time.Second, Requires: []Requirement{{Expr: "server_up"}}, Budget: &Budget{Max: 3, Window: 10 * time.Minute}},
		"restart": {Name: "restart", Kind: "restart", Action: &outputAction{out: "restarted"}, Backoff: constant(15*time.Second, 2),
			Verify: 20 * time.Second, Budget: &Budget{Max: 2, Window: 30 * time.Minute}, Fleet: &FleetLimit{Max: 1}},
	}
	rec := newRecorder()
	e := New(Options{Steps: steps, DryRun: dryRun, Sync: true, Recheck: 5 * time.Second, Sinks: []Sink{rec},
		Budgets: OpenBudgets("", t0, nil), Pausers: []Pauser{scriptPauser{sc}}, Fleet: scriptFleet{sc},
		Journal: &scriptJournal{sc: sc},
		Precondition: func(_ context.Context, r Requirement, now time.Time) (bool, string, error) {
			switch sc.at(now).precondition {
			case 1:
				return false, "server down", nil
			case 2:
				return false, "", errors.New("query failed")
			}
			return true, "", nil
		},
		Clock: nil})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.Start(ctx)
	a := Alert{Key: "A", Rule: "AgentNotSyncing", Ladder: []string{"reconnect", "restart"}, RetryExhaustedAfter: 2 * time.Minute}
	b := Alert{Key: "B", Rule: "AgentNotLive", Ladder: []string{"restart"}}
	for i, s := range sc.slots {
		now := t0.Add(time.Duration(i) * slotLen)
		e.Advance(now)
		var firing []Alert
		if s.fireA {
			firing = append(firing, a)
		}
		if s.fireB {
			firing = append(firing, b)
		}
		e.Observe(now, firing)
	}
	cancel()
	e.Wait()
	var out []string
	for _, ev := range rec.events {
		kind, reason, action := string(ev.Type), ev.Reason, ev.Action
		switch {
		case ev.Type == IncidentResolved:
			// Live names the last action that ran as the fix; in a dry run
			// none ran. A label, not a decision.
			action = ""
		case ev.Type == RemediationSuppressed && ev.Reason == ReasonDryRun:
			kind, reason = "end", fmt.Sprint("fixed=", ev.Details["alertResolved"])
		case ev.Type == RemediationSucceeded:
			kind, reason = "end", "fixed=true"
		case ev.Type == RemediationFailed && ev.Reason == ReasonVerify:
			kind, reason = "end", "fixed=false"
		}
		out = append(out, fmt.Sprintf("%s %s %s %s %d/%d %s", ev.Time.Sub(t0), ev.Alert, kind, action, ev.Attempt, ev.MaxAttempts, reason))
	}
	var final []string
	for _, v := range e.Incidents() {
		final = append(final, fmt.Sprintf("final %s %s step %d round %d attempts %d", v.Alert, v.State, v.Step, v.Round, len(v.Attempts)))
	}
	slices.Sort(final) // incidents opened at the same time come in any order
	return append(out, final...)
}

// checkDryRunEqualsLive fails when dry run and live decide differently on sc.
func checkDryRunEqualsLive(t *testing.T, sc scenario) {
	t.Helper()
	live, dry := decisions(t, sc, false), decisions(t, sc, true)
	n := max(len(live), len(dry))
	for i := range n {
		var l, d string
		if i < len(live) {
			l = live[i]
		}
		if i < len(dry) {
			d = dry[i]
		}
		if l != d {
			lo := max(0, i-3)
			t.Fatalf("dry run and live decide differently at decision %d:\nlive: %s\ndry:  %s\nbefore:\n  %s",
				i, l, d, strings.Join(live[lo:i], "\n  "))
		}
	}
}

// TestDryRunEqualsLive: on 300 random recorded inputs (firing sequences,
// pause, precondition, fleet and audit-log answers over 10 minutes), a dry
// run makes exactly the decisions live makes; only the side effects (the
// action runs, budgets.json, fleet Leases) differ.
func TestDryRunEqualsLive(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 5))
	for n := range 300 {
		data := make([]byte, 120)
		// Runs of the same alert state, as real alerts have.
		fire := byte(3)
		for i := range data {
			if r.IntN(8) == 0 {
				fire = byte(r.IntN(4))
			}
			data[i] = byte(r.IntN(256))&^3 | fire
		}
		sc := decode(data)
		t.Run(fmt.Sprint(n), func(t *testing.T) { checkDryRunEqualsLive(t, sc) })
	}
}

// FuzzDryRunEqualsLive is TestDryRunEqualsLive with the fuzzer choosing
// the recorded input (one byte per 5 s slot).
func FuzzDryRunEqualsLive(f *testing.F) {
	f.Add([]byte{3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0})
	f.Add([]byte{0x1f, 0x1f, 3, 3, 0x63, 0x63, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0})
	f.Add([]byte(strings.Repeat("\x07\x13\x23\x33\x03", 40)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 400 {
			data = data[:400]
		}
		checkDryRunEqualsLive(t, decode(data))
	})
}
