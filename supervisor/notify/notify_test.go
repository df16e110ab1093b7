package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func noEnv(string) (string, bool) { return "", false }

func newNotifier(t *testing.T, c Config) *Notifier {
	t.Helper()
	if len(c.Alertmanagers) == 0 {
		c.Alertmanagers = []AlertmanagerConfig{{URL: "http://127.0.0.1:1"}}
	}
	n, err := New(Options{Config: c, EvaluationInterval: 5 * time.Second, GeneratorURL: "http://medic:9555/status", Lookup: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// queued takes everything off the queue.
func queued(n *Notifier) []PostableAlert {
	var out []PostableAlert
	for b := n.next(); len(b) > 0; b = n.next() {
		out = append(out, b...)
	}
	return out
}

// The life of one alert, evaluation by evaluation, as Prometheus sends it:
// at once when it fires, again every resend delay with endsAt 4 resend
// delays ahead, at once when it resolves (endsAt = the resolution), again
// every resend delay for 15 minutes, then forgotten; firing again later is
// a new alert.
func TestUpdateSendsLikePrometheus(t *testing.T) {
	n := newNotifier(t, Config{ExternalLabels: map[string]string{"node": "n1", "alertname": "ignored"}})
	a := Alert{Labels: labels.FromStrings("alertname", "Down", "probe", "x"), Annotations: map[string]string{"summary": "x down"}, FiredAt: t0}
	at := func(d time.Duration, firing ...Alert) []PostableAlert {
		n.Update(t0.Add(d), firing)
		return queued(n)
	}

	got := at(0, a)
	if len(got) != 1 {
		t.Fatalf("fired: %d alerts queued, want 1", len(got))
	}
	p := got[0]
	if want := map[string]string{"alertname": "Down", "probe": "x", "node": "n1"}; !equalMaps(p.Labels, want) {
		t.Errorf("labels %v, want %v (external labels never override)", p.Labels, want)
	}
	if !p.StartsAt.Equal(t0) || !p.EndsAt.Equal(t0.Add(4*time.Minute)) || p.GeneratorURL != "http://medic:9555/status" || p.Annotations["summary"] != "x down" {
		t.Errorf("firing alert %+v", p)
	}
	for _, d := range []time.Duration{5, 30, 55} {
		if got := at(d*time.Second, a); len(got) != 0 {
			t.Fatalf("%ds: resent before the resend delay: %+v", d, got)
		}
	}
	if got := at(time.Minute, a); len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("1m: want one resend with endsAt 5m, got %+v", got)
	}
	// Resolved at 70 s: sent at once with endsAt = 70 s.
	got = at(70 * time.Second)
	if len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(70*time.Second)) || !got[0].StartsAt.Equal(t0) {
		t.Fatalf("resolved: %+v", got)
	}
	if got := at(75 * time.Second); len(got) != 0 {
		t.Fatalf("resolution resent at once: %+v", got)
	}
	if got := at(130 * time.Second); len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(70*time.Second)) {
		t.Fatalf("resolution not resent after the delay: %+v", got)
	}
	// Fires again at 3m: a new alert (new startsAt), sent at once.
	b := a
	b.FiredAt = t0.Add(3 * time.Minute)
	if got := at(3*time.Minute, b); len(got) != 1 || !got[0].StartsAt.Equal(b.FiredAt) || !got[0].EndsAt.After(b.FiredAt) {
		t.Fatalf("fired again: %+v", got)
	}
	at(4 * time.Minute) // resolves at 4m
	n.Update(t0.Add(4*time.Minute+ResolvedRetention+time.Second), nil)
	queued(n)
	if len(n.active) != 0 {
		t.Fatalf("resolved alert kept after %s: %d tracked", ResolvedRetention, len(n.active))
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestExternalLabelsDefaultToTheDownwardAPI(t *testing.T) {
	env := map[string]string{"POD_NAME": "spire-agent-x7", "POD_NAMESPACE": "spire", "NODE_NAME": "node-3"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if got := ExternalLabels(nil, lookup).String(); got != `{namespace="spire", node="node-3", pod="spire-agent-x7"}` {
		t.Errorf("default: %s", got)
	}
	if got := ExternalLabels(map[string]string{}, lookup); !got.IsEmpty() {
		t.Errorf("explicit {}: %s", got)
	}
	if got := ExternalLabels(map[string]string{"cluster": "prod"}, lookup).String(); got != `{cluster="prod"}` {
		t.Errorf("configured: %s", got)
	}
	if got := ExternalLabels(nil, noEnv); !got.IsEmpty() {
		t.Errorf("outside Kubernetes: %s", got)
	}
}

// A full queue drops the oldest alerts and counts them; the newest stay.
func TestQueueDropsOldestAndCounts(t *testing.T) {
	n := newNotifier(t, Config{QueueCapacity: 3})
	var firing []Alert
	for i := range 5 {
		firing = append(firing, Alert{Labels: labels.FromStrings("alertname", "A", "i", string(rune('0'+i))), FiredAt: t0})
	}
	n.Update(t0, firing[:2])
	n.Update(t0, firing) // 3 new ones: 5 queued, capacity 3
	if v := testutil.ToFloat64(n.droppedC); v != 2 {
		t.Errorf("dropped %v, want 2", v)
	}
	if v := testutil.ToFloat64(n.queueLen); v != 3 {
		t.Errorf("queue length %v, want 3", v)
	}
	got := queued(n)
	var is []string
	for _, p := range got {
		is = append(is, p.Labels["i"])
	}
	// The two oldest (0 and 1, queued first) were dropped.
	if strings.Join(is, "") == "" || strings.Contains(strings.Join(is, ""), "0") || strings.Contains(strings.Join(is, ""), "1") {
		t.Errorf("kept %v, want the three newest (2,3,4 in any order)", is)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Posts go to /api/v2/alerts as JSON; failures are counted per alert and
// logged once until the Alertmanager answers again.
func TestSendCountsFailuresAndLogsOncePerChange(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	bodies := make(chan []PostableAlert, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prefix/api/v2/alerts" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var got []PostableAlert
		if err := json.Unmarshal(b, &got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if fail.Load() {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}
		bodies <- got
	}))
	defer srv.Close()
	logs := &syncBuffer{}
	n, err := New(Options{Config: Config{Alertmanagers: []AlertmanagerConfig{{URL: srv.URL + "/prefix/"}}},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Lookup: noEnv, EvaluationInterval: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	am := srv.URL + "/prefix/api/v2/alerts"
	for i := range 3 {
		n.Update(t0.Add(time.Duration(i)*time.Minute), []Alert{{Labels: labels.FromStrings("alertname", "A"), FiredAt: t0}})
		<-bodies
	}
	waitCount(t, func() float64 { return testutil.ToFloat64(n.errors.WithLabelValues(am)) }, 3)
	fail.Store(false)
	n.Update(t0.Add(3*time.Minute), nil) // resolved
	if got := <-bodies; len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("resolved: %+v", got)
	}
	waitCount(t, func() float64 { return testutil.ToFloat64(n.sent.WithLabelValues(am)) }, 4)
	if v := testutil.ToFloat64(n.errors.WithLabelValues(am)); v != 3 {
		t.Errorf("errors %v, want 3", v)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "works again") })
	out := logs.String()
	if c := strings.Count(out, "sending alerts to Alertmanager failed"); c != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", c, out)
	}
	if !strings.Contains(out, "503 Service Unavailable: overloaded") {
		t.Errorf("the log does not say why:\n%s", out)
	}
}

func waitCount(t *testing.T, f func() float64, want float64) {
	t.Helper()
	waitFor(t, func() bool { return f() == want })
	if got := f(); got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	parse := func(s string) error {
		var c Config
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			t.Fatal(err)
		}
		return errors.Join(cfg.Decode(&n, &c, "alerting"), cfg.Prefix("alerting", c.Validate()))
	}
	if err := parse(`
alertmanagers:
  - url: http://alertmanager.monitoring:9093
    timeout: 5s
    bearerTokenFile: /var/run/secrets/token
  - {url: "https://am.example:9093/prefix", tls: {caFile: /ca.pem}, headers: {X-Scope-OrgID: medic}}
externalLabels: {cluster: prod}
externalURL: http://medic.example:9555
resendDelay: 30s
queueCapacity: 100
`); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	err := parse(`
alertmanagers:
  - url: ""
  - url: "ftp://x"
  - {url: "http://a:9093", tls: {caFile: /ca.pem}, timeout: 0s}
  - {url: "http://a:9093/"}
  - {url: "https://b:9093", basicAuth: {passwordFile: /p}, bearerTokenFile: /t}
externalLabels: {"bad-name": x, empty: ""}
externalURL: "/relative"
queueCapacity: -1
`)
	for _, want := range []string{
		"alerting.alertmanagers[0].url: is required",
		"alerting.alertmanagers[1].url: \"ftp://x\": scheme must be http or https",
		"alerting.alertmanagers[2].tls: is set but the url scheme is http",
		"alerting.alertmanagers[3].url: \"http://a:9093/\" is already alertmanagers[2]",
		"alerting.alertmanagers[4].basicAuth.username: is required",
		"alerting.alertmanagers[4].basicAuth: and bearerTokenFile are exclusive",
		"alerting.externalLabels.bad-name: invalid label name",
		"alerting.externalLabels.empty: empty value",
		"alerting.externalURL:",
		"alerting.queueCapacity: must not be negative",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if err := parse(`{resendDelay: 30s}`); err == nil || !strings.Contains(err.Error(), "no effect without an Alertmanager") {
		t.Errorf("settings without an Alertmanager: %v", err)
	}
	if err := parse(`{alertmanagers: [{url: "http://a:9093", tiemout: 5s}]}`); err == nil || !strings.Contains(err.Error(), "tiemout: unknown field") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestGeneratorURL(t *testing.T) {
	host, _ := os.Hostname()
	podIP := func(k string) (string, bool) { return "10.0.0.7", k == "POD_IP" }
	for _, c := range []struct {
		ext, listen string
		lookup      func(string) (string, bool)
		want        string
	}{
		{"https://medic.example/", ":9555", podIP, "https://medic.example/status"},
		{"", "127.0.0.1:9555", podIP, "http://127.0.0.1:9555/status"},
		{"", ":9555", podIP, "http://10.0.0.7:9555/status"},
		{"", "0.0.0.0:9555", noEnv, "http://" + host + ":9555/status"},
		{"", "[::1]:9555", noEnv, "http://[::1]:9555/status"},
	} {
		if got := GeneratorURL(c.ext, c.listen, c.lookup); got != c.want {
			t.Errorf("GeneratorURL(%q, %q) = %q, want %q", c.ext, c.listen, got, c.want)
		}
	}
}
