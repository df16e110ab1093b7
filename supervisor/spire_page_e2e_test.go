package supervisor_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	"github.com/medic-sidecar/medic/internal/testpeers/alertmanager"
	"github.com/medic-sidecar/medic/internal/testpeers/workloadapi"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// pageBudget is what the shipped SPIRE example promises: a page within 45 s
// of the SPIRE server becoming unreachable from the node.
const pageBudget = 45 * time.Second

// TestSPIREExamplePagesWithinBudget runs examples/spire-agent.yaml as
// shipped (only its addresses pointed at loopback peers) beside the
// SPIRE-like agent, a Workload API on a Unix socket, a TCP listener as the
// SPIRE server and the real Alertmanager with a page route (group_wait
// 10s). The server goes away: the page must reach Alertmanager's webhook
// within 45 s, say why (server unreachable from this node, agent degraded
// but serving, restarts held), and medic must not touch the agent. When the
// server is back, the resolved notification follows. It runs in real time
// (about a minute) at the example's own intervals.
func TestSPIREExamplePagesWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time test (about a minute); skipped with -short")
	}
	am := alertmanager.Start(t, alertmanager.Route{GroupWait: 10 * time.Second, GroupInterval: 10 * time.Second,
		GroupBy: []string{"alertname", "node"}})

	// The SPIRE server: a TCP listener that accepts.
	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverAddr := server.Addr().String()
	go acceptAll(server)

	agent := spireagent.New(spireagent.Options{Host: "node-3"})
	if _, err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	wl, err := workloadapi.Start(workloadapi.Options{SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Close()

	// The example as shipped, its fixed addresses pointed at the peers.
	b, err := os.ReadFile("../examples/spire-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"http://127.0.0.1:9988/metrics", agent.MetricsURL(),
		"http://127.0.0.1:8080/live", agent.URL()+"/live",
		"/run/spire/sockets/agent.sock", sock,
	).Replace(string(b))
	for k, v := range map[string]string{"MEDIC_STATE_DIR": filepath.Join(dir, "state"), "SPIRE_SERVER_ADDRESS": serverAddr,
		"ALERTMANAGER_URL": am.URL, "POD_NAME": "spire-agent-x7", "POD_NAMESPACE": "spire", "NODE_NAME": "node-3"} {
		t.Setenv(k, v)
	}
	c, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trs := &transitionLog{at: map[string]time.Time{}}
	events := &eventLog{}
	sup, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, OnTransition: trs.record, Sinks: []remedy.Sink{events}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Healthy first: the server reachable, the Workload API serving.
	waitProbes(t, sup, map[string]float64{"spire-server": 1, "workload-api": 1, "spire": 1}, 30*time.Second)
	time.Sleep(6 * time.Second) // a few evaluations while healthy
	requires := c.Actions["restart-agent"].Requires[0].Expr
	if v := queryAPI(t, sup.Addr(), requires); v == "[]" {
		t.Fatalf("restart-agent's precondition %q does not hold while the server is reachable", requires)
	}

	// The outage: the server stops accepting and the agent's syncs fail.
	server.Close()
	outage := time.Now()
	if err := agent.SetMode(spireagent.Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	n, page := am.WaitFor(t, "SPIREServerUnreachable", pageBudget+15*time.Second, func(n alertmanager.Notification, a alertmanager.WebhookAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "SPIREServerUnreachable"
	})
	toPage := n.Received.Sub(outage)
	fired := trs.get(t, "SPIREServerUnreachable firing")
	t.Logf("server unreachable → rule firing %s → Alertmanager webhook %s (medic %s, Alertmanager group_wait 10s: %s)",
		fired.Sub(outage).Round(time.Millisecond), toPage.Round(time.Millisecond),
		fired.Sub(outage).Round(time.Millisecond), n.Received.Sub(fired).Round(time.Millisecond))
	if toPage > pageBudget {
		t.Errorf("paged %s after the server became unreachable, budget %s", toPage, pageBudget)
	}
	for k, v := range map[string]string{"severity": "page", "cause": "server-unreachable", "agent": "degraded-serving",
		"remediation": "held", "node": "node-3", "pod": "spire-agent-x7", "namespace": "spire"} {
		if page.Labels[k] != v {
			t.Errorf("page label %s = %q, want %q (all: %v)", k, page.Labels[k], v, page.Labels)
		}
	}
	for _, want := range []string{"unreachable from this node", "degraded but serving", "restarts held"} {
		if !strings.Contains(page.Annotations["summary"], want) {
			t.Errorf("summary %q does not say %q", page.Annotations["summary"], want)
		}
	}
	// The restart is held: its precondition, asked of medic's own query
	// API at page time, selects nothing.
	if v := queryAPI(t, sup.Addr(), requires); v != "[]" {
		t.Errorf("restart-agent's precondition %q holds during the outage: %s", requires, v)
	}
	if syncs := agent.Syncs(); syncs.Starts != 1 {
		t.Errorf("the agent was restarted during the outage: %+v", syncs)
	}
	for _, ev := range events.snapshot() {
		if ev.Action == "restart-agent" && ev.Type != remedy.RemediationSuppressed {
			t.Errorf("medic acted on the agent during the outage: %+v", ev)
		}
	}

	// The server is back: the page resolves.
	back, err := net.Listen("tcp", serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	go acceptAll(back)
	if err := agent.SetMode(spireagent.Healthy()); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	n, _ = am.WaitFor(t, "resolved SPIREServerUnreachable", time.Minute, func(n alertmanager.Notification, a alertmanager.WebhookAlert) bool {
		return a.Status == "resolved" && a.Labels["alertname"] == "SPIREServerUnreachable"
	})
	t.Logf("server reachable again → resolved notification %s", n.Received.Sub(restored).Round(time.Millisecond))
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// waitProbes waits until every named probe reports the wanted up value.
func waitProbes(t *testing.T, sup *supervisor.Supervisor, want map[string]float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := map[string]float64{}
		for _, p := range sup.Status().Probes {
			got[p.Name] = p.Up
		}
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *eventLog) snapshot() []remedy.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]remedy.Event(nil), l.evs...)
}

// queryAPI runs an instant query on medic's /api/v1/query and returns the
// result as JSON.
func queryAPI(t *testing.T, addr, q string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("query %q: %v %+v", q, err, body)
	}
	return string(body.Data.Result)
}
