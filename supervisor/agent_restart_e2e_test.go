package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/medic-sidecar/medic/supervisor/builtin"

	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// eventLog is a remedy.Sink that keeps every event.
type eventLog struct {
	mu  sync.Mutex
	evs []remedy.Event
}

func (l *eventLog) Record(ev remedy.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

// waitFor polls the log until match holds for some event (bounded).
func (l *eventLog) waitFor(t *testing.T, what string, match func(remedy.Event) bool) remedy.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, ev := range l.evs {
			if match(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("no %s event within 20s; events: %+v", what, l.evs)
	return remedy.Event{}
}

// The SPIRE rule of do-no-harm, end to end: the agent's /live fails, but
// the SPIRE server is unreachable, so medic holds the restart
// (precondition) and the agent process keeps running; once the server
// accepts connections, medic signals the agent (a real process, found
// through its pid file), the "kubelet" here brings it back healthy, and
// the incident resolves.
func TestAgentRestartWaitsForSPIREServer(t *testing.T) {
	// The SPIRE server's address, not listening yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverAddr := ln.Addr().String()
	ln.Close()

	// The agent: a real process; its health endpoint fails until it has
	// been restarted.
	agent := exec.Command("sleep", "300")
	if err := agent.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill() })
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "agent.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(agent.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	var restarted atomic.Bool
	exited := make(chan error, 1)
	go func() {
		err := agent.Wait()
		restarted.Store(true) // the kubelet started a fresh, healthy agent
		exited <- err
	}()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !restarted.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"agent":{"err":"stuck"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"agent":{}}`))
	}))
	defer live.Close()

	c, err := config.Parse([]byte(fmt.Sprintf(`
stateDir: %s
evaluationInterval: 200ms
probes:
  - name: spire-server
    tcp: {address: %q, interval: 200ms, timeout: 150ms}
  - name: spire-live
    http: {url: %q, interval: 200ms, timeout: 150ms}
actions:
  restart-agent:
    restart: {mode: signal, pidFile: %q, gracePeriod: 5s}
    requires: medic_probe_up{probe="spire-server"} == 1
    backoff: {policy: constant, initial: 1s, attempts: 1}
    verify: 10s
rules:
  - alert: SPIREAgentNotLive
    expr: medic_probe_up{probe="spire-live"} == 0
    for: 0s
    remediate: [restart-agent]
`, filepath.Join(dir, "state"), serverAddr, live.URL+"/live", pidFile)))
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := &eventLog{}
	sup, err := supervisor.New(supervisor.Options{Config: c, Listener: httpLn, Sinks: []remedy.Sink{events}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()

	events.waitFor(t, "precondition suppression", func(ev remedy.Event) bool {
		return ev.Type == remedy.RemediationSuppressed && ev.Reason == remedy.ReasonPrecondition
	})
	select {
	case err := <-exited:
		t.Fatalf("agent signalled while the SPIRE server was down: %v", err)
	default:
	}

	srv, err := net.Listen("tcp", serverAddr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", serverAddr, err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Fatalf("agent exit = %v, want SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent not restarted within 20s of the SPIRE server coming back")
	}
	ok := events.waitFor(t, "remediation success", func(ev remedy.Event) bool {
		return ev.Type == remedy.RemediationSucceeded && ev.Action == "restart-agent"
	})
	if ok.Details["pid"] != agent.Process.Pid || ok.Details["sigkill"] != false {
		t.Fatalf("success details %v", ok.Details)
	}
	events.waitFor(t, "incident resolved", func(ev remedy.Event) bool { return ev.Type == remedy.IncidentResolved })

	// The probes' observations are on /metrics.
	resp, err := http.Get("http://" + sup.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`medic_probe_up{probe="spire-server"} 1`, `medic_tcp_connect_seconds{probe="spire-server"}`,
		`medic_http_status_code{probe="spire-live"} 200`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
