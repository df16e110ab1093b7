package certrefresh

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
)

// In the SPIRE chart's hostPID agent pod, medic sees every process of the
// node: notify's signal reaches the consumer of medic's own pod only, as
// restart's signal mode does. Real processes in real cgroups laid out like
// the kubelet's (/kubepods/besteffort/pod<UID>/<container>).
func TestNotifySignalsOnlyTheConsumerOfItsOwnPod(t *testing.T) {
	base := ""
	for _, d := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			base = d
			break
		}
	}
	top := filepath.Join(base, fmt.Sprintf("medic-certrefresh-%d-%d", os.Getpid(), rand.IntN(1e6)))
	if base == "" || os.Mkdir(top, 0o755) != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no writable cgroup hierarchy (need root and /sys/fs/cgroup)")
		}
		t.Skip("no writable cgroup hierarchy (need root)")
	}
	var dirs []string
	t.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			for range 100 {
				if os.Remove(dirs[i]) == nil || os.IsNotExist(os.Remove(dirs[i])) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		os.Remove(top)
	})
	join := func(dir string, pid int) {
		t.Helper()
		for _, d := range []string{filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir), dir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, d)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const uidA, uidB = "0b6c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3", "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"
	podA := filepath.Join(top, "kubepods", "besteffort", "pod"+uidA)
	podB := filepath.Join(top, "kubepods", "besteffort", "pod"+uidB)

	medic := exec.Command("sleep", "300") // medic's stand-in: its cgroup places "medic" in pod A
	if err := medic.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { medic.Process.Kill(); medic.Wait() })
	join(filepath.Join(podA, "medic0001"), medic.Process.Pid)
	recA, consA := startConsumer(t, "")
	join(filepath.Join(podA, "consumer0001"), consA.Process.Pid)
	recB, consB := startConsumer(t, "")
	join(filepath.Join(podB, "consumer0002"), consB.Process.Pid)

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
