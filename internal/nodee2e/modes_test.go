package nodee2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// medicConfig is the medic.yaml of the test pods: medic scrapes the
// SPIRE-like agent every second and remediates when it has not synced
// for 5 s (failed syncs back off, so "any failure in the last few
// seconds" would flap); restart is the restart action's body (one of the modes).
func medicConfig(restart, extra string) string {
	return fmt.Sprintf(`listen: ":%d"
stateDir: /var/lib/medic
evaluationInterval: 1s
probes:
  - name: agent
    scrape: {url: "http://127.0.0.1:%d/metrics", interval: 1s, timeout: 900ms}
actions:
  restart-agent:
    restart: %s
%s
rules:
  - alert: AgentSyncFailing
    expr: increase(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[5s]) == 0
    remediate: [restart-agent]
`, medicPort, agentPort, restart, extra)
}

// probeRestart is restart mode probe matching the agent's livenessProbe.
var probeRestart = fmt.Sprintf("{mode: probe, failureThreshold: %d, periodSeconds: %d}", livenessThreshold, livenessPeriod)

const signalRestart = "{mode: signal, process: spire-agent, signal: SIGTERM, gracePeriod: 5s}"

const defaultStep = `    budget: {max: 3, window: 1h}
    verify: 30s`

// budgetStep allows one restart an hour and judges it after 4 s.
const budgetStep = `    budget: {max: 1, window: 1h}
    backoff: {policy: constant, initial: 1s, attempts: 3}
    verify: 4s`

// scStep makes one attempt.
const scStep = `    budget: {max: 1, window: 1h}
    backoff: {policy: constant, initial: 1s, attempts: 1}
    verify: 20s`

// agentRestarted waits until the agent container's restartCount exceeds
// before and returns the pod and how long it took from since.
func (e *env) agentRestarted(t *testing.T, name string, before int32, since time.Time) (*corev1.Pod, time.Duration) {
	t.Helper()
	p := e.waitPod(t, name, "agent container restarted", 90*time.Second, func(p *corev1.Pod) bool {
		return restarts(p, "spire-agent") > before
	})
	return p, time.Since(since)
}

// stays checks for d that the agent's restartCount stays at want.
func (e *env) agentStays(t *testing.T, name string, want int32, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n := restarts(e.getPod(t, name), "spire-agent"); n != want {
			t.Fatalf("pod %s: agent restartCount %d, want it to stay %d", name, n, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Probe mode: the agent's livenessProbe points at medic's /livez/agent; a
// rule fires, medic fails the endpoint for the hold, the kubelet restarts
// the agent container exactly once, and the incident resolves. medic runs
// with deploy/base's security context as shipped (non-root, read-only root
// filesystem, every capability dropped).
func TestProbeModeKubeletRestartsAgent(t *testing.T) {
	e := setup(t)
	name := "probe-mode"
	pod := e.createPod(t, podOpts{name: name, medicConfig: medicConfig(probeRestart, defaultStep), agentLiveness: true})
	e.awaitLivenessProbing(t, name)

	fault := time.Now()
	setAgentMode(t, pod, "mode=failing&code=Unavailable")
	pod, took := e.agentRestarted(t, name, 0, fault)
	t.Logf("probe mode: fault -> agent container restarted by the kubelet in %s", took.Round(100*time.Millisecond))

	st := waitStatus(t, pod, "incident resolved", 60*time.Second, func(s medicStatus) bool {
		return len(s.Incidents) > 0 && s.Incidents[0].State == "resolved"
	})
	inc := st.Incidents[0]
	t.Logf("incident %s resolved %s after the fault (fixed by %q)", inc.ID, time.Since(fault).Round(100*time.Millisecond), inc.FixedBy)
	if len(inc.Attempts) != 1 || inc.Attempts[0].Result != "succeeded" {
		t.Errorf("want one succeeded attempt, got %+v", inc.Attempts)
	}
	// The hold ends before the new agent's first probe: no second restart.
	e.agentStays(t, name, 1, 3*livenessPeriod*time.Second)
	if n := restarts(e.getPod(t, name), "medic"); n != 0 {
		t.Errorf("medic restarted %d times", n)
	}

	// The kubelet's side: the probe failed and it killed the container.
	kev := e.kubeletEvents(t, name)
	var unhealthy, killing bool
	for _, ev := range kev {
		if ev.Reason == "Unhealthy" && strings.Contains(ev.Message, "Liveness probe failed") {
			unhealthy = true
		}
		if ev.Reason == "Killing" && strings.Contains(ev.Message, "spire-agent") {
			killing = true
		}
	}
	if !unhealthy || !killing {
		t.Errorf("kubelet events: Unhealthy (liveness) %v, Killing spire-agent %v: %+v", unhealthy, killing, kev)
	}
	// medic's side: one Event per step, on this pod.
	evs := e.waitEvents(t, name, "IncidentResolved", 30*time.Second, func(evs []eventsv1.Event) bool {
		return countReasons(evs)["IncidentResolved"] == 1
	})
	n := countReasons(evs)
	for _, r := range []string{"IncidentOpened", "RemediationStarted", "RemediationSucceeded", "IncidentResolved"} {
		if n[r] != 1 {
			t.Errorf("want one %s Event, got %d (%v)", r, n[r], n)
		}
	}
	for _, ev := range evs {
		if ev.Regarding.UID != pod.UID || ev.ReportingInstance != name {
			t.Errorf("event %s regards %s/%s (uid %s) from %q; want this pod", ev.Reason, ev.Regarding.Kind, ev.Regarding.Name, ev.Regarding.UID, ev.ReportingInstance)
		}
	}
}

// The medic.io/pause annotation on the real, kubelet-managed pod stops
// remediation: the attempt is suppressed (Event and /status) and the agent
// is not restarted; removing it lets the held attempt run.
func TestPauseAnnotationStopsRemediation(t *testing.T) {
	e := setup(t)
	name := "pause"
	pod := e.createPod(t, podOpts{name: name, medicConfig: medicConfig(probeRestart, defaultStep), agentLiveness: true,
		annotations: map[string]string{"medic.io/pause": "true", "medic.io/pause-reason": "node e2e"}})
	waitStatus(t, pod, "paused", 30*time.Second, func(s medicStatus) bool { return s.Paused })

	setAgentMode(t, pod, "mode=failing&code=Unavailable")
	e.waitEvents(t, name, "RemediationSuppressed (paused)", 30*time.Second, func(evs []eventsv1.Event) bool {
		for _, ev := range evs {
			if ev.Reason == "RemediationSuppressed" && strings.Contains(ev.Note, "paused") {
				return true
			}
		}
		return false
	})
	// Longer than the hold plus the kubelet's threshold: nothing happens.
	e.agentStays(t, name, 0, time.Duration(livenessThreshold*livenessPeriod+2*livenessPeriod)*time.Second)
	if n := countReasons(e.medicEvents(t, name))["RemediationStarted"]; n != 0 {
		t.Fatalf("%d RemediationStarted Events while paused", n)
	}

	resume := time.Now()
	patch := []byte(`{"metadata":{"annotations":{"medic.io/pause":null,"medic.io/pause-reason":null}}}`)
	if _, err := e.cs.CoreV1().Pods(Namespace).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	_, took := e.agentRestarted(t, name, 0, resume)
	t.Logf("pause removed -> agent container restarted in %s", took.Round(100*time.Millisecond))
	waitStatus(t, pod, "incident resolved", 60*time.Second, func(s medicStatus) bool {
		return !s.Paused && len(s.Incidents) > 0 && s.Incidents[0].State == "resolved"
	})
	evs := e.waitEvents(t, name, "IncidentResolved", 30*time.Second, func(evs []eventsv1.Event) bool {
		return countReasons(evs)["IncidentResolved"] == 1
	})
	n := countReasons(evs)
	if n["RemediationStarted"] != 1 || n["RemediationSucceeded"] != 1 || n["RemediationSuppressed"] < 1 {
		t.Errorf("events: %v", n)
	}
}

// Signal mode with shareProcessNamespace: medic (with the spire-agent
// overlay's privileges) finds the agent process in its own pod and
// signals it; the kubelet restarts the container. An agent process of
// the same name in another pod on the node is never touched.
func TestSignalModeSharedProcessNamespace(t *testing.T) {
	e := setup(t)
	other := e.createPod(t, podOpts{name: "bystander", noMedic: true})
	otherPID := hostPID(t, other, "spire-agent")
	otherStarts := getAgentSyncs(t, other).Starts

	shipped, _ := shippedSidecar(t)
	m := withOverlayPatch(t, shipped, "deploy/spire-agent/medic-privileges.yaml")
	name := "signal-mode"
	pod := e.createPod(t, podOpts{name: name, medicConfig: medicConfig(signalRestart, defaultStep),
		medic: &m, shareProcessNamespace: true})

	fault := time.Now()
	setAgentMode(t, pod, "mode=failing&code=Unavailable")
	pod, took := e.agentRestarted(t, name, 0, fault)
	t.Logf("signal mode: fault -> agent container restarted by the kubelet in %s", took.Round(100*time.Millisecond))
	st := waitStatus(t, pod, "incident resolved", 60*time.Second, func(s medicStatus) bool {
		return len(s.Incidents) > 0 && s.Incidents[0].State == "resolved"
	})
	if a := st.Incidents[0].Attempts; len(a) != 1 || a[0].Result != "succeeded" {
		t.Errorf("want one succeeded attempt, got %+v", a)
	}
	t.Logf("attempt: %s", st.Incidents[0].Attempts[0].Message)

	o := e.getPod(t, "bystander")
	if n := restarts(o, "spire-agent"); n != 0 {
		t.Errorf("the other pod's agent restarted %d times", n)
	}
	if pid := hostPID(t, o, "spire-agent"); pid != otherPID {
		t.Errorf("the other pod's agent process changed: pid %d, was %d", pid, otherPID)
	}
	if s := getAgentSyncs(t, o); s.Starts != otherStarts {
		t.Errorf("the other pod's agent restarted in-process: starts %d, was %d", s.Starts, otherStarts)
	}
}

// What signal mode needs, shown on the real node: the agent runs as root
// (as SPIRE's does); medic's security context varies. Kubernetes gives
// added capabilities to UID 0 only (no ambient capabilities), so a
// non-root medic cannot signal a root agent even with KILL added; a root
// medic can, because signalling a process of the same UID needs no
// capability at all; a non-root agent can be signalled by a medic of the
// same UID with every capability dropped.
func TestSignalModeSecurityContexts(t *testing.T) {
	e := setup(t)
	shipped, _ := shippedSidecar(t)
	overlay := withOverlayPatch(t, shipped, "deploy/spire-agent/medic-privileges.yaml")
	withSC := func(c corev1.Container, f func(sc *corev1.SecurityContext)) *corev1.Container {
		c.SecurityContext = c.SecurityContext.DeepCopy()
		f(c.SecurityContext)
		return &c
	}
	cases := []struct {
		name    string
		medic   *corev1.Container
		agentSC *corev1.SecurityContext
		works   bool
	}{
		{name: "sc-base-nonroot", medic: &shipped, works: false},
		{name: "sc-nonroot-add-kill", medic: withSC(shipped, func(sc *corev1.SecurityContext) {
			sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"KILL"}}
		}), works: false},
		{name: "sc-root-no-caps", medic: withSC(overlay, func(sc *corev1.SecurityContext) {
			sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
		}), works: true},
		{name: "sc-same-uid-no-caps", medic: &shipped, agentSC: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532), RunAsNonRoot: ptr.To(true),
			ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}, works: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := e.createPod(t, podOpts{name: c.name, medicConfig: medicConfig(signalRestart, scStep), medic: c.medic, agentSC: c.agentSC, shareProcessNamespace: true})
			setAgentMode(t, pod, "mode=failing&code=Unavailable")
			st := waitStatus(t, pod, "an attempt finished", 60*time.Second, func(s medicStatus) bool {
				return len(s.Incidents) > 0 && len(s.Incidents[0].Attempts) > 0 && s.Incidents[0].Attempts[0].Result != "running"
			})
			a := st.Incidents[0].Attempts[0]
			t.Logf("medic %s: attempt %s: %s %s", describeSC(c.medic.SecurityContext), a.Result, a.Reason, a.Message)
			if c.works {
				if a.Result != "succeeded" && a.Result != "failed" || strings.Contains(a.Message, "operation not permitted") {
					t.Fatalf("attempt: %+v", a)
				}
				e.agentRestarted(t, c.name, 0, time.Now())
				return
			}
			if a.Result != "failed" || !strings.Contains(a.Message, "operation not permitted") {
				t.Fatalf("want a failed attempt with operation not permitted (EPERM), got %+v", a)
			}
			e.agentStays(t, c.name, 0, 2*time.Second)
			e.waitEvents(t, c.name, "RemediationFailed naming the permission", 20*time.Second, func(evs []eventsv1.Event) bool {
				for _, ev := range evs {
					if ev.Reason == "RemediationFailed" && strings.Contains(ev.Note, "operation not permitted") {
						return true
					}
				}
				return false
			})
		})
	}
}

func describeSC(sc *corev1.SecurityContext) string {
	if sc == nil {
		return "no securityContext"
	}
	var b strings.Builder
	if sc.RunAsUser != nil {
		fmt.Fprintf(&b, "uid %d", *sc.RunAsUser)
	}
	if sc.Capabilities != nil {
		fmt.Fprintf(&b, " drop %v add %v", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		b.WriteString(" read-only root")
	}
	return b.String()
}

// medic's own container is killed (SIGKILL from the node) in the middle
// of an incident whose restart budget is spent: the kubelet restarts it,
// and from its emptyDir state it comes back with the open incident and the
// spent budget, so the agent is not restarted a second time.
func TestMedicRestartKeepsIncidentAndBudget(t *testing.T) {
	e := setup(t)
	shipped, _ := shippedSidecar(t)
	m := withOverlayPatch(t, shipped, "deploy/spire-agent/medic-privileges.yaml")
	name := "medic-killed"
	pod := e.createPod(t, podOpts{name: name, medicConfig: medicConfig(signalRestart, budgetStep), medic: &m, shareProcessNamespace: true})

	setAgentMode(t, pod, "mode=failing&code=Unavailable")
	pod, _ = e.agentRestarted(t, name, 0, time.Now())
	// The restarted agent fails too: the incident stays open, and the next
	// attempt is refused by the spent budget.
	e.waitPod(t, name, "agent ready again", 30*time.Second, func(p *corev1.Pod) bool { return containerStatus(p, "spire-agent").Ready })
	setAgentMode(t, pod, "mode=failing&code=Unavailable")
	before := waitStatus(t, pod, "attempt suppressed by the budget", 60*time.Second, func(s medicStatus) bool {
		for _, inc := range s.Incidents {
			for _, a := range inc.Attempts {
				if a.Result == "suppressed" && a.Reason == "budget" {
					return true
				}
			}
		}
		return false
	})
	inc := before.Incidents[0]
	t.Logf("before: incident %s %s, budget %+v", inc.ID, inc.State, before.Budgets)

	pid := hostPID(t, pod, "medic")
	killPID(t, pid)
	killed := time.Now()
	pod = e.waitPod(t, name, "medic restarted and ready", 60*time.Second, func(p *corev1.Pod) bool {
		return restarts(p, "medic") == 1 && containerStatus(p, "medic").Ready
	})
	after := waitStatus(t, pod, "the incident restored", 30*time.Second, func(s medicStatus) bool {
		return s.StartedAt != before.StartedAt && len(s.Incidents) > 0
	})
	t.Logf("medic back %s after SIGKILL; incident %s %s, budget %+v", time.Since(killed).Round(100*time.Millisecond),
		after.Incidents[0].ID, after.Incidents[0].State, after.Budgets)
	if after.Incidents[0].ID != inc.ID || after.Incidents[0].State == "resolved" {
		t.Errorf("after medic's restart: incident %+v, want %s still open", after.Incidents[0], inc.ID)
	}
	if len(after.Budgets) != 1 || after.Budgets[0].Used != 1 {
		t.Errorf("after medic's restart: budgets %+v, want 1 of 1 used", after.Budgets)
	}
	// Still failing, budget spent: several evaluation and backoff rounds, no
	// second restart.
	e.agentStays(t, name, 1, 8*time.Second)

	setAgentMode(t, pod, "mode=healthy")
	waitStatus(t, pod, "incident resolved", 30*time.Second, func(s medicStatus) bool {
		return len(s.Incidents) > 0 && s.Incidents[0].ID == inc.ID && s.Incidents[0].State == "resolved"
	})
}

// Signal mode in a pod with hostPID (medic sees every process on the
// node): two agents of the same name run, one in medic's pod and one in
// another pod. medic must signal its own pod's agent and never the other.
func TestSignalModeHostPIDScopedToPod(t *testing.T) {
	e := setup(t)
	other := e.createPod(t, podOpts{name: "bystander-hostpid", noMedic: true})
	otherPID := hostPID(t, other, "spire-agent")

	shipped, _ := shippedSidecar(t)
	m := withOverlayPatch(t, shipped, "deploy/spire-agent/medic-privileges.yaml")
	name := "signal-hostpid"
	pod := e.createPod(t, podOpts{name: name, medicConfig: medicConfig(signalRestart, scStep),
		medic: &m, hostPID: true})

	setAgentMode(t, pod, "mode=failing&code=Unavailable")
	st := waitStatus(t, pod, "an attempt finished", 60*time.Second, func(s medicStatus) bool {
		return len(s.Incidents) > 0 && len(s.Incidents[0].Attempts) > 0 && s.Incidents[0].Attempts[0].Result != "running"
	})
	a := st.Incidents[0].Attempts[0]
	t.Logf("attempt %s: %s %s", a.Result, a.Reason, a.Message)

	o := e.getPod(t, other.Name)
	if n := restarts(o, "spire-agent"); n != 0 {
		t.Errorf("medic signalled the agent of another pod: its restartCount is %d", n)
	}
	if pid := hostPID(t, o, "spire-agent"); pid != otherPID {
		t.Errorf("the other pod's agent process changed: pid %d, was %d", pid, otherPID)
	}
	if a.Result != "succeeded" {
		t.Fatalf("medic did not restart its own pod's agent (both agents visible through hostPID): %+v", a)
	}
	e.agentRestarted(t, name, 0, time.Now())
}

// relayConfig is medic beside the KubeArmor-like relay (as in
// deploy/kubearmor-relay/medic.yaml, at test speed): a grpcStream probe on
// the relay's alert stream, and restart mode probe when it is down.
var relayConfig = fmt.Sprintf(`listen: ":%d"
stateDir: /var/lib/medic
evaluationInterval: 1s
probes:
  - name: relay
    grpcStream:
      target: "127.0.0.1:32767"
      insecure: true
      api: kubearmor
      stream: alerts
      keepalive: {time: 10s, timeout: 2s}
actions:
  restart-relay:
    restart: {mode: probe, failureThreshold: %d, periodSeconds: %d}
    budget: {max: 3, window: 1h}
    verify: 60s
rules:
  - alert: RelayStreamDown
    expr: 'medic_probe_up{probe="relay"} == 0'
    for: 2s
    remediate: [restart-relay]
`, medicPort, livenessThreshold, livenessPeriod)

// A wedged relay (SIGSTOP from the node: its port still accepts, nothing
// answers): medic's stream probe notices through keepalive, the rule
// fires, medic fails /livez/agent, the kubelet restarts the relay
// container, and medic's stream comes back on the new process.
func TestRelayWedgedRestartedThroughProbe(t *testing.T) {
	e := setup(t)
	name := "relay"
	relay := corev1.Container{
		Name: "relay", Image: e.Images.Relay, ImagePullPolicy: corev1.PullNever,
		Args: []string{"-listen", "127.0.0.1:32767", "-interval", "500ms"},
		LivenessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/livez/agent", Port: intstr.FromInt32(medicPort)}},
			InitialDelaySeconds: livenessDelay, PeriodSeconds: livenessPeriod, FailureThreshold: livenessThreshold, TimeoutSeconds: 1,
		},
		SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532), RunAsNonRoot: ptr.To(true),
			ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
	}
	pod := e.createPod(t, podOpts{name: name, medicConfig: relayConfig, agent: &relay})
	up := func(s medicStatus) bool {
		for _, p := range s.Probes {
			if p.Name == "relay" {
				return p.Up == 1
			}
		}
		return false
	}
	waitStatus(t, pod, "relay stream up", 30*time.Second, up)

	pid := hostPID(t, pod, "relay")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	fault := time.Now()
	pod = e.waitPod(t, name, "relay container restarted", 90*time.Second, func(p *corev1.Pod) bool {
		return restarts(p, "relay") > 0
	})
	t.Logf("wedged relay -> container restarted by the kubelet in %s", time.Since(fault).Round(100*time.Millisecond))
	st := waitStatus(t, pod, "stream up again and incident resolved", 60*time.Second, func(s medicStatus) bool {
		return up(s) && len(s.Incidents) > 0 && s.Incidents[0].State == "resolved"
	})
	t.Logf("incident resolved %s after the fault", time.Since(fault).Round(100*time.Millisecond))
	if a := st.Incidents[0].Attempts; len(a) != 1 || a[0].Result != "succeeded" {
		t.Errorf("want one succeeded attempt, got %+v", a)
	}
	if n := restarts(e.getPod(t, name), "relay"); n != 1 {
		t.Errorf("relay restartCount %d, want 1", n)
	}
}

// awaitLivenessProbing waits until the kubelet probes the agent's liveness:
// initialDelaySeconds after the container started, plus a period for the
// phase of the kubelet's probe timer. A fault injected before that (seen
// once: the fault 2 s after the pod was ready) makes medic's hold end
// before the kubelet's first probe, so the first attempt fails its verify
// and only the second restarts the agent.
func (e *env) awaitLivenessProbing(t *testing.T, name string) {
	t.Helper()
	run := containerStatus(e.getPod(t, name), "spire-agent").State.Running
	if run == nil {
		t.Fatalf("pod %s: agent container not running", name)
	}
	probing := run.StartedAt.Add(time.Duration(livenessDelay+livenessPeriod) * time.Second)
	time.Sleep(time.Until(probing))
}
