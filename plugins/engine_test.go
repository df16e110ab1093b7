package plugins

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// These tests drive real plugin binaries through medic's remedy engine:
// incidents, ladders, backoff, escalation and the audit record, with one
// fake clock shared by the engine and the plugin host.

type stepSpec struct {
	plugin   string
	config   map[string]any
	attempts int
}

type engineEnv struct {
	*env
	rec   *recorder
	eng   *remedy.Engine
	audit string
}

const (
	engineBackoff = 10 * time.Second
	engineVerify  = 30 * time.Second
)

func newEngineEnv(t *testing.T, steps map[string]stepSpec, opts ...envOption) *engineEnv {
	t.Helper()
	e := &engineEnv{env: newEnv(t, "", opts...), rec: newRecorder(), audit: filepath.Join(t.TempDir(), "audit.jsonl")}
	audit, err := remedy.OpenAudit(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	rs := map[string]*remedy.Step{}
	for name, sp := range steps {
		plugin := sp.plugin
		if plugin == "" {
			plugin = "tp"
		}
		a, err := NewAction(context.Background(), ActionConfig{Name: plugin, Config: sp.config}, actions.Env{Name: name, Plugins: e.host})
		if err != nil {
			t.Fatalf("step %s: %v", name, err)
		}
		rs[name] = &remedy.Step{Name: name, Kind: KindName, Action: a, Verify: engineVerify,
			Backoff: backoff.Config{Policy: backoff.PolicyConstant, Initial: cfg.Duration(engineBackoff), Attempts: max(sp.attempts, 1)}}
	}
	e.eng = remedy.New(remedy.Options{Steps: rs, Clock: e.clk, Sinks: []remedy.Sink{e.rec, audit}})
	ctx, cancel := context.WithCancel(context.Background())
	e.eng.Start(ctx)
	t.Cleanup(func() {
		cancel()
		e.eng.Wait()
		audit.Close()
	})
	return e
}

func (e *engineEnv) fire(ladder ...string) {
	e.eng.Observe(e.clk.Now(), []remedy.Alert{{Key: "AgentDown{}", Rule: "AgentDown",
		Labels: map[string]string{"alertname": "AgentDown"}, Value: 1, Ladder: ladder}})
}

func (e *engineEnv) resolve() { e.eng.Observe(e.clk.Now(), nil) }

// advance waits until n timers are pending on the shared clock, then moves it by d.
func (e *engineEnv) advance(n int, d time.Duration) {
	e.t.Helper()
	if !e.clk.BlockUntil(n, 10*time.Second) {
		e.t.Fatalf("%d timers pending, want %d", e.clk.Waiters(), n)
	}
	e.clk.Advance(d)
}

// verified waits for the verify window after a successful attempt, then
// resolves the alert and returns the success event.
func (e *engineEnv) verified() remedy.Event {
	e.t.Helper()
	if !e.clk.BlockUntil(1, 10*time.Second) {
		e.t.Fatal("engine is not verifying")
	}
	e.resolve()
	ev := e.rec.next(e.t, remedy.RemediationSucceeded)
	e.rec.next(e.t, remedy.IncidentResolved)
	return ev
}

func TestEngineSuccess(t *testing.T) {
	e := newEngineEnv(t, map[string]stepSpec{"notify": {config: map[string]any{"mode": "succeed"}}})
	e.fire("notify")
	e.rec.next(t, remedy.RemediationStarted)
	ev := e.verified()
	if ev.Action != "notify" || !strings.HasPrefix(ev.Message, "ok ") || ev.Details["plugin"] != "tp" || ev.Details["pluginVersion"] != "0.0.1" {
		t.Fatalf("success event %+v", ev)
	}
	// The plugin's structured details land in the audit record.
	b, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"pluginVersion":"0.0.1"`) || !strings.Contains(string(b), `"alert":"AgentDown"`) {
		t.Fatalf("audit log lacks the plugin's details:\n%s", b)
	}
}

func TestEngineRetryableErrorBacksOffThenEscalates(t *testing.T) {
	e := newEngineEnv(t, map[string]stepSpec{
		"flaky":    {config: map[string]any{"mode": "retryable"}, attempts: 2},
		"fallback": {plugin: "hello", config: map[string]any{"greeting": "hi"}},
	})
	e.fire("flaky", "fallback")
	for attempt := 1; attempt <= 2; attempt++ {
		if ev := e.rec.next(t, remedy.RemediationStarted); ev.Action != "flaky" || ev.Attempt != attempt {
			t.Fatalf("started %+v, want flaky attempt %d", ev, attempt)
		}
		ev := e.rec.next(t, remedy.RemediationFailed)
		if ev.Reason != remedy.ReasonError || !strings.Contains(ev.Message, "upstream said 503") {
			t.Fatalf("failed %+v", ev)
		}
		if attempt == 1 {
			e.advance(1, engineBackoff) // the step's backoff, on the engine clock
		}
	}
	if ev := e.rec.next(t, remedy.RemediationStarted); ev.Action != "fallback" || ev.Step != 2 {
		t.Fatalf("escalation %+v", ev)
	}
	if ev := e.verified(); ev.Message != "hi, AgentDown (attempt 1); verified: alert resolved" {
		t.Fatalf("fallback result %q", ev.Message)
	}
}

func TestEnginePermanentErrorEscalatesAtOnce(t *testing.T) {
	e := newEngineEnv(t, map[string]stepSpec{
		"perm":     {config: map[string]any{"mode": "permanent"}, attempts: 3},
		"fallback": {plugin: "hello"},
	})
	e.fire("perm", "fallback")
	ev := e.rec.next(t, remedy.RemediationFailed)
	if ev.Reason != remedy.ReasonPermanent || ev.Attempt != 1 || !strings.Contains(ev.Message, "credentials rejected") {
		t.Fatalf("failed %+v", ev)
	}
	// No clock advance: a permanent error skips the step's other attempts.
	if ev := e.rec.next(t, remedy.RemediationStarted); ev.Action != "fallback" {
		t.Fatalf("next attempt %+v, want the fallback step", ev)
	}
	e.verified()
}

func TestEngineCrashMidCallRetriesOnRestartedPlugin(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "crashed")
	e := newEngineEnv(t, map[string]stepSpec{"crashy": {config: map[string]any{"mode": "crashonce", "marker": marker}, attempts: 3}})
	e.fire("crashy")
	ev := e.rec.next(t, remedy.RemediationFailed)
	if ev.Reason != remedy.ReasonError || !strings.Contains(ev.Message, "exited during the call") {
		t.Fatalf("failed %+v, want a retryable crash", ev)
	}
	e.advance(2, time.Second) // the plugin's restart backoff (1s) and the step's (10s) are pending
	e.waitEvent(PluginRestarted)
	e.advance(1, engineBackoff)
	if ev := e.rec.next(t, remedy.RemediationStarted); ev.Attempt != 2 {
		t.Fatalf("started %+v", ev)
	}
	if ev := e.verified(); !strings.HasPrefix(ev.Message, "ok after a crash") {
		t.Fatalf("success %+v", ev)
	}
}

func TestEngineQuarantinedPluginFailsPermanentlyAndEscalates(t *testing.T) {
	e := newEngineEnv(t, map[string]stepSpec{
		"crashy":   {config: map[string]any{"mode": "crash"}, attempts: 5},
		"fallback": {plugin: "hello"},
	}, func(c *Config) { c.Quarantine.MaxCrashes = 1 })
	e.fire("crashy", "fallback")
	e.rec.next(t, remedy.RemediationFailed)
	e.advance(2, time.Second)
	e.waitEvent(PluginRestarted)
	e.advance(1, engineBackoff)
	if ev := e.rec.next(t, remedy.RemediationFailed); ev.Reason != remedy.ReasonError {
		t.Fatalf("second crash %+v", ev)
	}
	e.waitEvent(PluginQuarantined)
	e.advance(1, engineBackoff)
	ev := e.rec.next(t, remedy.RemediationFailed)
	if ev.Reason != remedy.ReasonPermanent || ev.Attempt != 3 || !strings.Contains(ev.Message, "quarantined") {
		t.Fatalf("third attempt %+v, want a permanent quarantine failure", ev)
	}
	if ev := e.rec.next(t, remedy.RemediationStarted); ev.Action != "fallback" {
		t.Fatalf("escalation %+v", ev)
	}
	e.verified()
}

func TestEngineHungPluginIsKilledAndRestarted(t *testing.T) {
	e := newEngineEnv(t, map[string]stepSpec{"stuck": {config: map[string]any{"mode": "hang"}, attempts: 2}},
		func(c *Config) { c.Timeout = cfg.Duration(300 * time.Millisecond) })
	e.fire("stuck")
	ev := e.rec.next(t, remedy.RemediationFailed)
	if ev.Reason != remedy.ReasonError || !strings.Contains(ev.Message, "did not answer within its deadline") {
		t.Fatalf("failed %+v", ev)
	}
	if ev := e.waitEvent(PluginCrashed); !strings.Contains(ev.Message, "hung") {
		t.Fatalf("crash event %+v", ev)
	}
	e.advance(2, time.Second)
	e.waitEvent(PluginRestarted)
	if e.calls(ResultTimeout) != 1 {
		t.Fatal("timeout not counted")
	}
	e.resolve()
	e.rec.next(t, remedy.IncidentResolved)
}

// recorder is a remedy.Sink the tests wait on.
type recorder struct{ ch chan remedy.Event }

func newRecorder() *recorder { return &recorder{ch: make(chan remedy.Event, 1000)} }

// Record implements remedy.Sink.
func (r *recorder) Record(ev remedy.Event) { r.ch <- ev }

func (r *recorder) next(t *testing.T, typ remedy.EventType) remedy.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-r.ch:
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", typ)
		}
	}
}
