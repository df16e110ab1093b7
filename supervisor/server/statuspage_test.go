package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// A /status document as remedy and the supervisor write it, with what
// only a held incident or a non-finite value has.
const heldDoc = `{
  "version": "v1", "startedAt": "2026-12-01T12:00:00Z", "now": "2026-12-01T12:01:00Z", "dryRun": true, "paused": true, "pausedBy": "pod annotation medic.io/pause",
  "summary": {"firing": 1, "pending": 0, "remediating": 0, "held": 1, "exhausted": 1, "probesDown": 0, "ruleErrors": 0},
  "probes": [], "rules": [],
  "alerts": [{"alert": "RatioBroken", "labels": {"alertname": "RatioBroken", "host": "n1"}, "state": "firing", "value": "NaN",
              "activeAt": "2026-12-01T12:00:30Z", "incident": "inc-1"}],
  "incidents": [
    {"id": "inc-1", "alert": "RatioBroken", "labels": {"host": "n1"}, "state": "held", "step": 2, "attempt": 1, "maxAttempts": 3,
     "heldReason": "fleet", "heldMessage": "2 of 2 fleet slots taken", "nextAttemptAt": "2026-12-01T12:01:30Z",
     "action": "restart-agent", "ladder": ["reconnect", "restart-agent"], "value": "+Inf", "startedAt": "2026-12-01T12:00:30Z", "round": 1, "attempts": []},
    {"id": "inc-2", "alert": "Other", "labels": {}, "state": "exhausted", "step": 1, "action": "a", "ladder": ["a"], "value": 1,
     "startedAt": "2026-12-01T11:00:00Z", "nextAttemptAt": "2026-12-01T13:00:00Z", "round": 2, "attempts": []}
  ],
  "guards": [{"action": "restart-agent", "guards": [
    {"guard": "paused", "active": true, "detail": "the pause file"},
    {"guard": "fleet-outage", "active": false, "detail": "share < 0.3 (source fleet: prometheus, disabled (no url); onError hold) — inactive: counts as met"}]}],
  "sources": [{"name": "fleet", "kind": "prometheus", "url": "http://prometheus:9090", "enabled": true, "queries": 12, "failures": 3,
               "lastSuccessAt": "2026-12-01T12:00:50Z", "lastError": "source fleet: timeout: context deadline exceeded", "lastErrorAt": "2026-12-01T12:00:55Z"}]
}`

func TestStatusPageRendersHeldIncidentsAndNonFiniteValues(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal([]byte(heldDoc), &doc); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Listener: ln, Status: func() any { return doc }, Logger: slog.New(slog.DiscardHandler)})
	go s.Run(t.Context())
	resp, err := http.Get("http://" + s.Addr() + "/status?format=html")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := regexp.MustCompile(`\s+`).ReplaceAllString(regexp.MustCompile(`(?s)<style.*?</style>|<[^>]*>`).ReplaceAllString(string(b), " "), " ")
	text = strings.NewReplacer("&#34;", `"`, "&quot;", `"`, "&#43;", "+").Replace(text)
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	for _, want := range []string{
		"1 held", "1 exhausted", "paused: yes", "dry run: yes", "Paused by pod annotation medic.io/pause",
		"position step 2 of 2 (restart-agent), attempt 1/3",
		"waiting on fleet : 2 of 2 fleet slots taken",
		"next attempt 2026-12-01 12:01:30.000Z in 30 s (if the guard allows it then)",
		// An exhausted incident walked again later (retryExhaustedAfter).
		"round 2", "next attempt 2026-12-01 13:00:00.000Z in 59 min",
		"alert value +Inf", "NaN",
		// Guards per action, which are inactive; remote sources with their errors.
		"restart-agent paused yes the pause file", "fleet-outage no share &lt; 0.3 (source fleet",
		"fleet http://prometheus:9090 12 3 2026-12-01 12:00:50.000Z 10 s ago source fleet: timeout: context deadline exceeded",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q:\n%s", want, text)
		}
	}
}

// The state dir's health and a probe capped by the series limit are on
// the HTML page, not only in the JSON (issue 10).
func TestStatusPageShowsStateDirAndSeriesDropped(t *testing.T) {
	const doc = `{"version": "v1", "startedAt": "2026-12-01T12:00:00Z", "now": "2026-12-01T12:01:00Z",
  "summary": {}, "alerts": [], "incidents": [], "rules": [],
  "probes": [{"name": "big", "kind": "scrape", "up": 1, "lastSeen": "2026-12-01T12:00:58Z", "samples": 100000, "durationSeconds": 0.2, "seriesDropped": 50000}],
  "store": {"series": 100000, "maxSeries": 100000, "samples": 1, "droppedSamples": 50000},
  "state": {"dir": "/var/lib/medic", "writable": false,
    "problems": [{"file": "budgets.json", "error": "write /var/lib/medic/budgets.json.tmp: no space left on device", "since": "2026-12-01T12:00:40Z"}],
    "recovered": [{"file": "incidents.json", "message": "moved aside to incidents.json.corrupt-1 (unexpected end of JSON input)", "at": "2026-12-01T12:00:00Z"}]}}`
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	text := renderedText(t, v)
	for _, want := range []string{
		"State dir /var/lib/medic cannot be written : medic does not act",
		"budgets.json : write /var/lib/medic/budgets.json.tmp: no space left on device since 2026-12-01 12:00:40.000Z",
		"State recovered at start", "incidents.json : moved aside to incidents.json.corrupt-1",
		"50000 series dropped by the store's series cap",
		"state dir /var/lib/medic : cannot be written",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q:\n%s", want, text)
		}
	}
	// A healthy state dir and an uncapped probe add no notice.
	m := v.(map[string]any)
	m["state"] = map[string]any{"dir": "/var/lib/medic", "writable": true}
	m["probes"].([]any)[0].(map[string]any)["seriesDropped"] = 0
	text = renderedText(t, v)
	for _, bad := range []string{"cannot be written", "series dropped", "State recovered"} {
		if strings.Contains(text, bad) {
			t.Errorf("healthy page has %q:\n%s", bad, text)
		}
	}
}

// renderedText serves doc as /status and returns the HTML page's text.
func renderedText(t *testing.T, doc any) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := New(Options{Listener: ln, Status: func() any { return doc }, Logger: slog.New(slog.DiscardHandler)})
	go s.Run(ctx)
	resp, err := http.Get("http://" + s.Addr() + "/status?format=html")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	text := regexp.MustCompile(`\s+`).ReplaceAllString(regexp.MustCompile(`(?s)<style.*?</style>|<[^>]*>`).ReplaceAllString(string(b), " "), " ")
	return strings.NewReplacer("&#34;", `"`, "&quot;", `"`, "&#43;", "+", "&#39;", "'").Replace(text)
}
