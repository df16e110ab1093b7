package restart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/proc"
)

// ModeSignal signals the agent process in the pod's shared process
// namespace; the kubelet restarts the container when it exits.
const ModeSignal = "signal"

// Scopes of signal mode: which processes it may pick (proc.InScope).
// ScopePod, the default in a pod: with hostPID (the SPIRE chart's agent
// pod) every process of the node is visible; a same-named agent of another
// pod is never signalled.
const (
	ScopePod = proc.ScopePod
	ScopeAny = proc.ScopeAny
)

// EnvPodUID names medic's pod UID (Downward API: metadata.uid).
const EnvPodUID = proc.EnvPodUID

// Signal-mode timings that are not configurable.
const (
	// killWait bounds the wait for the process to disappear after SIGKILL.
	killWait = 5 * time.Second
	// pollInterval is how often /proc is re-read while waiting for the
	// process to exit (I/O polling, not a decision timer).
	pollInterval = 20 * time.Millisecond
)

func init() {
	modes[ModeSignal] = mode{validate: validateSignal, build: buildSignal}
}

// selectorCount counts the process selectors that are set.
func (c *Config) selectorCount() int {
	n := 0
	for _, s := range []string{c.Process, c.Cmdline, c.PidFile} {
		if s != "" {
			n++
		}
	}
	return n
}

// fieldModes says which modes use each mode-specific field that has no
// default (fields with defaults cannot be told apart from unset ones).
var fieldModes = []struct {
	key   string
	modes []string
	set   func(c *Config) bool
}{
	{"process", []string{ModeSignal}, func(c *Config) bool { return c.Process != "" }},
	{"cmdline", []string{ModeSignal}, func(c *Config) bool { return c.Cmdline != "" }},
	{"pidFile", []string{ModeSignal}, func(c *Config) bool { return c.PidFile != "" }},
	{"all", []string{ModeSignal}, func(c *Config) bool { return c.All }},
	{"scope", []string{ModeSignal}, func(c *Config) bool { return c.Scope != "" }},
	{"hold", []string{ModeProbe}, func(c *Config) bool { return c.Hold != 0 }},
	{"namespace", []string{"pod", "rollout"}, func(c *Config) bool { return c.Namespace != "" }},
	{"pod", []string{"pod", "rollout"}, func(c *Config) bool { return c.Pod != "" }},
	{"evict", []string{"pod"}, func(c *Config) bool { return c.Evict }},
	{"workloadKind", []string{"rollout"}, func(c *Config) bool { return c.WorkloadKind != "" }},
	{"workloadName", []string{"rollout"}, func(c *Config) bool { return c.WorkloadName != "" }},
}

// otherModeFields reports fields that are set but not used by mode, so a
// misplaced key is not silently ignored. Any mode may call it.
func (c *Config) otherModeFields(mode string) []error {
	var errs []error
	for _, f := range fieldModes {
		if f.set(c) && !slices.Contains(f.modes, mode) {
			errs = append(errs, cfg.Errorf(f.key, "is not used by mode %s (only by %s)", mode, strings.Join(f.modes, ", ")))
		}
	}
	return errs
}

func validateSignal(c *Config) error {
	errs := c.otherModeFields(ModeSignal)
	if n := c.selectorCount(); n != 1 {
		errs = append(errs, cfg.Errorf("", "set exactly one of process, cmdline or pidFile to find the agent (%d set)", n))
	}
	if strings.Contains(c.Process, "/") {
		errs = append(errs, cfg.Errorf("process", "is the executable's base name (e.g. spire-agent), not a path: %q", c.Process))
	}
	if c.Cmdline != "" {
		if _, err := regexp.Compile(c.Cmdline); err != nil {
			errs = append(errs, cfg.Errorf("cmdline", "invalid regular expression: %v", err))
		}
	}
	if _, err := proc.ParseSignal(c.Signal); err != nil {
		errs = append(errs, cfg.Errorf("signal", "%v", err))
	}
	if c.GracePeriod <= 0 {
		errs = append(errs, cfg.Errorf("gracePeriod", "must be greater than 0"))
	}
	if c.ProcRoot == "" {
		errs = append(errs, cfg.Errorf("procRoot", "must not be empty"))
	}
	if !proc.ValidScope(c.Scope) {
		errs = append(errs, cfg.Errorf("scope", "must be %s or %s (or unset: %s when medic is in a pod), not %q", ScopePod, ScopeAny, ScopePod, c.Scope))
	}
	return errors.Join(errs...)
}

func buildSignal(c *Config, env actions.Env) (actions.Action, error) {
	if err := validateSignal(c); err != nil {
		return nil, err
	}
	sig, _ := proc.ParseSignal(c.Signal)
	sel := proc.Selector{Process: c.Process, PidFile: c.PidFile}
	if c.Cmdline != "" {
		sel.Cmdline = regexp.MustCompile(c.Cmdline)
	}
	return &SignalAction{
		sel: sel, sig: sig, grace: c.GracePeriod.D(), all: c.All, root: c.ProcRoot,
		scope: c.Scope, podUID: os.Getenv(EnvPodUID), self: "self",
		clk: env.ClockOrReal(), log: env.Log(Kind).With("mode", ModeSignal),
	}, nil
}

// SignalAction is restart mode signal: find the agent in /proc, send the
// configured signal, wait gracePeriod, SIGKILL what is left, and succeed
// only once every signalled process is gone (exited, zombie, or its PID
// reused by a newer process).
type SignalAction struct {
	sel   proc.Selector
	sig   syscall.Signal
	grace time.Duration
	all   bool
	root  string
	clk   clock.Clock
	log   *slog.Logger
	// scope, podUID (POD_UID) and self (medic's PID under root: "self")
	// place medic's pod; see Config.Scope.
	scope  string
	podUID string
	self   string
}

var _ actions.Action = (*SignalAction)(nil)

// Run performs one restart attempt: find the agent, signal it, wait for
// it to exit (SIGKILL after the grace period). A failure's short form is
// the result's Message.
func (a *SignalAction) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	var res actions.Result
	targets, err := a.find(&res)
	if err != nil {
		return res, err
	}
	start := a.clk.Now()
	res.Details = map[string]any{
		"pids": pids(targets), "processes": names(targets), "signal": proc.SignalName(a.sig), "sigkill": false,
	}
	if len(targets) == 1 {
		res.Details["pid"] = targets[0].PID
	}
	live, err := a.signal(&res, targets)
	if err != nil {
		return res, err
	}
	a.log.Info("signalled agent", "processes", describe(live), "signal", proc.SignalName(a.sig), "incident", inc.ID)
	if err := a.awaitExit(ctx, &res, live); err != nil {
		return res, err
	}
	took := a.clk.Now().Sub(start)
	res.Details["exitSeconds"] = took.Seconds()
	how := proc.SignalName(a.sig)
	if res.Details["sigkill"] == true {
		how += fmt.Sprintf(", SIGKILL after %s grace", a.grace)
	}
	res.Message = fmt.Sprintf("%s: %s; exited after %s", describe(targets), how, took.Round(time.Millisecond))
	return res, nil
}

// find returns the processes to signal: those the selector matches in
// scope, exactly one unless all is set.
func (a *SignalAction) find(res *actions.Result) ([]proc.Process, error) {
	sel, err := a.selector()
	if err != nil {
		res.Message = err.Error()
		return nil, actions.Permanent(err)
	}
	targets, err := proc.Find(a.root, sel)
	switch {
	case errors.Is(err, proc.ErrNoMatch):
		res.Message = "agent not running"
		return nil, fmt.Errorf("agent not running: %w", err)
	case err != nil:
		// Protected match, foreign procfs, unreadable /proc: configuration
		// or deployment problems that retrying cannot fix.
		res.Message = err.Error()
		return nil, actions.Permanent(fmt.Errorf("find agent: %w", err))
	}
	if len(targets) > 1 && !a.all {
		res.Message = fmt.Sprintf("%d processes match %s", len(targets), a.sel)
		return nil, actions.Permanent(fmt.Errorf("%d processes match %s: %s; narrow the selector or set all: true",
			len(targets), a.sel, describe(targets)))
	}
	return targets, nil
}

// signal sends the configured signal to each target and returns those it
// reached (a target that exited meanwhile is skipped).
func (a *SignalAction) signal(res *actions.Result, targets []proc.Process) ([]proc.Process, error) {
	var live []proc.Process
	for _, p := range targets {
		err := proc.Signal(a.root, p, a.sig)
		switch {
		case errors.Is(err, proc.ErrNotFound):
			a.log.Info("agent exited before it was signalled", "pid", p.PID)
		case errors.Is(err, syscall.EPERM):
			res.Message = "permission denied"
			return nil, actions.Permanent(fmt.Errorf("%w (medic needs to see the agent — shareProcessNamespace or hostPID — and CAP_KILL, or the agent's user)", err))
		case err != nil:
			res.Message = err.Error()
			return nil, err
		default:
			live = append(live, p)
		}
	}
	return live, nil
}

// awaitExit waits the grace period for live to exit, then SIGKILLs what
// is left (Details "sigkill") and waits for that too.
func (a *SignalAction) awaitExit(ctx context.Context, res *actions.Result, live []proc.Process) error {
	left, err := a.waitGone(ctx, live, a.grace)
	if err != nil {
		res.Message = fmt.Sprintf("sent %s; interrupted while waiting for exit", proc.SignalName(a.sig))
		return fmt.Errorf("wait for %s to exit: %w", describe(live), err)
	}
	if len(left) == 0 {
		return nil
	}
	res.Details["sigkill"] = true
	a.log.Warn("agent still running after grace period; sending SIGKILL", "processes", describe(left), "grace", a.grace)
	return a.kill(ctx, res, left)
}

// kill sends SIGKILL to left and waits killWait for them to be gone.
func (a *SignalAction) kill(ctx context.Context, res *actions.Result, left []proc.Process) error {
	var killed []proc.Process
	for _, p := range left {
		err := proc.Signal(a.root, p, syscall.SIGKILL)
		switch {
		case errors.Is(err, proc.ErrNotFound):
		case err != nil:
			res.Message = err.Error()
			return fmt.Errorf("after %s grace: %w", a.grace, err)
		default:
			killed = append(killed, p)
		}
	}
	left, err := a.waitGone(ctx, killed, killWait)
	if err != nil {
		res.Message = "sent SIGKILL; interrupted while waiting for exit"
		return fmt.Errorf("wait for %s to exit: %w", describe(killed), err)
	}
	if len(left) > 0 {
		res.Message = fmt.Sprintf("%s still running %s after SIGKILL", describe(left), killWait)
		return errors.New(res.Message + " (uninterruptible sleep?)")
	}
	return nil
}

// selector is the configured selector, restricted to medic's pod unless
// scope is "any". A pod that cannot be placed is an error (never "any").
func (a *SignalAction) selector() (proc.Selector, error) {
	if a.scope != ScopeAny {
		if err := proc.VerifyRoot(a.root); err != nil {
			return a.sel, fmt.Errorf("find agent: %w", err)
		}
	}
	return proc.InScope(a.root, a.self, a.podUID, a.scope, a.sel)
}

// waitGone waits until every process in ps is gone or d (on the action's
// clock) has passed, returning those still running.
func (a *SignalAction) waitGone(ctx context.Context, ps []proc.Process, d time.Duration) ([]proc.Process, error) {
	deadline := a.clk.After(d)
	last := false
	for {
		var left []proc.Process
		for _, p := range ps {
			gone, err := proc.Gone(a.root, p)
			if err != nil {
				return nil, err
			}
			if !gone {
				left = append(left, p)
			}
		}
		if len(left) == 0 || last {
			return left, nil
		}
		ps = left
		select {
		case <-ctx.Done():
			return ps, ctx.Err()
		case <-deadline:
			last = true // one more look, then report what is left
		case <-time.After(pollInterval):
		}
	}
}

func pids(ps []proc.Process) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.PID
	}
	return out
}

func names(ps []proc.Process) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func describe(ps []proc.Process) string { return strings.Join(names(ps), ", ") }
