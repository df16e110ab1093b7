package scrape

import (
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/demo/spireagent"
)

// TestSPIREAgentOutage scrapes the SPIRE-like peer through an upstream
// outage, a dead agent and a restart, and evaluates the alert expressions
// an operator would write (DESIGN.md) over the store.
func TestSPIREAgentOutage(t *testing.T) {
	fc := clock.NewFake(t0)
	agent := spireagent.New(spireagent.Options{Clock: fc, Host: "node-1", NoJitter: true})
	url, err := agent.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	// The agent's loop must be waiting on the fake clock before the first
	// tick; otherwise its first timer is set from the advanced clock and a
	// sync is lost.
	if !fc.BlockUntil(1, 10*time.Second) {
		t.Fatal("agent loop did not start")
	}
	r := newRig(t, Config{URL: url + "/metrics"})
	r.now = t0

	// tick advances both the agent's clock and the scrape by 5 s.
	tick := func(n int) {
		t.Helper()
		for range n {
			r.now = r.now.Add(5 * time.Second)
			fc.Set(r.now)
			if agent.Mode().Kind != spireagent.KindDown && !fc.BlockUntil(1, 10*time.Second) {
				t.Fatal("agent loop stuck")
			}
			r.clk.Set(r.now)
			r.p.cycle(t.Context(), r.app, r.now)
		}
	}
	const (
		failing  = `rate(spire_agent_manager_sync_fetch_entries_updates{status!="OK"}[1m]) > 0`
		stalled  = `increase(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[1m]) == 0`
		up       = `medic_probe_up{probe="spire"}`
		restarts = `resets(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[5m])`
	)
	tick(24) // two healthy minutes
	r.wantValue(up, 1)
	r.wantValue(syncOK, 25)
	r.wantAbsent(failing)
	r.wantAbsent(stalled)

	// The server goes away: the page stays up, failures show, OK freezes.
	if err := agent.SetMode(spireagent.Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	tick(12)
	r.wantValue(up, 1)
	if v := r.query(failing); len(v) != 1 || v[0].Metric.Get("status") != "Unavailable" {
		t.Fatalf("%s: %v", failing, v)
	}
	r.wantValue(`count(`+stalled+`)`, 1)
	// Failed attempts at 5, 12.5, 23.75 and 40.6 s into the outage (gaps ×1.5).
	r.wantValue(`spire_agent_manager_sync_fetch_entries_updates{probe="spire",status="Unavailable"}`, 4)

	// The agent dies: up=0, its series go stale at once for instant
	// selectors; range functions keep using the samples before (staleness
	// markers are skipped in ranges), so a dead agent is alerted on by up.
	if err := agent.SetMode(spireagent.Down()); err != nil {
		t.Fatal(err)
	}
	tick(1)
	r.wantValue(up, 0)
	r.wantValue(`medic_probe_failures_total{probe="spire",reason="connect"}`, 1)
	r.wantAbsent(syncOK)
	r.wantValue(`count(`+failing+`)`, 1)
	tick(12)
	r.wantAbsent(failing)

	// It is restarted with the server back: counters restart at 1, and
	// PromQL sees the reset instead of a negative rate.
	if err := agent.SetMode(spireagent.Healthy()); err != nil {
		t.Fatal(err)
	}
	tick(6)
	r.wantValue(up, 1)
	r.wantValue(syncOK, 7)
	r.wantValue(restarts, 1)
	if v := r.value(`rate(` + syncOK + `[1m])`); v <= 0 {
		t.Errorf("rate after restart = %v", v)
	}
	r.wantAbsent(`spire_agent_manager_sync_fetch_entries_updates{status="Unavailable"}`)
}
