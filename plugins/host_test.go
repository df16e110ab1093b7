package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/plugintest"
)

// Real plugin binaries, built once in TestMain.
var (
	testPluginPath string
	testPluginSum  string
	helloPath      string
	helloSum       string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medic-plugins-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		var err error
		if testPluginPath, err = plugintest.Build(dir, plugintest.Module+"/plugins/internal/testplugins/testplugin", "testplugin"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if helloPath, err = plugintest.Build(dir, plugintest.Module+"/plugins/examples/hello", "hello"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		testPluginSum, _ = plugintest.SHA256(testPluginPath)
		helloSum, _ = plugintest.SHA256(helloPath)
		return m.Run()
	}()
	os.Exit(code)
}

// env is a host running the test plugin under the name "tp" (and the
// hello example as "hello"), with a fake clock, captured events and logs.
type env struct {
	t      *testing.T
	host   *Host
	clk    *clock.Fake
	events chan Event
	logs   *logBuffer
	action *Action
}

type envOption func(c *Config)

func newEnv(t *testing.T, mode string, opts ...envOption) *env {
	t.Helper()
	c := DefaultConfig()
	c.Path, c.SHA256 = testPluginPath, testPluginSum
	c.Timeout = cfg.Duration(5 * time.Second)
	c.Restart = RestartConfig{Initial: cfg.Duration(time.Second), Max: cfg.Duration(time.Second)}
	for _, o := range opts {
		o(c)
	}
	e := &env{t: t, clk: clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), events: make(chan Event, 100), logs: &logBuffer{}}
	hc := DefaultConfig()
	hc.Path, hc.SHA256 = helloPath, helloSum
	h, err := New(map[string]*Config{"tp": c, "hello": hc}, Options{
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:   e.clk,
		OnEvent: func(ev Event) { e.events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.host = h
	t.Cleanup(func() {
		h.Stop()
		if kids := plugintest.Children(os.Getpid()); len(kids) > 0 {
			t.Errorf("child processes left after Stop: %v", kids)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", e.logs.String())
		}
	})
	if mode != "" {
		a, err := NewAction(context.Background(), ActionConfig{Name: "tp", Config: map[string]any{"mode": mode}},
			actions.Env{Name: "fix", Plugins: h})
		if err != nil {
			t.Fatalf("NewAction: %v", err)
		}
		e.action = a
	}
	return e
}

func (e *env) run(mode string) (actions.Result, error) {
	e.t.Helper()
	a := e.action
	if mode != "" {
		a = &Action{host: e.host, plugin: "tp", config: []byte(`{"mode":"` + mode + `"}`)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Run(ctx, actions.Incident{ID: "inc-1", Alert: "AgentDown", Labels: map[string]string{"probe": "agent"}, Attempt: 1, MaxAttempts: 3})
}

// waitEvent returns the next event of type typ, failing after a generous bound.
func (e *env) waitEvent(typ EventType) Event {
	e.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-e.events:
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			e.t.Fatalf("no %s event", typ)
		}
	}
}

// restart advances the fake clock past the pending restart and waits for it.
func (e *env) restart() Event {
	e.t.Helper()
	if !e.clk.BlockUntil(1, 10*time.Second) {
		e.t.Fatal("no restart was scheduled")
	}
	e.clk.Advance(2 * time.Second)
	return e.waitEvent(PluginRestarted)
}

func (e *env) status(name string) Status {
	for _, s := range e.host.Status() {
		if s.Name == name {
			return s
		}
	}
	e.t.Fatalf("no status for %s", name)
	return Status{}
}

func (e *env) calls(result string) float64 {
	return testutil.ToFloat64(e.host.metrics.calls.WithLabelValues("tp", result))
}

func pidOf(t *testing.T, res actions.Result) int {
	t.Helper()
	v, ok := res.Details["pid"].(float64)
	if !ok {
		t.Fatalf("no pid in details %v", res.Details)
	}
	return int(v)
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSuccess(t *testing.T) {
	e := newEnv(t, "succeed", func(c *Config) { c.Env = map[string]string{"TESTPLUGIN_ECHO": "from-config"} })
	res, err := e.run("")
	if err != nil {
		t.Fatal(err)
	}
	if res.Message != "ok inc-1" || res.Output != "did it" {
		t.Fatalf("result = %+v", res)
	}
	if res.Details["plugin"] != "tp" || res.Details["pluginVersion"] != "0.0.1" || res.Details["echo"] != "from-config" {
		t.Fatalf("details = %v", res.Details)
	}
	if res.Details["mtls"] != true {
		t.Fatal("plugin was not started with AutoMTLS")
	}
	inc := res.Details["incident"].(map[string]any)
	if inc["alert"] != "AgentDown" || inc["labels"].(map[string]any)["probe"] != "agent" {
		t.Fatalf("plugin saw incident %v", inc)
	}
	if e.calls(ResultSucceeded) != 1 || testutil.ToFloat64(e.host.metrics.up.WithLabelValues("tp")) != 1 {
		t.Fatal("metrics not updated")
	}
	st := e.status("tp")
	if st.State != "running" || st.PID != pidOf(t, res) || st.Version != "0.0.1" {
		t.Fatalf("status = %+v", st)
	}
}

func TestRetryableError(t *testing.T) {
	e := newEnv(t, "retryable")
	_, err := e.run("")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "upstream said 503") {
		t.Fatalf("err = %v, want a retryable error with the plugin's message", err)
	}
	if e.calls(ResultRetryable) != 1 {
		t.Fatal("retryable call not counted")
	}
}

func TestPermanentError(t *testing.T) {
	e := newEnv(t, "permanent")
	_, err := e.run("")
	if !actions.IsPermanent(err) || !strings.Contains(err.Error(), "credentials rejected") {
		t.Fatalf("err = %v, want permanent", err)
	}
	if e.calls(ResultPermanent) != 1 {
		t.Fatal("permanent call not counted")
	}
}

func TestPanicIsRetryableAndPluginSurvives(t *testing.T) {
	e := newEnv(t, "")
	res1, _ := e.run("succeed")
	_, err := e.run("panic")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "panics on purpose") {
		t.Fatalf("err = %v", err)
	}
	res2, err := e.run("succeed")
	if err != nil || pidOf(t, res1) != pidOf(t, res2) {
		t.Fatalf("plugin did not survive its panic: %v", err)
	}
}

func TestWrongChecksumRefusedAtStartUp(t *testing.T) {
	bad := strings.Repeat("ab", 32)
	e := newEnv(t, "", func(c *Config) { c.SHA256 = bad; c.Start = StartEager })
	err := e.host.Start(context.Background())
	if err == nil {
		t.Fatal("Start accepted a binary with the wrong sha256")
	}
	for _, want := range []string{"plugins.tp.sha256", testPluginSum, bad, "refusing to run it", "medic plugin info"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The action kind refuses it too, before any process runs.
	_, err = NewAction(context.Background(), ActionConfig{Name: "tp", Config: map[string]any{"mode": "succeed"}}, actions.Env{Name: "fix", Plugins: e.host})
	if err == nil || !errors.Is(err, ErrChecksum) && !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("NewAction err = %v, want a checksum refusal", err)
	}
	if kids := plugintest.Children(os.Getpid()); len(kids) > 0 {
		t.Fatalf("a plugin process was started: %v", kids)
	}
}

func TestCrashMidCallIsRetryableAndRestarts(t *testing.T) {
	e := newEnv(t, "")
	before, err := e.run("succeed")
	if err != nil {
		t.Fatal(err)
	}
	e.waitEvent(PluginStarted)
	_, err = e.run("crash")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "exited during the call") {
		t.Fatalf("err = %v, want a retryable crash error", err)
	}
	if ev := e.waitEvent(PluginCrashed); ev.Crashes != 1 {
		t.Fatalf("crash event %+v", ev)
	}
	if plugintest.Alive(pidOf(t, before)) {
		t.Fatal("crashed process still alive")
	}
	// While waiting for its restart the plugin fails fast, retryable.
	if _, err := e.run("succeed"); !errors.Is(err, ErrRestarting) || actions.IsPermanent(err) {
		t.Fatalf("err while restarting = %v", err)
	}
	e.restart()
	after, err := e.run("succeed")
	if err != nil {
		t.Fatal(err)
	}
	if pidOf(t, after) == pidOf(t, before) {
		t.Fatal("same pid after restart")
	}
	if e.calls(ResultCrashed) != 1 || testutil.ToFloat64(e.host.metrics.restarts.WithLabelValues("tp")) != 1 {
		t.Fatal("crash/restart not counted")
	}
}

func TestRepeatedCrashesQuarantine(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.Quarantine.MaxCrashes = 2 })
	for n := 1; n <= 3; n++ {
		if _, err := e.run("crash"); err == nil || actions.IsPermanent(err) {
			t.Fatalf("crash %d: err = %v, want retryable", n, err)
		}
		if n < 3 {
			e.restart()
		}
	}
	ev := e.waitEvent(PluginQuarantined)
	if ev.Crashes != 3 {
		t.Fatalf("quarantine event %+v", ev)
	}
	_, err := e.run("succeed")
	if !actions.IsPermanent(err) || !errors.Is(err, ErrQuarantined) {
		t.Fatalf("err = %v, want permanent quarantine", err)
	}
	if testutil.ToFloat64(e.host.metrics.quarantined.WithLabelValues("tp")) != 1 || e.status("tp").State != "quarantined" {
		t.Fatal("quarantine not visible in metrics/status")
	}
	if e.clk.Waiters() != 0 {
		t.Fatal("a quarantined plugin still has a restart scheduled")
	}
	// Replacing the binary on disk lifts the quarantine.
	b, err := os.ReadFile(testPluginPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := testPluginPath + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, testPluginPath); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run("succeed"); err != nil {
		t.Fatalf("after the binary changed: %v", err)
	}
	e.waitEvent(PluginReleased)
	if testutil.ToFloat64(e.host.metrics.quarantined.WithLabelValues("tp")) != 0 {
		t.Fatal("quarantine gauge not cleared")
	}
}

func TestHangIsKilledAndRestarted(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.Timeout = cfg.Duration(300 * time.Millisecond) })
	before, err := e.run("succeed")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.run("hang")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("hung call took %s", took)
	}
	ev := e.waitEvent(PluginCrashed)
	if !strings.Contains(ev.Message, "hung") {
		t.Fatalf("crash event %+v", ev)
	}
	if plugintest.Alive(pidOf(t, before)) {
		t.Fatal("hung plugin not killed")
	}
	if e.calls(ResultTimeout) != 1 {
		t.Fatal("timeout not counted")
	}
	e.restart()
	if _, err := e.run("succeed"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestPluginThatHonoursItsDeadlineIsNotKilled(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.Timeout = cfg.Duration(200 * time.Millisecond) })
	before, _ := e.run("succeed")
	res, err := e.run("honour")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	if res.Details["deadline"] == nil {
		t.Fatal("the plugin saw no deadline")
	}
	after, err := e.run("succeed")
	if err != nil || pidOf(t, after) != pidOf(t, before) {
		t.Fatalf("plugin was restarted although it honoured its deadline (err %v)", err)
	}
	if e.calls(ResultRetryable) != 1 || e.calls(ResultTimeout) != 0 {
		t.Fatal("wrong results counted")
	}
}

func TestCancellationReachesThePlugin(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.Timeout = cfg.Duration(time.Minute) })
	before, _ := e.run("succeed")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	a := &Action{host: e.host, plugin: "tp", config: []byte(`{"mode":"honour"}`)}
	start := time.Now()
	_, err := a.Run(ctx, actions.Incident{ID: "c"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("cancellation did not end the call")
	}
	after, err := e.run("succeed")
	if err != nil || pidOf(t, after) != pidOf(t, before) {
		t.Fatalf("plugin restarted after a cancellation (err %v)", err)
	}
	if e.calls(ResultCanceled) != 1 {
		t.Fatal("cancel not counted")
	}
}

func TestShutdownLeavesNoProcesses(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.Start = StartEager })
	if err := e.host.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := e.run("spawn")
	if err != nil {
		t.Fatal(err)
	}
	pid, child := pidOf(t, res), int(res.Details["childPid"].(float64))
	if !plugintest.Alive(child) {
		t.Fatal("spawned child not running")
	}
	if kids := plugintest.Children(os.Getpid()); len(kids) != 1 || kids[0] != pid {
		t.Fatalf("children = %v, want [%d]", kids, pid)
	}
	e.host.Stop()
	if kids := plugintest.Children(os.Getpid()); len(kids) != 0 {
		t.Fatalf("children after Stop: %v", kids)
	}
	if plugintest.Alive(pid) || plugintest.Alive(child) {
		t.Fatalf("plugin (%v) or its child (%v) outlived Stop", plugintest.Alive(pid), plugintest.Alive(child))
	}
	if _, err := e.run("succeed"); !actions.IsPermanent(err) || !errors.Is(err, ErrHostStopped) {
		t.Fatalf("call after Stop: %v", err)
	}
}

func TestLazyPluginValidatesThenStops(t *testing.T) {
	e := newEnv(t, "")
	_, err := NewAction(context.Background(), ActionConfig{Name: "tp", Config: map[string]any{"mode": "bogus", "exitCode": -1, "extra": true}},
		actions.Env{Name: "fix", Plugins: e.host})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	if kids := plugintest.Children(os.Getpid()); len(kids) != 0 {
		t.Fatalf("lazy plugin left running after validation: %v", kids)
	}
	var paths []string
	for _, fe := range cfg.Flatten(err) {
		var f *cfg.FieldError
		if errors.As(fe, &f) {
			paths = append(paths, f.Path)
		}
	}
	if len(paths) != 1 || paths[0] != "actions.fix.plugin.config.extra" {
		t.Fatalf("paths = %v (err %v)", paths, err)
	}
	_, err = NewAction(context.Background(), ActionConfig{Name: "tp", Config: map[string]any{"mode": "bogus", "exitCode": -1}},
		actions.Env{Name: "fix", Plugins: e.host})
	want := "actions.fix.plugin.config.mode: unknown mode \"bogus\"\nactions.fix.plugin.config.exitCode: must not be negative"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if e.status("tp").State != "stopped" {
		t.Fatalf("status %+v", e.status("tp"))
	}
}

func TestEagerStartFailure(t *testing.T) {
	e := newEnv(t, "", func(c *Config) {
		c.Start = StartEager
		c.Env = map[string]string{"TESTPLUGIN_START": "crash"}
	})
	err := e.host.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "start failed") {
		t.Fatalf("err = %v", err)
	}
}

func TestLazyStartFailureIsRetryable(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.Env = map[string]string{"TESTPLUGIN_START": "crash"} })
	_, err := e.run("succeed")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "start failed") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(e.logs.String(), "crashing before the handshake") {
		t.Errorf("the plugin's stderr is not in medic's log")
	}
}

func TestLogsForwardedWithPluginName(t *testing.T) {
	e := newEnv(t, "")
	if _, err := e.run("log"); err != nil {
		t.Fatal(err)
	}
	// go-plugin decodes the plugin's hclog JSON line into a map, so the
	// order of the plugin's own key/value pairs is not fixed: each wanted
	// line is a set of fragments that must all appear on one log line.
	want := [][]string{
		{`level=WARN`, `msg="structured warning"`, ` plugin=tp `, ` incident=inc-1`, ` attempt=1`},
		{`msg="plain stderr line"`, ` plugin=tp `, ` stream=stderr`},
		{`msg="plain stdout line"`, ` plugin=tp `, ` stream=stdout`},
	}
	hasLine := func(frags []string) bool {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			line += " "
			ok := true
			for _, f := range frags {
				if !strings.Contains(line, f) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range want {
		for !hasLine(w) {
			if time.Now().After(deadline) {
				t.Fatalf("no log line has all of %q:\n%s", w, e.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestCrashDetectedAlthoughAChildHoldsItsStderr(t *testing.T) {
	e := newEnv(t, "")
	res, err := e.run("spawn")
	if err != nil {
		t.Fatal(err)
	}
	child := int(res.Details["childPid"].(float64))
	if _, err := e.run("crash"); err == nil || !strings.Contains(err.Error(), "exited during the call") {
		t.Fatalf("err = %v", err)
	}
	e.waitEvent(PluginCrashed)
	if plugintest.Alive(child) {
		t.Fatal("the crashed plugin's child is still running")
	}
	e.restart()
}
