package reconnect_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	_ "github.com/medic-sidecar/medic/supervisor/probe/tcpprobe"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/actions"
	_ "github.com/medic-sidecar/medic/actions/reconnect"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

// clientEnv makes the test binary act as the "agent": a gRPC client in its
// own process that holds a health Watch stream open and re-opens it
// whenever it breaks, the way an agent holds its upstream stream.
const clientEnv = "MEDIC_RECONNECT_TEST_AGENT"

func TestMain(m *testing.M) {
	if target := os.Getenv(clientEnv); target != "" {
		runAgent(target)
		return
	}
	os.Exit(m.Run())
}

func runAgent(target string) {
	// Exit when the test closes our stdin (or dies).
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	conn, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println("dial-error", err)
		os.Exit(1)
	}
	hc := healthpb.NewHealthClient(conn)
	for {
		st, err := hc.Watch(context.Background(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err != nil {
			fmt.Println("watch-error", status.Code(err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for {
			if _, err := st.Recv(); err != nil {
				fmt.Println("stream-error", time.Now().UnixNano(), status.Code(err), err)
				break
			}
			fmt.Println("update")
		}
	}
}

// build decodes one action through config.Parse and builds it through its Kind.
func build(t testing.TB, spec string, env actions.Env) (actions.Action, error) {
	t.Helper()
	// A probe named relay exists, so probe: relay passes config validation.
	c, err := config.Parse([]byte("probes:\n  - name: relay\n    tcp: {address: \"127.0.0.1:1\"}\nactions:\n  r:\n    reconnect: " + spec + "\n"))
	if err != nil {
		return nil, err
	}
	a := c.Actions["r"]
	k, ok := actions.Lookup(a.Kind)
	if !ok {
		t.Fatalf("kind %q not registered", a.Kind)
	}
	env.Name = "r"
	return k.New(a.Spec, env)
}

func mustBuild(t testing.TB, spec string, env actions.Env) actions.Action {
	t.Helper()
	a, err := build(t, spec, env)
	if err != nil {
		t.Fatalf("build %s: %v", spec, err)
	}
	return a
}

type connEvent struct {
	kind   string // begin, end, rpc
	remote string
	at     time.Time
}

// recorder is a gRPC stats handler that reports the server's connections
// and RPCs by remote address.
type recorder struct{ ch chan connEvent }

type remoteKey struct{}

func (r *recorder) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, remoteKey{}, info.RemoteAddr.String())
}

func (r *recorder) HandleConn(ctx context.Context, s stats.ConnStats) {
	remote, _ := ctx.Value(remoteKey{}).(string)
	switch s.(type) {
	case *stats.ConnBegin:
		r.ch <- connEvent{"begin", remote, time.Now()}
	case *stats.ConnEnd:
		r.ch <- connEvent{"end", remote, time.Now()}
	}
}

func (r *recorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (r *recorder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		remote, _ := ctx.Value(remoteKey{}).(string)
		r.ch <- connEvent{"rpc", remote, time.Now()}
	}
}

// next waits for an event of kind from remote (any remote if empty, any
// remote but not if not starts with '!').
func (r *recorder) next(t testing.TB, kind, remote string) connEvent {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-r.ch:
			if e.kind != kind {
				continue
			}
			if not, ok := strings.CutPrefix(remote, "!"); ok {
				if e.remote != not && e.remote != "" {
					return e
				}
				continue
			}
			if remote == "" || e.remote == remote {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event from %q within 15s", kind, remote)
		}
	}
}

func startServer(t testing.TB, addr string) (*recorder, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	rec := &recorder{ch: make(chan connEvent, 1024)}
	srv := grpc.NewServer(grpc.StatsHandler(rec))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return rec, ln.Addr().String()
}

// startAgent runs the agent-like client in a child process.
func startAgent(t testing.TB, target string) *lines {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a -race child otherwise sleeps 1s at exit.
	cmd.Env = append(os.Environ(), clientEnv+"="+target, "GORACE=atexit_sleep_ms=0")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &lines{ch: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return l
}

type lines struct{ ch chan string }

func (l *lines) waitFor(t testing.TB, prefix string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case s := <-l.ch:
			if strings.HasPrefix(s, prefix) {
				return s
			}
		case <-timeout:
			t.Fatalf("agent printed no %q line within 15s", prefix)
		}
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("reconnect peer: destroys sockets with SOCK_DESTROY, which needs CAP_NET_ADMIN: run as root (CI does)")
	}
}

// TestPeerReconnectsARealGRPCClient: an agent-like gRPC client in a child
// process holds a stream to a server on loopback; medic (this process)
// holds its own connection to the same server. reconnect peer: destroys
// the agent's connection, which reconnects at once and re-opens its
// stream on a new connection, while medic's own connection is left alone.
func TestPeerReconnectsARealGRPCClient(t *testing.T) {
	requireRoot(t)
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			rec, addr := startServer(t, listen)

			// medic's own connection to the same peer.
			own, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer own.Close()
			if _, err := healthpb.NewHealthClient(own).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			ownRemote := rec.next(t, "rpc", "").remote

			agent := startAgent(t, addr)
			first := rec.next(t, "rpc", "!"+ownRemote)
			agent.waitFor(t, "update")

			act := mustBuild(t, fmt.Sprintf("{peer: %q}", addr), actions.Env{})
			start := time.Now()
			res, err := act.Run(context.Background(), actions.Incident{ID: "i1", Alert: "Test", Attempt: 1})
			took := time.Since(start)
			if err != nil {
				t.Fatalf("reconnect: %v (%+v)", err, res)
			}
			destroyed := res.Details["destroyed"].([]string)
			if len(destroyed) != 1 || !strings.HasPrefix(destroyed[0], first.remote+"->") {
				t.Fatalf("destroyed %v, want exactly the agent's connection from %s", destroyed, first.remote)
			}
			if !strings.Contains(res.Message, "destroyed 1 established connection to "+addr) {
				t.Errorf("message = %q", res.Message)
			}
			skipped, _ := res.Details["skipped"].([]string)
			if len(skipped) != 1 || !strings.Contains(skipped[0], "held by medic itself") {
				t.Errorf("skipped = %v, want medic's own connection", skipped)
			}

			// The agent notices at once and reconnects on a new connection.
			line := agent.waitFor(t, "stream-error")
			var nanos int64
			fmt.Sscanf(line, "stream-error %d", &nanos)
			noticed := time.Unix(0, nanos).Sub(start)
			if !strings.Contains(line, "Unavailable") {
				t.Errorf("agent saw %q, want Unavailable", line)
			}
			second := rec.next(t, "rpc", "!"+ownRemote)
			if second.remote == first.remote {
				t.Fatalf("stream re-opened on the same connection %s", first.remote)
			}
			agent.waitFor(t, "update")
			t.Logf("destroy took %s; agent saw the error after %s; new stream from %s served after %s",
				took, noticed, second.remote, second.at.Sub(start))

			// medic's own connection survived.
			if s := own.GetState(); s != connectivity.Ready {
				t.Errorf("medic's own connection is %s, want READY", s)
			}
			if _, err := healthpb.NewHealthClient(own).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("own connection after reconnect: %v", err)
			}
			if e := rec.next(t, "rpc", ownRemote); e.remote != ownRemote {
				t.Errorf("own RPC came from %s, want the old connection %s", e.remote, ownRemote)
			}
		})
	}
}

func TestPeerWithNoConnectionsIsPermanent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	act := mustBuild(t, fmt.Sprintf("{peer: %q}", addr), actions.Env{})
	res, err := act.Run(context.Background(), actions.Incident{ID: "i"})
	if !actions.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent", err)
	}
	want := "no established connections to " + addr
	if err.Error() != want || res.Message != want {
		t.Errorf("err %q, message %q; want %q", err, res.Message, want)
	}
}

func TestPeerOwnConnectionsOnlyIsPermanent(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	act := mustBuild(t, fmt.Sprintf("{peer: %q}", ln.Addr()), actions.Env{})
	res, err := act.Run(context.Background(), actions.Incident{ID: "i"})
	if !actions.IsPermanent(err) || !strings.Contains(err.Error(), "1 left alone") {
		t.Fatalf("err = %v, want permanent 'no established connections … (1 left alone …)'", err)
	}
	if s := res.Details["skipped"].([]string); len(s) != 1 {
		t.Errorf("skipped = %v", s)
	}
	// excludeOwn: false destroys it.
	act = mustBuild(t, fmt.Sprintf("{peer: %q, excludeOwn: false}", ln.Addr()), actions.Env{})
	if res, err = act.Run(context.Background(), actions.Incident{ID: "i"}); err != nil {
		t.Fatalf("excludeOwn false: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("read after destroy: %v, want ECONNABORTED", err)
	}
}

func TestPeerDryRunDestroysNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	act := mustBuild(t, fmt.Sprintf("{peer: %q, excludeOwn: false}", ln.Addr()), actions.Env{})
	res, err := act.Run(context.Background(), actions.Incident{ID: "i", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Message, "dry run: would destroy 1 ") {
		t.Errorf("message = %q", res.Message)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("dry run touched the socket: read gave %v", err)
	}
}

func TestPeerNameIsResolvedAtRun(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	act := mustBuild(t, fmt.Sprintf("{peer: \"localhost:%d\", excludeOwn: false}", port), actions.Env{})
	res, err := act.Run(context.Background(), actions.Incident{ID: "i"})
	if err != nil {
		t.Fatalf("%v (%+v)", err, res)
	}
	if addrs := res.Details["addresses"].([]string); !contains(addrs, "127.0.0.1") {
		t.Errorf("addresses = %v, want 127.0.0.1 among them", addrs)
	}
	if d := res.Details["destroyed"].([]string); len(d) != 1 {
		t.Errorf("destroyed = %v", d)
	}
}

func TestPeerUnknownName(t *testing.T) {
	act := mustBuild(t, `{peer: "no-such-host.invalid:8081"}`, actions.Env{})
	_, err := act.Run(context.Background(), actions.Incident{ID: "i"})
	if err == nil || !strings.Contains(err.Error(), "no-such-host.invalid") {
		t.Fatalf("err = %v, want an error naming the host", err)
	}
	// NXDOMAIN is permanent; a resolver that cannot be reached (a sandbox
	// without DNS) is not, and rightly so.
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound && !actions.IsPermanent(err) {
		t.Errorf("err = %v: a name that does not exist must be permanent", err)
	}
	t.Logf("error: %v (permanent %v)", err, actions.IsPermanent(err))
}

// TestPeerWithoutCapNetAdmin runs the action on an OS thread whose
// effective CAP_NET_ADMIN was dropped (capabilities are per thread): the
// kernel's EPERM must surface as a permanent error naming the capability.
func TestPeerWithoutCapNetAdmin(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	act := mustBuild(t, fmt.Sprintf("{peer: %q, excludeOwn: false}", ln.Addr()), actions.Env{})
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		_, err := act.Run(context.Background(), actions.Incident{ID: "i"})
		errc <- err
	}()
	err = <-errc
	if !actions.IsPermanent(err) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("err = %v, want a permanent error naming CAP_NET_ADMIN", err)
	}
}

type redialer struct {
	mu      sync.Mutex
	reasons []string
}

func (r *redialer) Redial(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

// Run makes the stand-in a probe; it observes nothing.
func (r *redialer) Run(ctx context.Context, _ probe.Appender) error { <-ctx.Done(); return nil }

// plainProbe is a probe without a connection to re-dial.
type plainProbe struct{}

func (plainProbe) Run(ctx context.Context, _ probe.Appender) error { <-ctx.Done(); return nil }

// finder is a fixed probe table standing in for the supervisor's.
type finder map[string]probe.Probe

func (f finder) Probe(name string) (probe.Probe, bool) { p, ok := f[name]; return p, ok }

func TestProbeRedial(t *testing.T) {
	rd := &redialer{}
	env := actions.Env{Probes: finder{"relay": rd, "spire": plainProbe{}}}

	act := mustBuild(t, `{probe: relay}`, env)
	res, err := act.Run(context.Background(), actions.Incident{ID: "inc-7", Alert: "RelayStreamDown", Attempt: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rd.reasons) != 1 || !strings.Contains(rd.reasons[0], "RelayStreamDown") || !strings.Contains(rd.reasons[0], "inc-7") {
		t.Errorf("reasons = %q", rd.reasons)
	}
	if res.Message != "probe relay re-dialing" {
		t.Errorf("message = %q", res.Message)
	}

	// Dry run does not redial.
	if _, err := act.Run(context.Background(), actions.Incident{DryRun: true}); err != nil || len(rd.reasons) != 1 {
		t.Errorf("dry run: err %v, redials %d", err, len(rd.reasons))
	}

	// Config validation rejects unknown probe names; the run-time lookup is
	// still defensive (a finder without the probe).
	if _, err := mustBuild(t, `{probe: relay}`, actions.Env{Probes: finder{}}).Run(context.Background(), actions.Incident{}); !actions.IsPermanent(err) || !strings.Contains(err.Error(), "no probe of that name") {
		t.Errorf("missing probe: err = %v", err)
	}
	if _, err := mustBuild(t, `{probe: relay}`, actions.Env{Probes: finder{"relay": plainProbe{}}}).Run(context.Background(), actions.Incident{}); !actions.IsPermanent(err) || !strings.Contains(err.Error(), "owns no connection medic can re-dial") {
		t.Errorf("not a redialer: err = %v", err)
	}
	_, err = mustBuild(t, `{probe: relay}`, actions.Env{}).Run(context.Background(), actions.Incident{})
	if !actions.IsPermanent(err) {
		t.Errorf("no probe finder: err = %v, want permanent", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for spec, want := range map[string][]string{
		`{}`:                               {"actions.r.reconnect: give a target"},
		`{probe: a, peer: "h:1"}`:          {"actions.r.reconnect.probe: give either probe or peer"},
		`{peer: nohost}`:                   {"actions.r.reconnect.peer: \"nohost\": want host:port"},
		`{peer: ":8081"}`:                  {"actions.r.reconnect.peer: \":8081\": a host is required"},
		`{peer: "h:99999"}`:                {"actions.r.reconnect.peer: \"h:99999\": port must be"},
		`{peer: "h:1", states: [LISTEN]}`:  {"actions.r.reconnect.states[0]: LISTEN sockets are never destroyed"},
		`{peer: "h:1", states: [BOGUS]}`:   {"actions.r.reconnect.states[0]: unknown TCP state \"BOGUS\""},
		`{peer: "h:1", states: []}`:        {"actions.r.reconnect.states: must list at least one"},
		`{peer: "h:1", localPort: 70000}`:  {"actions.r.reconnect.localPort: must be a port"},
		`{probe: a, localPort: 1}`:         {"actions.r.reconnect.localPort: applies only to peer"},
		`{probe: a, states: [SYN_SENT]}`:   {"actions.r.reconnect.states: applies only to peer"},
		`{peer: "h:1", unknownKey: true}`:  {"actions.r.reconnect.unknownKey: unknown field"},
		`{peer: "h:1", excludeOwn: maybe}`: {"actions.r.reconnect.excludeOwn: cannot use \"maybe\""},
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
		all := strings.Join(msgs, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("%s:\n%s\nwant %q", spec, all, w)
			}
		}
	}
	// A probe that is not configured is caught at load time.
	if _, err := build(t, `{probe: nosuch}`, actions.Env{}); err == nil || !strings.Contains(err.Error(), `no probe named "nosuch"`) {
		t.Errorf("unknown probe: %v", err)
	}
	// Valid forms.
	for _, spec := range []string{
		`{peer: "spire-server.spire:8081"}`,
		`{peer: "[fd00::1]:32767", states: [established, syn-sent], localPort: 40000, excludeOwn: false}`,
		`{probe: relay}`,
	} {
		if _, err := build(t, spec, actions.Env{}); err != nil {
			t.Errorf("%s: %v", spec, err)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// BenchmarkPeerReconnect measures one reconnect peer: of a real gRPC client
// in another process: from the start of Run until the server serves the
// client's stream on a new connection. destroy-ns is Run alone.
func BenchmarkPeerReconnect(b *testing.B) {
	requireRoot(b)
	rec, addr := startServer(b, "127.0.0.1:0")
	agent := startAgent(b, addr)
	prev := rec.next(b, "rpc", "").remote
	agent.waitFor(b, "update")
	act := mustBuild(b, fmt.Sprintf("{peer: %q}", addr), actions.Env{})
	var runTime time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := act.Run(context.Background(), actions.Incident{ID: "bench"}); err != nil {
			b.Fatal(err)
		}
		runTime += time.Since(start)
		prev = rec.next(b, "rpc", "!"+prev).remote
	}
	b.ReportMetric(float64(runTime.Nanoseconds())/float64(b.N), "destroy-ns")
}
