package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	"github.com/medic-sidecar/medic/internal/kubetest"
)

// These tests drive `medic run` exactly as a user does (config file,
// flags, run()) against the SPIRE-like agent over loopback. The
// remediation is a real exec of this test binary acting as `medic
// demo-agentctl`, which restarts the agent through its control endpoint.

func TestMain(m *testing.M) {
	if os.Getenv("MEDIC_TEST_RUN_MAIN") == "1" {
		// Re-exec'd as the medic binary (by an exec action, or a signal test).
		main()
	}
	os.Exit(kubetest.Main(m)) // stops the shared control plane if a test started one
}

type e2e struct {
	t        *testing.T
	agent    *spireagent.Peer
	stateDir string
	cfgPath  string
	addr     string
	cancel   context.CancelFunc
	done     chan int
	stderr   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newE2E starts a SPIRE-like agent syncing every 200 ms and writes a
// config for medic with the given extra top-level settings and actions.
//
// The scrape interval and timeout are 2 s, not less: a failed scrape makes
// the page's series stale, which ends the "no sync in the window" alert at
// once (Prometheus semantics); with 250 ms timeouts a loaded CI machine
// (load 15-27, -race) let scrapes time out, the alert flapped, and a
// verify window or a pause saw a "resolved" that no action had earned.
// The rule's window (10 s) holds five scrapes (with [5s], scrapes running
// late at load 37 left a single sample in the window now and then: no
// value, so the alert resolved by itself), and it keeps firing
// for 2 s over a gap: the restart action takes the agent's page away for a
// moment, and on a loaded machine that stale scrape resolved the incident
// while its restart was still running; the alert then fired again (the
// restarted agent had not synced yet) and a second incident was held for
// "concurrency" and resolved without a fix of its own.
func newE2E(t *testing.T, top, actions, ladder string) *e2e {
	t.Helper()
	agent := spireagent.New(spireagent.Options{Interval: 200 * time.Millisecond, Host: "node-1", StartupTimeout: -1})
	url, err := agent.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	e := &e2e{t: t, agent: agent, stateDir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() && e.stderr != nil {
			t.Logf("medic log:\n%s", e.stderr.String())
		}
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e.addr = freeAddr(t)
	cfg := fmt.Sprintf(`
listen: %q
stateDir: %q
evaluationInterval: 200ms
%s
probes:
  - name: spire
    scrape: {url: %q, interval: 2s, timeout: 2s}
actions:
  restart-agent:
    exec:
      command: [%q, "demo-agentctl", "--url", %q, "restart"]
      env: {MEDIC_TEST_RUN_MAIN: "1"}
      timeout: 10s
    backoff: {policy: constant, initial: 500ms, attempts: 2}
    verify: 15s
    budget: {max: 3, window: 1h}
%s
rules:
  - alert: SPIREAgentNotSyncing
    expr: increase(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[10s]) == 0
    for: 400ms
    keep_firing_for: 2s
    annotations: {summary: "no successful sync on {{ $labels.host }}"}
    remediate: [%s]
`, e.addr, e.stateDir, top, url+"/metrics", self, agent.ControlURL(), actions, ladder)
	e.cfgPath = filepath.Join(t.TempDir(), "medic.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs `medic run --config FILE` in-process until stop.
//
// The listen address was free when freeAddr picked it, but any process
// dialling out meanwhile may take the port as its ephemeral one (seen at
// load with the other packages' tests running): then medic exits with
// "address already in use" and start moves it to a fresh address.
func (e *e2e) start(extra ...string) {
	e.t.Helper()
	for try := 1; ; try++ {
		ctx, cancel := context.WithCancel(context.Background())
		e.cancel, e.done, e.stderr = cancel, make(chan int, 1), &syncBuffer{}
		args := append([]string{"run", "--config", e.cfgPath, "--log-format", "text"}, extra...)
		go func() { e.done <- run(ctx, args, io.Discard, e.stderr) }()
		exited := -1
		e.eventually("medic ready", 15*time.Second, func() bool {
			select {
			case exited = <-e.done:
				return true
			default:
			}
			resp, err := http.Get("http://" + e.addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		if exited < 0 {
			break
		}
		cancel()
		e.cancel = nil
		if try == 5 || !strings.Contains(e.stderr.String(), "address already in use") {
			e.t.Fatalf("medic run exited %d before it was ready:\n%s", exited, e.stderr.String())
		}
		e.moveListen()
	}
	e.t.Cleanup(e.stop)
}

// moveListen gives medic a fresh listen address in its config file.
func (e *e2e) moveListen() {
	e.t.Helper()
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	old := fmt.Sprintf("listen: %q", e.addr)
	if !strings.Contains(string(b), old) {
		e.t.Fatalf("no %s in the config", old)
	}
	e.addr = freeAddr(e.t)
	if err := os.WriteFile(e.cfgPath, []byte(strings.Replace(string(b), old, fmt.Sprintf("listen: %q", e.addr), 1)), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *e2e) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	select {
	case code := <-e.done:
		if code != 0 {
			e.t.Errorf("medic run exited %d:\n%s", code, e.stderr.String())
		}
	case <-time.After(15 * time.Second):
		e.t.Errorf("medic run did not stop within 15s")
	}
	e.cancel = nil
}

func (e *e2e) eventually(what string, within time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs := ""
	if e.stderr != nil {
		logs = e.stderr.String()
	}
	e.t.Fatalf("%s: not within %s\nmedic log:\n%s", what, within, logs)
}

type statusDoc struct {
	Incidents []struct {
		ID       string            `json:"id"`
		Alert    string            `json:"alert"`
		Labels   map[string]string `json:"labels"`
		State    string            `json:"state"`
		Step     int               `json:"step"`
		FixedBy  string            `json:"fixedBy"`
		Attempts []struct {
			Action    string    `json:"action"`
			StartedAt time.Time `json:"startedAt"`
			Result    string    `json:"result"`
			Reason    string    `json:"reason"`
			Output    string    `json:"output"`
		} `json:"attempts"`
	} `json:"incidents"`
	Probes []struct {
		Name string  `json:"name"`
		Up   float64 `json:"up"`
	} `json:"probes"`
	Alerts []json.RawMessage `json:"alerts"`
}

func (e *e2e) status() statusDoc {
	e.t.Helper()
	resp, err := http.Get("http://" + e.addr + "/status")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *e2e) metric(name string) float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			var v float64
			fmt.Sscan(f[1], &v)
			return v
		}
	}
	return 0
}

type auditLine struct {
	Type     string            `json:"type"`
	Incident string            `json:"incident"`
	Action   string            `json:"action"`
	Result   string            `json:"result"`
	Reason   string            `json:"reason"`
	Value    float64           `json:"value"`
	Labels   map[string]string `json:"labels"`
	Output   string            `json:"output"`
	DryRun   bool              `json:"dryRun"`
}

func (e *e2e) audit() []auditLine {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.stateDir, "audit.jsonl"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			e.t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		out = append(out, l)
	}
	return out
}

// fail hangs the agent: its page is served, but no sync happens any more
// (the quiet failure). Only a restart brings it back.
func (e *e2e) fail() {
	e.t.Helper()
	if err := e.agent.SetMode(spireagent.Frozen()); err != nil {
		e.t.Fatal(err)
	}
}

// lastIncident waits for the newest incident to reach state.
func (e *e2e) waitIncident(state string, within time.Duration) statusDoc {
	e.t.Helper()
	var s statusDoc
	e.eventually("incident "+state, within, func() bool {
		s = e.status()
		return len(s.Incidents) > 0 && s.Incidents[0].State == state
	})
	return s
}

func countAudit(lines []auditLine, typ, result, reason string) int {
	n := 0
	for _, l := range lines {
		if l.Type == typ && (result == "" || l.Result == result) && (reason == "" || l.Reason == reason) {
			n++
		}
	}
	return n
}

func TestE2EFailureIsRemediatedAndVerified(t *testing.T) {
	e := newE2E(t, "", "", "restart-agent")
	e.start()
	restartsBefore := e.agent.Syncs().Starts
	e.fail()
	s := e.waitIncident("resolved", 30*time.Second)
	inc := s.Incidents[0]
	if inc.Alert != "SPIREAgentNotSyncing" || inc.FixedBy != "restart-agent" || inc.Labels["status"] != "OK" || inc.Labels["host"] != "node-1" {
		t.Fatalf("incident %+v", inc)
	}
	last := inc.Attempts[len(inc.Attempts)-1]
	if last.Result != "succeeded" || !strings.Contains(last.Output, "agent restart: HTTP 200") {
		t.Fatalf("attempt %+v", last)
	}
	if e.agent.Syncs().Starts <= restartsBefore {
		t.Fatal("the agent was not restarted")
	}
	// /status, /metrics and audit.jsonl agree.
	a := e.audit()
	if got := countAudit(a, "RemediationSucceeded", "succeeded", ""); got != 1 {
		t.Fatalf("audit: %d succeeded attempts", got)
	}
	if v := e.metric(`medic_remediation_attempts_total{action="restart-agent",result="succeeded"}`); v != 1 {
		t.Fatalf("metrics: succeeded = %v", v)
	}
	if v := e.metric(`medic_incidents_open`); v != 0 {
		t.Fatalf("metrics: incidents open = %v", v)
	}
	for _, l := range a {
		if l.Incident != inc.ID {
			t.Fatalf("audit line for another incident: %+v", l)
		}
		if l.Type == "RemediationStarted" && (l.Value != 0 || l.Labels["host"] != "node-1") {
			t.Fatalf("attempt recorded without evidence: %+v", l)
		}
	}
	if countAudit(a, "IncidentResolved", "", "") != 1 || countAudit(a, "IncidentOpened", "", "") != 1 {
		t.Fatalf("audit types: %+v", a)
	}
	// Browsers get the same status as HTML.
	req, _ := http.NewRequest("GET", "http://"+e.addr+"/status", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page), inc.ID) || !strings.Contains(string(page), "restart-agent") {
		t.Fatalf("HTML status: %s\n%s", resp.Header.Get("Content-Type"), page)
	}
}

func TestE2EStepThatDoesNotFixEscalates(t *testing.T) {
	e := newE2E(t, "", `
  nudge:
    exec: {command: ["/bin/true"]}
    backoff: {policy: constant, initial: 100ms, attempts: 1}
    verify: 1s`, "nudge, restart-agent")
	e.start()
	e.fail()
	s := e.waitIncident("resolved", 30*time.Second)
	inc := s.Incidents[0]
	if inc.FixedBy != "restart-agent" || inc.Step != 2 {
		t.Fatalf("incident %+v", inc)
	}
	var results []string
	for _, at := range inc.Attempts {
		results = append(results, at.Action+":"+at.Result+":"+at.Reason)
	}
	if len(results) < 2 || results[0] != "nudge:failed:verify" || results[len(results)-1] != "restart-agent:succeeded:" {
		t.Fatalf("attempts %v", results)
	}
}

func TestE2EDryRunRecordsButDoesNotAct(t *testing.T) {
	e := newE2E(t, "", "", "restart-agent")
	e.start("--dry-run")
	restarts := e.agent.Syncs().Starts
	e.fail()
	e.eventually("dry-run suppression", 30*time.Second, func() bool {
		return e.metric(`medic_remediations_suppressed_total{action="restart-agent",reason="dryRun"}`) >= 1
	})
	if e.agent.Syncs().Starts != restarts {
		t.Fatal("dry run restarted the agent")
	}
	a := e.audit()
	if countAudit(a, "RemediationSuppressed", "suppressed", "dryRun") < 1 || countAudit(a, "RemediationStarted", "", "") < 1 {
		t.Fatalf("audit %+v", a)
	}
	for _, l := range a {
		if l.Type == "RemediationStarted" && !l.DryRun {
			t.Fatalf("started event not marked dry run: %+v", l)
		}
	}
}

func TestE2EPausedSuppressesUntilUnpaused(t *testing.T) {
	e := newE2E(t, "", "", "restart-agent")
	pause := filepath.Join(e.stateDir, "paused")
	if err := os.WriteFile(pause, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	restarts := e.agent.Syncs().Starts
	e.fail()
	e.eventually("paused suppression", 30*time.Second, func() bool {
		return e.metric(`medic_remediations_suppressed_total{action="restart-agent",reason="paused"}`) == 1
	})
	time.Sleep(time.Second) // several evaluation intervals while paused
	if e.agent.Syncs().Starts != restarts {
		t.Fatal("restarted while paused")
	}
	os.Remove(pause)
	e.waitIncident("resolved", 30*time.Second)
	if e.agent.Syncs().Starts == restarts {
		t.Fatal("not restarted after unpause")
	}
}

func TestE2EBudgetStopsTheFourthRunAcrossRestarts(t *testing.T) {
	e := newE2E(t, "", "", "restart-agent")
	for i := 1; i <= 4; i++ {
		e.start() // a fresh medic each time: the budget must come from stateDir
		before := e.agent.Syncs().Starts
		e.fail()
		if i < 4 {
			e.waitIncident("resolved", 30*time.Second)
			if e.agent.Syncs().Starts == before {
				t.Fatalf("cycle %d: not restarted", i)
			}
		} else {
			s := e.waitIncident("exhausted", 30*time.Second)
			last := s.Incidents[0].Attempts[len(s.Incidents[0].Attempts)-1]
			if last.Result != "suppressed" || last.Reason != "budget" {
				t.Fatalf("4th run: %+v", last)
			}
			if e.agent.Syncs().Starts != before {
				t.Fatal("4th restart ran despite the budget")
			}
		}
		e.stop()
	}
	// /status shows the spent budget and when it frees a run.
	e.start()
	var st struct {
		Budgets []struct {
			Action string    `json:"action"`
			Max    int       `json:"max"`
			Used   int       `json:"used"`
			Next   time.Time `json:"nextFreeAt"`
		} `json:"budgets"`
	}
	resp, err := http.Get("http://" + e.addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Budgets) != 1 || st.Budgets[0].Used != 3 || st.Budgets[0].Max != 3 || time.Until(st.Budgets[0].Next) < 50*time.Minute {
		t.Fatalf("/status budgets %+v", st.Budgets)
	}
	e.stop()
	var budgets struct {
		Runs map[string][]time.Time `json:"runs"`
	}
	b, err := os.ReadFile(filepath.Join(e.stateDir, "budgets.json"))
	if err != nil || json.Unmarshal(b, &budgets) != nil || len(budgets.Runs["restart-agent"]) != 3 {
		t.Fatalf("budgets.json %s (%v)", b, err)
	}
}

// TestE2EExhaustedIncidentSurvivesAMedicRestart: an exhausted incident is
// persisted in stateDir; a restarted medic restores it (same id, history)
// and does not walk the ladder again while the alert still fires.
func TestE2EExhaustedIncidentSurvivesAMedicRestart(t *testing.T) {
	e := newE2E(t, "", `
  nudge:
    exec: {command: ["/bin/true"]}
    backoff: {policy: constant, initial: 100ms, attempts: 1}
    verify: 1s`, "nudge")
	e.start()
	e.fail()
	before := e.waitIncident("exhausted", 30*time.Second).Incidents[0]
	e.stop()

	e.start()
	e.eventually("the incident restored", 15*time.Second, func() bool {
		s := e.status()
		return len(s.Incidents) > 0 && s.Incidents[0].ID == before.ID && s.Incidents[0].State == "exhausted"
	})
	// The alert fires again (the store started empty: that takes two
	// scrapes plus `for`) and belongs to the restored incident.
	e.eventually("the alert firing again on the restored incident", 30*time.Second, func() bool {
		var s struct {
			Alerts []struct {
				State    string `json:"state"`
				Incident string `json:"incident"`
			} `json:"alerts"`
		}
		resp, err := http.Get("http://" + e.addr + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&s) != nil {
			return false
		}
		return len(s.Alerts) == 1 && s.Alerts[0].State == "firing" && s.Alerts[0].Incident == before.ID
	})
	time.Sleep(2 * time.Second) // ten evaluation intervals with the alert firing
	after := e.status().Incidents[0]
	if len(after.Attempts) != len(before.Attempts) {
		t.Fatalf("ladder walked again after the restart: %d attempts, was %d", len(after.Attempts), len(before.Attempts))
	}
	if n := countAudit(e.audit(), "RemediationStarted", "", ""); n != 1 {
		t.Fatalf("%d RemediationStarted in the audit log across both runs, want 1", n)
	}
	if err := e.agent.SetMode(spireagent.Healthy()); err != nil {
		t.Fatal(err)
	}
	e.waitIncident("resolved", 30*time.Second)
}
