package main

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/plugintest"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/plugins/sdk"
)

var binary, binarySum string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medic-webhook-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		var err error
		if binary, err = plugintest.Build(dir, plugintest.Module+"/plugins/examples/webhook", "webhook"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binarySum, _ = plugintest.SHA256(binary)
		return m.Run()
	}()
	os.Exit(code)
}

// receiver is an httptest server answering with the scripted statuses
// (the last one repeats) and recording every request.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	header   http.Header
	reqs     []recorded
}

type recorded struct {
	header http.Header
	body   []byte
	at     time.Time
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses, header: http.Header{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		if req.Method != http.MethodPost {
			t.Errorf("method %s", req.Method)
		}
		r.reqs = append(r.reqs, recorded{header: req.Header.Clone(), body: body, at: time.Now()})
		code := r.statuses[min(len(r.reqs), len(r.statuses))-1]
		for k, v := range r.header {
			w.Header()[k] = v
		}
		r.mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d\n", code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

var incident = sdk.Incident{ID: "inc-1", Alert: "AgentDown", Labels: map[string]string{"probe": "agent"}, Value: 1,
	Step: 2, Action: "notify", Attempt: 1, MaxAttempts: 3, Started: time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)}

func newTestWebhook(env map[string]string) *webhook {
	return &webhook{client: &http.Client{}, now: time.Now, getenv: func(k string) string { return env[k] }}
}

func cfgJSON(t *testing.T, m map[string]any) json.RawMessage {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verify checks a request's signature the way a receiver should.
func verify(t *testing.T, secret string, r recorded) {
	t.Helper()
	ts := r.header.Get(HeaderTimestamp)
	want := Sign([]byte(secret), ts, r.body)
	if got := r.header.Get(HeaderSignature); !hmac.Equal([]byte(got), []byte(want)) {
		t.Fatalf("signature %q, want %q", got, want)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("timestamp %q", ts)
	}
}

func TestPayloadHeadersAndSignature(t *testing.T) {
	rcv := newReceiver(t, http.StatusAccepted)
	w := newTestWebhook(map[string]string{"MEDIC_PLUGIN_NAME": "notify-hook"})
	u := strings.Replace(rcv.URL, "http://", "http://user:pw@", 1) + "/hook?token=abc"
	res, err := w.Remediate(context.Background(), incident, cfgJSON(t, map[string]any{
		"url": u, "secret": "s3cret", "headers": map[string]string{"X-Team": "sre"}}))
	if err != nil {
		t.Fatal(err)
	}
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	verify(t, "s3cret", r)
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Team") != "sre" || r.header.Get(HeaderDelivery) != "inc-1/2/1" {
		t.Fatalf("headers %v", r.header)
	}
	var p Payload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != "remediation" || p.Plugin != "notify-hook" || !reflect.DeepEqual(p.Incident, incident) || p.SentAt.IsZero() {
		t.Fatalf("payload %+v", p)
	}
	if !strings.Contains(res.Message, "202 after 1 request") || res.Details["requests"] != 1 {
		t.Fatalf("result %+v", res)
	}
	if s := fmt.Sprint(res); strings.Contains(s, "pw") || strings.Contains(s, "token") {
		t.Fatalf("result leaks credentials: %s", s)
	}
}

func TestRetriesUntilSuccess(t *testing.T) {
	rcv := newReceiver(t, 503, 500, 200)
	w := newTestWebhook(nil)
	res, err := w.Remediate(context.Background(), incident, cfgJSON(t, map[string]any{"url": rcv.URL, "initialBackoff": "20ms"}))
	if err != nil {
		t.Fatal(err)
	}
	reqs := rcv.requests()
	if len(reqs) != 3 || res.Details["requests"] != 3 {
		t.Fatalf("%d requests, result %+v", len(reqs), res)
	}
	// Exponential backoff: the second wait is about twice the first.
	if gap1, gap2 := reqs[1].at.Sub(reqs[0].at), reqs[2].at.Sub(reqs[1].at); gap1 < 15*time.Millisecond || gap2 < 30*time.Millisecond {
		t.Fatalf("waits %s, %s: want about 20ms then 40ms", gap1, gap2)
	}
	if reqs[0].header.Get(HeaderSignature) != "" {
		t.Fatal("signed without a secret")
	}
}

func TestRetriesExhaustedIsRetryable(t *testing.T) {
	rcv := newReceiver(t, 500)
	_, err := newTestWebhook(nil).Remediate(context.Background(), incident, cfgJSON(t, map[string]any{"url": rcv.URL, "initialBackoff": "1ms", "retries": 4}))
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "after 4 request(s)") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("err = %v", err)
	}
	if n := len(rcv.requests()); n != 4 {
		t.Fatalf("%d requests, want 4", n)
	}
}

func TestClientErrorIsPermanent(t *testing.T) {
	rcv := newReceiver(t, 401)
	_, err := newTestWebhook(nil).Remediate(context.Background(), incident, cfgJSON(t, map[string]any{"url": rcv.URL}))
	if !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err = %v, want permanent", err)
	}
	if n := len(rcv.requests()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestRetriesStayWithinTheDeadline(t *testing.T) {
	rcv := newReceiver(t, 503)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	// 20 retries 300ms apart would take 6s: the plugin must stop retrying
	// when the next wait no longer fits the 1s deadline.
	_, err := newTestWebhook(nil).Remediate(ctx, incident, cfgJSON(t, map[string]any{
		"url": rcv.URL, "retries": 20, "initialBackoff": "300ms", "maxBackoff": "300ms"}))
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "no time left") {
		t.Fatalf("err = %v", err)
	}
	// Generous bound (a loaded CI machine): well below the 6s of waiting
	// out every retry.
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("returned after %s: the plugin kept retrying past its 1s deadline", d)
	}
	if n := len(rcv.requests()); n < 2 || n >= 20 {
		t.Fatalf("%d requests", n)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	rcv := newReceiver(t, 429)
	rcv.header.Set("Retry-After", "120")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := newTestWebhook(nil).Remediate(ctx, incident, cfgJSON(t, map[string]any{"url": rcv.URL, "initialBackoff": "1ms"}))
	if err == nil || !strings.Contains(err.Error(), "no time left") {
		t.Fatalf("err = %v: a 120s Retry-After does not fit a 5s deadline", err)
	}
	if n := len(rcv.requests()); n != 1 {
		t.Fatalf("%d requests", n)
	}
}

func TestValidate(t *testing.T) {
	w := newTestWebhook(map[string]string{"SET": "x"})
	err := w.Validate(context.Background(), cfgJSON(t, map[string]any{
		"url": "ftp://x", "secret": "a", "secretEnv": "SET", "retries": 0, "initialBackoff": "soon",
		"headers": map[string]string{"x-medic-signature": "forged"}}))
	var got []string
	for _, fe := range sdk.FieldErrors(err) {
		got = append(got, fe.Path)
	}
	want := []string{"url", "secret", "retries", "initialBackoff", "headers.x-medic-signature"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problem paths %v, want %v (%v)", got, want, err)
	}
	if err := w.Validate(context.Background(), cfgJSON(t, map[string]any{"url": "http://x", "secretEnv": "UNSET"})); err == nil ||
		!strings.Contains(err.Error(), "secretEnv: environment variable UNSET is empty") {
		t.Fatalf("err = %v", err)
	}
	if err := w.Validate(context.Background(), cfgJSON(t, map[string]any{"url": "http://x", "bogus": 1})); err == nil ||
		err.Error() != "bogus: unknown field" {
		t.Fatalf("err = %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/secret", []byte("k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, secret, err := w.load(cfgJSON(t, map[string]any{"url": "https://x", "secretFile": dir + "/secret"})); err != nil || string(secret) != "k3y" {
		t.Fatalf("secretFile: %q, %v", secret, err)
	}
}

// The real binary, run by medic's plugin host as an action.
func TestBinaryThroughThePluginHost(t *testing.T) {
	rcv := newReceiver(t, 502, 200)
	c := plugins.DefaultConfig()
	c.Path, c.SHA256 = binary, binarySum
	c.Env = map[string]string{"HOOK_SECRET": "from-env"}
	h, err := plugins.New(map[string]*plugins.Config{"notify-hook": c}, plugins.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := actions.Env{Name: "notify", Plugins: h}
	if _, err := plugins.NewAction(context.Background(), plugins.ActionConfig{Name: "notify-hook",
		Config: map[string]any{"url": "gopher://x"}}, env); err == nil || !strings.Contains(err.Error(), "actions.notify.plugin.config.url: must be an http") {
		t.Fatalf("bad config: err = %v", err)
	}
	a, err := plugins.NewAction(context.Background(), plugins.ActionConfig{Name: "notify-hook",
		Config: map[string]any{"url": rcv.URL, "secretEnv": "HOOK_SECRET", "initialBackoff": "10ms"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(context.Background(), actions.Incident{ID: "inc-9", Alert: "RelayDown", Step: 1, Attempt: 2, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	reqs := rcv.requests()
	if len(reqs) != 2 || res.Details["requests"] != 2.0 || res.Details["plugin"] != "notify-hook" || res.Details["pluginVersion"] != Version {
		t.Fatalf("%d requests, result %+v", len(reqs), res)
	}
	verify(t, "from-env", reqs[1])
	var p Payload
	if err := json.Unmarshal(reqs[1].body, &p); err != nil || p.Plugin != "notify-hook" || p.Incident.ID != "inc-9" || p.Incident.Attempt != 2 {
		t.Fatalf("payload %+v (%v)", p, err)
	}
	// A permanent answer stays permanent across the process boundary.
	rcv.mu.Lock()
	rcv.statuses, rcv.reqs = []int{403}, nil
	rcv.mu.Unlock()
	if _, err := a.Run(context.Background(), actions.Incident{ID: "inc-10"}); !actions.IsPermanent(err) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err = %v, want permanent", err)
	}
}

// An alert on a ratio that divided by zero has the value NaN: the payload
// carries it as "NaN" (as Prometheus's API does) instead of failing the
// attempt permanently with "json: unsupported value: NaN".
func TestNonFiniteValueIsDelivered(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		rcv := newReceiver(t, http.StatusOK)
		inc := incident
		inc.Value = v
		if _, err := newTestWebhook(nil).Remediate(context.Background(), inc, cfgJSON(t, map[string]any{"url": rcv.URL})); err != nil {
			t.Fatalf("value %v: %v", v, err)
		}
		r := rcv.requests()[0]
		want := map[bool]string{true: `"value":"NaN"`}[math.IsNaN(v)]
		if !math.IsNaN(v) {
			want = map[bool]string{true: `"value":"+Inf"`, false: `"value":"-Inf"`}[v > 0]
		}
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("value %v: payload %s lacks %s", v, r.body, want)
		}
		var p Payload
		if err := json.Unmarshal(r.body, &p); err != nil || fmt.Sprint(p.Incident.Value) != fmt.Sprint(v) {
			t.Fatalf("value %v: decoded %v, %v", v, p.Incident.Value, err)
		}
	}
}
