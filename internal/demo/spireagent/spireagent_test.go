package spireagent

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"go.uber.org/goleak"

	"github.com/medic-sidecar/medic/internal/clock"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

const interval = 5 * time.Second

// start runs a peer on a fake clock, without jitter unless o has a Seed.
func start(t *testing.T, o Options) (*Peer, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(t0)
	o.NoJitter = o.Seed == 0
	if o.Clock == nil {
		o.Clock = fc
	}
	if o.Interval == 0 {
		o.Interval = interval
	}
	if o.Host == "" {
		o.Host = "node-1"
	}
	p := New(o)
	if _, err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	waitLoop(t, fc)
	return p, fc
}

// waitLoop waits until the sync loop is parked on the clock.
func waitLoop(t *testing.T, fc *clock.Fake) {
	t.Helper()
	if !fc.BlockUntil(1, 10*time.Second) {
		t.Fatal("sync loop never waited on the clock")
	}
}

// step moves the fake clock to the next scheduled attempt and waits for it.
func step(t *testing.T, p *Peer, fc *clock.Fake) time.Time {
	t.Helper()
	next := p.Syncs().NextAttempt
	if next.IsZero() {
		t.Fatal("no attempt scheduled")
	}
	before := p.Syncs().Attempts
	fc.Set(next)
	waitLoop(t, fc)
	if got := p.Syncs().Attempts; got != before+1 {
		t.Fatalf("at %v: attempts %d -> %d, want +1", next.Sub(t0), before, got)
	}
	return next
}

// scrape fetches and parses the page: series (as label strings) to value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	return parse(t, b, resp.Header.Get("Content-Type"))
}

func parse(t *testing.T, b []byte, ct string) map[string]float64 {
	t.Helper()
	p, err := textparse.New(b, ct, labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil || p == nil {
		t.Fatalf("content type %q: %v", ct, err)
	}
	out := map[string]float64{}
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("page does not parse: %v", err)
		}
		if e != textparse.EntrySeries {
			continue
		}
		_, _, v := p.Series()
		var l labels.Labels
		p.Labels(&l)
		if _, dup := out[l.String()]; dup {
			t.Fatalf("duplicate series %s", l)
		}
		out[l.String()] = v
	}
}

func syncKey(status string) string {
	return `{__name__="spire_agent_manager_sync_fetch_entries_updates", host="node-1", status="` + status + `"}`
}

func TestPageMatchesTheRealAgent(t *testing.T) {
	real := parse(t, []byte(realPage), "text/plain; version=0.0.4")
	p, fc := start(t, Options{})
	for range 68 {
		step(t, p, fc)
	}
	got := scrape(t, p.URL())
	// Every series of the real page is there, and no other.
	for k := range real {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		}
	}
	for k := range got {
		if _, ok := real[k]; !ok {
			t.Errorf("extra %s", k)
		}
	}
	if got[syncKey("OK")] != 69 {
		t.Errorf("OK syncs = %v, want 69", got[syncKey("OK")])
	}
	count := `{__name__="spire_agent_manager_sync_fetch_entries_updates_elapsed_time_count", host="node-1", status="OK"}`
	if got[count] != 69 {
		t.Errorf("elapsed count = %v", got[count])
	}
	uptime := `{__name__="spire_agent_uptime_in_ms", host="node-1"}`
	if want := float64((68 * interval).Milliseconds()); got[uptime] != want {
		t.Errorf("uptime = %v, want %v", got[uptime], want)
	}
	// Static series are served as scraped.
	if v := got[`{__name__="spire_agent_sync_entries_total", host="node-1"}`]; v != 2 {
		t.Errorf("sync_entries_total = %v", v)
	}
}

func TestHostLabel(t *testing.T) {
	p, _ := start(t, Options{Host: "agent.example.org"})
	for k := range scrape(t, p.URL()) {
		if strings.Contains(k, "host=") && !strings.Contains(k, `host="agent_example_org"`) {
			t.Fatalf("series with another host: %s", k)
		}
	}
	if got := scrape(t, p.URL())[strings.ReplaceAll(syncKey("OK"), "node-1", "agent_example_org")]; got != 1 {
		t.Errorf("OK = %v", got)
	}
}

func TestCadenceHealthy(t *testing.T) {
	p, fc := start(t, Options{})
	if s := p.Syncs(); s.ByStatus["OK"] != 1 || !s.LastAttempt.Equal(t0) || !s.Ready {
		t.Fatalf("first sync is not at start: %+v", s)
	}
	for i := 1; i <= 10; i++ {
		if at := step(t, p, fc); at.Sub(t0) != time.Duration(i)*interval {
			t.Fatalf("attempt %d at %v, want %v", i+1, at.Sub(t0), time.Duration(i)*interval)
		}
	}
	// Nothing happens between attempts.
	fc.Advance(interval - time.Millisecond)
	if got := p.Syncs().ByStatus["OK"]; got != 11 {
		t.Fatalf("OK = %d, want 11", got)
	}
}

func TestJitter(t *testing.T) {
	p, fc := start(t, Options{Seed: 42})
	gaps := map[time.Duration]bool{}
	prev := t0
	for range 200 {
		at := step(t, p, fc)
		gap := at.Sub(prev)
		if gap < 4500*time.Millisecond || gap > 5500*time.Millisecond {
			t.Fatalf("gap %v outside 5s ±10%%", gap)
		}
		gaps[gap] = true
		prev = at
	}
	if len(gaps) < 100 {
		t.Errorf("only %d distinct gaps in 200: not jittered", len(gaps))
	}
}

func TestBackoffProgression(t *testing.T) {
	p, fc := start(t, Options{})
	step(t, p, fc)
	step(t, p, fc) // 3 OK
	if _, ok := scrape(t, p.URL())[syncKey("Unavailable")]; ok {
		t.Fatal("status=Unavailable exists before any failure (zero-initialised)")
	}
	if err := p.SetMode(Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	// The agent only notices at its next scheduled attempt (at 15 s).
	prev := step(t, p, fc)
	if prev.Sub(t0) != 3*interval {
		t.Fatalf("first failure at %v", prev.Sub(t0))
	}
	page := scrape(t, p.URL())
	if page[syncKey("Unavailable")] != 1 || page[syncKey("OK")] != 3 {
		t.Fatalf("after the first failure: OK=%v Unavailable=%v", page[syncKey("OK")], page[syncKey("Unavailable")])
	}
	// Gaps grow ×1.5 per failure: 7.5 s, 11.25 s, 16.875 s, … up to 4 min.
	want := []time.Duration{7500, 11250, 16875, 25312, 37968, 56953, 85429, 128144, 192216, 240000, 240000, 240000}
	for i, w := range want {
		at := step(t, p, fc)
		gap := at.Sub(prev)
		if d := gap - w*time.Millisecond; d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("gap after failure %d: %v, want %v", i+1, gap, w*time.Millisecond)
		}
		if i > 0 && gap < BackoffWait(interval, i) {
			t.Fatalf("gap %v shrank", gap)
		}
		prev = at
	}
	s := p.Syncs()
	if s.ByStatus["OK"] != 3 || s.ByStatus["Unavailable"] != 13 || s.ConsecutiveFailures != 13 {
		t.Fatalf("counters %+v", s)
	}
	// The server comes back: the agent sees it only when its 4 min wait ends,
	// then syncs every interval again.
	if err := p.SetMode(Healthy()); err != nil {
		t.Fatal(err)
	}
	fc.Advance(time.Minute)
	if p.Syncs().ByStatus["OK"] != 3 {
		t.Fatal("the agent synced before its backoff wait ended")
	}
	at := step(t, p, fc)
	if at.Sub(prev) != 4*time.Minute {
		t.Fatalf("recovery attempt after %v, want 4m", at.Sub(prev))
	}
	if s := p.Syncs(); s.ByStatus["OK"] != 4 || s.ConsecutiveFailures != 0 || s.ByStatus["Unavailable"] != 13 {
		t.Fatalf("after recovery %+v", s)
	}
	if next := step(t, p, fc); next.Sub(at) != interval {
		t.Fatalf("after a success the gap is %v, want %v", next.Sub(at), interval)
	}
	// Series never expire: the failure counter stays on the page.
	if scrape(t, p.URL())[syncKey("Unavailable")] != 13 {
		t.Error("Unavailable counter left the page")
	}
}

func TestBackoffCap(t *testing.T) {
	for _, tc := range []struct {
		interval, cap time.Duration
	}{
		{5 * time.Second, 4 * time.Minute},
		{20 * time.Second, 8 * time.Minute},
		{200 * time.Millisecond, 9600 * time.Millisecond},
	} {
		if got := MaxWait(tc.interval); got != tc.cap {
			t.Errorf("MaxWait(%v) = %v, want %v", tc.interval, got, tc.cap)
		}
		if got := BackoffWait(tc.interval, 50); got != tc.cap {
			t.Errorf("BackoffWait(%v, 50) = %v, want %v", tc.interval, got, tc.cap)
		}
	}
	// Jittered waits stay within ±10% of the cap.
	p, fc := start(t, Options{Interval: 20 * time.Second, Seed: 7})
	if err := p.SetMode(Failing("DeadlineExceeded")); err != nil {
		t.Fatal(err)
	}
	prev := step(t, p, fc)
	for i := 1; i <= 20; i++ {
		at := step(t, p, fc)
		w := BackoffWait(20*time.Second, i)
		if gap := at.Sub(prev); gap < w*9/10 || gap > w*11/10 {
			t.Fatalf("gap %d = %v, want %v ±10%%", i, gap, w)
		}
		prev = at
	}
}

func TestRestartResetsCounters(t *testing.T) {
	p, fc := start(t, Options{})
	url := p.URL()
	last := map[string]float64{}
	checkMonotonic := func() {
		t.Helper()
		for k, v := range scrape(t, url) {
			if strings.Contains(k, "sync_fetch_entries_updates") && !strings.Contains(k, "quantile") && v < last[k] {
				t.Fatalf("%s went down from %v to %v without a restart", k, last[k], v)
			}
			last[k] = v
		}
	}
	for range 5 {
		step(t, p, fc)
		checkMonotonic()
	}
	if err := p.SetMode(Failing("PermissionDenied")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		step(t, p, fc)
		checkMonotonic()
	}
	if err := p.SetMode(Healthy()); err != nil {
		t.Fatal(err)
	}
	fc.Advance(time.Second)
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLoop(t, fc)
	if p.URL() != url {
		t.Fatalf("restarted on %s, was %s", p.URL(), url)
	}
	page := scrape(t, url)
	if page[syncKey("OK")] != 1 {
		t.Errorf("OK after restart = %v, want 1 (the sync at start)", page[syncKey("OK")])
	}
	if _, ok := page[syncKey("PermissionDenied")]; ok {
		t.Error("PermissionDenied survived the restart")
	}
	if up := page[`{__name__="spire_agent_uptime_in_ms", host="node-1"}`]; up != 0 {
		t.Errorf("uptime after restart = %v", up)
	}
	s := p.Syncs()
	if s.Starts != 2 || s.Attempts != 1 || !s.NextAttempt.Equal(fc.Now().Add(interval)) {
		t.Errorf("after restart %+v", s)
	}
}

func TestFrozen(t *testing.T) {
	p, fc := start(t, Options{})
	step(t, p, fc)
	if err := p.SetMode(Frozen()); err != nil {
		t.Fatal(err)
	}
	before := scrape(t, p.URL())
	fc.Advance(10 * time.Minute)
	after := scrape(t, p.URL())
	if !mapsEqual(before, after) {
		t.Error("a frozen agent's page changed")
	}
	if s := p.Syncs(); s.Attempts != 2 || s.Mode != "frozen" || !s.NextAttempt.IsZero() {
		t.Errorf("frozen: %+v", s)
	}
	for _, path := range []string{"/live", "/ready"} {
		if code := status(t, p.URL()+path); code != 200 {
			t.Errorf("%s = %d while frozen", path, code)
		}
	}
	// Thawed, the overdue attempt runs at once and the cadence resumes.
	if err := p.SetMode(Healthy()); err != nil {
		t.Fatal(err)
	}
	waitLoop(t, fc)
	if s := p.Syncs(); s.Attempts != 3 || !s.LastAttempt.Equal(fc.Now()) {
		t.Fatalf("after thaw %+v", s)
	}
	step(t, p, fc)
	// A restart cures a hang.
	if err := p.SetMode(Frozen()); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLoop(t, fc)
	if s := p.Syncs(); s.Mode != "healthy" || s.Attempts != 1 || s.Starts != 2 {
		t.Fatalf("after restarting a hung agent %+v", s)
	}
	step(t, p, fc)
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || (v != w && !(math.IsNaN(v) && math.IsNaN(w))) {
			return false
		}
	}
	return true
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: body is not JSON: %v", url, err)
	}
	return resp.StatusCode
}

func refused(t *testing.T, url string) {
	t.Helper()
	_, err := http.Get(url)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("GET %s: %v, want connection refused", url, err)
	}
}

func TestHealthStays200ThroughOutage(t *testing.T) {
	p, fc := start(t, Options{})
	if err := p.SetMode(Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		step(t, p, fc)
		for _, path := range []string{"/live", "/ready"} {
			if code := status(t, p.URL()+path); code != 200 {
				t.Fatalf("%s = %d during an upstream outage", path, code)
			}
		}
	}
}

func TestDown(t *testing.T) {
	p, fc := start(t, Options{})
	step(t, p, fc)
	url := p.URL()
	if err := p.SetMode(Down()); err != nil {
		t.Fatal(err)
	}
	refused(t, url+"/metrics")
	refused(t, url+"/live")
	if s := p.Syncs(); s.Mode != "down" || !s.NextAttempt.IsZero() {
		t.Errorf("down: %+v", s)
	}
	if err := p.SetMode(Frozen()); err == nil {
		t.Error("froze a dead agent")
	}
	fc.Advance(time.Hour)
	if p.Syncs().Attempts != 2 {
		t.Error("a dead agent synced")
	}
	// Back up: a fresh process on the same port, counters from zero.
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, url)[syncKey("OK")]; got != 1 {
		t.Errorf("OK after coming back = %v", got)
	}
	if s := p.Syncs(); s.Starts != 2 || s.Mode != "healthy" {
		t.Errorf("%+v", s)
	}
}

// Restarting an agent while its server is down makes things worse: it is
// not ready, and it exits after StartupTimeout.
func TestRestartDuringOutageCrashes(t *testing.T) {
	p, fc := start(t, Options{})
	if err := p.SetMode(Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	step(t, p, fc)
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLoop(t, fc)
	if code := status(t, p.URL()+"/ready"); code != 500 {
		t.Errorf("/ready = %d for an agent that never synced", code)
	}
	if code := status(t, p.URL()+"/live"); code != 200 {
		t.Errorf("/live = %d", code)
	}
	restarted := fc.Now()
	for p.Syncs().NextAttempt.Before(restarted.Add(43 * time.Second)) {
		step(t, p, fc) // attempts keep failing: 7.5 s, 11.25 s, 16.9 s after the restart
	}
	if s := p.Syncs(); s.Mode != "failing:Unavailable" || s.Attempts != 4 {
		t.Fatalf("before the startup timeout: %+v", s)
	}
	fc.Set(restarted.Add(43 * time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for p.Syncs().Mode != "down" {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not exit: %+v", p.Syncs())
		}
		time.Sleep(time.Millisecond)
	}
	s := p.Syncs()
	if !s.Crashed {
		t.Errorf("%+v", s)
	}
	refused(t, p.URL()+"/metrics")
	// The server is back and the agent is started again: it serves.
	if err := p.SetMode(Healthy()); err != nil {
		t.Fatal(err)
	}
	if code := status(t, p.URL()+"/ready"); code != 200 {
		t.Errorf("/ready = %d", code)
	}
	if s := p.Syncs(); s.Starts != 3 || s.Crashed {
		t.Errorf("%+v", s)
	}
}

func TestStartupTimeoutExact(t *testing.T) {
	p, fc := start(t, Options{Interval: 200 * time.Millisecond, StartupTimeout: 0})
	if err := p.SetMode(Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLoop(t, fc)
	// 43 s × 200ms/5s = 1.72 s.
	fc.Advance(1719 * time.Millisecond)
	waitLoop(t, fc)
	if p.Syncs().Mode == "down" {
		t.Fatal("exited before the startup timeout")
	}
	fc.Advance(time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for p.Syncs().Mode != "down" {
		if time.Now().After(deadline) {
			t.Fatal("did not exit at the startup timeout")
		}
		time.Sleep(time.Millisecond)
	}
	// Negative: never.
	q, fq := start(t, Options{StartupTimeout: -1})
	if err := q.SetMode(Failing("Unavailable")); err != nil {
		t.Fatal(err)
	}
	if err := q.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLoop(t, fq)
	for range 30 {
		step(t, q, fq)
	}
	if q.Syncs().Mode == "down" {
		t.Fatal("exited with StartupTimeout < 0")
	}
}

func TestControlEndpoints(t *testing.T) {
	p, fc := start(t, Options{})
	ctl := p.ControlURL()
	post := func(path string) (int, Syncs) {
		t.Helper()
		resp, err := http.Post(ctl+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s Syncs
		_ = json.NewDecoder(resp.Body).Decode(&s)
		return resp.StatusCode, s
	}
	if code, s := post("/control/mode?mode=failing&code=Unavailable"); code != 200 || s.Mode != "failing:Unavailable" {
		t.Fatalf("%d %+v", code, s)
	}
	step(t, p, fc)
	if got := p.Syncs().ByStatus["Unavailable"]; got != 1 {
		t.Fatalf("Unavailable = %d", got)
	}
	for _, bad := range []string{"/control/mode?mode=failing&code=OK", "/control/mode?mode=failing&code=Nope",
		"/control/mode?mode=failing", "/control/mode?mode=sleepy"} {
		if code, _ := post(bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	resp, err := http.Get(ctl + "/control/restart")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET restart: %s", resp.Status)
	}
	if code, s := post("/control/restart"); code != 200 || s.Starts != 2 || s.Attempts != 1 {
		t.Fatalf("restart: %d %+v", code, s)
	}
	// Down and back through the control port, which outlives the agent.
	if code, _ := post("/control/mode?mode=down"); code != 200 {
		t.Fatal(code)
	}
	refused(t, p.URL()+"/live")
	resp, err = http.Get(ctl + "/control/syncs")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("syncs: %v", err)
	}
	resp.Body.Close()
	if code, s := post("/control/mode?mode=healthy"); code != 200 || s.Mode != "healthy" || s.Starts != 3 {
		t.Fatalf("%d %+v", code, s)
	}
	if code := status(t, p.URL()+"/live"); code != 200 {
		t.Error(code)
	}
}

func TestGzip(t *testing.T) {
	p, _ := start(t, Options{})
	req, _ := http.NewRequest("GET", p.MetricsURL(), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatal("not gzipped")
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	if parse(t, b, resp.Header.Get("Content-Type"))[syncKey("OK")] != 1 {
		t.Error("gzipped page lacks the sync counter")
	}
}

func TestEveryCodeParses(t *testing.T) {
	p, fc := start(t, Options{Interval: time.Second})
	for _, c := range CodeNames() {
		if err := p.SetMode(Failing(c)); err != nil {
			t.Fatal(err)
		}
		step(t, p, fc)
	}
	page := scrape(t, p.URL())
	for _, c := range CodeNames() {
		if page[syncKey(c)] != 1 {
			t.Errorf("%s = %v", c, page[syncKey(c)])
		}
	}
	if len(CodeNames()) != 16 || !slices.Contains(CodeNames(), "Unavailable") || slices.Contains(CodeNames(), "OK") {
		t.Errorf("CodeNames = %v", CodeNames())
	}
}

// TestRealClock runs the loop on the wall clock, as the demo does.
func TestRealClock(t *testing.T) {
	p := New(Options{Interval: 20 * time.Millisecond, Host: "node-1"})
	url, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deadline := time.Now().Add(20 * time.Second)
	for scrape(t, url)[syncKey("OK")] < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("only %+v after 20s", p.Syncs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	refused(t, url+"/metrics")
	if _, err := p.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestDefaultHost(t *testing.T) {
	h, _ := os.Hostname()
	p := New(Options{})
	if p.host != strings.ReplaceAll(h, ".", "_") || p.o.Interval != DefaultInterval || p.startup != 43*time.Second {
		t.Errorf("defaults: host %q interval %v startup %v", p.host, p.o.Interval, p.startup)
	}
}
