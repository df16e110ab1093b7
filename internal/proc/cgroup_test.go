package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/proc/proctest"
)

const (
	uidA = "0f3c2a6e-8d7b-4c1e-9a55-1b2c3d4e5f60"
	uidB = "7a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
)

// fakeProc writes a fake procfs root (only the cgroup files) for parser and
// format tests: pid -> /proc/PID/cgroup content.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, content := range files {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func v1Lines(path string) string {
	return fmt.Sprintf("12:pids:%s\n11:memory:%s\n4:cpu,cpuacct:%s\n1:name=systemd:/system.slice/containerd.service\n0::/\n", path, path, path)
}

// TestPodFormats checks membership for the cgroup layouts runtimes produce,
// in a fake procfs root: 1 is medic, 2 the agent of its pod, 3 a same-named
// agent of another pod, 4 a host process.
func TestPodFormats(t *testing.T) {
	under := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	cases := []struct {
		name   string
		files  map[string]string
		envUID string
		uid    string // want Pod.UID
	}{
		{
			name: "cgroup v1, cgroupfs driver",
			files: map[string]string{
				"1": v1Lines("/kubepods/besteffort/pod" + uidA + "/aaaa1111"),
				"2": v1Lines("/kubepods/besteffort/pod" + uidA + "/aaaa2222"),
				"3": v1Lines("/kubepods/besteffort/pod" + uidB + "/bbbb1111"),
				"4": v1Lines("/system.slice/kubelet.service"),
			},
			uid: uidA,
		},
		{
			name: "cgroup v2, systemd driver, host cgroup namespace",
			files: map[string]string{
				"1": "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under(uidA) + ".slice/cri-containerd-aaaa1111.scope\n",
				"2": "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under(uidA) + ".slice/cri-containerd-aaaa2222.scope\n",
				"3": "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under(uidB) + ".slice/cri-containerd-bbbb1111.scope\n",
				"4": "0::/system.slice/kubelet.service\n",
			},
			envUID: uidA,
			uid:    uidA,
		},
		{
			name: "cgroup v2, private cgroup namespace, POD_UID from the Downward API",
			files: map[string]string{
				"1": "0::/\n",
				"2": "0::/../cri-containerd-aaaa2222.scope\n",
				"3": "0::/../../kubepods-burstable-pod" + under(uidB) + ".slice/cri-containerd-bbbb1111.scope\n",
				"4": "0::/../../../../system.slice/kubelet.service\n",
			},
			envUID: uidA,
			uid:    uidA,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := fakeProc(t, c.files)
			pod, err := OwnPod(root, "1", c.envUID)
			if err != nil || pod == nil {
				t.Fatalf("OwnPod: %v, %v", pod, err)
			}
			if pod.UID != c.uid {
				t.Errorf("UID %q, want %q", pod.UID, c.uid)
			}
			for pid, want := range map[int]bool{1: true, 2: true, 3: false, 4: false} {
				if in, why := pod.Contains(root, pid); in != want {
					t.Errorf("pid %d: in pod = %v (%s), want %v", pid, in, why, want)
				}
			}
			if in, _ := pod.Contains(root, 99); in {
				t.Error("a process without a cgroup file counts as in the pod")
			}
		})
	}
}

func TestOwnPodRefusesWhatItCannotPlace(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"1": v1Lines("/kubepods/besteffort/pod" + uidA + "/aaaa1111"),
		"2": "0::/\n",
		"3": "0::/../other-container\n",
		"4": "0::/user.slice/user-0.slice/session-1.scope\n",
	})
	if _, err := OwnPod(root, "1", uidB); !errors.Is(err, ErrPodUnknown) {
		t.Errorf("POD_UID naming another pod than the cgroup: %v", err)
	}
	if _, err := OwnPod(root, "4", uidA); !errors.Is(err, ErrPodUnknown) {
		t.Errorf("POD_UID set but no pod in the cgroup path: %v", err)
	}
	if _, err := OwnPod(root, "nope", ""); !errors.Is(err, ErrPodUnknown) {
		t.Errorf("unreadable cgroup: %v", err)
	}
	// Not in a pod at all (a developer's shell): no restriction.
	if pod, err := OwnPod(root, "4", ""); pod != nil || err != nil {
		t.Errorf("outside Kubernetes: %v, %v", pod, err)
	}
	// A private cgroup namespace without POD_UID: medic's own container
	// only; a sibling is refused with the fix in the message.
	pod, err := OwnPod(root, "2", "")
	if err != nil || pod == nil {
		t.Fatalf("namespaced: %v, %v", pod, err)
	}
	if in, _ := pod.Contains(root, 2); !in {
		t.Error("medic's own container is not in its pod")
	}
	if in, why := pod.Contains(root, 3); in || !strings.Contains(why, "POD_UID") {
		t.Errorf("sibling without POD_UID: in=%v why=%q", in, why)
	}
}

func TestParseCgroups(t *testing.T) {
	c, err := ParseCgroups([]byte("12:pids:/a/b\n0::/x:y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c["pids"] != "/a/b" || c[""] != "/x:y" {
		t.Errorf("%v", c)
	}
	for _, bad := range []string{"", "garbage\n", "1:pids\n", "1:pids:relative\n"} {
		if _, err := ParseCgroups([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if got := PodUID("/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uidB, "-", "_") + ".slice/x"); got != uidB {
		t.Errorf("guaranteed-QoS systemd path: %q", got)
	}
}

// TestFindInOwnPodWithRealCgroups runs two real processes named spire-agent
// in two pod cgroups laid out as the kubelet's cgroupfs driver does, and a
// medic stand-in in the first pod: only the first pod's agent is found.
func TestFindInOwnPodWithRealCgroups(t *testing.T) {
	cg := proctest.NewCgroups(t, "test")

	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	agent := filepath.Join(t.TempDir(), "spire-agent")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, b, 0o755); err != nil {
		t.Fatal(err)
	}
	medic := proctest.Start(t, cg.Container(uidA, "medic0001"), exec.Command(sleep, "300"))
	mine := proctest.Start(t, cg.Container(uidA, "agent0001"), exec.Command(agent, "300"))
	other := proctest.Start(t, cg.Container(uidB, "agent0002"), exec.Command(agent, "300"))
	// Give the exec a moment to replace the forked image (exe link).
	waitExe(t, mine.Process.Pid, agent)
	waitExe(t, other.Process.Pid, agent)

	pod, err := OwnPod(DefaultRoot, strconv.Itoa(medic.Process.Pid), "")
	if err != nil || pod == nil {
		t.Fatalf("OwnPod: %v, %v", pod, err)
	}
	if pod.UID != uidA {
		t.Fatalf("pod UID %q, want %q", pod.UID, uidA)
	}

	// Without the pod restriction both match (what hostPID shows).
	all, err := Find(DefaultRoot, Selector{Process: "spire-agent"})
	if err != nil || len(all) < 2 {
		t.Fatalf("unrestricted: %v, %v", all, err)
	}
	got, err := Find(DefaultRoot, Selector{Process: "spire-agent", Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].PID != mine.Process.Pid {
		t.Fatalf("found %v, want only pid %d (pod A); pod B's is %d", got, mine.Process.Pid, other.Process.Pid)
	}

	// Pod A's agent gone: pod B's is still never picked.
	mine.Process.Kill()
	mine.Wait()
	_, err = Find(DefaultRoot, Selector{Process: "spire-agent", Pod: pod})
	if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "pod "+uidB) {
		t.Fatalf("with only another pod's agent running: %v", err)
	}
	// And a pid file naming another pod's process is refused too.
	pidFile := filepath.Join(t.TempDir(), "agent.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)), 0o644)
	if _, err := Find(DefaultRoot, Selector{PidFile: pidFile, Pod: pod}); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("pid file of another pod's process: %v", err)
	}
}

func waitExe(t *testing.T, pid int, exe string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p, err := Read(DefaultRoot, pid); err == nil && p.Exe == exe {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never became %s", pid, exe)
}
