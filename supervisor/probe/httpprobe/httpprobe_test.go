package httpprobe

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clientcfg"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probetest"
)

// spireHealth imitates the SPIRE agent's health listener: /live and
// /ready answer 200 or 500 with a JSON body.
type spireHealth struct{ ready atomic.Bool }

func (s *spireHealth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("User-Agent") != "medic" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !s.ready.Load() {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"agent":{"err":"rpc error: code = Unavailable desc = connection error"}}`))
		return
	}
	_, _ = w.Write([]byte(`{"agent":{}}`))
}

func mustNew(t *testing.T, c Config, env probe.Env) *Probe {
	t.Helper()
	if c.Interval == 0 {
		c.Interval = cfg.Duration(5 * time.Second)
	}
	if c.Timeout == 0 {
		c.Timeout = cfg.Duration(2 * time.Second)
	}
	p, err := New(c, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSPIREReadyLifecycle(t *testing.T) {
	h := &spireHealth{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	hs := probetest.Start(t, "spire-ready", 5*time.Second, func(env probe.Env) probe.Probe {
		return mustNew(t, Config{URL: srv.URL + "/ready"}, env)
	})
	check := func(up, code float64) {
		t.Helper()
		if v, _ := hs.Value("medic_probe_up"); v != up {
			t.Fatalf("up = %v, want %v", v, up)
		}
		if v, _ := hs.Value(MetricStatus); v != code {
			t.Fatalf("status = %v, want %v", v, code)
		}
		if v, ok := hs.Value("medic_probe_duration_seconds"); !ok || v <= 0 {
			t.Fatalf("duration %v %v", v, ok)
		}
	}
	check(0, 500) // SPIRE answers 500 until ready
	hs.Tick()
	h.ready.Store(true)
	hs.Tick()
	check(1, 200)
	hs.Tick()
	srv.CloseClientConnections()
	srv.Close() // agent gone: no response at all
	hs.Tick()
	check(0, 0)
	hs.Tick()

	lines := hs.Logs.Lines()
	want := []string{
		"WARN probe down reason=status 500 not in [2xx] body=" + `{"agent":{"err":"rpc error: code = Unavailable desc = connection error"}}`,
		"INFO probe up status=200",
		"WARN probe down reason=connection refused",
	}
	if len(lines) != len(want) {
		t.Fatalf("logs:\n%s", strings.Join(lines, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("log %d = %q, want %q", i, lines[i], want[i])
		}
	}
}

func TestExpectations(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer x" || r.Host != "agent.local" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte(`{"status":"SERVING"}`))
	}))
	defer srv.Close()
	hdr := map[string]string{"Authorization": "Bearer x", "Host": "agent.local"}
	for _, tc := range []struct {
		name   string
		c      Config
		up     bool
		status int
		reason string
	}{
		{"2xx default", Config{URL: srv.URL, Headers: hdr}, true, 200, ""},
		{"headers missing", Config{URL: srv.URL}, false, 401, "status 401 not in [2xx]"},
		{"wrong status", Config{URL: srv.URL + "/down", Headers: hdr}, false, 500, "status 500 not in [2xx]"},
		{"500 accepted", Config{URL: srv.URL + "/down", Headers: hdr, ExpectStatus: StatusList{"200", "5xx"}}, true, 500, ""},
		{"exact code", Config{URL: srv.URL, Headers: hdr, ExpectStatus: StatusList{"204"}}, false, 200, "status 200 not in [204]"},
		{"body match", Config{URL: srv.URL, Headers: hdr, ExpectBody: `"SERVING"`}, true, 200, ""},
		{"body mismatch", Config{URL: srv.URL, Headers: hdr, ExpectBody: "NOT_SERVING"}, false, 200, `body does not contain "NOT_SERVING"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustNew(t, tc.c, probe.Env{}).Check(context.Background())
			if r.Up != tc.up || r.Status != tc.status || r.Reason != tc.reason {
				t.Fatalf("got up=%v status=%d reason=%q; want %v %d %q", r.Up, r.Status, r.Reason, tc.up, tc.status, tc.reason)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	r := mustNew(t, Config{URL: srv.URL, Timeout: cfg.Duration(200 * time.Millisecond)}, probe.Env{}).Check(context.Background())
	if r.Up || r.Status != 0 || r.Reason != "timeout" {
		t.Fatalf("%+v", r)
	}
	if r.Duration < 150*time.Millisecond || r.Duration > 5*time.Second {
		t.Fatalf("duration %s, want about 200ms", r.Duration)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := mustNew(t, Config{URL: srv.URL, TLS: &clientcfg.TLS{CAFile: ca}}, probe.Env{}).Check(context.Background()); !r.Up {
		t.Fatalf("with CA: %+v", r)
	}
	r := mustNew(t, Config{URL: srv.URL}, probe.Env{}).Check(context.Background())
	if r.Up || !strings.Contains(r.Reason, "certificate") {
		t.Fatalf("without CA: %+v", r)
	}
	if r := mustNew(t, Config{URL: srv.URL, TLS: &clientcfg.TLS{InsecureSkipVerify: true}}, probe.Env{}).Check(context.Background()); !r.Up {
		t.Fatalf("insecure: %+v", r)
	}
	_, err := New(Config{URL: srv.URL, Interval: cfg.Duration(time.Second), Timeout: cfg.Duration(time.Second),
		TLS: &clientcfg.TLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")}}, probe.Env{})
	if err == nil || !strings.Contains(err.Error(), "tls: unable to read CA cert") {
		t.Fatalf("missing CA file: %v", err)
	}
}

func TestConfig(t *testing.T) {
	k, _ := probe.Lookup(Kind)
	decode := func(doc string) (*Config, error) {
		c := k.NewConfig().(*Config)
		var n yaml.Node
		_ = yaml.Unmarshal([]byte(doc), &n)
		if err := cfg.Decode(&n, c, "probes[1].http"); err != nil {
			return nil, err
		}
		return c, cfg.Prefix("probes[1].http", c.Validate())
	}
	c, err := decode("{url: 'http://127.0.0.1:8080/live', expectStatus: 200}")
	if err != nil || len(c.ExpectStatus) != 1 || c.ExpectStatus[0] != "200" {
		t.Fatalf("single status: %v %v", c, err)
	}
	c, err = decode("{url: 'http://127.0.0.1:8080/live', expectStatus: [2xx, 500]}")
	if err != nil || len(c.ExpectStatus) != 2 {
		t.Fatalf("list: %v %v", c, err)
	}
	_, err = decode("{url: 'ftp://x/y', expectStatus: [200, 7xx, {a: 1}], timeout: 10s, tls: {certFile: a.pem}}")
	for _, want := range []string{
		`probes[1].http.url: scheme must be http or https, not "ftp"`,
		`probes[1].http.expectStatus[1]: "7xx" is neither`,
		`probes[1].http.expectStatus[2]: "<not a scalar>"`,
		"probes[1].http.timeout: must not exceed interval (5s)",
		"probes[1].http.tls: certFile and keyFile must be given together",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not contain %q", err, want)
		}
	}
	if _, err := decode("{url: 'http://127.0.0.1/'}"); err != nil {
		t.Fatal(err)
	}
}
