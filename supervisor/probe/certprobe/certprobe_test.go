package certprobe

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	wl "github.com/medic-sidecar/medic/internal/testpeers/workloadapi"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probetest"
)

var t0 = probetest.T0

func TestRotationOverduePure(t *testing.T) {
	c := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(time.Hour)}
	for _, tc := range []struct {
		at   time.Duration
		want time.Duration
	}{{0, 0}, {30 * time.Minute, 0}, {36 * time.Minute, 0}, {40 * time.Minute, 4 * time.Minute}, {2 * time.Hour, 84 * time.Minute}} {
		if got := RotationOverdue(c, t0.Add(tc.at), 0.6); got != tc.want {
			t.Errorf("at +%s: %s, want %s", tc.at, got, tc.want)
		}
	}
	if got := RotationDeadline(c, 0.5); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("deadline at 50%%: %s", got)
	}
}

func TestObserveLabelsAndDedup(t *testing.T) {
	s := wl.StartT(t, wl.Options{SPIFFEID: "spiffe://example.org/agent", Clock: clock.NewFake(t0)})
	chain, _ := s.Current()
	obs := Observe([]Chain{{Source: "a.pem", Certs: append(chain, chain[0]), Bundle: []*x509.Certificate{s.Root()}, Current: true}}, t0.Add(40*time.Minute), 0.6)
	find := func(pairs ...string) (float64, bool) {
		want := labels.FromStrings(pairs...)
		for _, o := range obs {
			if labels.Equal(o.Labels, want) {
				return o.Value, true
			}
		}
		return 0, false
	}
	if v, _ := find("__name__", MetricNotAfter, "role", "leaf", "serial", Serial(chain[0]), "source", "a.pem",
		"spiffe_id", "spiffe://example.org/agent"); v != float64(t0.Add(time.Hour).Unix()) {
		t.Fatalf("leaf not_after missing or wrong; got:\n%v", obs)
	}
	if _, ok := find("__name__", MetricNotBefore, "role", "intermediate", "serial", Serial(chain[1]), "source", "a.pem",
		"spiffe_id", "spiffe://example.org"); !ok {
		t.Fatalf("intermediate missing; got:\n%v", obs)
	}
	if _, ok := find("__name__", MetricNotAfter, "role", "bundle", "serial", Serial(s.Root()), "source", "a.pem",
		"spiffe_id", "spiffe://example.org"); !ok {
		t.Fatalf("bundle cert missing; got:\n%v", obs)
	}
	if v, _ := find("__name__", MetricRotationOverdue, "source", "a.pem", "spiffe_id", "spiffe://example.org/agent"); v != 240 {
		t.Fatalf("overdue = %v", v)
	}
	if len(obs) != 7 { // 3 certs × 2 + overdue; the repeated leaf is dropped
		t.Fatalf("%d samples, want 7", len(obs))
	}
	if Role(chain[0]) != RoleLeaf || Role(chain[1]) != RoleIntermediate || Role(s.Root()) != RoleRoot {
		t.Fatal("roles")
	}
}

// The probe against the Workload API peer, on one fake clock: rotation at
// half-life keeps overdue at zero; once the agent stops rotating the
// current SVID becomes overdue past 60% of its lifetime.
func TestWorkloadAPIRotationOverdue(t *testing.T) {
	var peer *wl.Server
	h := probetest.Start(t, "svid", 10*time.Minute, func(env probe.Env) probe.Probe {
		peer = wl.StartT(t, wl.Options{Clock: env.Clock, TTL: time.Hour})
		return New(Config{WorkloadAPI: &WorkloadAPIConfig{Socket: peer.Addr()}, Interval: cfg.Duration(10 * time.Minute),
			Timeout: cfg.Duration(5 * time.Second), OverdueAt: 60}, env)
	})
	first, _ := peer.Current()
	leafNotAfter := func() (string, float64) {
		t.Helper()
		for _, p := range h.Series(MetricNotAfter) {
			if p.Labels.Get("role") == RoleLeaf {
				return p.Labels.Get("serial"), p.V
			}
		}
		t.Fatal("no leaf series")
		return "", 0
	}
	overdue := func() float64 {
		t.Helper()
		v, ok := h.Value(MetricRotationOverdue, "spiffe_id", "spiffe://example.org/workload", "source", SourceWorkloadAPI)
		if !ok {
			t.Fatal("no overdue series")
		}
		return v
	}
	if up, _ := h.Value("medic_probe_up"); up != 1 {
		t.Fatalf("up %v", up)
	}
	if s, na := leafNotAfter(); s != Serial(first[0]) || na != float64(t0.Add(time.Hour).Unix()) {
		t.Fatalf("leaf %s %v", s, na)
	}
	if n := len(h.Series(MetricNotAfter)); n != 3 {
		t.Fatalf("%d not_after series, want leaf, intermediate and bundle root", n)
	}

	h.Tick()
	h.Tick()
	h.Tick() // t0+30m: the peer rotates at half-life
	if s, _ := leafNotAfter(); s == Serial(first[0]) {
		t.Fatal("probe did not see the rotation at half-life")
	}
	if overdue() != 0 {
		t.Fatalf("overdue right after rotation: %v", overdue())
	}
	if n := len(h.Series(MetricNotAfter)); n != 3 {
		t.Fatalf("%d not_after series after rotation; the old leaf's should be stale", n)
	}

	peer.StopRotating()
	h.Tick() // 40m
	h.Tick() // 50m: second SVID issued at 30m is 20m old (33%)
	h.Tick() // 60m
	if overdue() != 0 {
		t.Fatalf("overdue at 50%% of lifetime: %v", overdue())
	}
	h.Tick() // 70m: 40m old, deadline at 36m
	if got := overdue(); got != 240 {
		t.Fatalf("overdue at 40m of 60m lifetime = %v, want 240", got)
	}

	peer.Deny(true)
	h.Tick() // 80m: the agent refuses; the last certificates are still reported
	if up, _ := h.Value("medic_probe_up"); up != 0 {
		t.Fatalf("up while denied: %v", up)
	}
	if got := overdue(); got != 840 {
		t.Fatalf("overdue while the agent refuses = %v, want 840", got)
	}
	lines := h.Logs.Lines()
	if len(lines) != 2 || !strings.Contains(lines[1], "PermissionDenied: no identity issued") {
		t.Fatalf("logs:\n%s", strings.Join(lines, "\n"))
	}
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFiles(t *testing.T) {
	peer := wl.StartT(t, wl.Options{Clock: clock.NewFake(t0), TTL: 10 * time.Minute})
	chain, _ := peer.Current()
	dir := t.TempDir()
	svid, bundle := filepath.Join(dir, "svid.pem"), filepath.Join(dir, "bundle.pem")
	writePEM(t, svid, chain...)
	writePEM(t, bundle, peer.Root())

	h := probetest.Start(t, "nginx-cert", time.Minute, func(env probe.Env) probe.Probe {
		return New(Config{Files: []string{svid, bundle}, Interval: cfg.Duration(time.Minute), Timeout: cfg.Duration(time.Second), OverdueAt: 60}, env)
	})
	if up, _ := h.Value("medic_probe_up"); up != 1 {
		t.Fatalf("up %v", up)
	}
	if _, ok := h.Value(MetricNotAfter, "role", RoleRoot, "source", bundle); !ok {
		t.Fatal("no root from bundle file")
	}
	if _, ok := h.Value(MetricRotationOverdue, "source", bundle); ok {
		t.Fatal("bundle file treated as current leaf")
	}
	for i := 0; i < 7; i++ {
		h.Tick()
	} // 7m of a 10m cert: 1m past 60%
	if v, _ := h.Value(MetricRotationOverdue, "source", svid); v != 60 {
		t.Fatalf("overdue %v, want 60", v)
	}

	// The consumer's file vanishes: up 0, its series go stale, the bundle stays.
	if err := os.Remove(svid); err != nil {
		t.Fatal(err)
	}
	h.Tick()
	if up, _ := h.Value("medic_probe_up"); up != 0 {
		t.Fatalf("up after removal %v", up)
	}
	if _, ok := h.Value(MetricRotationOverdue, "source", svid); ok {
		t.Fatal("series of a removed file still live")
	}
	if _, ok := h.Value(MetricNotAfter, "role", RoleRoot); !ok {
		t.Fatal("bundle series lost")
	}
	// A file that is not PEM.
	if err := os.WriteFile(svid, []byte("not a cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFiles([]string{svid}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestConfig(t *testing.T) {
	k, ok := probe.Lookup(Kind)
	if !ok {
		t.Fatal("cert not registered")
	}
	decode := func(doc string) (*Config, error) {
		c := k.NewConfig().(*Config)
		var n yaml.Node
		_ = yaml.Unmarshal([]byte(doc), &n)
		if err := cfg.Decode(&n, c, "probes[2].cert"); err != nil {
			return nil, err
		}
		return c, cfg.Prefix("probes[2].cert", c.Validate())
	}
	c, err := decode("{workloadAPI: {socket: 'unix:///run/spire/sockets/agent.sock'}}")
	if err != nil || c.OverdueAt != 60 || c.Interval.D() != 30*time.Second {
		t.Fatalf("%+v %v", c, err)
	}
	_, err = decode("{files: [a.pem, ''], workloadAPI: {socket: '/run/agent.sock'}, overdueAt: 0}")
	for _, want := range []string{
		"probes[2].cert: set files or workloadAPI, not both",
		"probes[2].cert.files[1]: must not be empty",
		"probes[2].cert.workloadAPI.socket: workload endpoint socket URI must have a \"tcp\" or \"unix\" scheme",
		"probes[2].cert.overdueAt: must be greater than 0%",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not contain %q", err, want)
		}
	}
	if _, err := decode("{}"); err == nil || !strings.Contains(err.Error(), "set files or workloadAPI") {
		t.Errorf("empty: %v", err)
	}
}

// BenchmarkObserve measures turning one SVID chain plus bundle into samples.
func BenchmarkObserve(b *testing.B) {
	s := wl.StartT(b, wl.Options{Clock: clock.NewFake(t0)})
	chain, _ := s.Current()
	chains := []Chain{{Source: SourceWorkloadAPI, Certs: chain, Bundle: []*x509.Certificate{s.Root()}, Current: true}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Observe(chains, t0, 0.6)
	}
}

// The agent goes away and comes back on the same socket (a restart): the
// probe reports down meanwhile and up again at the next check.
func TestWorkloadAPIAgentRestart(t *testing.T) {
	var peer *wl.Server
	var clk clock.Clock
	h := probetest.Start(t, "svid", 30*time.Second, func(env probe.Env) probe.Probe {
		clk = env.Clock
		peer = wl.StartT(t, wl.Options{Clock: clk})
		return New(Config{WorkloadAPI: &WorkloadAPIConfig{Socket: peer.Addr()}, Interval: cfg.Duration(30 * time.Second),
			Timeout: cfg.Duration(2 * time.Second), OverdueAt: 60}, env)
	})
	socket := strings.TrimPrefix(peer.Addr(), "unix://")
	peer.Close()
	h.Tick()
	if up, _ := h.Value("medic_probe_up"); up != 0 {
		t.Fatalf("up with the agent gone: %v", up)
	}
	if n := len(h.Series(MetricNotAfter)); n != 3 {
		t.Fatalf("last-known certificates not kept: %d series", n)
	}
	again := wl.StartT(t, wl.Options{Clock: clk, SocketPath: socket})
	h.Tick()
	if up, _ := h.Value("medic_probe_up"); up != 1 {
		t.Fatalf("up after the agent came back: %v", up)
	}
	chain, _ := again.Current()
	if _, ok := h.Value(MetricNotAfter, "serial", Serial(chain[0])); !ok {
		t.Fatal("new agent's SVID not reported")
	}
}
