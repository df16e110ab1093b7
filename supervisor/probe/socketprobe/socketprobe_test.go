package socketprobe

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/testpeers/workloadapi"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probetest"
)

// sockDir is a short temporary directory: sun_path holds 107 bytes, and
// t.TempDir's path carries the test's name.
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "msock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newConfig(path, handshake string, timeout time.Duration) Config {
	return Config{Path: path, Handshake: handshake, Interval: cfg.Duration(5 * time.Second), Timeout: cfg.Duration(timeout)}
}

// grpcServer serves gRPC (health only) on a Unix socket at path, as the
// SPIRE agent's Workload API does.
func grpcServer(t *testing.T, path string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return s.Stop
}

// staleSocket leaves a socket file at path with nobody listening: what a
// killed server leaves behind.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

// deafListener listens on path and never accepts: a hung server.
func deafListener(t *testing.T, path string, backlog int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, c Config) Result {
	t.Helper()
	return New(c, probe.Env{}).Check(context.Background())
}

func TestGRPCServerUpWithHandshake(t *testing.T) {
	path := filepath.Join(sockDir(t), "agent.sock")
	grpcServer(t, path)
	for _, hs := range []string{HandshakeNone, HandshakeHTTP2} {
		r := check(t, newConfig(path, hs, 2*time.Second))
		if !r.Up || !r.Exists || r.Err != nil {
			t.Fatalf("%s: %+v", hs, r)
		}
	}
	// The unix:// form of the Workload API address is accepted.
	if r := check(t, newConfig("unix://"+path, HandshakeHTTP2, 2*time.Second)); !r.Up {
		t.Fatalf("unix:// path: %+v", r)
	}
}

// A server that stopped accepting still "accepts" connect(): only the
// handshake tells it apart from a working one.
func TestHungServerNeedsTheHandshake(t *testing.T) {
	path := filepath.Join(sockDir(t), "hung.sock")
	deafListener(t, path, 16)
	if r := check(t, newConfig(path, HandshakeNone, time.Second)); !r.Up {
		t.Fatalf("connect-only check of a listening socket: %+v (the kernel queues the connect)", r)
	}
	start := time.Now()
	r := check(t, newConfig(path, HandshakeHTTP2, 300*time.Millisecond))
	if r.Up || !r.Exists || Reason(r.Err) != "no HTTP/2 answer" {
		t.Fatalf("handshake with a hung server: %+v reason %q", r, Reason(r.Err))
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("took %s, want about the 300ms timeout", d)
	}
}

func TestBacklogFull(t *testing.T) {
	path := filepath.Join(sockDir(t), "full.sock")
	deafListener(t, path, 0)
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
		if err != nil {
			r := check(t, newConfig(path, HandshakeNone, time.Second))
			if r.Up || !r.Exists || Reason(r.Err) != "backlog full" {
				t.Fatalf("full backlog: %+v reason %q", r, Reason(r.Err))
			}
			return
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the backlog of a backlog-0 Unix listener on this kernel")
}

func TestNotHTTP2(t *testing.T) {
	path := filepath.Join(sockDir(t), "http1.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r := check(t, newConfig(path, HandshakeHTTP2, 2*time.Second))
	if r.Up || r.Err == nil || (!strings.Contains(r.Err.Error(), "not SETTINGS") && Reason(r.Err) != "closed by server") {
		t.Fatalf("HTTP/1 server: %+v", r)
	}
}

func TestFailureReasons(t *testing.T) {
	dir := sockDir(t)
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		reason string
		exists bool
	}{
		{stale, "connection refused (stale socket?)", true},
		{filepath.Join(dir, "missing.sock"), "missing", false},
		{file, "not a socket", false},
		{dir, "not a socket", false},
	} {
		r := check(t, newConfig(tc.path, HandshakeHTTP2, time.Second))
		if r.Up || r.Exists != tc.exists || Reason(r.Err) != tc.reason {
			t.Errorf("%s: %+v reason %q, want %q exists=%v", filepath.Base(tc.path), r, Reason(r.Err), tc.reason, tc.exists)
		}
	}
}

// TestRunRecordsStates drives the probe's loop through up → stale →
// missing → up on the fake clock and checks samples and logs.
func TestRunRecordsStates(t *testing.T) {
	path := filepath.Join(sockDir(t), "agent.sock")
	stop := grpcServer(t, path)
	h := probetest.Start(t, "workload-api", 5*time.Second, func(env probe.Env) probe.Probe {
		return New(newConfig(path, HandshakeHTTP2, 2*time.Second), env)
	})
	want := func(up, exists float64, connect bool) {
		t.Helper()
		if v, _ := h.Value("medic_probe_up", "probe", "workload-api"); v != up {
			t.Errorf("up = %v, want %v", v, up)
		}
		if v, _ := h.Value(MetricExists); v != exists {
			t.Errorf("exists = %v, want %v", v, exists)
		}
		if _, ok := h.Value(MetricConnect); ok != connect {
			t.Errorf("connect seconds present = %v, want %v", ok, connect)
		}
		if _, ok := h.Value("medic_probe_duration_seconds"); !ok {
			t.Error("no duration")
		}
	}
	want(1, 1, true)

	// The server dies and leaves its socket: stale.
	stop()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		staleSocket(t, path) // grpc's listener unlinked it: put a stale one back
	}
	h.Tick()
	want(0, 1, false)

	// Somebody (socketCleanup) removes it: missing.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.Tick()
	want(0, 0, false)

	// The agent comes back.
	grpcServer(t, path)
	h.Tick()
	want(1, 1, true)

	lines := h.Logs.Lines()
	if len(lines) != 4 || !strings.Contains(lines[0], "probe up") ||
		!strings.Contains(lines[1], "reason=connection refused (stale socket?)") ||
		!strings.Contains(lines[2], "reason=missing") || !strings.Contains(lines[3], "probe up") {
		t.Fatalf("want one line per state change:\n%s", strings.Join(lines, "\n"))
	}
}

func TestConfig(t *testing.T) {
	k, ok := probe.Lookup(Kind)
	if !ok {
		t.Fatal("socket not registered")
	}
	decode := func(doc string) error {
		c := k.NewConfig().(*Config)
		var n yaml.Node
		_ = yaml.Unmarshal([]byte(doc), &n)
		if err := cfg.Decode(&n, c, "probes[0].socket"); err != nil {
			return err
		}
		return cfg.Prefix("probes[0].socket", c.Validate())
	}
	for _, ok := range []string{
		"{path: /run/spire/sockets/agent.sock}",
		"{path: unix:///run/spire/sockets/agent.sock, handshake: http2, interval: 10s, timeout: 3s}",
	} {
		if err := decode(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	err := decode("{path: run/agent.sock, handshake: grpc, interval: 1s, timeout: 2s}")
	for _, want := range []string{
		`probes[0].socket.path: must be absolute, not "run/agent.sock"`,
		`probes[0].socket.handshake: must be "none" or "http2", not "grpc"`,
		"probes[0].socket.timeout: must not exceed interval (1s)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not contain %q", err, want)
		}
	}
	if err := decode("{path: /" + strings.Repeat("a", 120) + "}"); err == nil || !strings.Contains(err.Error(), "at most 107") {
		t.Errorf("long path: %v", err)
	}
	if err := decode("{}"); err == nil || !strings.Contains(err.Error(), "probes[0].socket.path: is required") {
		t.Errorf("empty: %v", err)
	}
}

// TestWorkloadAPIPeer: the SPIFFE Workload API (the in-process peer built
// on go-spiffe's workload protos, as the SPIRE agent serves it) answers the
// HTTP/2 handshake without any RPC or the security header; once it is
// closed, its socket is gone.
func TestWorkloadAPIPeer(t *testing.T) {
	path := filepath.Join(sockDir(t), "agent.sock")
	w, err := workloadapi.Start(workloadapi.Options{SocketPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if r := check(t, newConfig(w.Addr(), HandshakeHTTP2, 2*time.Second)); !r.Up || !r.Exists {
		t.Fatalf("Workload API: %+v reason %q", r, Reason(r.Err))
	}
	w.Close()
	if r := check(t, newConfig(w.Addr(), HandshakeHTTP2, 2*time.Second)); r.Up {
		t.Fatalf("closed Workload API still up: %+v", r)
	}
}
