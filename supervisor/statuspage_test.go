package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/config"
)

// statusFixture is a medic with something to explain: a probe that cannot
// connect, an alert whose ladder is exhausted, an alert whose remediation
// is held by its precondition (that probe must be up), a pending alert
// with a NaN value and a rule that fails to evaluate. Evaluation is driven
// by hand on a fake clock; the probe and the remedy engine run for real.
type statusFixture struct {
	s   *Supervisor
	clk *clock.Fake
}

func newStatusFixture(t *testing.T) *statusFixture {
	t.Helper()
	// A port nothing listens on: the reachability probe fails with "connection refused".
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	c, err := config.Parse([]byte(`listen: 127.0.0.1:0
stateDir: ` + t.TempDir() + `
evaluationInterval: 5s
probes:
  - name: spire-server
    tcp: {address: "` + closed + `", interval: 5s, timeout: 1s}
actions:
  renew-cert:
    exec: {command: ["false"], timeout: 5s}
    backoff: {policy: constant, initial: 1s, attempts: 1}
    budget: {max: 3, window: 1h}
  restart-agent:
    exec: {command: ["true"], timeout: 5s}
    requires: medic_probe_up{probe="spire-server"} == 1
    backoff: {policy: constant, initial: 1s, attempts: 2}
rules:
  - alert: SVIDExpiringSoon
    expr: label_replace(vector(0.25), "spiffe_id", "spiffe://example.org/agent", "", "")
    labels: {severity: page}
    annotations:
      summary: "The agent's SVID expires in {{ $value }} h"
      description: "Renewal failed; workloads lose their identity when it expires."
    remediate: [renew-cert]
  - alert: SPIREAgentNotSyncing
    expr: label_replace(vector(0), "host", "node-1", "", "")
    labels: {severity: page}
    annotations:
      summary: "SPIRE agent node-1 has not synced with its server in 5m"
    remediate: [restart-agent]
  - alert: SyncRatioUndefined
    expr: vector(0/0)
    for: 1h
    annotations: {summary: "no syncs attempted (ratio 0/0)"}
  - alert: BrokenRule
    expr: vector(1) * on() (label_replace(vector(1), "a", "x", "", "") or label_replace(vector(1), "a", "y", "", ""))
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: c, Clock: clk, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		s.remedy.Wait()
		s.audit.Close()
	})
	s.started.Store(clk.Now().UnixNano())
	go s.server.Run(ctx)
	s.remedy.Start(ctx)
	for _, pr := range s.probes {
		go s.runProbe(ctx, pr)
	}
	waitFor(t, "the probe's first check", func() bool { return s.probes[0].committed.Load() })
	s.EvalOnce(ctx, clk.Now())
	waitFor(t, "an exhausted and a held incident", func() bool {
		var exhausted, held bool
		for _, inc := range s.Status().Incidents {
			exhausted = exhausted || inc.Alert == "SVIDExpiringSoon" && fmt.Sprint(inc.State) == "exhausted"
			n := len(inc.Attempts)
			held = held || inc.Alert == "SPIREAgentNotSyncing" && fmt.Sprint(inc.State) == "held" && n > 0
		}
		return exhausted && held
	})
	// Twelve seconds later, for the relative times.
	clk.Advance(12 * time.Second)
	return &statusFixture{s: s, clk: clk}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *statusFixture) get(t *testing.T, path, accept string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+f.s.Addr()+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStatusPageInChromium renders /status in headless Chromium (a real
// browser asking with its own Accept header) and checks that the page
// answers "why is this alert firing, what is medic waiting for, and when
// will it act next" in its text. It also saves a screenshot (path logged;
// MEDIC_ARTIFACTS keeps it).
func TestStatusPageInChromium(t *testing.T) {
	browser := findChromium(t)
	f := newStatusFixture(t)
	url := "http://" + f.s.Addr() + "/status"

	dir := os.Getenv("MEDIC_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dom := runChromium(t, browser, "--dump-dom", url)
	shot := filepath.Join(dir, "status-page.png")
	runChromium(t, browser, "--screenshot="+shot, "--window-size=1400,2600", "--hide-scrollbars", url)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)

	if strings.Contains(dom, "<script") {
		t.Error("the page has a script; it must read without JavaScript")
	}
	if m := regexp.MustCompile(`(?:src|href)="https?://`).FindString(dom); m != "" {
		t.Errorf("the page loads an external asset: %s", m)
	}
	text := domText(dom)
	for _, want := range []string{
		// The banner.
		"2 firing", "1 pending", "1 held", "1 exhausted", "1 probes down", "1 rule errors", "paused: no", "dry run: no",
		// Why the alerts fire: annotations (templated), labels, value, since when (absolute and relative).
		"The agent's SVID expires in 0.25 h", "Renewal failed; workloads lose their identity when it expires.",
		`spiffe_id="spiffe://example.org/agent"`, `severity="page"`,
		"SPIRE agent node-1 has not synced with its server in 5m",
		"2026-12-01 12:00:00.000Z 12 s ago",
		// A NaN value renders.
		"no syncs attempted (ratio 0/0)", "NaN",
		// What medic waits for and when it acts next.
		"waiting on precondition", "step 1 of 1 (restart-agent), attempt 1/2", "next attempt 2026-12-01 12:00:", "(if the guard allows it then)",
		"none: every step was tried; medic waits for the alert to resolve",
		// Probes say why they are down, and since when.
		"connection refused", "failing since 2026-12-01 12:00:00.000Z",
		// Rules: expr, for, ladder, last evaluation, error.
		`label_replace(vector(0), "host", "node-1", "", "")`, "renew-cert", "restart-agent",
		"found duplicate series for the match group",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	// Each firing alert links to its incident, which is on the page.
	for _, inc := range f.s.Status().Incidents {
		if !strings.Contains(dom, `href="#incident-`+inc.ID+`"`) || !strings.Contains(dom, `id="incident-`+inc.ID+`"`) {
			t.Errorf("no link from alert %s to incident %s", inc.Alert, inc.ID)
		}
	}
	if t.Failed() {
		t.Logf("page text:\n%s", text)
	}
}

// findChromium returns the browser binary; without one the test skips,
// except in CI (CI=true or MEDIC_REQUIRE_CHROMIUM set), where it fails.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium not found, and CI=true or MEDIC_REQUIRE_CHROMIUM is set (apt install chromium)")
	}
	t.Skip("chromium not found")
	return ""
}

func runChromium(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=2000"}
	cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", browser, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

var (
	tagRE   = regexp.MustCompile(`(?s)<style.*?</style>|<[^>]*>`)
	spaceRE = regexp.MustCompile(`\s+`)
)

// domText is the page's text with tags removed and whitespace collapsed.
func domText(dom string) string {
	text := tagRE.ReplaceAllString(dom, " ")
	for _, r := range [][2]string{{"&quot;", `"`}, {"&#34;", `"`}, {"&#39;", "'"}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&nbsp;", " "}} {
		text = strings.ReplaceAll(text, r[0], r[1])
	}
	return strings.TrimSpace(spaceRE.ReplaceAllString(text, " "))
}

// TestStatusJSONKeepsItsFieldNames pins the /status field names released
// before this change: fields may be added, never renamed or removed.
func TestStatusJSONKeepsItsFieldNames(t *testing.T) {
	f := newStatusFixture(t)
	code, body := f.get(t, "/status", "")
	if code != 200 {
		t.Fatalf("/status %d: %s", code, body)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	collectPaths(doc, "", have)
	// The keys of the fixture's document, as of the release before issue 14
	// (fields that are omitted when empty are listed where the fixture has them).
	old := []string{
		"version", "startedAt", "now", "dryRun", "paused", "probes", "alerts", "rules", "incidents", "store", "budgets",
		"probes[].name", "probes[].kind", "probes[].up", "probes[].lastSeen", "probes[].samples", "probes[].durationSeconds",
		"alerts[].alert", "alerts[].labels", "alerts[].annotations", "alerts[].state", "alerts[].value", "alerts[].activeAt", "alerts[].firedAt",
		"rules[].alert", "rules[].expr", "rules[].for", "rules[].health", "rules[].error", "rules[].lastEvaluation", "rules[].active",
		"rules[].active[].alert", "rules[].active[].state", "rules[].active[].labels", "rules[].active[].value",
		"incidents[].id", "incidents[].alert", "incidents[].labels", "incidents[].annotations", "incidents[].state", "incidents[].step",
		"incidents[].action", "incidents[].ladder", "incidents[].value", "incidents[].startedAt", "incidents[].round", "incidents[].attempts",
		"incidents[].attempts[].action", "incidents[].attempts[].step", "incidents[].attempts[].attempt", "incidents[].attempts[].maxAttempts",
		"incidents[].attempts[].startedAt", "incidents[].attempts[].finishedAt", "incidents[].attempts[].result", "incidents[].attempts[].reason",
		"incidents[].attempts[].message", "incidents[].attempts[].value",
		"store.series", "store.maxSeries", "store.samples", "store.droppedSamples", "store.droppedSeries", "store.createdSeries", "store.removedSeries",
		"budgets[].action", "budgets[].max", "budgets[].window", "budgets[].used",
	}
	for _, k := range old {
		if !have[k] {
			t.Errorf("/status lost the field %s", k)
		}
	}
	// And the new ones are there.
	for _, k := range []string{"summary.firing", "summary.held", "summary.exhausted", "probes[].lastError", "probes[].failingSince",
		"alerts[].incident", "rules[].ladder", "rules[].evaluationSeconds", "rules[].annotations"} {
		if !have[k] {
			t.Errorf("/status lacks the new field %s", k)
		}
	}
	if t.Failed() {
		t.Logf("document:\n%s", body)
	}
}

// collectPaths records every key path of a decoded JSON document
// ("incidents[].attempts[].result").
func collectPaths(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			collectPaths(e, p, out)
		}
	case []any:
		for _, e := range v {
			collectPaths(e, prefix+"[]", out)
		}
	}
}
