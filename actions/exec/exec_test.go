package exec

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
)

var inc = actions.Incident{ID: "inc-1", Alert: "SPIREAgentSyncFailure", Labels: map[string]string{"host": "node-1", "status": "Unavailable"},
	Attempt: 2, MaxAttempts: 3, Step: 1, Action: "nudge", Value: 0.2}

func run(t *testing.T, c Config) (actions.Result, error) {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = cfg.Duration(10 * time.Second)
	}
	return New(c).Run(context.Background(), inc)
}

func TestIncidentInEnvironmentAndOutputCaptured(t *testing.T) {
	res, err := run(t, Config{Command: []string{"/bin/sh", "-c", `echo "alert=$MEDIC_ALERT id=$MEDIC_INCIDENT_ID attempt=$MEDIC_ATTEMPT"; echo "$MEDIC_LABELS"; echo oops >&2`}})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(res.Output), "\n")
	if lines[0] != "alert=SPIREAgentSyncFailure id=inc-1 attempt=2" {
		t.Fatalf("env line %q", lines[0])
	}
	var lbls map[string]string
	if err := json.Unmarshal([]byte(lines[1]), &lbls); err != nil || lbls["status"] != "Unavailable" {
		t.Fatalf("MEDIC_LABELS %q: %v", lines[1], err)
	}
	if !strings.Contains(res.Output, "oops") {
		t.Fatal("stderr not captured")
	}
	if res.Details["exitCode"] != 0 {
		t.Fatalf("details %v", res.Details)
	}
}

func TestNonZeroExitIsRetryableUnlessListedPermanent(t *testing.T) {
	_, err := run(t, Config{Command: []string{"/bin/sh", "-c", "exit 3"}})
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("exit 3: %v", err)
	}
	_, err = run(t, Config{Command: []string{"/bin/sh", "-c", "exit 64"}, PermanentExitCodes: []int{64}})
	if !actions.IsPermanent(err) {
		t.Fatalf("exit 64 listed permanent: %v", err)
	}
	_, err = run(t, Config{Command: []string{"/nonexistent/medic-test-binary"}})
	if !actions.IsPermanent(err) {
		t.Fatalf("missing binary should be permanent: %v", err)
	}
}

func TestTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	// The shell starts a grandchild that would outlive a plain kill of the shell.
	res, err := run(t, Config{Timeout: cfg.Duration(300 * time.Millisecond),
		Command: []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"}})
	if err == nil || !strings.Contains(res.Message, "timed out") {
		t.Fatalf("want timeout, got %v (%q)", err, res.Message)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("grandchild %d still alive after the group kill", pid)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func TestCancellationStopsTheCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := New(Config{Command: []string{"sleep", "30"}, Timeout: cfg.Duration(time.Minute)}).Run(ctx, inc)
	if err == nil {
		t.Fatal("cancelled run succeeded")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("cancellation took %s", time.Since(start))
	}
}

func TestOutputIsBounded(t *testing.T) {
	res, err := run(t, Config{Command: []string{"/bin/sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x; echo END"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) > MaxOutput+100 {
		t.Fatalf("output %d bytes, bound %d", len(res.Output), MaxOutput)
	}
	if !strings.HasSuffix(strings.TrimSpace(res.Output), "END") || !strings.Contains(res.Output, "bytes omitted") {
		t.Fatalf("tail or marker missing: …%q", res.Output[len(res.Output)-40:])
	}
}

func TestValidate(t *testing.T) {
	err := (&Config{}).Validate()
	if err == nil || !strings.Contains(err.Error(), "command") || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("got %v", err)
	}
}

// waitGone waits (generously) for pid to be gone or a zombie.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("%s (pid %d) still alive", what, pid)
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// An init-style script starts a daemon in the background that keeps stdout
// open and exits 0: the exit status decides (success), the output read so
// far is kept, and the daemon, left in the action's process group, is
// killed at the end of the attempt.
func TestBackgroundChildHoldingStdoutDoesNotFailTheAttempt(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	res, err := run(t, Config{Command: []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + "; echo started"}})
	if err != nil || actions.IsPermanent(err) {
		t.Fatalf("exit 0 with a background child: %v (%q)", err, res.Message)
	}
	if strings.TrimSpace(res.Output) != "started" || res.Message != "exit 0" {
		t.Fatalf("output %q, message %q", res.Output, res.Message)
	}
	waitGone(t, readPid(t, pidFile), "background child after the attempt")
}

// A failing command with a background child still fails by its exit status.
func TestBackgroundChildWithNonZeroExit(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	res, err := run(t, Config{Command: []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + "; echo nope; exit 5"}})
	if err == nil || actions.IsPermanent(err) || res.Message != "exit 5" || strings.TrimSpace(res.Output) != "nope" {
		t.Fatalf("err %v, message %q, output %q", err, res.Message, res.Output)
	}
	waitGone(t, readPid(t, pidFile), "background child after the attempt")
}

// medic shutting down mid-attempt cancels it: the command and its
// background children are killed with it, none outlives medic.
func TestCancellationKillsBackgroundChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := New(Config{Timeout: cfg.Duration(time.Minute),
			Command: []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + ".tmp; mv " + pidFile + ".tmp " + pidFile + "; wait"}}).Run(ctx, inc)
		done <- err
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("command never started its child")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled run succeeded")
	}
	waitGone(t, readPid(t, pidFile), "background child after cancellation")
}

// Running out of file descriptors when starting the command (the state of
// the machine, e.g. under a connection flood) is retryable, never
// permanent. The test runs itself as a child process with RLIMIT_NOFILE at
// its current use, so the exhaustion is real and confined to that child.
func TestStartWithoutFileDescriptorsIsRetryable(t *testing.T) {
	if os.Getenv("MEDIC_EXEC_EMFILE_CHILD") == "1" {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		n := uint64(len(ents)) // the ReadDir's own fd is closed again: one spare, not enough for a pipe pair
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			t.Fatal(err)
		}
		_, err = New(Config{Command: []string{"/bin/true"}, Timeout: cfg.Duration(time.Minute)}).Run(context.Background(), inc)
		if err == nil {
			t.Fatal("started without file descriptors")
		}
		if !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("not EMFILE: %v", err)
		}
		if actions.IsPermanent(err) {
			t.Fatalf("EMFILE is permanent: %v", err)
		}
		return
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestStartWithoutFileDescriptorsIsRetryable$", "-test.v")
	cmd.Env = append(os.Environ(), "MEDIC_EXEC_EMFILE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
