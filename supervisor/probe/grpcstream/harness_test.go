package grpcstream

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/goleak"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/testpeers/relay"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// childEnv makes the test binary run the relay peer instead of the tests,
// so a test can kill a real relay process.
const childEnv = "MEDIC_GRPCSTREAM_RELAY_CHILD"

// childIntervalEnv sets the child relay's event interval (default 10ms).
const childIntervalEnv = "MEDIC_GRPCSTREAM_RELAY_INTERVAL"

func TestMain(m *testing.M) {
	if addr := os.Getenv(childEnv); addr != "" {
		os.Exit(relayChild(addr))
	}
	goleak.VerifyTestMain(m)
}

func relayChild(addr string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	iv := 10 * time.Millisecond
	if v := os.Getenv(childIntervalEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		iv = d
	}
	s, err := relay.Start(relay.Options{Addr: addr, Interval: iv})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", s.Addr())
	<-ctx.Done()
	s.Close()
	return 0
}

// relayProcess is the relay peer running as a child process.
type relayProcess struct {
	cmd  *exec.Cmd
	addr string
}

// startRelayProcess starts the relay peer in a child process on addr
// ("127.0.0.1:0" for any port) and waits until it listens.
func startRelayProcess(t testing.TB, addr string) *relayProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rp := &relayProcess{cmd: cmd}
	t.Cleanup(func() { rp.kill(syscall.SIGKILL) })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("relay child: %v", err)
	}
	rp.addr = strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	return rp
}

func (r *relayProcess) kill(sig syscall.Signal) {
	if r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	_ = r.cmd.Wait()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// count returns how many log lines contain substr.
func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs one probe against a real store.
type harness struct {
	t    testing.TB
	p    *Probe
	st   *store.Store
	logs *syncBuffer
	stop func()
}

// testConfig is an insecure config for addr without jitter, so delays are exact.
func testConfig(addr string) Config {
	c := *NewConfig()
	c.Target = addr
	c.Insecure = true
	c.Backoff.Jitter = 0
	return c
}

// run starts a probe named "relay" with c on clk; setup runs before Run.
func run(t testing.TB, c Config, clk clock.Clock, setup ...func(*Probe)) *harness {
	t.Helper()
	logs := &syncBuffer{}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	p, err := New(c, probe.Env{Name: "relay", Clock: clk, Logger: slog.New(slog.NewTextHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(p)
	}
	st := store.New(store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, st.Appender("relay")) }()
	h := &harness{t: t, p: p, st: st, logs: logs}
	h.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	t.Cleanup(h.stop)
	return h
}

// value returns the latest value of a series of probe "relay".
func (h *harness) value(name string, kv ...string) (float64, bool) {
	want := labels.FromStrings(append([]string{labels.MetricName, name, store.ProbeLabel, "relay"}, kv...)...)
	for _, pt := range h.st.Latest(func(n string) bool { return n == name }) {
		if labels.Equal(pt.Labels, want) {
			return pt.V, true
		}
	}
	return 0, false
}

func (h *harness) mustValue(name string, kv ...string) float64 {
	h.t.Helper()
	v, ok := h.value(name, kv...)
	if !ok {
		h.t.Fatalf("no sample for %s%v", name, kv)
	}
	return v
}

// waitFor polls cond (real time) until it holds or timeout passes.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s; status %+v\nlogs:\n%s", timeout, what, h.p.Status(), h.logs)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitValue waits until the latest sample of name equals v.
func (h *harness) waitValue(name string, v float64, timeout time.Duration, kv ...string) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%s%v == %v", name, kv, v), timeout, func() bool {
		got, ok := h.value(name, kv...)
		return ok && got == v
	})
}

// waitUp waits for the stream to be up in the store.
func (h *harness) waitUp() { h.t.Helper(); h.waitValue(MetricUp, 1, 10*time.Second) }

// waitDown waits for the stream to be down in the store.
func (h *harness) waitDown(timeout time.Duration) {
	h.t.Helper()
	h.waitValue(MetricUp, 0, timeout)
}

// startRelay starts an in-process relay peer with fast events.
func startRelay(t testing.TB, o relay.Options) *relay.Server {
	t.Helper()
	if o.Interval == 0 {
		o.Interval = 5 * time.Millisecond
	}
	s, err := relay.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// waits records the reconnect delays a probe chooses.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
	pm []bool
}

func (w *waits) hook(p *Probe) {
	p.onWait = func(d time.Duration, permanent bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.d = append(w.d, d)
		w.pm = append(w.pm, permanent)
	}
}

// get returns the delays so far.
func (w *waits) get() ([]time.Duration, []bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...), append([]bool(nil), w.pm...)
}

func (w *waits) n() int { d, _ := w.get(); return len(d) }

func cfgDuration(d time.Duration) cfg.Duration { return cfg.Duration(d) }
