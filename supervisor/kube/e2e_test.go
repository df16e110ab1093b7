package kube_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/actions/restart"
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
			Backoff: actions.BackoffConfig{Policy: actions.PolicyConstant, Initial: cfg.Duration(100 * time.Millisecond), Attempts: 1},
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
		!strings.Contains(n, "deleted pod "+env.Namespace+"/agent-e2e (uid "+string(agent.UID)+")") {
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
