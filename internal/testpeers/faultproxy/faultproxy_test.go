package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes lines back until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

// dialAndEcho dials and round-trips one line. On loopback the proxy's RST
// can beat the client's connect, so the error may come from either step.
func dialAndEcho(p *Proxy) error {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = roundTrip(c, bufio.NewReader(c), "x", 5*time.Second)
	return err
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func TestPassStallPass(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "one", 5*time.Second); err != nil || got != "one" {
		t.Fatalf("pass: got %q, %v", got, err)
	}

	p.SetMode(Stall)
	_, err := roundTrip(c, r, "two", 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stall: want a timeout (nothing forwarded), got %v", err)
	}
	if p.Active() != 1 {
		t.Fatalf("stall must keep the connection open; active = %d", p.Active())
	}
	// A connection opened while stalled is accepted and held.
	c2, r2 := dial(t, p)
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c2, "held\n"); err != nil {
		t.Fatal(err)
	}

	p.SetMode(Pass)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || line != "two\n" {
		t.Fatalf("held bytes must be forwarded after stall ends: %q, %v", line, err)
	}
	line, err = r2.ReadString('\n')
	if err != nil || line != "held\n" {
		t.Fatalf("second connection: %q, %v", line, err)
	}
	if p.Accepted() != 2 {
		t.Fatalf("accepted = %d, want 2", p.Accepted())
	}
}

func TestReset(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Reset)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := r.ReadString('\n')
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("open connection: want ECONNRESET, got %v", err)
	}
	// New connections are reset at once.
	if err := dialAndEcho(p); err == nil {
		t.Fatal("new connection in reset mode must fail")
	}
	p.SetMode(Pass)
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "z", 5*time.Second); err != nil || got != "z" {
		t.Fatalf("after reset, pass again: %q, %v", got, err)
	}
}

func TestStallThenResetReleases(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Stall)
	_, _ = io.WriteString(c, "stuck\n")
	p.SetMode(Reset)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("want the stalled connection reset")
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Active() != 0 {
		t.Fatalf("active = %d after reset", p.Active())
	}
}

func TestUpstreamDown(t *testing.T) {
	// Port 1 (tcpmux) is closed on any test machine: the dial is refused.
	p, err := Start("127.0.0.1:0", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := dialAndEcho(p); err == nil {
		t.Fatal("want an error when the upstream refuses")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Pass: "pass", Stall: "stall", Reset: "reset", Mode(9): "Mode(9)"} {
		if m.String() != want {
			t.Errorf("%d: %q", m, m.String())
		}
	}
}
