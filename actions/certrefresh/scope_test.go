package certrefresh

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/proc/proctest"
)

// In the SPIRE chart's hostPID agent pod, medic sees every process of the
// node: notify's signal reaches the consumer of medic's own pod only, as
// restart's signal mode does. Real processes in real cgroups laid out like
// the kubelet's (/kubepods/besteffort/pod<UID>/<container>).
func TestNotifySignalsOnlyTheConsumerOfItsOwnPod(t *testing.T) {
	cg := proctest.NewCgroups(t, "certrefresh")
	const uidA, uidB = "0b6c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3", "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"
	// medic's stand-in: its cgroup places "medic" in pod A.
	medic := proctest.Start(t, cg.Container(uidA, "medic0001"), exec.Command("sleep", "300"))
	recA, consA := startConsumer(t, "")
	proctest.Join(t, cg.Container(uidA, "consumer0001"), consA.Process.Pid)
	recB, consB := startConsumer(t, "")
	proctest.Join(t, cg.Container(uidB, "consumer0002"), consB.Process.Pid)

	notify := func(scope, podUID string) (string, error) {
		a := build(t, clock.Real{}, fmt.Sprintf(`{socket: unix:///nowhere.sock, certFile: /c.pem, keyFile: /k.pem,
		notify: {signal: SIGHUP, process: %q, scope: %q}}`, consumerName(), scope))
		a.self, a.podUID = strconv.Itoa(medic.Process.Pid), podUID
		who, _, err := a.notify(context.Background(), actions.Incident{ID: "t"})
		return who, err
	}

	// Default scope: only pod A's consumer, although both have its name.
	if who, err := notify("", ""); err != nil || !strings.Contains(who, strconv.Itoa(consA.Process.Pid)) {
		t.Fatalf("default scope: notified %q, %v", who, err)
	}
	hups(t, recA, 1)
	hups(t, recB, 0)

	// POD_UID naming another pod than the cgroup: refused, nobody signalled.
	if _, err := notify("pod", uidB); err == nil || !actions.IsPermanent(err) {
		t.Fatalf("POD_UID of another pod: %v", err)
	}
	// scope any: both match, which needs all: true.
	if _, err := notify("any", ""); err == nil || !strings.Contains(err.Error(), "2 processes match") {
		t.Fatalf("scope any: %v", err)
	}
	hups(t, recA, 1)
	hups(t, recB, 0)
}

func TestNotifyScopeValidate(t *testing.T) {
	_, err := decode(t, `{socket: unix:///s, certFile: /c.pem, keyFile: /k.pem, notify: {process: nginx, scope: node}}`)
	if err == nil || !strings.Contains(err.Error(), `actions.refresh.certRefresh.notify.scope: must be pod or any`) {
		t.Fatalf("bad scope: %v", err)
	}
	_, err = decode(t, `{socket: unix:///s, certFile: /c.pem, keyFile: /k.pem, notify: {exec: [/bin/true], scope: pod}}`)
	if err == nil || !strings.Contains(err.Error(), `notify.scope: applies to a signal`) {
		t.Fatalf("scope with exec: %v", err)
	}
}
