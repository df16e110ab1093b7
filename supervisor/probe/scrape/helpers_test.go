package scrape

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"go.uber.org/goleak"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
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

// promText is the Content-Type of a Prometheus text page as client_golang serves it.
const promText = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"

// openMetrics is the Content-Type of an OpenMetrics 1.0 page.
const openMetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8"

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// switchServer is a real loopback HTTP server whose handler can be swapped
// between scrapes.
type switchServer struct {
	*httptest.Server
	h    atomic.Pointer[http.HandlerFunc]
	hits atomic.Int64
	last atomic.Pointer[http.Request]
}

func newSwitchServer(t testing.TB, h http.HandlerFunc) *switchServer {
	t.Helper()
	s := &switchServer{}
	s.set(h)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.last.Store(r)
		(*s.h.Load())(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *switchServer) set(h http.HandlerFunc) { s.h.Store(&h) }

// page serves body with the given Content-Type.
func page(ct string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct == "" {
			w.Header()["Content-Type"] = nil // no sniffing: really send none
		} else {
			w.Header().Set("Content-Type", ct)
		}
		_, _ = w.Write(body)
	}
}

// rig is a probe scraping into a real store, driven cycle by cycle.
type rig struct {
	t   testing.TB
	p   *Probe
	st  *store.Store
	app probe.Appender
	now time.Time
	log *recordHandler
	clk *clock.Fake
}

func newRig(t testing.TB, c Config) *rig {
	t.Helper()
	return newRigStore(t, c, "spire", store.New(store.Options{}))
}

func newRigStore(t testing.TB, c Config, name string, st *store.Store) *rig {
	t.Helper()
	if c.Interval == 0 {
		c.Interval = cfg.Duration(5 * time.Second)
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	rec := &recordHandler{}
	fc := clock.NewFake(t0)
	p, err := New(c, probe.Env{Name: name, Logger: slog.New(rec), Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.tr.CloseIdleConnections)
	return &rig{t: t, p: p, st: st, app: st.Appender(name), now: t0, log: rec, clk: fc}
}

// cycle runs one scrape 5 s after the previous one.
func (r *rig) cycle() {
	r.now = r.now.Add(5 * time.Second)
	r.clk.Set(r.now)
	r.p.cycle(context.Background(), r.app, r.now)
}

var engine = promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute})

// query evaluates expr at the rig's current time.
func query(t testing.TB, st *store.Store, expr string, at time.Time) promql.Vector {
	t.Helper()
	q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, at)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func (r *rig) query(expr string) promql.Vector { r.t.Helper(); return query(r.t, r.st, expr, r.now) }

// value returns the single value of expr, failing unless exactly one series answers.
func (r *rig) value(expr string) float64 {
	r.t.Helper()
	v := r.query(expr)
	if len(v) != 1 {
		r.t.Fatalf("%s: want 1 series, got %d: %v", expr, len(v), v)
	}
	return v[0].F
}

func (r *rig) wantValue(expr string, want float64) {
	r.t.Helper()
	if got := r.value(expr); got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
		r.t.Errorf("%s = %v, want %v", expr, got, want)
	}
}

func (r *rig) wantAbsent(expr string) {
	r.t.Helper()
	if v := r.query(expr); len(v) != 0 {
		r.t.Errorf("%s: want no result, got %v", expr, v)
	}
}

// recordHandler is a slog.Handler that keeps every record.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		out = append(out, r.Message)
	}
	return out
}

func (h *recordHandler) attr(i int, key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var v string
	h.records[i].Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}
