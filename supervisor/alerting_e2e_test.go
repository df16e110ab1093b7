package supervisor_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/testpeers/alertmanager"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// transitionLog records when each alert changed state (wall clock).
type transitionLog struct {
	mu sync.Mutex
	at map[string]time.Time // "<alert> <state>" -> first time
}

func (l *transitionLog) record(tr rules.Transition) {
	l.mu.Lock()
	defer l.mu.Unlock()
	state := tr.To.String()
	if tr.Resolved() {
		state = "resolved"
	}
	k := tr.Alert.Rule + " " + state
	if _, ok := l.at[k]; !ok {
		l.at[k] = time.Now()
	}
}

func (l *transitionLog) get(t *testing.T, k string) time.Time {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.at[k]
	if !ok {
		t.Fatalf("no transition %q (have %v)", k, l.at)
	}
	return v
}

// A rule fires → the real Alertmanager's webhook receiver gets the alert
// (labels, annotations, external labels from the Downward API variables,
// generatorURL to medic's /status); it resolves → the resolved notification
// arrives. The time from the rule firing to the webhook is logged.
func TestAlertmanagerReceivesFiringAndResolved(t *testing.T) {
	am := alertmanager.Start(t, alertmanager.Route{GroupWait: 200 * time.Millisecond, GroupInterval: 500 * time.Millisecond})
	t.Setenv("POD_NAME", "spire-agent-x7")
	t.Setenv("POD_NAMESPACE", "spire")
	t.Setenv("NODE_NAME", "node-3")

	var healthy atomic.Bool
	healthy.Store(true)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
		}
	}))
	defer target.Close()

	c, err := config.Parse([]byte(fmt.Sprintf(`
stateDir: %s
evaluationInterval: 100ms
probes:
  - name: target
    http: {url: %q, interval: 100ms, timeout: 90ms}
rules:
  - alert: TargetDown
    expr: medic_probe_up{probe="target"} == 0
    for: 200ms
    labels: {severity: page}
    annotations:
      summary: "target {{ $labels.probe }} is down"
alerting:
  alertmanagers: [{url: %q, timeout: 5s}]
`, filepath.Join(t.TempDir(), "state"), target.URL, am.URL)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trs := &transitionLog{at: map[string]time.Time{}}
	sup, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, OnTransition: trs.record})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(500 * time.Millisecond) // healthy for a few evaluations: nothing is sent
	healthy.Store(false)
	_, got := am.WaitFor(t, "firing", 30*time.Second, func(n alertmanager.Notification, a alertmanager.WebhookAlert) bool {
		return n.Status == "firing" && a.Labels["alertname"] == "TargetDown"
	})
	firedToWebhook := time.Since(trs.get(t, "TargetDown firing"))
	wantLabels := map[string]string{"alertname": "TargetDown", "probe": "target", "severity": "page",
		"pod": "spire-agent-x7", "namespace": "spire", "node": "node-3"}
	for k, v := range wantLabels {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, got.Labels[k], v, got.Labels)
		}
	}
	if got.Annotations["summary"] != "target target is down" {
		t.Errorf("annotations %v", got.Annotations)
	}
	if want := "http://" + sup.Addr() + "/status"; got.GeneratorURL != want {
		t.Errorf("generatorURL %q, want %q", got.GeneratorURL, want)
	}

	healthy.Store(true)
	n, res := am.WaitFor(t, "resolved", 30*time.Second, func(n alertmanager.Notification, a alertmanager.WebhookAlert) bool {
		return a.Status == "resolved" && a.Labels["alertname"] == "TargetDown"
	})
	resolvedToWebhook := n.Received.Sub(trs.get(t, "TargetDown resolved"))
	if !res.EndsAt.After(res.StartsAt) || res.EndsAt.After(n.Received) {
		t.Errorf("resolved alert: startsAt %s endsAt %s (received %s)", res.StartsAt, res.EndsAt, n.Received)
	}
	t.Logf("rule firing → webhook: %s; resolved → webhook: %s (Alertmanager group_wait 200ms, group_interval 500ms)",
		firedToWebhook.Round(time.Millisecond), resolvedToWebhook.Round(time.Millisecond))

	sent := metricValue(t, sup, "medic_notifications_sent_total")
	if sent < 2 || metricValue(t, sup, "medic_notifications_errors_total") != 0 || metricValue(t, sup, "medic_notifications_dropped_total") != 0 {
		t.Errorf("sent %v alerts; errors and drops must be 0", sent)
	}
}

func metricValue(t *testing.T, sup *supervisor.Supervisor, name string) float64 {
	t.Helper()
	mfs, err := sup.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	found := false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	if !found {
		t.Fatalf("no metric %s", name)
	}
	return sum
}

// Alertmanager is down when the alert fires: the failed post is counted and
// logged once; when Alertmanager comes up, the next resend delivers the
// alert (resendDelay 1s here).
func TestAlertmanagerDownThenUpGetsTheResend(t *testing.T) {
	alertmanager.Binary(t)
	probeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	amAddr := probeLn.Addr().String()
	probeLn.Close() // nothing listens there yet: connection refused

	c, err := config.Parse([]byte(fmt.Sprintf(`
stateDir: %s
evaluationInterval: 100ms
rules:
  - alert: AlwaysFiring
    expr: vector(1)
    labels: {severity: page}
alerting:
  alertmanagers: [{url: "http://%s", timeout: 2s}]
  resendDelay: 1s
  externalLabels: {cluster: test}
`, filepath.Join(t.TempDir(), "state"), amAddr)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	sup, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(20 * time.Second)
	for metricValue(t, sup, "medic_notifications_errors_total") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no failed sends counted; log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	am := alertmanager.Start(t, alertmanager.Route{GroupWait: 100 * time.Millisecond, GroupInterval: 500 * time.Millisecond, Addr: amAddr})
	_, a := am.WaitFor(t, "firing after Alertmanager came up", 30*time.Second, func(n alertmanager.Notification, a alertmanager.WebhookAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "AlwaysFiring"
	})
	if a.Labels["cluster"] != "test" {
		t.Errorf("labels %v: want the configured external label cluster=test", a.Labels)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "works again") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "sending alerts to Alertmanager failed"); n != 1 {
		t.Errorf("failure logged %d times, want once per change:\n%s", n, out)
	}
	if !strings.Contains(out, "works again") {
		t.Errorf("recovery not logged:\n%s", out)
	}
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
