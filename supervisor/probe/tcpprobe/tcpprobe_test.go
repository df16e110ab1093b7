package tcpprobe

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probetest"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probeutil"
)

func newConfig(addr string, timeout time.Duration) Config {
	return Config{Address: addr, Interval: cfg.Duration(5 * time.Second), Timeout: cfg.Duration(timeout)}
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// acceptLoop accepts and closes connections until the listener closes.
func acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func TestDownUpDown(t *testing.T) {
	addr := freeAddr(t)
	h := probetest.Start(t, "spire-server", 5*time.Second, func(env probe.Env) probe.Probe {
		return New(newConfig(addr, time.Second), env)
	})
	if v, ok := h.Value("medic_probe_up"); !ok || v != 0 {
		t.Fatalf("nothing listening: up=%v,%v", v, ok)
	}
	if _, ok := h.Value(MetricConnect); ok {
		t.Fatal("connect time reported while down")
	}
	if _, ok := h.Value("medic_probe_duration_seconds", "probe", "spire-server"); !ok {
		t.Fatal("no duration while down")
	}
	if e, _ := h.LastError(); !strings.Contains(e, "connection refused") || !strings.Contains(e, addr) {
		t.Fatalf("reported error %q, want the dial error", e)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go acceptLoop(ln)
	h.Tick()
	h.Tick()
	if v, _ := h.Value("medic_probe_up"); v != 1 {
		t.Fatalf("listening: up=%v", v)
	}
	if v, ok := h.Value(MetricConnect); !ok || v <= 0 || v > 1 {
		t.Fatalf("connect seconds %v %v", v, ok)
	}
	if e, ok := h.LastError(); !ok || e != "" {
		t.Fatalf("reported error %q,%v while up", e, ok)
	}

	ln.Close()
	h.Tick()
	h.Tick()
	if v, _ := h.Value("medic_probe_up"); v != 0 {
		t.Fatalf("closed again: up=%v", v)
	}
	if _, ok := h.Value(MetricConnect); ok {
		t.Fatal("connect time still live after going down (should be stale)")
	}

	// Five checks, three states: logged once per change.
	lines := h.Logs.Lines()
	if len(lines) != 3 || !strings.Contains(lines[0], "probe down reason=connection refused") ||
		!strings.Contains(lines[1], "probe up") || !strings.Contains(lines[2], "probe down") {
		t.Fatalf("logs:\n%s", strings.Join(lines, "\n"))
	}
}

// fullListener listens with a backlog of 0 and never accepts, then fills
// the accept queue, so that further SYNs are dropped and a connect hangs.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // the queue is full: this connect timed out
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the accept queue of a backlog-0 listener on this kernel")
	return ""
}

func TestTimeout(t *testing.T) {
	addr := fullListener(t)
	p := New(newConfig(addr, 300*time.Millisecond), probe.Env{})
	r := p.Check(context.Background())
	if r.Up || probeutil.Reason(r.Err) != "timeout" {
		t.Fatalf("result %+v reason %q", r, probeutil.Reason(r.Err))
	}
	if r.Duration < 250*time.Millisecond || r.Duration > 5*time.Second {
		t.Fatalf("duration %s, want about the 300ms timeout", r.Duration)
	}
}

func TestConfig(t *testing.T) {
	k, ok := probe.Lookup(Kind)
	if !ok {
		t.Fatal("tcp not registered")
	}
	decode := func(doc string) error {
		c := k.NewConfig().(*Config)
		var n yaml.Node
		_ = yaml.Unmarshal([]byte(doc), &n)
		if err := cfg.Decode(&n, c, "probes[0].tcp"); err != nil {
			return err
		}
		return cfg.Prefix("probes[0].tcp", c.Validate())
	}
	if err := decode("{address: spire-server.spire:8081}"); err != nil {
		t.Fatal(err)
	}
	err := decode("{address: spire-server, interval: 1s, timeout: 2s}")
	for _, want := range []string{
		`probes[0].tcp.address: must be host:port, not "spire-server"`,
		"probes[0].tcp.timeout: must not exceed interval (1s)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not contain %q", err, want)
		}
	}
	if err := decode("{adress: x:1}"); err == nil || !strings.Contains(err.Error(), `did you mean "address"`) &&
		!strings.Contains(err.Error(), "unknown field") {
		t.Errorf("unknown key: %v", err)
	}
}
