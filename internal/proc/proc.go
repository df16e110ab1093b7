// Package proc finds processes through a procfs tree and tells whether a
// process seen earlier is still the same, live process. It is what the
// restart action's signal mode and certRefresh's notify use to pick the
// one process they may signal, and nothing else.
//
// A process is identified by (PID, start time): the start time (field 22
// of /proc/PID/stat, clock ticks since boot) changes when a PID is
// reused, so a PID alone is never trusted across two reads.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultRoot is the procfs mount point.
const DefaultRoot = "/proc"

// Process is what procfs says about one process at one moment.
type Process struct {
	PID  int
	PPID int
	// State is the one-letter state of /proc/PID/stat (R, S, D, Z, T, …).
	State byte
	// StartTime is field 22 of /proc/PID/stat: clock ticks after boot.
	StartTime uint64
	// Comm is /proc/PID/comm (at most 15 bytes, set by the process).
	Comm string
	// Exe is the target of /proc/PID/exe without a " (deleted)" suffix;
	// empty when unreadable (another user's process without privileges).
	Exe string
	// Cmdline is the argv of /proc/PID/cmdline; empty for kernel threads
	// and zombies.
	Cmdline []string
}

// Name is the process's name as matched by a "process:" selector: the
// executable's base name, else comm, else argv[0]'s base name.
func (p Process) Name() string {
	switch {
	case p.Exe != "":
		return filepath.Base(p.Exe)
	case p.Comm != "":
		return p.Comm
	case len(p.Cmdline) > 0:
		return filepath.Base(p.Cmdline[0])
	}
	return ""
}

// Names lists every name the process answers to (exe base name, comm,
// argv[0] base name), without duplicates. Exe wins when readable: the
// others are only consulted when it is not, since comm and argv[0] are
// set by the process itself.
func (p Process) Names() []string {
	if p.Exe != "" {
		return []string{filepath.Base(p.Exe)}
	}
	var out []string
	if p.Comm != "" {
		out = append(out, p.Comm)
	}
	if len(p.Cmdline) > 0 {
		if b := filepath.Base(p.Cmdline[0]); b != p.Comm {
			out = append(out, b)
		}
	}
	return out
}

// Zombie reports whether the process has exited and waits to be reaped.
func (p Process) Zombie() bool { return p.State == 'Z' || p.State == 'X' || p.State == 'x' }

// String is "1234 (spire-agent)".
func (p Process) String() string { return fmt.Sprintf("%d (%s)", p.PID, p.Name()) }

// ErrNotFound is returned by Read when the PID does not exist.
var ErrNotFound = errors.New("no such process")

// Read reads one process. A vanished PID gives an error wrapping ErrNotFound.
func Read(root string, pid int) (Process, error) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return Process{}, fmt.Errorf("pid %d: %w", pid, ErrNotFound)
		}
		return Process{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	p, err := ParseStat(stat)
	if err != nil {
		return Process{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	if c, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		p.Comm = strings.TrimSuffix(string(c), "\n")
	}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		p.Exe = strings.TrimSuffix(exe, " (deleted)")
	}
	if c, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(c) > 0 {
		c = bytes.TrimRight(c, "\x00")
		p.Cmdline = strings.Split(string(c), "\x00")
	}
	return p, nil
}

// ParseStat parses the content of /proc/PID/stat. The comm field is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStat(b []byte) (Process, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Process{}, fmt.Errorf("malformed stat %q", truncate(b))
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Process{}, fmt.Errorf("malformed stat pid %q", truncate(b))
	}
	// Field 3 (state) is rest[0]; field N is rest[N-3].
	rest := strings.Fields(string(b[end+1:]))
	if len(rest) < 20 {
		return Process{}, fmt.Errorf("malformed stat: %d fields after comm", len(rest))
	}
	ppid, err1 := strconv.Atoi(rest[1])
	start, err2 := strconv.ParseUint(rest[19], 10, 64)
	if err1 != nil || err2 != nil || len(rest[0]) != 1 {
		return Process{}, fmt.Errorf("malformed stat %q", truncate(b))
	}
	return Process{PID: pid, PPID: ppid, State: rest[0][0], StartTime: start, Comm: string(b[open+1 : end])}, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// List reads every process under root. Processes that vanish while being
// read are skipped.
func List(root string) ([]Process, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", root, err)
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		p, err := Read(root, pid)
		if err != nil {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// Gone reports whether the process p (as read earlier) no longer runs:
// its PID is absent, it is a zombie, or the PID now belongs to another
// process (different start time).
func Gone(root string, p Process) (bool, error) {
	now, err := Read(root, p.PID)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return now.StartTime != p.StartTime || now.Zombie(), nil
}

// Selector picks processes: exactly one of Process, Cmdline, PidFile.
type Selector struct {
	// Process matches the executable's base name (see Process.Names).
	Process string
	// Cmdline is a regular expression matched against argv joined by spaces.
	Cmdline *regexp.Regexp
	// PidFile names a file holding the PID.
	PidFile string
	// Pod, when set, restricts the selection to processes in that pod
	// (OwnPod): with hostPID every process of the node is visible, and a
	// same-named process of another pod must never be picked.
	Pod *Pod
}

// String describes the selector for messages: `process="spire-agent"`.
func (s Selector) String() string {
	switch {
	case s.Process != "":
		return fmt.Sprintf("process=%q", s.Process)
	case s.Cmdline != nil:
		return fmt.Sprintf("cmdline=~%q", s.Cmdline.String())
	case s.PidFile != "":
		return fmt.Sprintf("pidFile=%q", s.PidFile)
	}
	return "(empty selector)"
}

// Match reports whether p is selected by a Process or Cmdline selector.
// Zombies never match.
func (s Selector) Match(p Process) bool {
	if p.Zombie() {
		return false
	}
	switch {
	case s.Process != "":
		for _, n := range p.Names() {
			if n == s.Process {
				return true
			}
		}
		return false
	case s.Cmdline != nil:
		return len(p.Cmdline) > 0 && s.Cmdline.MatchString(strings.Join(p.Cmdline, " "))
	}
	return false
}

// Protected is the set of PIDs that are never signalled: PID 1 (the pod's
// init or pause process), medic itself and medic's parent.
func Protected() map[int]string {
	return map[int]string{1: "pid 1", os.Getpid(): "medic itself", os.Getppid(): "medic's parent"}
}

// ErrNoMatch is wrapped by Find when nothing matches: the agent is not
// running (yet), which is worth retrying.
var ErrNoMatch = errors.New("no process matches")

// ErrProtected is wrapped by Find when the only matches are protected.
var ErrProtected = errors.New("refusing to signal a protected process")

// Find returns the live processes that sel selects under root, without
// protected ones. Errors: ErrNoMatch when nothing matches, ErrProtected
// when everything that matches is protected; a pid file naming a process
// that started after the file was last written is stale (ErrNoMatch: the
// PID was reused).
func Find(root string, sel Selector) ([]Process, error) {
	if err := VerifyRoot(root); err != nil {
		return nil, err
	}
	protected := Protected()
	var cand []Process
	if sel.PidFile != "" {
		p, err := fromPidFile(root, sel.PidFile)
		if err != nil {
			return nil, err
		}
		cand = []Process{p}
	} else {
		all, err := List(root)
		if err != nil {
			return nil, err
		}
		for _, p := range all {
			if sel.Match(p) {
				cand = append(cand, p)
			}
		}
	}
	var out []Process
	var refused, elsewhere []string
	for _, p := range cand {
		if sel.Pod != nil {
			if in, why := sel.Pod.Contains(root, p.PID); !in {
				elsewhere = append(elsewhere, fmt.Sprintf("%s %s", p, why))
				continue
			}
		}
		if why, ok := protected[p.PID]; ok {
			refused = append(refused, fmt.Sprintf("%s is %s", p, why))
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 && len(refused) > 0 {
		return nil, fmt.Errorf("%w: %s matches only %s", ErrProtected, sel, strings.Join(refused, ", "))
	}
	if len(out) == 0 && len(elsewhere) > 0 {
		return nil, fmt.Errorf("%w %s in %s: %d outside it (%s)", ErrNoMatch, sel, sel.Pod, len(elsewhere), strings.Join(elsewhere, "; "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %s in %s", ErrNoMatch, sel, root)
	}
	return out, nil
}

func fromPidFile(root, path string) (Process, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Process{}, fmt.Errorf("%w pidFile=%q: file does not exist", ErrNoMatch, path)
	}
	if err != nil {
		return Process{}, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return Process{}, fmt.Errorf("pid file %s: %q is not a PID", path, truncate(bytes.TrimSpace(b)))
	}
	p, err := Read(root, pid)
	if errors.Is(err, ErrNotFound) {
		return Process{}, fmt.Errorf("%w pidFile=%q: pid %d is not running", ErrNoMatch, path, pid)
	}
	if err != nil {
		return Process{}, err
	}
	if p.Zombie() {
		return Process{}, fmt.Errorf("%w pidFile=%q: pid %d has exited (zombie)", ErrNoMatch, path, pid)
	}
	if stale, why := staleFor(root, p, path); stale {
		return Process{}, fmt.Errorf("%w pidFile=%q: pid %d was reused: %s", ErrNoMatch, path, pid, why)
	}
	return p, nil
}

// staleFor reports whether p started after the pid file was last written
// (so the file was written by an earlier process with the same PID). When
// the boot time cannot be read it gives the file the benefit of the doubt.
func staleFor(root string, p Process, path string) (bool, string) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, ""
	}
	boot, err := BootTime(root)
	if err != nil {
		return false, ""
	}
	started := boot + float64(p.StartTime)/float64(ClockTicks)
	written := float64(fi.ModTime().UnixNano()) / 1e9
	// btime has one-second resolution: allow 2 s of slack.
	if started > written+2 {
		return true, fmt.Sprintf("it started %.0fs after the file was written", started-written)
	}
	return false, ""
}

// ErrForeignRoot is returned when a procfs root does not show medic's
// own PID namespace: its PIDs would name other processes than kill(2) reaches.
var ErrForeignRoot = errors.New("procfs root is not medic's PID namespace")

// VerifyRoot checks that root/self names medic's own PID, i.e. that PIDs
// read under root are PIDs that kill(2) from medic reaches.
func VerifyRoot(root string) error {
	self, err := os.Readlink(filepath.Join(root, "self"))
	if err != nil {
		return fmt.Errorf("%w: %s/self: %w", ErrForeignRoot, root, err)
	}
	if self != strconv.Itoa(os.Getpid()) {
		return fmt.Errorf("%w: %s/self is %s, medic is pid %d", ErrForeignRoot, root, self, os.Getpid())
	}
	return nil
}

// ClockTicks is USER_HZ, the unit of stat's start time; 100 on every
// Linux architecture medic runs on.
const ClockTicks = 100

// BootTime reads btime (seconds since the epoch) from root/stat.
func BootTime(root string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(root, "stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no btime in %s/stat", root)
}

// ParseSignal accepts "SIGTERM", "TERM", "sigterm" or a number ("15").
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q out of range 1..64", s)
		}
		return syscall.Signal(n), nil
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	if sig := unix.SignalNum(t); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q (use e.g. SIGTERM, SIGHUP, 15)", s)
}

// SignalName is "SIGTERM" for syscall.SIGTERM.
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return strconv.Itoa(int(sig))
}

// Signal sends sig to p after checking, as late as possible, that p's PID
// still belongs to the same process (start time) and that it is not
// protected. A process that is already gone gives an error wrapping
// ErrNotFound.
func Signal(root string, p Process, sig syscall.Signal) error {
	if why, ok := Protected()[p.PID]; ok || p.PID <= 1 {
		if !ok {
			why = "not a process PID"
		}
		return fmt.Errorf("%w: pid %d is %s", ErrProtected, p.PID, why)
	}
	gone, err := Gone(root, p)
	if err != nil {
		return fmt.Errorf("recheck pid %d before signalling: %w", p.PID, err)
	}
	if gone {
		return fmt.Errorf("pid %d exited before %s: %w", p.PID, SignalName(sig), ErrNotFound)
	}
	if err := syscall.Kill(p.PID, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pid %d exited before %s: %w", p.PID, SignalName(sig), ErrNotFound)
		}
		return fmt.Errorf("send %s to %s: %w", SignalName(sig), p, err)
	}
	return nil
}
