package scrape_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	"github.com/medic-sidecar/medic/supervisor"
	_ "github.com/medic-sidecar/medic/supervisor/builtin"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// TestSupervisorScrapesSPIREAgent runs medic as configured by an operator
// (YAML → supervisor, real clock, real loopback servers) against the
// SPIRE-like agent, and follows the alerts an outage and a dead agent
// raise, and their resolution. Real timing with generous bounds.
func TestSupervisorScrapesSPIREAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time end-to-end run")
	}
	agent := spireagent.New(spireagent.Options{Interval: 100 * time.Millisecond, Host: "node-1"})
	url, err := agent.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()

	c, err := config.Parse(fmt.Appendf(nil, `
listen: 127.0.0.1:0
stateDir: %s
evaluationInterval: 100ms
probes:
  - name: spire
    scrape: {url: %s/metrics, interval: 100ms}
rules:
  - alert: SPIREAgentSyncFailure
    expr: rate(spire_agent_manager_sync_fetch_entries_updates{status!="OK"}[2s]) > 0
  - alert: SPIREAgentMetricsDown
    expr: medic_probe_up{probe="spire"} == 0
`, t.TempDir(), url))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	transitions := make(chan rules.Transition, 100)
	s, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, OnTransition: func(tr rules.Transition) { transitions <- tr }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	}()

	// medic exports its probe's own samples.
	waitFor(t, "medic_probe_up 1 on medic's /metrics", func() bool {
		return strings.Contains(get(t, "http://"+s.Addr()+"/metrics"), `medic_probe_up{probe="spire"} 1`)
	})

	expect := func(alert string, resolved bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case tr := <-transitions:
				if tr.Alert.Rule == alert && (resolved && tr.Resolved() || !resolved && tr.To == rules.StateFiring) {
					return
				}
			case <-deadline:
				t.Fatalf("%s never %s", alert, map[bool]string{true: "resolved", false: "fired"}[resolved])
			}
		}
	}
	if err := agent.SetMode(spireagent.Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	expect("SPIREAgentSyncFailure", false)
	if err := agent.SetMode(spireagent.Down()); err != nil {
		t.Fatal(err)
	}
	expect("SPIREAgentMetricsDown", false)
	if err := agent.SetMode(spireagent.Healthy()); err != nil { // a fresh agent, the server back
		t.Fatal(err)
	}
	expect("SPIREAgentMetricsDown", true)
	expect("SPIREAgentSyncFailure", true)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Through medic's config loader, scrape problems come back with their
// full path and line, all at once.
func TestConfigErrorsThroughMedicConfig(t *testing.T) {
	_, err := config.Parse([]byte(`
probes:
  - name: spire
    scrape:
      url: ftp://agent/metrics
      interval: 5s
      timeout: 6s
      maxBytes: lots
      headers: {Accept-Encoding: br}
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`probes[0].scrape.url: "ftp://agent/metrics": scheme must be http or https (line 5)`,
		`probes[0].scrape.timeout: 6s must not exceed the interval (5s) (line 7)`,
		`probes[0].scrape.maxBytes: invalid size "lots" (use e.g. 1048576, 512KiB, 16MiB) (line 8)`,
		`probes[0].scrape.headers.Accept-Encoding: reserved: the probe negotiates gzip itself (line 9)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
