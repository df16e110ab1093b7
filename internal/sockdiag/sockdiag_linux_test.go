package sockdiag

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair opens a loopback TCP connection on network ("tcp4"/"tcp6") and
// returns the client and server ends.
func pair(t *testing.T, addr string) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			acc <- c
		}
		close(acc)
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func find(t *testing.T, states States, withInfo bool, local, remote net.Addr) (Socket, bool) {
	t.Helper()
	ss, err := Dump(context.Background(), states, withInfo)
	if err != nil {
		t.Fatal(err)
	}
	l := local.(*net.TCPAddr).AddrPort()
	r := remote.(*net.TCPAddr).AddrPort()
	for _, s := range ss {
		if s.Local == netip.AddrPortFrom(l.Addr().Unmap(), l.Port()) && s.Remote == netip.AddrPortFrom(r.Addr().Unmap(), r.Port()) {
			return s, true
		}
	}
	return Socket{}, false
}

func TestDumpFindsLoopbackConnection(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			c, srv := pair(t, addr)
			// Move some data so tcp_info has an RTT sample and acked bytes.
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(srv, buf); err != nil {
				t.Fatal(err)
			}
			s, ok := find(t, StatesOf(Established), true, c.LocalAddr(), c.RemoteAddr())
			if !ok {
				t.Fatalf("client socket %s->%s not in dump", c.LocalAddr(), c.RemoteAddr())
			}
			if s.State != Established || s.Inode == 0 || s.Cookie == 0 {
				t.Errorf("socket = %+v; want ESTABLISHED with inode and cookie", s)
			}
			wantFam := 4
			if addr[0] == '[' {
				wantFam = 6
			}
			if s.Family != wantFam {
				t.Errorf("family = %d, want %d", s.Family, wantFam)
			}
			if s.Info == nil || s.Info.RTT <= 0 || s.Info.BytesAcked < 5 || s.Info.SegsOut == 0 {
				t.Errorf("tcp_info = %+v; want RTT > 0, bytes acked >= 5, segments out", s.Info)
			}
			own, err := OwnInodes()
			if err != nil {
				t.Fatal(err)
			}
			if !own[s.Inode] {
				t.Errorf("own inodes do not include the test's client socket %d", s.Inode)
			}
			// The state filter is applied by the kernel.
			if _, ok := find(t, StatesOf(CloseWait), false, c.LocalAddr(), c.RemoteAddr()); ok {
				t.Error("CLOSE_WAIT-only dump returned an ESTABLISHED socket")
			}
		})
	}
}

func TestDumpSeesCloseWait(t *testing.T) {
	c, srv := pair(t, "127.0.0.1:0")
	srv.Close() // the peer closes; the client never does -> CLOSE_WAIT
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, ok := find(t, StatesOf(CloseWait), false, c.LocalAddr(), c.RemoteAddr())
		if ok && s.State == CloseWait {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("client socket never reached CLOSE_WAIT")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SOCK_DESTROY needs CAP_NET_ADMIN: run this test as root (CI does)")
	}
}

func TestDestroyAbortsTheOwnersSocket(t *testing.T) {
	requireRoot(t)
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			c, srv := pair(t, addr)
			s, ok := find(t, StatesOf(Established), false, c.LocalAddr(), c.RemoteAddr())
			if !ok {
				t.Fatal("client socket not in dump")
			}
			if err := Destroy(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 1))
			if !errors.Is(err, syscall.ECONNABORTED) {
				t.Errorf("client read after destroy: %v, want ECONNABORTED", err)
			}
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = srv.Read(make([]byte, 1))
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("server read after destroy: %v, want ECONNRESET (the peer gets a RST)", err)
			}
			// Destroying it again: it is gone.
			if err := Destroy(context.Background(), s); !errors.Is(err, ErrGone) {
				t.Errorf("second destroy: %v, want ErrGone", err)
			}
		})
	}
}

func TestDestroyChecksTheCookie(t *testing.T) {
	requireRoot(t)
	c, _ := pair(t, "127.0.0.1:0")
	s, ok := find(t, StatesOf(Established), false, c.LocalAddr(), c.RemoteAddr())
	if !ok {
		t.Fatal("client socket not in dump")
	}
	stale := s
	stale.id[40]++ // same tuple, another socket's cookie
	if err := Destroy(context.Background(), stale); !errors.Is(err, ErrGone) {
		t.Fatalf("destroy with a wrong cookie: %v, want ErrGone", err)
	}
	if _, ok := find(t, StatesOf(Established), false, c.LocalAddr(), c.RemoteAddr()); !ok {
		t.Fatal("the socket was destroyed despite the cookie mismatch")
	}
}

// TestDestroyWithoutCapNetAdmin drops CAP_NET_ADMIN from one locked OS
// thread (capabilities are per thread) and destroys from it: the kernel
// refuses with EPERM, which must come back as ErrPermission.
func TestDestroyWithoutCapNetAdmin(t *testing.T) {
	requireRoot(t)
	c, _ := pair(t, "127.0.0.1:0")
	s, ok := find(t, StatesOf(Established), false, c.LocalAddr(), c.RemoteAddr())
	if !ok {
		t.Fatal("client socket not in dump")
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with the goroutine, caps and all.
		runtime.LockOSThread()
		if err := dropEffectiveCap(unix.CAP_NET_ADMIN); err != nil {
			errc <- err
			return
		}
		errc <- Destroy(context.Background(), s)
	}()
	err := <-errc
	if !errors.Is(err, ErrPermission) || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("destroy without CAP_NET_ADMIN: %v, want ErrPermission wrapping EPERM", err)
	}
	t.Logf("message: %v", err)
	if _, ok := find(t, StatesOf(Established), false, c.LocalAddr(), c.RemoteAddr()); !ok {
		t.Fatal("socket destroyed without the capability")
	}
}

func dropEffectiveCap(capability int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[capability/32].Effective &^= 1 << (uint(capability) % 32)
	return unix.Capset(&hdr, &data[0])
}

func TestClassify(t *testing.T) {
	// The kernel here has CONFIG_INET_DIAG_DESTROY, so EOPNOTSUPP cannot be
	// provoked for real; the mapping itself is checked directly.
	for _, tc := range []struct {
		errno syscall.Errno
		want  error
	}{
		{unix.EPERM, ErrPermission},
		{unix.EACCES, ErrPermission},
		{unix.EOPNOTSUPP, ErrNotSupported},
		{unix.ENOENT, ErrGone},
		{unix.ESTALE, ErrGone},
	} {
		got := classify(tc.errno)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.errno) {
			t.Errorf("classify(%v) = %v, want %v wrapping the errno", tc.errno, got, tc.want)
		}
	}
	if got := classify(unix.EINVAL); got != unix.EINVAL {
		t.Errorf("classify(EINVAL) = %v, want it unchanged", got)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in       string
		portOnly bool
		want     Target
		bad      bool
	}{
		{in: "spire-server.spire:8081", want: Target{"spire-server.spire", 8081}},
		{in: "10.0.0.1:443", want: Target{"10.0.0.1", 443}},
		{in: "[fd00::1]:32767", want: Target{"fd00::1", 32767}},
		{in: ":8081", portOnly: true, want: Target{"", 8081}},
		{in: "8081", portOnly: true, want: Target{"", 8081}},
		{in: ":8081", bad: true},
		{in: "8081", bad: true},
		{in: "host", bad: true},
		{in: "host:0", bad: true},
		{in: "host:70000", bad: true},
		{in: "host:http", bad: true},
		{in: "", bad: true},
		{in: "fd00::1:80", bad: true},
	} {
		got, err := ParseTarget(tc.in, tc.portOnly)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseTarget(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestResolveAndMatch(t *testing.T) {
	ctx := context.Background()
	addrs, err := Target{Host: "localhost", Port: 80}.Resolve(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range addrs {
		found = found || a == netip.MustParseAddr("127.0.0.1")
	}
	if !found {
		t.Errorf("localhost resolved to %v, want 127.0.0.1 among them", addrs)
	}
	if _, err := (Target{Host: "no-such-host.invalid", Port: 80}).Resolve(ctx, nil); err == nil {
		t.Error("resolving no-such-host.invalid succeeded")
	}
	m := NewMatcher(Target{Host: "::ffff:10.0.0.1", Port: 80}, []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")})
	s := Socket{Remote: netip.MustParseAddrPort("10.0.0.1:80")}
	if !m.Match(s) {
		t.Error("v4-mapped target does not match the plain IPv4 socket")
	}
	s.Remote = netip.MustParseAddrPort("10.0.0.1:81")
	if m.Match(s) {
		t.Error("matched another port")
	}
	anyAddr := NewMatcher(Target{Port: 81}, nil)
	if !anyAddr.Match(s) {
		t.Error("port-only matcher does not match")
	}
}

func TestStates(t *testing.T) {
	for _, n := range []string{"CLOSE_WAIT", "close-wait", "Close_Wait"} {
		s, err := ParseState(n)
		if err != nil || s != CloseWait {
			t.Errorf("ParseState(%q) = %v, %v", n, s, err)
		}
	}
	if _, err := ParseState("HALF_OPEN"); err == nil {
		t.Error("ParseState accepted an unknown state")
	}
	m, err := ParseStates([]string{"FIN_WAIT1", "FIN_WAIT2"})
	if err != nil || !m.Has(FinWait1) || !m.Has(FinWait2) || m.Has(Established) {
		t.Errorf("ParseStates = %b, %v", m, err)
	}
	if Listen.Destroyable() || TimeWait.Destroyable() || !CloseWait.Destroyable() {
		t.Error("Destroyable is wrong")
	}
	if CloseWait.Label() != "close_wait" {
		t.Errorf("label = %q", CloseWait.Label())
	}
}
