package scrape

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

const syncOK = `spire_agent_manager_sync_fetch_entries_updates{probe="spire",status="OK"}`

func TestScrapeRealSPIREPage(t *testing.T) {
	body := readFile(t, "testdata/metrics-healthy.txt")
	srv := newSwitchServer(t, page(promText, body))
	r := newRig(t, Config{URL: srv.URL + "/metrics", Headers: map[string]string{"X-Tenant": "a", "Host": "agent.local"}})
	r.cycle()

	r.wantValue(syncOK, 69)
	r.wantValue(`spire_agent_manager_sync_fetch_entries_updates_elapsed_time_count{probe="spire",status="OK"}`, 69)
	r.wantValue(`spire_agent_manager_sync_fetch_entries_updates_elapsed_time{probe="spire",status="OK",quantile="0.9"}`, 3.320986032485962)
	r.wantValue(`spire_agent_agent_svid_rotate_elapsed_time{probe="spire",quantile="0.5"}`, math.NaN())
	r.wantValue(`spire_agent_started{probe="spire",host="node-1",trust_domain_id="example_org",version="1_16_0_dev_unk"}`, 1)
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
	// 152 sample lines on the page.
	r.wantValue(`medic_probe_samples{probe="spire"}`, 152)
	r.wantValue(`count({probe="spire",__name__!~"medic_.*"})`, 152)
	r.wantValue(`sum(medic_probe_failures_total{probe="spire"})`, 0)
	r.wantValue(`count(medic_probe_failures_total{probe="spire"})`, float64(numReasons))
	if d := r.value(`medic_probe_duration_seconds{probe="spire"}`); d < 0 {
		t.Errorf("duration %v < 0", d)
	}

	req := srv.last.Load()
	for k, want := range map[string]string{
		"Accept":                              AcceptHeader,
		"Accept-Encoding":                     "gzip",
		"X-Tenant":                            "a",
		"X-Prometheus-Scrape-Timeout-Seconds": "5",
	} {
		if got := req.Header.Get(k); got != want {
			t.Errorf("request header %s = %q, want %q", k, got, want)
		}
	}
	if req.Host != "agent.local" {
		t.Errorf("Host = %q, want agent.local", req.Host)
	}

	// A second scrape of a changed page: new values, same series.
	srv.set(page(promText, bytes.Replace(body, []byte(`status="OK"} 69`), []byte(`status="OK"} 70`), 1)))
	r.cycle()
	r.wantValue(syncOK, 70)
	r.wantValue(syncOK+` - `+syncOK+` offset 5s`, 1)
	// The page's, the probe's own, and the store's two series-cap series.
	if got, want := r.st.Stats().Series, 152+3+int(numReasons)+2; got != want {
		t.Errorf("store holds %d series, want %d", got, want)
	}
}

func TestScrapeOpenMetrics(t *testing.T) {
	srv := newSwitchServer(t, page(openMetrics, readFile(t, "testdata/openmetrics.txt")))
	r := newRig(t, Config{URL: srv.URL})
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
	r.wantValue(`spire_agent_manager_sync_fetch_entries_updates_total{probe="spire",status="Unavailable"}`, 5) // exemplar ignored
	r.wantValue(`spire_agent_manager_sync_fetch_entries_updates_created{probe="spire",status="OK"}`, 1.7953164e9)
	// Classic histogram buckets are plain series; le is normalised the OpenMetrics way.
	r.wantValue(`request_duration_seconds_bucket{probe="spire",le="1.0"}`, 7)
	r.wantValue(`histogram_quantile(0.5, request_duration_seconds_bucket{probe="spire"})`, 0.325)
	r.wantValue(`rpc_latency{probe="spire",quantile="0.99"}`, 0.3)
	r.wantValue(`agent_state{probe="spire",agent_state="syncing"}`, 0)
	// The explicit timestamp is ignored: the sample is stamped with the scrape time.
	v := r.query(`timestamp(agent_ready{probe="spire"})`)
	if len(v) != 1 || v[0].F != float64(r.now.Unix()) {
		t.Errorf("timestamp(agent_ready) = %v, want %d", v, r.now.Unix())
	}
	r.wantValue(`medic_probe_samples{probe="spire"}`, 16)
	if len(r.log.messages()) != 1 {
		t.Errorf("logs: %q", r.log.messages())
	}

	// OpenMetrics must end with # EOF: a page cut at a line boundary is caught.
	trunc := bytes.TrimSuffix(readFile(t, "testdata/openmetrics.txt"), []byte("# EOF\n"))
	srv.set(page(openMetrics, trunc))
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 0)
	r.wantValue(`medic_probe_failures_total{probe="spire",reason="parse"}`, 1)
	r.wantAbsent(`rpc_latency_count`)
}

// gzipped serves body gzip-compressed when the client asks for it.
func gzipped(ct string, body []byte) http.HandlerFunc {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(body)
	_ = zw.Close()
	z := buf.Bytes()
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ct)
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			_, _ = w.Write(body)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(z)
	}
}

func TestScrapeGzip(t *testing.T) {
	body := readFile(t, "testdata/metrics-healthy.txt")
	srv := newSwitchServer(t, gzipped(promText, body))
	r := newRig(t, Config{URL: srv.URL})
	for i := range 3 { // pooled readers are reused across scrapes
		r.cycle()
		r.wantValue(`medic_probe_up{probe="spire"}`, 1)
		r.wantValue(`medic_probe_samples{probe="spire"}`, 152)
		r.wantValue(syncOK, 69)
		if i == 0 && srv.last.Load().Header.Get("Accept-Encoding") != "gzip" {
			t.Fatal("no Accept-Encoding: gzip")
		}
	}
	if len(r.log.messages()) != 1 {
		t.Errorf("logs: %q", r.log.messages())
	}
}

// failure is a page or server behaviour that must fail a scrape.
type failure struct {
	name    string
	h       http.HandlerFunc
	reason  Reason
	errText string
	tweak   func(*Config)
}

func failures(t testing.TB) []failure {
	body := readFile(t, "testdata/metrics-healthy.txt")
	cut := bytes.Index(body, []byte(`spire_agent_manager_sync_fetch_entries_updates{host="node-1",sta`))
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write(bytes.Repeat([]byte("# padding that compresses very well\n"), 1<<15)) // ~1.2 MB
	_ = zw.Close()
	corruptGzip := append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, bytes.Repeat([]byte{0xde, 0xad}, 100)...)
	return []failure{
		{name: "http 500", h: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "agent broke", http.StatusInternalServerError)
		}, reason: ReasonHTTPStatus, errText: "500"},
		{name: "http 404", h: http.NotFound, reason: ReasonHTTPStatus, errText: "404"},
		{name: "binary junk with NUL", h: page("application/octet-stream", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01")),
			reason: ReasonParse, errText: "NUL byte"},
		{name: "NUL in the middle of a valid page", h: page(promText, append(append(slices.Clone(body[:cut]), 0), body[cut:]...)),
			reason: ReasonParse, errText: "NUL byte"},
		{name: "binary junk", h: page(promText, []byte("\xff\xfe\xfd{{{ ]]] \x01\x02")), reason: ReasonParse},
		{name: "truncated page", h: page(promText, body[:cut+len(`spire_agent_manager_sync_fetch_entries_updates{host="node-1",sta`)]),
			reason: ReasonParse},
		{name: "bad value", h: page(promText, append(slices.Clone(body), "spire_agent_extra{host=\"node-1\"} twelve\n"...)),
			reason: ReasonParse, errText: "twelve"},
		{name: "duplicate label name", h: page(promText, append(slices.Clone(body), "spire_agent_extra{host=\"a\",host=\"b\"} 1\n"...)),
			reason: ReasonParse, errText: `label "host" appears twice`},
		{name: "openmetrics without EOF", h: page(openMetrics, body), reason: ReasonParse},
		{name: "oversized body", h: page(promText, body), reason: ReasonBodySize, errText: "maxBytes (16KiB)",
			tweak: func(c *Config) { c.MaxBytes = 16 << 10 }},
		{name: "gzip bomb", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb.Bytes())
		}, reason: ReasonBodySize, tweak: func(c *Config) { c.MaxBytes = 1 << 20 }},
		{name: "corrupt gzip", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(corruptGzip)
		}, reason: ReasonRead, errText: "corrupt input"},
		{name: "gzip header on plain text", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(body)
		}, reason: ReasonRead, errText: "gzip: invalid header"},
		{name: "unknown encoding", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "br")
			_, _ = w.Write(body)
		}, reason: ReasonRead, errText: `"br"`},
		{name: "sample limit", h: page(promText, body), reason: ReasonSampleLimit,
			tweak: func(c *Config) { c.SampleLimit = 100 }},
		{name: "label value over labelValueLengthLimit", reason: ReasonLabelLimit, errText: "longer than labelValueLengthLimit (4096)",
			h:     page(promText, append(slices.Clone(body), "spire_agent_extra{host=\""+strings.Repeat("x", 1<<20)+"\"} 1\n"...)),
			tweak: func(c *Config) { c.LabelValueLengthLimit = DefaultLabelValueLengthLimit }},
		{name: "label name over labelNameLengthLimit", reason: ReasonLabelLimit, errText: "longer than labelNameLengthLimit (256)",
			h:     page(promText, append(slices.Clone(body), "spire_agent_extra{"+strings.Repeat("n", 300)+"=\"a\"} 1\n"...)),
			tweak: func(c *Config) { c.LabelNameLengthLimit = DefaultLabelNameLengthLimit }},
		{name: "metric name over labelValueLengthLimit", reason: ReasonLabelLimit, errText: `label "__name__" has a value of 5000 bytes`,
			h:     page(promText, append(slices.Clone(body), strings.Repeat("m", 5000)+" 1\n"...)),
			tweak: func(c *Config) { c.LabelValueLengthLimit = DefaultLabelValueLengthLimit }},
		{name: "more labels than labelLimit", reason: ReasonLabelLimit, errText: "71 labels, more than labelLimit (64)",
			h:     page(promText, append(slices.Clone(body), "spire_agent_extra{"+manyLabels(70)+"} 1\n"...)),
			tweak: func(c *Config) { c.LabelLimit = DefaultLabelLimit }},
		{name: "redirect loop", reason: ReasonRedirect, errText: "stopped after 10 redirects",
			h: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, r.URL.Path, http.StatusFound) }},
		{name: "timeout", h: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // hangs until the client gives up
		}, reason: ReasonTimeout, tweak: timeoutTweak},
		{name: "timeout mid-body", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", promText)
			_, _ = w.Write(body[:cut])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, reason: ReasonTimeout, tweak: timeoutTweak},
		{name: "connection dropped", h: func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, reason: ReasonConnect},
	}
}

// timeoutTweak is the timeout cases' scrape timeout: short, so the hung
// scrapes end quickly, but long enough for the good scrapes before and
// after them on a loaded machine (100 ms made them fail at load 13-15).
func timeoutTweak(c *Config) { c.Timeout = cfg.Duration(time.Second) }

// TestScrapeFailures: every failure sets up=0, commits no page sample (so
// the page's series go stale at once), counts the reason, is logged once,
// leaves another probe on the same store untouched, and heals on the next
// good scrape.
func TestScrapeFailures(t *testing.T) {
	body := readFile(t, "testdata/metrics-healthy.txt")
	for _, f := range failures(t) {
		t.Run(f.name, func(t *testing.T) {
			st := store.New(store.Options{})
			srv := newSwitchServer(t, page(promText, body))
			c := Config{URL: srv.URL + "/metrics"}
			if f.tweak != nil {
				f.tweak(&c)
			}
			if f.reason == ReasonBodySize && f.name == "oversized body" || f.reason == ReasonSampleLimit {
				srv.set(page(promText, []byte("spire_agent_manager_sync_fetch_entries_updates{status=\"OK\"} 1\n")))
			}
			r := newRigStore(t, c, "spire", st)
			other := newRigStore(t, Config{URL: newSwitchServer(t, page(promText, []byte("other_metric 7\n"))).URL}, "other", st)

			r.cycle()
			other.cycle()
			r.wantValue(`medic_probe_up{probe="spire"}`, 1)
			if len(r.query(syncOK)) != 1 {
				t.Fatal("the good page was not ingested")
			}

			srv.set(f.h)
			for range 3 {
				r.cycle()
				other.now = r.now
				other.cycle()
			}
			r.wantValue(`medic_probe_up{probe="spire"}`, 0)
			r.wantValue(`medic_probe_samples{probe="spire"}`, 0)
			r.wantValue(fmt.Sprintf(`medic_probe_failures_total{probe="spire",reason=%q}`, f.reason), 3)
			r.wantValue(`sum(medic_probe_failures_total{probe="spire"})`, 3)
			r.wantAbsent(syncOK)
			r.wantAbsent(`{probe="spire",__name__!~"medic_.*"}`)
			// Another probe on the same store is untouched.
			r.wantValue(`medic_probe_up{probe="other"}`, 1)
			r.wantValue(`other_metric{probe="other"}`, 7)

			msgs := r.log.messages()
			if len(msgs) != 2 || !strings.HasPrefix(msgs[1], "scrape failed") {
				t.Fatalf("want one 'scrape ok' and one 'scrape failed' log, got %q", msgs)
			}
			if got := r.log.attr(1, "reason"); got != f.reason.String() {
				t.Errorf("logged reason %q, want %q", got, f.reason)
			}
			if errText := r.log.attr(1, "err"); !strings.Contains(errText, f.errText) {
				t.Errorf("logged err %q does not contain %q", errText, f.errText)
			} else if len(errText) > 1000 {
				t.Errorf("logged err of %d bytes: a page must not blow up the log", len(errText))
			}

			srv.set(page(promText, []byte("spire_agent_manager_sync_fetch_entries_updates{status=\"OK\"} 2\n")))
			r.cycle()
			r.wantValue(`medic_probe_up{probe="spire"}`, 1)
			r.wantValue(syncOK, 2)
			if msgs := r.log.messages(); len(msgs) != 3 || msgs[2] != "scrape recovered" || r.log.attr(2, "failedScrapes") != "3" {
				t.Errorf("want a single 'scrape recovered' after 3 failures, got %q", msgs)
			}
		})
	}
}

func TestScrapeConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	r := newRig(t, Config{URL: url})
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 0)
	r.wantValue(`medic_probe_failures_total{probe="spire",reason="connect"}`, 1)
}

func TestScrapeDuplicateSeriesFirstWins(t *testing.T) {
	pg := "# TYPE a gauge\na{x=\"1\"} 1\nb 3\na{x=\"1\"} 2\na{x=\"2\"} 4\nb 5\n"
	srv := newSwitchServer(t, page(promText, []byte(pg)))
	r := newRig(t, Config{URL: srv.URL})
	for range 2 {
		r.cycle()
		r.wantValue(`medic_probe_up{probe="spire"}`, 1)
		r.wantValue(`a{x="1"}`, 1)
		r.wantValue(`b`, 3)
		r.wantValue(`a{x="2"}`, 4)
		r.wantValue(`medic_probe_samples{probe="spire"}`, 3)
	}
	msgs := r.log.messages()
	if len(msgs) != 2 || !strings.Contains(r.log.attr(1, "problems"), "duplicate series") {
		t.Errorf("want 'scrape ok' and one duplicate warning, got %q", msgs)
	}
}

func TestScrapeContentTypeFallback(t *testing.T) {
	for _, ct := range []string{"", "application/json", "text/html; charset=utf-8", "not a media type;;"} {
		srv := newSwitchServer(t, page(ct, []byte("foo 1\n")))
		r := newRig(t, Config{URL: srv.URL})
		r.cycle()
		r.wantValue(`foo{probe="spire"}`, 1)
		if msgs := r.log.messages(); len(msgs) != 2 || !strings.Contains(r.log.attr(1, "problems"), "Content-Type") {
			t.Errorf("%q: want a content-type warning, got %q", ct, msgs)
		}
	}
}

func TestScrapeEmptyPageIsUp(t *testing.T) {
	srv := newSwitchServer(t, page(promText, nil))
	r := newRig(t, Config{URL: srv.URL})
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
	r.wantValue(`medic_probe_samples{probe="spire"}`, 0)
}

// A page label named probe is kept as exported_probe; a page sample with
// medic's own name never overrides medic's.
func TestScrapeLabelClashes(t *testing.T) {
	srv := newSwitchServer(t, page(promText, []byte("foo{probe=\"inner\"} 1\nmedic_probe_up 0\n")))
	r := newRig(t, Config{URL: srv.URL})
	r.cycle()
	r.wantValue(`foo{probe="spire",exported_probe="inner"}`, 1)
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
}

// TestRun drives the real loop with a fake clock: a scrape at once, then
// one per interval, each stamped with the clock's time; Run returns nil
// when its context ends.
func TestRun(t *testing.T) {
	srv := newSwitchServer(t, page(promText, readFile(t, "testdata/metrics-healthy.txt")))
	fc := clock.NewFake(t0)
	p, err := New(Config{URL: srv.URL, Interval: cfg.Duration(5 * time.Second), MaxBytes: DefaultMaxBytes},
		probe.Env{Name: "spire", Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, st.Appender("spire")) }()
	for i := range 3 {
		if !fc.BlockUntil(1, 10*time.Second) {
			t.Fatalf("loop never waited after scrape %d", i+1)
		}
		if got := srv.hits.Load(); got != int64(i+1) {
			t.Fatalf("after %d intervals the server saw %d scrapes", i, got)
		}
		v := query(t, st, `timestamp(`+syncOK+`)`, fc.Now())
		if len(v) != 1 || v[0].F != float64(fc.Now().Unix()) {
			t.Fatalf("scrape %d: timestamp = %v, want %d", i+1, v, fc.Now().Unix())
		}
		fc.Advance(5 * time.Second)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// A scrape cut short by shutdown commits nothing and counts no failure.
func TestScrapeShutdownCommitsNothing(t *testing.T) {
	started := make(chan struct{})
	srv := newSwitchServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	r := newRig(t, Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	r.p.cycle(ctx, r.app, t0)
	if n := r.st.Stats().Series; n != 0 {
		t.Errorf("store has %d series after a cancelled scrape", n)
	}
	if len(r.log.messages()) != 0 {
		t.Errorf("logs: %q", r.log.messages())
	}
}

func TestRegistered(t *testing.T) {
	k, ok := probe.Lookup(Kind)
	if !ok {
		t.Fatal("scrape kind not registered")
	}
	c := k.NewConfig().(*Config)
	c.URL = "http://127.0.0.1:1/metrics"
	p, err := k.New(c, probe.Env{Name: "x"})
	if err != nil || p == nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := k.New(&Config{}, probe.Env{Name: "x"}); err == nil {
		t.Error("New accepted an invalid config")
	}
}

func manyLabels(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "l%d=\"v\"", i)
	}
	return b.String()
}

// A label limit set to 0 is no limit, as in Prometheus.
func TestLabelLimitsZeroMeansNoLimit(t *testing.T) {
	srv := newSwitchServer(t, page(promText, []byte("x{"+manyLabels(100)+",v=\""+strings.Repeat("y", 10000)+"\"} 1\n")))
	r := newRig(t, Config{URL: srv.URL})
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
}

// Configured headers (an API key) are sent to the configured host only: a
// redirect to another host (127.0.0.2 instead of 127.0.0.1, a real second
// loopback server) gets none of them, while a redirect within the host
// keeps them.
func TestConfiguredHeadersAreNotForwardedAcrossHosts(t *testing.T) {
	var got atomic.Pointer[http.Header]
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		got.Store(&h)
		w.Header().Set("Content-Type", promText)
		w.Write([]byte("moved_metric 1\n"))
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("a second loopback address (Linux routes all of 127/8): %v", err)
	}
	other.Listener = ln
	other.Start()
	defer other.Close()
	home := newSwitchServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/metrics", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/metrics", http.StatusMovedPermanently)
		default:
			h := r.Header.Clone()
			got.Store(&h)
			w.Header().Set("Content-Type", promText)
			w.Write([]byte("home_metric 1\n"))
		}
	})
	headers := map[string]string{"X-Api-Key": "s3cret", "Authorization": "Bearer t0ken", "X-Tenant": "a"}

	r := newRig(t, Config{URL: home.URL + "/away", Headers: headers})
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
	r.wantValue(`moved_metric`, 1)
	h := *got.Load()
	for k := range headers {
		if v := h.Get(k); v != "" {
			t.Errorf("%s: %q forwarded to another host", k, v)
		}
	}
	if h.Get("Accept") != AcceptHeader {
		t.Errorf("the probe's own Accept header was lost: %q", h.Get("Accept"))
	}

	r = newRig(t, Config{URL: home.URL + "/here", Headers: headers})
	r.cycle()
	r.wantValue(`home_metric`, 1)
	h = *got.Load()
	for k, v := range headers {
		if h.Get(k) != v {
			t.Errorf("%s: %q within the same host, want %q", k, h.Get(k), v)
		}
	}
}
