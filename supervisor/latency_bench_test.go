package supervisor_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	"github.com/medic-sidecar/medic/supervisor"
	_ "github.com/medic-sidecar/medic/supervisor/builtin"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

type startSink chan time.Time

func (s startSink) Record(ev remedy.Event) {
	if ev.Type == remedy.RemediationStarted {
		select {
		case s <- time.Now():
		default:
		}
	}
}

// BenchmarkDetectionLatency measures, in real time, how long medic takes
// from the SPIRE-like agent's first failed sync to the first remediation
// attempt, with the seed rule, for: 10s, evaluation and scrape every 1 s
// and the agent's real 5 s sync cadence. Target: <= for + 2 x evaluation
// interval = 12 s. Run with -benchtime 1x (each iteration takes ~15 s).
func BenchmarkDetectionLatency(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		agent := spireagent.New(spireagent.Options{Interval: 5 * time.Second, Host: "node-1"})
		url, err := agent.Start()
		if err != nil {
			b.Fatal(err)
		}
		c, err := config.Parse([]byte(fmt.Sprintf(`
listen: 127.0.0.1:0
stateDir: %s
evaluationInterval: 1s
probes:
  - name: spire
    scrape: {url: %q, interval: 1s}
actions:
  noop:
    exec: {command: ["/bin/true"]}
    verify: 1m
rules:
  - alert: SPIREAgentSyncFailures
    expr: rate(spire_agent_manager_sync_fetch_entries_updates{status!="OK"}[5m]) > 0
    for: 10s
    remediate: [noop]
`, b.TempDir(), url+"/metrics")))
		if err != nil {
			b.Fatal(err)
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		started := make(startSink, 1)
		s, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, Sinks: []remedy.Sink{started}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(3 * time.Second) // a few healthy scrapes
		b.StartTimer()
		agent.SetMode(spireagent.Failing("Unavailable"))
		var failedAt time.Time
		for failedAt.IsZero() {
			if sy := agent.Syncs(); sy.ByStatus["Unavailable"] >= 1 {
				failedAt = sy.LastAttempt
			}
			time.Sleep(10 * time.Millisecond)
		}
		var at time.Time
		select {
		case at = <-started:
		case <-time.After(60 * time.Second):
			b.Fatal("no remediation attempt within 60s")
		}
		b.StopTimer()
		b.ReportMetric(at.Sub(failedAt).Seconds(), "s-fail-to-attempt")
		cancel()
		<-done
		agent.Close()
	}
}
