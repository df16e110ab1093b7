package restart

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/proc"
)

// The fake agent is this test binary, copied under a unique name (so that
// "process: <name>" matches only it) and re-run with MEDIC_FAKE_AGENT set:
// TestFakeAgentHelper then prints "ready" and sleeps forever, ignoring
// SIGTERM when asked to.
const fakeAgentEnv = "MEDIC_FAKE_AGENT"

func TestFakeAgentHelper(t *testing.T) {
	mode := os.Getenv(fakeAgentEnv)
	if mode == "" {
		return // not a helper run
	}
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Println("ready")
	for {
		time.Sleep(time.Hour)
	}
}

// fakeAgentExe returns the path of a link to (or copy of) the test
// binary whose base name is unique to this test process and short enough
// for comm; it lives in the test's temporary directory.
func fakeAgentExe(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), agentName())
	if _, err := os.Stat(exe); err == nil {
		return exe
	}
	if err := os.Link(self, exe); err != nil {
		if err := copyFile(self, exe); err != nil {
			t.Fatal(err)
		}
	}
	return exe
}

func agentName() string { return fmt.Sprintf("fagent%d", os.Getpid()) }

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// startAgent starts one fake agent and returns once it is ready. The
// caller owns reaping it (cmd.Wait); a cleanup kills it if still running.
func startAgent(t *testing.T, exe, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^TestFakeAgentHelper$")
	cmd.Env = append(os.Environ(), fakeAgentEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("fake agent did not start: %q %v", line, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // reap, unless the test (or the kubelet) already did
	})
	return cmd
}

// kubelet stands in for the kubelet: it keeps one fake agent running,
// starting a new one whenever the current one dies, and reports each new PID.
type kubelet struct {
	pids chan int
	done chan struct{}
}

func runKubelet(t *testing.T, exe, mode string) *kubelet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &kubelet{pids: make(chan int, 16), done: make(chan struct{})}
	var mu sync.Mutex
	var cur *exec.Cmd
	first := startAgent(t, exe, mode)
	cur = first
	go func() {
		defer close(k.done)
		cmd := first
		for {
			k.pids <- cmd.Process.Pid
			_ = cmd.Wait()
			if ctx.Err() != nil {
				return
			}
			next := exec.Command(exe, "-test.run=^TestFakeAgentHelper$")
			next.Env = append(os.Environ(), fakeAgentEnv+"="+mode)
			out, _ := next.StdoutPipe()
			if err := next.Start(); err != nil {
				t.Errorf("kubelet: restart: %v", err)
				return
			}
			_, _ = bufio.NewReader(out).ReadString('\n')
			mu.Lock()
			cur = next
			mu.Unlock()
			if ctx.Err() != nil {
				_ = next.Process.Kill()
				_ = next.Wait()
				return
			}
			cmd = next
		}
	}()
	t.Cleanup(func() {
		cancel()
		mu.Lock()
		_ = cur.Process.Kill()
		mu.Unlock()
		<-k.done
	})
	return k
}

func (k *kubelet) next(t *testing.T) int {
	t.Helper()
	select {
	case pid := <-k.pids:
		return pid
	case <-time.After(10 * time.Second):
		t.Fatal("kubelet did not (re)start the agent within 10s")
		return 0
	}
}

func newSignal(t *testing.T, clk clock.Clock, mutate func(c *Config)) actions.Action {
	t.Helper()
	c := defaults()
	c.Mode = ModeSignal
	mutate(c)
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	k, ok := actions.Lookup(Kind)
	if !ok {
		t.Fatal("restart kind not registered")
	}
	a, err := k.New(c, actions.Env{Name: "restart-agent", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var inc = actions.Incident{ID: "inc-1", Alert: "SPIREAgentSyncFailure", Attempt: 1, MaxAttempts: 2}

func TestSignalRestartsAgentUnderKubelet(t *testing.T) {
	k := runKubelet(t, fakeAgentExe(t), "plain")
	a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = agentName() })

	prev := k.next(t)
	for round := 0; round < 2; round++ {
		res, err := a.Run(context.Background(), inc)
		if err != nil {
			t.Fatalf("round %d: %v (%s)", round, err, res.Message)
		}
		if res.Details["pid"] != prev || res.Details["signal"] != "SIGTERM" || res.Details["sigkill"] != false {
			t.Fatalf("round %d: details %v, want pid %d SIGTERM without SIGKILL", round, res.Details, prev)
		}
		if _, ok := res.Details["exitSeconds"].(float64); !ok {
			t.Fatalf("no exitSeconds: %v", res.Details)
		}
		pid := k.next(t)
		if pid == prev {
			t.Fatalf("round %d: PID did not change (%d)", round, pid)
		}
		if _, err := proc.Read("/proc", prev); !errors.Is(err, proc.ErrNotFound) {
			p, _ := proc.Read("/proc", prev)
			if !p.Zombie() && p.Name() == agentName() {
				t.Fatalf("old agent %d still running", prev)
			}
		}
		prev = pid
	}
}

func TestSignalGraceThenSIGKILL(t *testing.T) {
	cmd := startAgent(t, fakeAgentExe(t), "ignore-term")
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	a := newSignal(t, clk, func(c *Config) {
		c.Cmdline = regexp.QuoteMeta(agentName()) + " -test.run"
		c.GracePeriod = cfg.Duration(15 * time.Second)
	})
	type outcome struct {
		res actions.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.Run(context.Background(), inc)
		done <- outcome{res, err}
	}()
	if !clk.BlockUntil(1, 10*time.Second) {
		t.Fatal("action never started its grace wait")
	}
	// SIGTERM has been sent and ignored: the agent lives on and the
	// action keeps waiting until the grace period has passed.
	p, err := proc.Read("/proc", cmd.Process.Pid)
	if err != nil || p.Zombie() {
		t.Fatalf("agent that ignores SIGTERM is gone before the grace period: %v %c", err, p.State)
	}
	select {
	case o := <-done:
		t.Fatalf("returned before the grace period: %+v", o)
	default:
	}
	clk.Advance(15 * time.Second)
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no result 10s after the grace period")
	}
	if o.err != nil {
		t.Fatalf("run: %v", o.err)
	}
	if o.res.Details["sigkill"] != true || o.res.Details["pid"] != cmd.Process.Pid {
		t.Fatalf("details %v, want SIGKILL of %d", o.res.Details, cmd.Process.Pid)
	}
	if o.res.Details["exitSeconds"].(float64) < 15 {
		t.Fatalf("exitSeconds %v < grace", o.res.Details["exitSeconds"])
	}
	if !strings.Contains(o.res.Message, "SIGKILL after 15s grace") {
		t.Fatalf("message %q", o.res.Message)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("agent exit = %v, want killed by SIGKILL", err)
	}
}

// A child of medic that exits stays a zombie until reaped: that counts as gone.
func TestSignalZombieCountsAsGone(t *testing.T) {
	cmd := startAgent(t, fakeAgentExe(t), "plain")
	a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = agentName() })
	res, err := a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	p, err := proc.Read("/proc", cmd.Process.Pid)
	if err != nil || !p.Zombie() {
		t.Fatalf("expected the unreaped agent to be a zombie: %+v %v", p, err)
	}
	if res.Details["sigkill"] != false {
		t.Fatalf("details %v", res.Details)
	}
	_ = cmd.Wait()
}

func TestSignalPidFile(t *testing.T) {
	cmd := startAgent(t, fakeAgentExe(t), "plain")
	pf := filepath.Join(t.TempDir(), "agent.pid")
	if err := os.WriteFile(pf, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := newSignal(t, clock.Real{}, func(c *Config) { c.PidFile = pf; c.Signal = "INT" })
	res, err := a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Details["signal"] != "SIGINT" {
		t.Fatalf("details %v", res.Details)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
		t.Fatalf("agent exit = %v, want SIGINT", err)
	}
}

// A pid file older than the process it names was written by an earlier
// process with the same PID: never signal the newcomer.
func TestSignalStalePidFileRefused(t *testing.T) {
	cmd := startAgent(t, fakeAgentExe(t), "plain")
	pf := filepath.Join(t.TempDir(), "agent.pid")
	if err := os.WriteFile(pf, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(pf, old, old); err != nil {
		t.Fatal(err)
	}
	a := newSignal(t, clock.Real{}, func(c *Config) { c.PidFile = pf })
	_, err := a.Run(context.Background(), inc)
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "was reused") {
		t.Fatalf("err = %v, want retryable 'was reused'", err)
	}
	if p, err := proc.Read("/proc", cmd.Process.Pid); err != nil || p.Zombie() {
		t.Fatal("the process behind a stale pid file was signalled")
	}
}

func TestSignalRefusesProtected(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		pid  int
	}{{"pid 1", 1}, {"self", os.Getpid()}, {"parent", os.Getppid()}} {
		t.Run(tc.name, func(t *testing.T) {
			pf := filepath.Join(dir, tc.name+".pid")
			if err := os.WriteFile(pf, []byte(strconv.Itoa(tc.pid)), 0o644); err != nil {
				t.Fatal(err)
			}
			a := newSignal(t, clock.Real{}, func(c *Config) { c.PidFile = pf })
			_, err := a.Run(context.Background(), inc)
			if !actions.IsPermanent(err) || !errors.Is(err, proc.ErrProtected) {
				t.Fatalf("err = %v, want permanent ErrProtected", err)
			}
		})
	}
	t.Run("self by cmdline", func(t *testing.T) {
		a := newSignal(t, clock.Real{}, func(c *Config) { c.Cmdline = "^" + regexp.QuoteMeta(os.Args[0]) + "( |$)" })
		_, err := a.Run(context.Background(), inc)
		if !actions.IsPermanent(err) || !errors.Is(err, proc.ErrProtected) || !strings.Contains(err.Error(), "medic itself") {
			t.Fatalf("err = %v, want permanent ErrProtected naming medic itself", err)
		}
	})
}

func TestSignalManyMatches(t *testing.T) {
	exe := fakeAgentExe(t)
	c1, c2 := startAgent(t, exe, "plain"), startAgent(t, exe, "plain")
	a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = agentName() })
	_, err := a.Run(context.Background(), inc)
	if !actions.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent", err)
	}
	for _, pid := range []int{c1.Process.Pid, c2.Process.Pid} {
		if !strings.Contains(err.Error(), strconv.Itoa(pid)) {
			t.Fatalf("error %q does not list pid %d", err, pid)
		}
		if p, err := proc.Read("/proc", pid); err != nil || p.Zombie() {
			t.Fatalf("pid %d was signalled without all: true", pid)
		}
	}

	a = newSignal(t, clock.Real{}, func(c *Config) { c.Process = agentName(); c.All = true })
	res, err := a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("all: %v", err)
	}
	if got := res.Details["pids"].([]int); len(got) != 2 {
		t.Fatalf("pids %v", got)
	}
	_, _ = c1.Wait(), c2.Wait()
}

func TestSignalNoMatchIsRetryable(t *testing.T) {
	a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = "no-such-agent-xyz" })
	_, err := a.Run(context.Background(), inc)
	if err == nil || actions.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if want := `agent not running: no process matches process="no-such-agent-xyz"`; !strings.Contains(err.Error(), want) {
		t.Fatalf("err %q does not contain %q", err, want)
	}
}

func TestSignalForeignProcRootRefused(t *testing.T) {
	root := t.TempDir()
	a := newSignal(t, clock.Real{}, func(c *Config) { c.Process = "spire-agent"; c.ProcRoot = root })
	_, err := a.Run(context.Background(), inc)
	if !actions.IsPermanent(err) || !errors.Is(err, proc.ErrForeignRoot) {
		t.Fatalf("err = %v, want permanent ErrForeignRoot", err)
	}
}

func TestSignalValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"no selector", func(c *Config) {}, []string{"set exactly one of process, cmdline or pidFile"}},
		{"two selectors", func(c *Config) { c.Process = "a"; c.PidFile = "/p" }, []string{"(2 set)"}},
		{"path as process", func(c *Config) { c.Process = "/usr/bin/spire-agent" }, []string{"process: is the executable's base name"}},
		{"bad regexp", func(c *Config) { c.Cmdline = "(" }, []string{"cmdline: invalid regular expression"}},
		{"bad signal", func(c *Config) { c.Process = "a"; c.Signal = "SIGFOO" }, []string{`signal: unknown signal "SIGFOO"`}},
		{"zero grace", func(c *Config) { c.Process = "a"; c.GracePeriod = 0 }, []string{"gracePeriod: must be greater than 0"}},
		{"probe field", func(c *Config) { c.Process = "a"; c.Hold = cfg.Duration(time.Second) }, []string{"hold: is not used by mode signal"}},
		{"pod field", func(c *Config) { c.Process = "a"; c.Pod = "x" }, []string{"pod: is not used by mode signal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			c.Mode = ModeSignal
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not contain %q", err, w)
				}
			}
		})
	}
}

// An attempt cancelled during the grace period (medic shutting down)
// returns at once, says it was interrupted and sends no SIGKILL.
func TestSignalInterruptedDuringGrace(t *testing.T) {
	cmd := startAgent(t, fakeAgentExe(t), "ignore-term")
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	a := newSignal(t, clk, func(c *Config) {
		c.Cmdline = regexp.QuoteMeta(agentName()) + " -test.run"
		c.GracePeriod = cfg.Duration(15 * time.Second)
	})
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		res actions.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.Run(ctx, inc)
		done <- outcome{res, err}
	}()
	if !clk.BlockUntil(1, 10*time.Second) {
		t.Fatal("action never started its grace wait")
	}
	cancel()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no result 10s after the cancel")
	}
	if !errors.Is(o.err, context.Canceled) || o.res.Message != "sent SIGTERM; interrupted while waiting for exit" {
		t.Fatalf("err %v, message %q", o.err, o.res.Message)
	}
	if o.res.Details["sigkill"] != false {
		t.Fatalf("details %v: SIGKILL after a cancel", o.res.Details)
	}
	if p, err := proc.Read("/proc", cmd.Process.Pid); err != nil || p.Zombie() {
		t.Fatalf("the agent did not outlive the cancelled attempt: %v", err)
	}
}
