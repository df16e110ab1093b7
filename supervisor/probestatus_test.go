package supervisor

import (
	"errors"
	"testing"
	"time"
)

func TestProbeHealthKeepsTheLastErrorAndSinceWhen(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var h probeHealth
	check := func(at time.Duration, reason string) { h.report(reason); h.commit(t0.Add(at)) }
	got := func() ProbeStatus { var ps ProbeStatus; h.fill(&ps); return ps }

	check(0, "")
	if ps := got(); ps.LastError != "" || !ps.FailingSince.IsZero() {
		t.Fatalf("healthy: %+v", ps)
	}
	check(5*time.Second, "connection refused")
	check(10*time.Second, "no such host spire-server")
	ps := got()
	if ps.LastError != "no such host spire-server" || !ps.FailingSince.Equal(t0.Add(5*time.Second)) || !ps.LastErrorAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("failing: %+v", ps)
	}
	h.commit(t0.Add(12 * time.Second)) // a batch without a report changes nothing
	check(15*time.Second, "")
	ps = got()
	if !ps.FailingSince.IsZero() || ps.LastError != "no such host spire-server" || !ps.LastErrorAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("recovered: %+v", ps)
	}
	h.restarted(t0.Add(20*time.Second), errors.New("socket closed"))
	ps = got()
	if ps.Restarts != 1 || ps.LastError != "probe stopped: socket closed" || !ps.FailingSince.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("restarted: %+v", ps)
	}
}
