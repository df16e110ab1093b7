package kube_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/actions/restart"
	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/kubetest"
	"github.com/medic-sidecar/medic/supervisor/kube"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// TestEndToEndPausedThenRestartPod goes through the remedy engine with the
// Kubernetes parts wired as the supervisor wires them: a client with
// medic's identity (the medic user), the EventSink as a sink, the
// PauseWatcher as a pauser, and restart mode pod built with
// Client.ActionsEnv. medic's pod is paused when the alert fires; the
// attempt waits, suppressed; the operator removes the annotation; the pod
// of the agent is deleted; the alert resolves. Every step shows up as an
// Event on medic's pod.
func TestEndToEndPausedThenRestartPod(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	self := newPod(t, env, "medic-e2e", map[string]string{kube.PauseAnnotation: "true", kube.PauseReasonAnnotation: "maintenance"})
	agent := newPod(t, env, "agent-e2e", nil)

	c, err := kube.NewForConfig(env.Medic, kube.Identity{Namespace: env.Namespace, Pod: self.Name, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := kube.NewIntegration(c, kube.IntegrationOptions{Events: kube.EventOptions{Burst: 50}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	for _, col := range k.Collectors() {
		if err := reg.Register(col); err != nil {
			t.Fatal(err)
		}
	}
	pause := k.Pause
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = k.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	eventually(t, 10*time.Second, "pause watcher synced and paused", func() (bool, string) {
		p, r := pause.Paused()
		return pause.HasSynced() && p, r
	})

	kind, _ := actions.Lookup(restart.Kind)
	rc := kind.NewConfig().(*restart.Config)
	rc.Mode, rc.Pod = restart.ModePod, agent.Name
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	act, err := kind.New(rc, actions.Env{Name: "delete-agent", Kube: k.ActionsEnv()})
	if err != nil {
		t.Fatal(err)
	}
	eng := remedy.New(remedy.Options{
		Steps: map[string]*remedy.Step{"delete-agent": {Name: "delete-agent", Kind: restart.Kind, Action: act,
			Backoff: backoff.Config{Policy: backoff.PolicyConstant, Initial: cfg.Duration(100 * time.Millisecond), Attempts: 1},
			Verify:  10 * time.Second}},
		Pausers: k.Pausers(), Sinks: k.Sinks(), Recheck: 50 * time.Millisecond,
	})
	eng.Start(ctx)
	defer eng.Wait()
	alert := remedy.Alert{Key: "AgentDown{}", Rule: "AgentDown", Value: 1, Ladder: []string{"delete-agent"}}
	eng.Observe(time.Now(), []remedy.Alert{alert})

	reasons := func() map[string]string {
		out := map[string]string{}
		for _, e := range eventsAbout(t, admin, env.Namespace, self.Name) {
			out[e.Reason+"/"+e.Type] = e.Note
		}
		return out
	}
	eventually(t, 10*time.Second, "suppressed while paused", func() (bool, string) {
		r := reasons()
		_, ok := r["RemediationSuppressed/Normal"]
		return ok, fmt.Sprint(r)
	})
	if note := reasons()["RemediationSuppressed/Normal"]; !strings.Contains(note, "reason=paused") || !strings.Contains(note, "maintenance") {
		t.Errorf("suppression note %q", note)
	}
	if _, err := admin.CoreV1().Pods(env.Namespace).Get(ctx, agent.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("agent pod touched while paused: %v", err)
	}

	// The operator resumes medic: the attempt runs and deletes the agent pod.
	patchAnnotations(t, admin, env.Namespace, self.Name, map[string]any{kube.PauseAnnotation: nil})
	eventually(t, 10*time.Second, "agent pod deleted", func() (bool, string) {
		_, err := admin.CoreV1().Pods(env.Namespace).Get(ctx, agent.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	// The alert stops firing within the verify window.
	eng.Observe(time.Now(), nil)
	want := []string{"IncidentOpened/Warning", "RemediationSuppressed/Normal", "RemediationStarted/Normal",
		"RemediationSucceeded/Normal", "IncidentResolved/Normal"}
	eventually(t, 15*time.Second, "the incident's Events", func() (bool, string) {
		r := reasons()
		for _, w := range want {
			if _, ok := r[w]; !ok {
				return false, fmt.Sprintf("missing %s in %v", w, r)
			}
		}
		return true, ""
	})
	r := reasons()
	if n := r["RemediationSucceeded/Normal"]; !strings.Contains(n, "action=delete-agent") || !strings.Contains(n, "attempt=1/1") ||
		!strings.Contains(n, "deleted pod "+env.Namespace+"/"+agent.Name+" (uid "+string(agent.UID)+")") {
		t.Errorf("success note %q", n)
	}
	for reason, n := range r {
		t.Logf("%s: %s", reason, n)
	}
	if n, err := testutil.GatherAndCount(reg, "medic_kube_events_writes_total", "medic_kube_paused"); err != nil || n < 2 {
		t.Errorf("metrics on the registry: %d series, %v", n, err)
	}
}

func TestIntegrationOutsideAClusterAndWithoutAPod(t *testing.T) {
	var k *kube.Integration // NewIntegration(nil, ...) gives nil
	if got, err := kube.NewIntegration(nil, kube.IntegrationOptions{}); got != nil || err != nil {
		t.Fatalf("nil client: %v, %v", got, err)
	}
	if k.Sinks() != nil || k.Pausers() != nil || k.ActionsEnv() != nil || k.Collectors() != nil || k.Run(context.Background()) != nil {
		t.Error("nil Integration is not inert")
	}
	if k.String() != "off (not in a cluster)" {
		t.Errorf("String = %q", k.String())
	}
	env := kubetest.Start(t)
	c, err := kube.NewForConfig(env.Medic, kube.Identity{Namespace: env.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	k, err = kube.NewIntegration(c, kube.IntegrationOptions{})
	if err != nil || k.Events != nil || k.Pause != nil || k.ActionsEnv() == nil || len(k.Sinks()) != 0 {
		t.Fatalf("without POD_NAME: %+v, %v; want the API only", k, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.Run(ctx); err != nil {
		t.Error(err)
	}
}

// countAction is an Action that counts its runs (the fleet and the engine
// are the parts under test here).
type countAction struct{ n atomic.Int32 }

func (a *countAction) Run(context.Context, actions.Incident) (actions.Result, error) {
	a.n.Add(1)
	return actions.Result{Message: "restarted"}, nil
}

// suppressions is a Sink keeping suppression messages by reason.
type suppressions struct {
	mu  sync.Mutex
	msg map[string]string
}

func (s *suppressions) Record(ev remedy.Event) {
	if ev.Type != remedy.RemediationSuppressed {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.msg == nil {
		s.msg = map[string]string{}
	}
	s.msg[ev.Reason] = ev.Message
}

func (s *suppressions) get(reason string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msg[reason]
}

// TestEndToEndFleetLimitAcrossTwoPods: two medic instances (two pods, two
// remedy engines wired as the supervisor wires them, the integration's
// Lease-backed Fleet on the real API server with medic's RBAC) fire the
// same alert with fleet max 1. The first runs and holds the slot through
// its verify window; the second is suppressed with reason fleet, naming
// the first pod, and runs once the first incident resolves.
func TestEndToEndFleetLimitAcrossTwoPods(t *testing.T) {
	env := kubetest.Start(t)
	action := fleetAction(t, env, "restart-agent", 1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	type node struct {
		pod  string
		act  *countAction
		sup  *suppressions
		eng  *remedy.Engine
		kube *kube.Integration
	}
	start := func(name string) *node {
		self := newPod(t, env, name, nil)
		c, err := kube.NewForConfig(env.Medic, kube.Identity{Namespace: env.Namespace, Pod: self.Name, Node: name})
		if err != nil {
			t.Fatal(err)
		}
		k, err := kube.NewIntegration(c, kube.IntegrationOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if k.Fleet() == nil {
			t.Fatal("integration without a fleet")
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = k.Run(ctx) }()
		n := &node{pod: self.Name, act: &countAction{}, sup: &suppressions{}, kube: k}
		n.eng = remedy.New(remedy.Options{
			Steps: map[string]*remedy.Step{action: {Name: action, Kind: "test", Action: n.act,
				Backoff: backoff.Config{Policy: backoff.PolicyConstant, Initial: cfg.Duration(100 * time.Millisecond), Attempts: 1},
				Verify:  time.Minute, Fleet: &remedy.FleetLimit{Max: 1}}},
			Sinks: append(k.Sinks(), n.sup), Fleet: k.Fleet(), Recheck: 50 * time.Millisecond,
		})
		n.eng.Start(ctx)
		t.Cleanup(n.eng.Wait)
		return n
	}
	a, b := start("medic-fleet-a"), start("medic-fleet-b")
	alert := remedy.Alert{Key: "AgentNotSyncing{}", Rule: "AgentNotSyncing", Value: 1, Ladder: []string{action}}

	a.eng.Observe(time.Now(), []remedy.Alert{alert})
	eventually(t, 10*time.Second, "a runs", func() (bool, string) { return a.act.n.Load() == 1, "" })
	b.eng.Observe(time.Now(), []remedy.Alert{alert})
	eventually(t, 10*time.Second, "b held back by the fleet", func() (bool, string) {
		m := b.sup.get(remedy.ReasonFleet)
		return strings.Contains(m, a.pod), m
	})
	time.Sleep(300 * time.Millisecond) // several rechecks of b
	if n := b.act.n.Load(); n != 0 {
		t.Fatalf("b ran %d times while a held the only slot", n)
	}
	lease, err := env.AdminClient(t).CoordinationV1().Leases(env.Namespace).Get(ctx,
		kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0), metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != a.pod {
		t.Fatalf("slot lease %+v, %v; want held by %s", lease, err, a.pod)
	}

	// a's alert resolves during its verify window: the slot goes back and b runs.
	a.eng.Observe(time.Now(), nil)
	eventually(t, 10*time.Second, "b runs after a resolved", func() (bool, string) { return b.act.n.Load() == 1, "" })
	b.eng.Observe(time.Now(), nil)
	if a.act.n.Load() != 1 {
		t.Fatalf("a ran %d times", a.act.n.Load())
	}
}
