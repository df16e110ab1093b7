package remedy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func incidentsByState(t *testing.T, m *Metrics) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() == "medic_incidents" {
			for _, m := range mf.GetMetric() {
				out = append(out, fmt.Sprintf("%s=%g", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue()))
			}
		}
	}
	return strings.Join(out, " ")
}

// TestHeldIncidentShowsWhyAndWhen: an incident whose next attempt waits on
// a guard is "held" (in the snapshot, with the guard, the attempt position
// and the next re-check; and in medic_incidents{state}); once the guard
// lets it through it is "remediating", and a backoff delay shows as the
// next attempt time.
func TestHeldIncidentShowsWhyAndWhen(t *testing.T) {
	act := &funcAction{}
	p := &flagPauser{}
	p.on.Store(true)
	m := NewMetrics()
	f := newFixture(t, Options{Pausers: []Pauser{p}, Metrics: m, Steps: map[string]*Step{
		"restart": {Name: "restart", Action: act, Backoff: constant(20*time.Second, 2), Verify: 10 * time.Second},
	}})
	f.fire("restart")
	f.rec.next(t, RemediationSuppressed)
	inc := f.incident()
	if inc.State != StateHeld || inc.HeldReason != ReasonPaused || !strings.Contains(inc.HeldMessage, "paused") ||
		inc.Step != 1 || inc.Attempt != 1 || inc.MaxAttempts != 2 || !inc.NextAttemptAt.Equal(f.now.Add(5*time.Second)) {
		t.Fatalf("held incident %+v", inc)
	}
	if got := incidentsByState(t, m); got != "exhausted=0 held=1 remediating=0" {
		t.Fatalf("medic_incidents: %s", got)
	}
	b, _ := json.Marshal(inc)
	if !strings.Contains(string(b), `"state":"held"`) || !strings.Contains(string(b), `"heldReason":"paused"`) {
		t.Fatalf("JSON %s", b)
	}
	p.on.Store(false)
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
	f.advance(10 * time.Second) // verify ends, still firing: backoff 20s
	f.rec.next(t, RemediationFailed)
	inc = f.incident()
	if inc.State != StateRemediating || inc.HeldReason != "" || inc.Attempt != 1 ||
		!inc.NextAttemptAt.Equal(f.now.Add(35*time.Second)) {
		t.Fatalf("in backoff %+v (now %s)", inc, f.clk.Now())
	}
	if got := incidentsByState(t, m); got != "exhausted=0 held=0 remediating=1" {
		t.Fatalf("medic_incidents: %s", got)
	}
	if StateHeld.String() != "held" {
		t.Fatal(StateHeld.String())
	}
}
