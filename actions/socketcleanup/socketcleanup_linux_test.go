package socketcleanup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/config"
)

// build decodes one action through config.Parse and builds it through its Kind.
func build(t *testing.T, spec string, env actions.Env) (*Action, error) {
	t.Helper()
	c, err := config.Parse([]byte("actions:\n  c:\n    socketCleanup: " + spec + "\n"))
	if err != nil {
		return nil, err
	}
	a := c.Actions["c"]
	k, ok := actions.Lookup(a.Kind)
	if !ok {
		t.Fatalf("kind %q not registered", a.Kind)
	}
	env.Name = "c"
	act, err := k.New(a.Spec, env)
	if err != nil {
		return nil, err
	}
	return act.(*Action), nil
}

func mustBuild(t *testing.T, spec string, env actions.Env) *Action {
	t.Helper()
	a, err := build(t, spec, env)
	if err != nil {
		t.Fatalf("build %s: %v", spec, err)
	}
	return a
}

// later is a clock a minute ahead, so sockets made by the test are past minAge.
func later() actions.Env {
	return actions.Env{Clock: clock.NewFake(time.Now().Add(time.Minute))}
}

// staleSocket binds a Unix listener at path and closes it without
// unlinking: the file stays, nothing is bound to it (what SIGKILL leaves).
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// liveSocket listens at path until the test ends.
func liveSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

func exists(path string) bool { _, err := os.Lstat(path); return err == nil }

func details(res actions.Result, key string) []string {
	v, _ := res.Details[key].([]string)
	return v
}

// reason finds the skip reason reported for path.
func reason(res actions.Result, path string) string {
	for _, s := range details(res, "skipped") {
		if r, ok := strings.CutPrefix(s, path+": "); ok {
			return r
		}
	}
	return ""
}

// shortTemp is a temp dir with a short path (sockaddr_un holds 107 bytes).
func shortTemp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	d, err = filepath.EvalSymlinks(d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRemovesOnlyProvablyStaleSockets(t *testing.T) {
	root := shortTemp(t)
	allowed := filepath.Join(root, "run")
	outside := filepath.Join(root, "out")
	for _, d := range []string{allowed, outside, filepath.Join(allowed, "dir.sock")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(allowed, "stale.sock")
	staleSocket(t, stale)
	live := filepath.Join(allowed, "live.sock")
	liveSocket(t, live)
	// A symlink to a stale socket outside: neither the link nor its target may go.
	outsideStale := filepath.Join(outside, "target.sock")
	staleSocket(t, outsideStale)
	link := filepath.Join(allowed, "link.sock")
	if err := os.Symlink(outsideStale, link); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(allowed, "file.sock")
	if err := os.WriteFile(regular, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(allowed, "dir.sock")
	// A directory symlink inside the allowed dir that leads outside it.
	escape := filepath.Join(allowed, "escape")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	escaped := filepath.Join(escape, "target.sock") // = outsideStale
	missing := filepath.Join(allowed, "missing.sock")

	spec := fmt.Sprintf("{paths: [%q, %q, %q], allowedDirs: [%q]}",
		filepath.Join(allowed, "*.sock"), escaped, missing, allowed)
	a := mustBuild(t, spec, later())
	res, err := a.Run(context.Background(), actions.Incident{ID: "i"})
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, res)
	}
	if got := details(res, "removed"); len(got) != 1 || got[0] != stale {
		t.Errorf("removed = %v, want only %s", got, stale)
	}
	if exists(stale) {
		t.Error("stale socket still exists")
	}
	for path, want := range map[string]string{
		live:    "live: accepts connections",
		link:    "symlink (never followed), not a socket",
		regular: "regular file, not a socket",
		dir:     "directory, not a socket",
		escaped: "outside allowedDirs (its directory resolves to " + outside + ")",
		missing: "missing",
	} {
		if got := reason(res, path); got != want {
			t.Errorf("%s: reason %q, want %q", path, got, want)
		}
		if path != missing && !exists(path) {
			t.Errorf("%s was removed", path)
		}
	}
	if !exists(outsideStale) {
		t.Error("the symlink's target outside allowedDirs was removed")
	}
	if res.Message != "removed 1 stale socket; left 6 alone" {
		t.Errorf("message = %q", res.Message)
	}
	t.Logf("details: %v", res.Details)

	// Nothing stale left: a permanent "nothing to clean", files untouched.
	res, err = a.Run(context.Background(), actions.Incident{ID: "i"})
	if !actions.IsPermanent(err) || !strings.HasPrefix(err.Error(), "nothing to clean: no stale Unix socket") {
		t.Errorf("second run: err %v, want permanent nothing to clean", err)
	}
	if !exists(live) || !exists(outsideStale) {
		t.Error("second run removed something")
	}
}

func TestStaleDatagramSocketAndLiveDatagramSocket(t *testing.T) {
	dir := shortTemp(t)
	stale := filepath.Join(dir, "stale.dgram")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	pc.Close() // unixgram never unlinks on close
	live := filepath.Join(dir, "live.dgram")
	lc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: live, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	a := mustBuild(t, fmt.Sprintf("{paths: [%q], allowedDirs: [%q]}", filepath.Join(dir, "*"), dir), later())
	res, err := a.Run(context.Background(), actions.Incident{})
	if err != nil {
		t.Fatal(err)
	}
	if got := details(res, "removed"); len(got) != 1 || got[0] != stale {
		t.Errorf("removed = %v", got)
	}
	if r := reason(res, live); r != "live: accepts connections" || !exists(live) {
		t.Errorf("live datagram socket: %q, exists %v", r, exists(live))
	}
}

func TestMinAgeProtectsAFreshSocket(t *testing.T) {
	dir := shortTemp(t)
	stale := filepath.Join(dir, "agent.sock")
	staleSocket(t, stale)
	// The real clock: the socket was made just now.
	a := mustBuild(t, fmt.Sprintf("{paths: [%q], allowedDirs: [%q]}", stale, dir), actions.Env{})
	res, err := a.Run(context.Background(), actions.Incident{})
	if !actions.IsPermanent(err) || !exists(stale) {
		t.Fatalf("err %v, exists %v: a fresh socket must be left alone", err, exists(stale))
	}
	if r := reason(res, stale); !strings.Contains(r, "less than minAge 5s") {
		t.Errorf("reason = %q", r)
	}
}

func TestDryRunRemovesNothing(t *testing.T) {
	dir := shortTemp(t)
	stale := filepath.Join(dir, "agent.sock")
	staleSocket(t, stale)
	a := mustBuild(t, fmt.Sprintf("{paths: [%q], allowedDirs: [%q]}", stale, dir), later())
	res, err := a.Run(context.Background(), actions.Incident{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(stale) || res.Message != "dry run: would remove 1 stale socket" {
		t.Errorf("exists %v, message %q", exists(stale), res.Message)
	}
}

// TestReplacedBetweenCheckAndUnlink: if the agent re-creates its socket
// after the staleness check, the inode changes and the new socket stays.
func TestReplacedBetweenCheckAndUnlink(t *testing.T) {
	dir := shortTemp(t)
	path := filepath.Join(dir, "agent.sock")
	staleSocket(t, path)
	a := mustBuild(t, fmt.Sprintf("{paths: [%q], allowedDirs: [%q]}", path, dir), later())
	a.beforeRemove = func(p string) {
		// The agent restarts: removes the old file and binds anew.
		os.Remove(p)
		liveSocket(t, p)
	}
	res, err := a.Run(context.Background(), actions.Incident{})
	if !actions.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent nothing to clean", err)
	}
	if r := reason(res, path); r != "replaced while being checked; left alone" {
		t.Errorf("reason = %q", r)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the agent's new socket was removed: %v", err)
	}
	c.Close()
}

func TestUnlinkFailureIsReported(t *testing.T) {
	dir := shortTemp(t)
	path := filepath.Join(dir, "agent.sock")
	staleSocket(t, path)
	if os.Geteuid() == 0 {
		// root ignores directory modes: make the directory a read-only
		// bind mount of itself instead (unlink then fails with EROFS).
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			t.Skipf("cannot bind-mount (needs CAP_SYS_ADMIN): %v", err)
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			t.Skipf("cannot remount read-only: %v", err)
		}
	} else {
		os.Chmod(dir, 0o555)
		defer os.Chmod(dir, 0o755)
	}
	a := mustBuild(t, fmt.Sprintf("{paths: [%q], allowedDirs: [%q]}", path, dir), later())
	res, err := a.Run(context.Background(), actions.Incident{})
	if !actions.IsPermanent(err) || len(details(res, "failed")) != 1 || !exists(path) {
		t.Fatalf("err %v, details %v: want a permanent error and the failure listed", err, res.Details)
	}
	t.Logf("error: %v", err)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("destroying TCP sockets needs CAP_NET_ADMIN: run as root (CI does)")
	}
}

// TestDestroysCloseWaitToPeer: the server closes, the client never does:
// the client socket sits in CLOSE_WAIT until socketCleanup destroys it.
// An ESTABLISHED connection to the same peer is left alone.
func TestDestroysCloseWaitToPeer(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	stuck, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	(<-accepted).Close()
	healthy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	srv := <-accepted
	defer srv.Close()
	// Wait for the FIN to land: the client reads EOF.
	stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stuck.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("want EOF from the closed peer, got %v", err)
	}

	a := mustBuild(t, fmt.Sprintf("{peer: %q, excludeOwn: false}", ln.Addr()), later())
	res, err := a.Run(context.Background(), actions.Incident{})
	if err != nil {
		t.Fatalf("%v (%+v)", err, res)
	}
	d := details(res, "destroyed")
	if len(d) != 1 || d[0] != fmt.Sprintf("%s->%s CLOSE_WAIT", stuck.LocalAddr(), stuck.RemoteAddr()) {
		t.Errorf("destroyed = %v", d)
	}
	if res.Message != "destroyed 1 fin_wait1, fin_wait2 or close_wait connection to "+ln.Addr().String() {
		t.Errorf("message = %q", res.Message)
	}
	if _, err := stuck.Write([]byte("x")); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("write on the destroyed socket: %v, want ECONNABORTED", err)
	}
	if _, err := healthy.Write([]byte("x")); err != nil {
		t.Errorf("the established connection was hit: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for spec, want := range map[string]string{
		`{}`:                                     "actions.c.socketCleanup: nothing to clean",
		`{paths: [/run/a.sock]}`:                 "actions.c.socketCleanup.allowedDirs: is required with paths",
		`{paths: [a.sock], allowedDirs: [/run]}`: `actions.c.socketCleanup.paths[0]: "a.sock" must be an absolute path`,
		`{paths: ["/run/[x.sock"], allowedDirs: [/run]}`:             `actions.c.socketCleanup.paths[0]: "/run/[x.sock": bad glob pattern`,
		`{paths: [/tmp/a.sock], allowedDirs: [/run/spire]}`:          `actions.c.socketCleanup.paths[0]: "/tmp/a.sock" is not inside allowedDirs (/run/spire)`,
		`{paths: [/run/spire/../a.sock], allowedDirs: [/run/spire]}`: `is not inside allowedDirs`,
		`{paths: [/a.sock], allowedDirs: [/]}`:                       "actions.c.socketCleanup.allowedDirs[0]: the root directory cannot be an allowed dir",
		`{paths: [/r/a.sock], allowedDirs: [r]}`:                     `actions.c.socketCleanup.allowedDirs[0]: "r" must be an absolute path`,
		`{paths: [/r/a.sock], allowedDirs: ["/r/*"]}`:                `actions.c.socketCleanup.allowedDirs[0]: "/r/*": no glob patterns`,
		`{peer: nohost}`: `actions.c.socketCleanup.peer: "nohost": want host:port`,
		`{peer: "h:1", tcpStates: [ESTABLISHED]}`: "actions.c.socketCleanup.tcpStates[0]: ESTABLISHED connections are live, not stale: use the reconnect action",
		`{peer: "h:1", tcpStates: [TIME_WAIT]}`:   "actions.c.socketCleanup.tcpStates[0]: TIME_WAIT sockets are never destroyed",
		`{peer: "h:1", tcpStates: []}`:            "actions.c.socketCleanup.tcpStates: must list at least one state",
		`{peer: "h:1", minAge: -1s}`:              "actions.c.socketCleanup.minAge",
		`{peer: "h:1", path: /x}`:                 "actions.c.socketCleanup.path: unknown field",
	} {
		_, err := build(t, spec, actions.Env{})
		if err == nil {
			t.Errorf("%s: no error", spec)
			continue
		}
		var msgs []string
		for _, e := range cfg.Sorted(err) {
			msgs = append(msgs, e.Error())
		}
		if all := strings.Join(msgs, "\n"); !strings.Contains(all, want) {
			t.Errorf("%s:\n%s\nwant %q", spec, all, want)
		}
	}
	for _, spec := range []string{
		`{paths: ["/run/spire/sockets/*.sock"], allowedDirs: [/run/spire/sockets]}`,
		`{paths: ["/run/spire/sockets/agent.sock"], allowedDirs: [/run/spire], minAge: 30s, peer: "spire-server:8081", tcpStates: [close-wait]}`,
		`{peer: "[fd00::1]:8081"}`,
	} {
		if _, err := build(t, spec, actions.Env{}); err != nil {
			t.Errorf("%s: %v", spec, err)
		}
	}
}
