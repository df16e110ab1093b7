// Package proctest puts real processes into real cgroups laid out like
// the kubelet's (cgroupfs driver: kubepods/besteffort/pod<UID>/<container>),
// for the tests of medic's pod scoping (internal/proc, the restart
// action's signal mode, certRefresh's notify). Test-only: the binary never
// links it (TestBinaryLinksNoTestPeers).
package proctest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Cgroups is a test's own cgroup tree, removed when the test ends.
type Cgroups struct {
	top string
}

// NewCgroups creates a tree named medic-<name>-<pid>-<random> in a
// writable cgroup hierarchy (the v1 pids controller or the v2 root). It
// skips the test without one (not root) and fails it in CI.
func NewCgroups(t testing.TB, name string) *Cgroups {
	t.Helper()
	for _, d := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			continue
		}
		top := filepath.Join(d, fmt.Sprintf("medic-%s-%d-%d", name, os.Getpid(), rand.IntN(1e6)))
		if err := os.Mkdir(top, 0o755); err != nil {
			continue
		}
		c := &Cgroups{top: top}
		t.Cleanup(func() { c.remove(t) })
		return c
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no writable cgroup hierarchy (need root and /sys/fs/cgroup)")
	}
	t.Skip("no writable cgroup hierarchy (need root)")
	return nil
}

// Container is the cgroup of container in pod uid, as the kubelet's
// cgroupfs driver names it (besteffort QoS).
func (c *Cgroups) Container(uid, container string) string {
	return filepath.Join(c.top, "kubepods", "besteffort", "pod"+uid, container)
}

// Join moves pid into cgroup dir, creating it.
func Join(t testing.TB, dir string, pid int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Start starts cmd, kills it when the test ends, and moves it into cgroup
// dir.
func Start(t testing.TB, dir string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	Join(t, dir, cmd.Process.Pid)
	return cmd
}

// remove removes the tree, deepest first; a cgroup is busy for a moment
// after its last process exited.
func (c *Cgroups) remove(t testing.TB) {
	var dirs []string
	filepath.WalkDir(c.top, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for range 100 {
			if err = os.Remove(dirs[i]); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
}
