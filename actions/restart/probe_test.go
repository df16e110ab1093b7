package restart

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/livez"
)

func decode(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	k, _ := actions.Lookup(Kind)
	c := k.NewConfig().(*Config)
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Decode(&n, c, "actions.restart-agent.restart"); err != nil {
		return nil, err
	}
	return c, cfg.Prefix("actions.restart-agent.restart", c.Validate())
}

func TestProbeFlipsLivezForHoldAndBack(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	sw := livez.New(clk)
	srv := httptest.NewServer(sw) // mounted by the server at /livez/agent
	defer srv.Close()

	c, err := decode(t, "{mode: probe, failureThreshold: 3, periodSeconds: 5}")
	if err != nil {
		t.Fatal(err)
	}
	if got := HoldFor(c); got != 20*time.Second {
		t.Fatalf("derived hold = %s, want 3×5s + 5s", got)
	}
	k, _ := actions.Lookup(Kind)
	a, err := k.New(c, actions.Env{Name: "restart-agent", Clock: clk, AgentLiveness: sw})
	if err != nil {
		t.Fatal(err)
	}

	status := func() int {
		resp, err := http.Get(srv.URL + "/livez/agent")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == 503 {
			var st livez.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || !strings.Contains(st.Reason, "incident inc-1 (SPIREAgentSyncFailure)") {
				t.Fatalf("503 body: %+v %v", st, err)
			}
		}
		return resp.StatusCode
	}
	if s := status(); s != 200 {
		t.Fatalf("before: %d", s)
	}
	res, err := a.Run(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if res.Details["holdSeconds"] != 20.0 || res.Details["failingUntil"] != "2025-06-01T08:00:20Z" {
		t.Fatalf("details %v", res.Details)
	}
	// The kubelet probes every 5s: it sees 503 at 0, 5, 10 and 15s (≥ 3 in a row).
	for i := 0; i < 4; i++ {
		if s := status(); s != 503 {
			t.Fatalf("at +%ds: %d, want 503", i*5, s)
		}
		clk.Advance(5 * time.Second)
	}
	if s := status(); s != 200 {
		t.Fatalf("after the hold: %d", s)
	}
}

func TestProbeConfig(t *testing.T) {
	c, err := decode(t, "{mode: probe, hold: 90s}")
	if err != nil || HoldFor(c) != 90*time.Second {
		t.Fatalf("explicit hold: %v %v", err, c)
	}
	c, err = decode(t, "{mode: probe}")
	if err != nil || HoldFor(c) != 40*time.Second {
		t.Fatalf("default hold (3×10s + 10s): %v", err)
	}
	_, err = decode(t, "{mode: probe, failureThreshold: 0, periodSeconds: 0, process: spire-agent}")
	for _, want := range []string{
		"actions.restart-agent.restart.failureThreshold: must be at least 1",
		"actions.restart-agent.restart.periodSeconds: must be at least 1",
		"actions.restart-agent.restart.process: is not used by mode probe",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
	k, _ := actions.Lookup(Kind)
	c, _ = decode(t, "{mode: probe}")
	if _, err := k.New(c, actions.Env{}); err == nil || !strings.Contains(err.Error(), "/livez/agent") {
		t.Fatalf("build without a liveness switch: %v", err)
	}
	c, err = decode(t, "{mode: signal, process: spire-agent, gracePeriod: 3s, signal: SIGQUIT}")
	if err != nil || c.GracePeriod.D() != 3*time.Second || c.Signal != "SIGQUIT" || c.ProcRoot != "/proc" {
		t.Fatalf("signal yaml: %+v %v", c, err)
	}
}
