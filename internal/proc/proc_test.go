package proc

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
)

func TestParseStatOddComm(t *testing.T) {
	line := "4242 (spire) (agent 2) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 9 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	p, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p.PID != 4242 || p.PPID != 17 || p.State != 'S' || p.StartTime != 987654 || p.Comm != "spire) (agent 2" {
		t.Fatalf("parsed %+v", p)
	}
	for _, bad := range []string{"", "12 spire S 1", "x (a) S 1 2", "12 (a) S 1 2 3"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q): no error", bad)
		}
	}
}

func TestReadSelf(t *testing.T) {
	p, err := Read(DefaultRoot, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if p.PPID != os.Getppid() || p.StartTime == 0 || p.Name() != filepath.Base(exe) || len(p.Cmdline) == 0 {
		t.Fatalf("self = %+v (exe %s)", p, exe)
	}
	if err := VerifyRoot(DefaultRoot); err != nil {
		t.Fatal(err)
	}
}

func TestGoneDetectsPIDReuse(t *testing.T) {
	p, err := Read(DefaultRoot, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if gone, err := Gone(DefaultRoot, p); err != nil || gone {
		t.Fatalf("self gone=%v err=%v", gone, err)
	}
	reused := p
	reused.StartTime--
	if gone, err := Gone(DefaultRoot, reused); err != nil || !gone {
		t.Fatalf("same PID, other start time: gone=%v err=%v", gone, err)
	}
	if _, err := Read(DefaultRoot, 1<<30); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent pid: %v", err)
	}
}

func TestNamesFallback(t *testing.T) {
	p := Process{Comm: "spire-agent", Cmdline: []string{"/opt/spire/bin/spire-agent", "run"}}
	if got := p.Names(); len(got) != 1 || got[0] != "spire-agent" {
		t.Fatalf("names %v", got)
	}
	p = Process{Comm: "python3", Cmdline: []string{"/usr/bin/agent.py"}}
	sel := Selector{Process: "agent.py"}
	if !sel.Match(p) {
		t.Fatal("argv[0] fallback did not match")
	}
	p.Exe = "/usr/bin/python3.12"
	if sel.Match(p) {
		t.Fatal("argv[0] matched although exe is readable")
	}
	p.State = 'Z'
	if (Selector{Cmdline: regexp.MustCompile("agent")}).Match(p) {
		t.Fatal("zombie matched")
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "HUP": syscall.SIGHUP, "9": syscall.SIGKILL, " sigusr1 ": syscall.SIGUSR1,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIGFOO", "0", "65", "-1"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q): no error", bad)
		}
	}
	if SignalName(syscall.SIGHUP) != "SIGHUP" {
		t.Fatal(SignalName(syscall.SIGHUP))
	}
}

func TestFindPidFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Find(DefaultRoot, Selector{PidFile: filepath.Join(dir, "missing.pid")}); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("missing pid file: %v", err)
	}
	bad := filepath.Join(dir, "bad.pid")
	_ = os.WriteFile(bad, []byte("twelve"), 0o644)
	if _, err := Find(DefaultRoot, Selector{PidFile: bad}); err == nil || errors.Is(err, ErrNoMatch) {
		t.Fatalf("garbage pid file: %v", err)
	}
	dead := filepath.Join(dir, "dead.pid")
	_ = os.WriteFile(dead, []byte(strconv.Itoa(1<<30)), 0o644)
	if _, err := Find(DefaultRoot, Selector{PidFile: dead}); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("dead pid: %v", err)
	}
	if err := Signal(DefaultRoot, Process{PID: 1}, syscall.SIGTERM); !errors.Is(err, ErrProtected) {
		t.Fatalf("Signal(pid 1) = %v", err)
	}
}

// BenchmarkFind measures one scan of this machine's /proc by name, what a
// signal-mode restart or a certRefresh notify costs before it signals.
func BenchmarkFind(b *testing.B) {
	ps, err := List(DefaultRoot)
	if err != nil {
		b.Fatal(err)
	}
	sel := Selector{Process: "no-such-process-for-bench"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Find(DefaultRoot, sel); !errors.Is(err, ErrNoMatch) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ps)), "procs")
}
