package remedy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
)

// restartable runs engines one after another on the same state file and
// fake clock, as successive medic processes would.
type restartable struct {
	t      *testing.T
	path   string
	clk    *clock.Fake
	steps  map[string]*Step
	grace  time.Duration
	cancel context.CancelFunc
	e      *Engine
	rec    *recorder
}

func newRestartable(t *testing.T, steps map[string]*Step) *restartable {
	r := &restartable{t: t, path: filepath.Join(t.TempDir(), "incidents.json"), steps: steps, grace: time.Minute,
		clk: clock.NewFake(time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC))}
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.rec = newRecorder()
	r.e = New(Options{Steps: r.steps, Clock: r.clk, Sinks: []Sink{r.rec}, Recheck: 5 * time.Second,
		StatePath: r.path, RestoreGrace: r.grace, Sync: true})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.e.Start(ctx)
}

// stop ends the engine as a SIGTERM would: ladders stop where they are.
func (r *restartable) stop() {
	if r.cancel != nil {
		r.cancel()
		r.e.Wait()
		r.cancel = nil
	}
}

// advance moves the clock by d and makes every decision due on the way.
func (r *restartable) advance(d time.Duration) {
	r.clk.Advance(d)
	r.e.Advance(r.clk.Now())
}

func (r *restartable) observe(a *Alert) {
	if a == nil {
		r.e.Observe(r.clk.Now(), nil)
		return
	}
	r.e.Observe(r.clk.Now(), []Alert{*a})
}

func (r *restartable) saved() []savedIncident {
	r.t.Helper()
	b, err := os.ReadFile(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	var f incidentFile
	if err := json.Unmarshal(b, &f); err != nil {
		r.t.Fatal(err)
	}
	return f.Incidents
}

func TestExhaustedIncidentStaysExhaustedAcrossARestart(t *testing.T) {
	act := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("cannot")) }}
	r := newRestartable(t, map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	})
	a := alert
	a.Ladder = []string{"restart"}
	r.start()
	r.observe(&a)
	r.rec.next(t, IncidentExhausted)
	first := r.e.Incidents()[0]
	r.stop()
	if s := r.saved(); len(s) != 1 || s[0].State != StateExhausted || s[0].ID != first.ID || s[0].ExhaustedAt.IsZero() {
		t.Fatalf("persisted %+v", s)
	}

	// A new medic: the alert fires again after its `for`; the incident
	// comes back exhausted, with its id and history, and nothing runs.
	r.advance(30 * time.Second)
	r.start()
	r.observe(&a)
	ev := r.rec.next(t, IncidentOpened)
	if ev.IncidentID != first.ID || ev.Details["restored"] != true || !strings.Contains(ev.Message, "restored after medic restarted: exhausted") {
		t.Fatalf("restore event %+v", ev)
	}
	r.advance(time.Hour)
	r.observe(&a)
	if n := act.calls.Load(); n != 1 {
		t.Fatalf("an exhausted incident was acted on again after the restart: %d calls", n)
	}
	inc := r.e.Incidents()[0]
	if inc.State != StateExhausted || inc.ID != first.ID || len(inc.Attempts) != len(first.Attempts) || !inc.Started.Equal(first.Started) {
		t.Fatalf("restored incident %+v", inc)
	}

	// It resolves: closed, and gone from the state file.
	r.observe(nil)
	if ev := r.rec.next(t, IncidentResolved); ev.Details["previousState"] != StateExhausted {
		t.Fatalf("resolved %+v", ev)
	}
	if s := r.saved(); len(s) != 0 {
		t.Fatalf("resolved incident still persisted: %+v", s)
	}
}

func TestRemediatingIncidentResumesAtItsStep(t *testing.T) {
	first := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("no")) }}
	second := &funcAction{fn: func(int) error { return errors.New("still broken") }}
	r := newRestartable(t, map[string]*Step{
		"first":  {Name: "first", Action: first, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
		"second": {Name: "second", Action: second, Backoff: constant(time.Minute, 3), Verify: 10 * time.Second},
	})
	a := alert
	a.Ladder = []string{"first", "second"}
	r.start()
	r.observe(&a)
	r.rec.next(t, RemediationFailed) // first: permanent
	r.rec.next(t, RemediationFailed) // second, attempt 1
	r.stop()                         // medic stops while step 2 backs off
	if s := r.saved(); len(s) != 1 || s[0].Step != 2 || s[0].State != StateRemediating {
		t.Fatalf("persisted %+v", s)
	}

	r.start()
	r.observe(&a)
	if ev := r.rec.next(t, IncidentOpened); !strings.Contains(ev.Message, "remediating at step 2") {
		t.Fatalf("restore event %+v", ev)
	}
	if ev := r.rec.next(t, RemediationStarted); ev.Action != "second" || ev.Step != 2 {
		t.Fatalf("resumed with %+v, want step 2 (second)", ev)
	}
	if first.calls.Load() != 1 {
		t.Fatalf("step 1 ran again after the restart: %d calls", first.calls.Load())
	}
}

func TestRestoredIncidentThatDoesNotFireAgainIsClosed(t *testing.T) {
	act := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("cannot")) }}
	r := newRestartable(t, map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	})
	a := alert
	a.Ladder = []string{"restart"}
	r.start()
	r.observe(&a)
	r.rec.next(t, IncidentExhausted)
	r.stop()

	r.start()
	r.observe(nil) // first evaluation: the alert is pending again, or gone
	r.advance(59 * time.Second)
	r.observe(nil)
	if s := r.saved(); len(s) != 1 {
		t.Fatalf("restored incident dropped before the grace: %+v", s)
	}
	r.advance(time.Second)
	r.observe(nil)
	ev := r.rec.next(t, IncidentResolved)
	if ev.Details["restored"] != true || !strings.Contains(ev.Message, "did not fire again within 1m0s") {
		t.Fatalf("resolved %+v", ev)
	}
	if s := r.saved(); len(s) != 0 {
		t.Fatalf("still persisted: %+v", s)
	}
	if inc := r.e.Incidents(); len(inc) != 1 || inc[0].State != StateResolved {
		t.Fatalf("/status %+v", inc)
	}
}

func TestRestoredExhaustedIncidentRetriesOnSchedule(t *testing.T) {
	act := &funcAction{fn: func(int) error { return actions.Permanent(errors.New("cannot")) }}
	r := newRestartable(t, map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	})
	a := alert
	a.Ladder, a.RetryExhaustedAfter = []string{"restart"}, 30*time.Minute
	r.start()
	r.observe(&a)
	r.rec.next(t, IncidentExhausted)
	r.stop()

	r.advance(10 * time.Minute)
	r.start()
	r.observe(&a)
	r.rec.next(t, IncidentOpened)
	r.advance(19 * time.Minute)
	if act.calls.Load() != 1 {
		t.Fatal("retried before exhaustedAt + retryExhaustedAfter")
	}
	r.advance(time.Minute)
	if ev := r.rec.next(t, IncidentRetried); ev.Details["round"] != 2 {
		t.Fatalf("retried %+v", ev)
	}
	r.rec.next(t, RemediationFailed)
	if act.calls.Load() != 2 {
		t.Fatalf("calls %d", act.calls.Load())
	}
}

func TestCorruptStateFileIsMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incidents.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := New(Options{StatePath: path})
	if len(e.core.restored) != 0 {
		t.Fatal("restored from garbage")
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", aside)
	}
	if b, err := os.ReadFile(aside[0]); err != nil || string(b) != "{not json" {
		t.Fatalf("aside holds %q (%v)", b, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the corrupt file is still in place: %v", err)
	}
}
