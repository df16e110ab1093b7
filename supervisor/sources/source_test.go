package sources

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic-sidecar/medic/internal/cfg"
	promserver "github.com/medic-sidecar/medic/internal/testpeers/prometheus"
)

// startPrometheus starts the real Prometheus, skipping (failing in CI)
// when it is not installed.
func startPrometheus(t *testing.T) *promserver.Server {
	t.Helper()
	if _, err := promserver.Binary(); err != nil {
		if promserver.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	p, err := promserver.Start(context.Background(), promserver.Options{Dir: t.TempDir(), ScrapeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// medicPage is a page like a medic's /metrics: medic_alerts{alert,state},
// zero-initialised, served by client_golang on a real HTTP server.
type medicPage struct {
	alerts *prometheus.GaugeVec
	addr   string
}

func newMedicPage(t *testing.T) *medicPage {
	reg := prometheus.NewRegistry()
	p := &medicPage{alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medic_alerts", Help: "h"}, []string{"alert", "state"})}
	reg.MustRegister(p.alerts)
	p.fire(false)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *medicPage) fire(on bool) {
	v := 0.0
	if on {
		v = 1
	}
	p.alerts.WithLabelValues("SPIREAgentNotSyncing", "pending").Set(0)
	p.alerts.WithLabelValues("SPIREAgentNotSyncing", "firing").Set(v)
}

const share = `count(medic_alerts{alert="SPIREAgentNotSyncing",state="firing"} > 0) / count(medic_alerts{alert="SPIREAgentNotSyncing",state="firing"}) < 0.3`

func newSet(t *testing.T, url string, timeout time.Duration) *Set {
	t.Helper()
	set, err := New(map[string]*Config{"fleet": {Prometheus: &PrometheusConfig{URL: url, Timeout: cfg.Duration(timeout)}}},
		Options{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// The share guard against the real Prometheus scraping five medic pages:
// two of five firing is 0.4, not < 0.3 — not met, and the detail says
// "2 of 5"; one of five is met. Answers are cached for the TTL.
func TestShareOnRealPrometheus(t *testing.T) {
	prom := startPrometheus(t)
	var pages []*medicPage
	var targets []promserver.Target
	for i := range 5 {
		p := newMedicPage(t)
		pages = append(pages, p)
		targets = append(targets, promserver.Target{Addr: p.addr, Labels: map[string]string{"pod": "medic-" + string(rune('a'+i))}})
	}
	pages[0].fire(true)
	pages[1].fire(true)
	if err := prom.SetTargets(targets); err != nil {
		t.Fatal(err)
	}
	set := newSet(t, prom.URL, 5*time.Second)
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

	// Wait (real time: Prometheus scrapes every second) until all five are seen.
	var ok bool
	var detail string
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		now = now.Add(5 * time.Second) // past the TTL: a new query
		ok, detail, err = set.Check(ctx, "fleet", share, now)
		if err == nil && strings.Contains(detail, "of 5") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never saw the five pages: ok=%v detail=%q err=%v\n%s", ok, detail, err, prom.Logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if ok || detail != "2 of 5 = 0.4, needs < 0.3" {
		t.Fatalf("two of five firing: ok=%v detail=%q; want not met with \"2 of 5 = 0.4, needs < 0.3\"", ok, detail)
	}

	// Cached for the TTL: asking again within it sends no query.
	src, _ := set.Get("fleet")
	before := testutil.ToFloat64(set.m.queries.WithLabelValues("fleet"))
	for range 3 {
		if ok2, _, _ := set.Check(ctx, "fleet", share, now.Add(4*time.Second)); ok2 != ok {
			t.Fatal("cached answer differs")
		}
	}
	if after := testutil.ToFloat64(set.m.queries.WithLabelValues("fleet")); after != before {
		t.Fatalf("%v queries sent within the TTL, want 0", after-before)
	}

	pages[1].fire(false)
	deadline = time.Now().Add(30 * time.Second)
	for {
		now = now.Add(5 * time.Second)
		ok, detail, err = set.Check(ctx, "fleet", share, now)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one of five firing never met the share guard: detail=%q err=%v", detail, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if st := set.Status(); len(st) != 1 || st[0].Failures != 0 || st[0].Queries == 0 || st[0].LastSuccess.IsZero() {
		t.Fatalf("status %+v", st)
	}
	_ = src

	// A query the server rejects is a query failure, counted.
	_, _, err = set.Check(ctx, "fleet", "rate(medic_alerts[5m]", now.Add(time.Minute))
	if err == nil || !strings.Contains(err.Error(), FailQuery) {
		t.Fatalf("bad query: %v", err)
	}
	if n := testutil.ToFloat64(set.m.failures.WithLabelValues("fleet", FailQuery)); n != 1 {
		t.Fatalf("query failures %v, want 1", n)
	}
	// A range vector is no answer to a requirement.
	_, _, err = set.Check(ctx, "fleet", "medic_alerts[1m]", now.Add(2*time.Minute))
	if err == nil || !strings.Contains(err.Error(), "want an instant vector") {
		t.Fatalf("range vector: %v", err)
	}
}

// Failures against a real HTTP server: a 500, garbage, a hang past the
// timeout, a closed port. Each is an error with its reason, counted,
// shown on Status, and cached for the TTL (a broken source is not
// hammered by every waiting incident).
func TestFailures(t *testing.T) {
	var modeV atomic.Value
	modeV.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch modeV.Load().(string) {
		case "500":
			http.Error(w, "upstream connect error", http.StatusInternalServerError)
		case "garbage":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("<html>not the query API</html>"))
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}
	}))
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()

	ctx := context.Background()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		mode, url, reason string
	}{
		{"500", srv.URL, FailHTTP},
		{"garbage", srv.URL, FailInvalid},
		{"hang", srv.URL, FailTimeout},
		{"", closed, FailUnreachable},
	} {
		modeV.Store(tc.mode)
		set := newSet(t, tc.url, 300*time.Millisecond)
		start := time.Now()
		ok, _, err := set.Check(ctx, "fleet", "vector(1)", now)
		if ok || err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: ok=%v err=%v, want an error with reason %s", tc.reason, ok, err, tc.reason)
			continue
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s despite the 300ms timeout", tc.reason, d)
		}
		if n := testutil.ToFloat64(set.m.failures.WithLabelValues("fleet", tc.reason)); n != 1 {
			t.Errorf("%s: counted %v times, want 1", tc.reason, n)
		}
		// Cached: no new query within the TTL.
		set.Check(ctx, "fleet", "vector(1)", now.Add(time.Second))
		if n := testutil.ToFloat64(set.m.queries.WithLabelValues("fleet")); n != 1 {
			t.Errorf("%s: %v queries within the TTL, want 1", tc.reason, n)
		}
		st := set.Status()[0]
		if st.Failures != 1 || !strings.Contains(st.LastError, tc.reason) || !st.LastErrorAt.Equal(now) {
			t.Errorf("%s: status %+v", tc.reason, st)
		}
	}
}

// A source without a url is disabled: requirements on it are met without
// a query, and say so.
func TestDisabledSourceIsNotAsked(t *testing.T) {
	set, err := New(map[string]*Config{"fleet": {Prometheus: &PrometheusConfig{}}}, Options{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ok, detail, err := set.Check(context.Background(), "fleet", "vector(1) < 0", time.Now())
	if !ok || err != nil || !strings.Contains(detail, "disabled") {
		t.Fatalf("ok=%v detail=%q err=%v", ok, detail, err)
	}
	if _, _, err := set.Check(context.Background(), "nope", "up", time.Now()); err == nil {
		t.Fatal("unknown source accepted")
	}
}
