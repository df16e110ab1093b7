package restart

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/proc"
	"github.com/medic-sidecar/medic/internal/proc/proctest"
)

// The SPIRE chart's agent pod is hostPID: medic sees every process of the
// node. These tests put real processes into real cgroups laid out like the
// kubelet's (cgroupfs driver: /kubepods/besteffort/pod<UID>/<container>)
// and check that signal mode only ever signals the agent of medic's pod.

const (
	scopeUIDA = "3d1f0c6a-2b4e-4f7a-9c8d-5e6f7a8b9c0d"
	scopeUIDB = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
)

func TestSignalPicksOnlyTheAgentOfItsOwnPod(t *testing.T) {
	cg := proctest.NewCgroups(t, "restart")

	exe := fakeAgentExe(t)
	agentCmd := func() *exec.Cmd {
		c := exec.Command(exe, "-test.run=^TestFakeAgentHelper$")
		c.Env = append(os.Environ(), fakeAgentEnv+"=plain")
		return c
	}
	// medic's stand-in: its /proc/PID/cgroup is what /proc/self/cgroup
	// reads in the real pod.
	medic := proctest.Start(t, cg.Container(scopeUIDA, "medic0001"), exec.Command("sleep", "300"))
	mine := proctest.Start(t, cg.Container(scopeUIDA, "agent0001"), agentCmd())
	other := proctest.Start(t, cg.Container(scopeUIDB, "agent0002"), agentCmd())
	for _, c := range []*exec.Cmd{mine, other} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if p, err := proc.Read("/proc", c.Process.Pid); err == nil && p.Name() == agentName() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("fake agent did not start")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	build := func(scope, uid string) *SignalAction {
		a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = agentName(); c.Scope = scope }).(*SignalAction)
		a.self, a.podUID = strconv.Itoa(medic.Process.Pid), uid
		return a
	}

	// Default scope, POD_UID naming another pod than the cgroup: refuse.
	if _, err := build("", scopeUIDB).Run(context.Background(), inc); !actions.IsPermanent(err) || !errors.Is(err, proc.ErrPodUnknown) {
		t.Fatalf("POD_UID of another pod: %v", err)
	}

	res, err := build("", scopeUIDA).Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("%v (%s)", err, res.Message)
	}
	if res.Details["pid"] != mine.Process.Pid {
		t.Fatalf("signalled %v, want pod A's agent %d (pod B's is %d)", res.Details["pids"], mine.Process.Pid, other.Process.Pid)
	}
	mine.Wait()
	if p, err := proc.Read("/proc", other.Process.Pid); err != nil || p.Zombie() {
		t.Fatalf("pod B's agent: %v %v", p, err)
	}

	// Pod A's agent is down (the kubelet has not restarted it yet): pod B's
	// same-named agent is still never signalled; the attempt is retryable.
	_, err = build("", "").Run(context.Background(), inc)
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "pod "+scopeUIDB) {
		t.Fatalf("only another pod's agent running: %v", err)
	}
	if p, err := proc.Read("/proc", other.Process.Pid); err != nil || p.Zombie() {
		t.Fatalf("pod B's agent was signalled: %v %v", p, err)
	}

	// scope: any is the old behaviour: pod B's agent is fair game.
	res, err = build(ScopeAny, "").Run(context.Background(), inc)
	if err != nil || res.Details["pid"] != other.Process.Pid {
		t.Fatalf("scope any: %v %v", res.Details, err)
	}
}

func TestSignalScopePodOutsideAPod(t *testing.T) {
	// This test process's own cgroup names no pod (a developer machine or
	// CI): scope pod refuses, the default acts as scope any.
	own, err := proc.OwnPod("/proc", "self", "")
	if err != nil || own != nil {
		t.Skipf("the test itself runs in a pod (%v, %v)", own, err)
	}
	a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = "no-such-agent-xyz"; c.Scope = ScopePod })
	_, err = a.Run(context.Background(), inc)
	if !actions.IsPermanent(err) || !strings.Contains(err.Error(), "not in a pod") {
		t.Fatalf("scope pod outside a pod: %v", err)
	}
	a = newSignal(t, clock.Real{}, func(c *Config) { c.Process = "no-such-agent-xyz" })
	if _, err = a.Run(context.Background(), inc); err == nil || actions.IsPermanent(err) {
		t.Fatalf("default scope outside a pod: %v, want retryable no match", err)
	}
}

func TestSignalScopeValidate(t *testing.T) {
	c := defaults()
	c.Mode, c.Process, c.Scope = ModeSignal, "spire-agent", "node"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("scope node: %v", err)
	}
	c.Mode, c.Process, c.Scope = ModeProbe, "", ScopePod
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("scope in probe mode: %v", err)
	}
}
