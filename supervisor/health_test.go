package supervisor

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/config"
)

func TestHealthzFailsWhenEvaluationStallsForThreeIntervals(t *testing.T) {
	c, err := config.Parse([]byte("listen: 127.0.0.1:0\nstateDir: " + t.TempDir() + "\nevaluationInterval: 5s\n"))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s, err := New(Options{Config: c, Clock: clk, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	// Serve without the loops: evaluation is driven by hand.
	go s.server.Run(t.Context())
	s.lastEval.Store(clk.Now().UnixNano())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d at start", code)
	}
	clk.Advance(14 * time.Second)
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d before 3 intervals", code)
	}
	clk.Advance(2 * time.Second)
	code, body := get("/healthz")
	if code != 503 || !strings.Contains(body, "stalled") {
		t.Fatalf("healthz %d %q after 16s without evaluation", code, body)
	}
	s.EvalOnce(t.Context(), clk.Now())
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d after an evaluation", code)
	}
	// /readyz: no probes, one evaluation done.
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d %q", code, body)
	}
	// /livez/agent is mounted and healthy by default.
	if code, _ := get("/livez/agent"); code != 200 {
		t.Fatalf("livez/agent %d", code)
	}
}

func TestPluginLifecycleEventsReachTheAuditLog(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse([]byte("listen: 127.0.0.1:0\nstateDir: " + dir + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer s.audit.Close()
	s.pluginEvent(plugins.Event{Type: plugins.PluginStarted, Plugin: "webhook"}) // logged only
	s.pluginEvent(plugins.Event{Type: plugins.PluginQuarantined, Plugin: "webhook", Crashes: 4, Message: "crashed 4 times in 10m"})
	b, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"type":"PluginQuarantined"`) || !strings.Contains(lines[0], `"plugin":"webhook"`) {
		t.Fatalf("audit:\n%s", b)
	}
}

// TestStatusShowsFleetLimitsAndIncidentRounds: /status lists each fleet
// limit (not enforced outside Kubernetes) and an incident's round, and the
// HTML view renders both.
func TestStatusShowsFleetLimitsAndIncidentRounds(t *testing.T) {
	c, err := config.Parse([]byte(`listen: 127.0.0.1:0
stateDir: ` + t.TempDir() + `
actions:
  restart-agent:
    exec: {command: ["false"], timeout: 5s}
    backoff: {policy: constant, initial: 1s, attempts: 1}
    fleet: {max: 2, hold: 1m}
rules:
  - alert: AlwaysFiring
    expr: vector(1)
    remediate: [restart-agent]
    retryExhaustedAfter: 10m
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s, err := New(Options{Config: c, Clock: clk, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	defer s.audit.Close()
	go s.server.Run(t.Context())
	s.remedy.Start(t.Context())
	s.EvalOnce(t.Context(), clk.Now())
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Status()
		if len(st.Incidents) == 1 && st.Incidents[0].State == "exhausted" {
			if st.Incidents[0].Round != 1 {
				t.Fatalf("round %d", st.Incidents[0].Round)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exhausted incident: %+v", st.Incidents)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := s.Status()
	if len(st.Fleet) != 1 || st.Fleet[0] != (FleetStatus{Action: "restart-agent", Max: 2, Hold: "1m"}) {
		t.Fatalf("/status fleet %+v", st.Fleet)
	}
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/status", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "Fleet limits") || !strings.Contains(string(b), "no (not in Kubernetes)") ||
		!strings.Contains(string(b), "exhausted") {
		t.Fatalf("HTML %d:\n%s", resp.StatusCode, b)
	}
}
