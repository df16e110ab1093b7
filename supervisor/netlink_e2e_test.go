package supervisor_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/sockdiag"
	"github.com/medic-sidecar/medic/internal/testpeers/relay"
	"github.com/medic-sidecar/medic/supervisor"
	_ "github.com/medic-sidecar/medic/supervisor/builtin"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// eventSink passes incident events to the test.
type eventSink chan remedy.Event

func (s eventSink) Record(ev remedy.Event) {
	select {
	case s <- ev:
	default:
	}
}

// TestE2EStuckCloseWaitIsCleaned runs medic end to end: an "agent" (a bash
// process holding a TCP connection it never reads or closes) is left in
// CLOSE_WAIT when its upstream closes; the tcpconn probe sees it, the rule
// fires, socketCleanup destroys exactly that socket, the alert resolves and
// the remediation is recorded as succeeded.
func TestE2EStuckCloseWaitIsCleaned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("socketCleanup peer: destroys sockets with SOCK_DESTROY, which needs CAP_NET_ADMIN: run as root (CI does)")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash for its /dev/tcp agent stand-in")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	upstream := ln.Addr().(*net.TCPAddr)

	// The agent: connects, then blocks on its stdin, never touching the socket.
	agent := exec.Command(bash, "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && echo connected && read _", upstream.Port))
	stdin, _ := agent.StdinPipe()
	out, _ := agent.StdoutPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); agent.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "connected" {
		t.Fatalf("agent: %q", line)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	agentEnd := c.RemoteAddr().String()
	c.Close() // the upstream goes away; the agent never closes its end

	// The dump gets 3 s: with 100 ms a loaded machine (load 25-32, -race)
	// let dumps time out, the series went stale and the alert flapped.
	doc := fmt.Sprintf(`
stateDir: %s
evaluationInterval: 100ms
probes:
  - name: upstream
    tcpconn: {peers: [%q], interval: 3s, timeout: 3s}
actions:
  clean:
    socketCleanup: {peer: %q}
    backoff: {policy: constant, initial: 100ms, attempts: 2}
    verify: 20s
rules:
  - alert: UpstreamCloseWait
    expr: medic_upstream_connections{probe="upstream",state="close_wait"} > 0
    remediate: [clean]
`, t.TempDir(), upstream.String(), upstream.String())
	_, events := runMedic(t, doc)

	start := time.Now()
	timeout := time.After(60 * time.Second)
	var succeeded *remedy.Event
	for succeeded == nil {
		select {
		case ev := <-events:
			t.Logf("%s +%s %s %s %s", ev.Type, time.Since(start).Round(time.Millisecond), ev.Result, ev.Reason, ev.Message)
			switch ev.Type {
			case remedy.RemediationSucceeded:
				succeeded = &ev
			case remedy.RemediationFailed, remedy.IncidentExhausted:
				t.Fatalf("remediation failed: %+v", ev)
			}
		case <-timeout:
			t.Fatal("no successful remediation within 60s")
		}
	}
	destroyed, _ := succeeded.Details["destroyed"].([]string)
	want := agentEnd + "->" + upstream.String() + " CLOSE_WAIT"
	if len(destroyed) != 1 || destroyed[0] != want {
		t.Errorf("destroyed %v, want [%s]", destroyed, want)
	}
	// The agent's socket is gone from the kernel.
	socks, err := sockdiag.Dump(context.Background(), sockdiag.AllStates, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range socks {
		if sk.Local.String() == agentEnd && sk.Remote.String() == upstream.String() {
			t.Errorf("agent socket still present: %s", sk)
		}
	}
}

// runMedic starts a supervisor from doc and returns its event stream.
func runMedic(t *testing.T, doc string) (*supervisor.Supervisor, eventSink) {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := make(eventSink, 100)
	s, err := supervisor.New(supervisor.Options{Config: c, Listener: l, Sinks: []remedy.Sink{events}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s, events
}

// TestE2EReconnectProbeRedialsTheStream: a rule that bounds the age of
// medic's relay stream (a rebalancing policy) fires; reconnect probe:
// makes the grpcStream probe re-dial through the supervisor's probe
// table; the relay sees a second subscription, the stream is young again
// and the alert resolves, so the attempt is verified.
func TestE2EReconnectProbeRedialsTheStream(t *testing.T) {
	rs, err := relay.Start(relay.Options{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	sup, events := runMedic(t, fmt.Sprintf(`
stateDir: %s
evaluationInterval: 100ms
probes:
  - name: relay
    grpcStream: {target: %s, insecure: true}
actions:
  redial-relay:
    reconnect: {probe: relay}
    backoff: {policy: constant, initial: 100ms, attempts: 1}
    verify: 5s
rules:
  - alert: RelayStreamTooOld
    expr: time() - medic_stream_connected_since_timestamp_seconds{probe="relay"} > 1
    remediate: [redial-relay]
`, t.TempDir(), rs.Addr()))

	start := time.Now()
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-events:
			t.Logf("%s +%s %s %s %s", ev.Type, time.Since(start).Round(time.Millisecond), ev.Result, ev.Reason, ev.Message)
			switch ev.Type {
			case remedy.RemediationSucceeded:
				if ev.Message == "" || !strings.Contains(ev.Message, "probe relay re-dialing") {
					t.Errorf("message = %q", ev.Message)
				}
				done = true
			case remedy.RemediationFailed, remedy.IncidentExhausted:
				t.Fatalf("remediation failed: %+v", ev)
			}
		case <-timeout:
			t.Fatal("no successful remediation within 20s")
		}
	}
	if n := len(rs.Subscriptions()); n < 2 {
		t.Errorf("relay saw %d subscriptions, want a second one after the redial", n)
	}
	reconnects := 0.0
	for _, p := range sup.Store().Latest(func(n string) bool { return n == "medic_stream_reconnects_total" }) {
		reconnects = p.V
	}
	if reconnects < 1 {
		t.Errorf("medic_stream_reconnects_total = %v, want >= 1", reconnects)
	}
}
