// Package exec is the built-in "exec" action: run a command with a
// timeout, the incident in its environment, and its output captured
// (bounded) into the audit record.
package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
)

// Kind is the YAML key.
const Kind = "exec"

// DefaultTimeout bounds one run when no timeout is configured.
const DefaultTimeout = 30 * time.Second

// MaxOutput is how many bytes of combined stdout/stderr are kept.
const MaxOutput = 8 << 10

// Config is actions.<name>.exec.
type Config struct {
	// Command is the argv; no shell is involved.
	Command []string `yaml:"command" json:"command"`
	// Timeout kills the whole process group when exceeded.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
	// Env adds variables to the inherited environment.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// Dir is the working directory.
	Dir string `yaml:"dir" json:"dir,omitempty"`
	// PermanentExitCodes are exit codes meaning "retrying cannot help":
	// the step's remaining attempts are skipped.
	PermanentExitCodes []int `yaml:"permanentExitCodes" json:"permanentExitCodes,omitempty"`
}

// Validate reports every problem.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Command) == 0 || c.Command[0] == "" {
		errs = append(errs, cfg.Errorf("command", "must name a program (argv list, e.g. [\"/bin/sh\", \"-c\", \"...\"])"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, cfg.Errorf("timeout", "must be greater than 0"))
	}
	return errors.Join(errs...)
}

func init() {
	actions.Register(actions.Kind{
		Name:      Kind,
		NewConfig: func() any { return &Config{Timeout: cfg.Duration(DefaultTimeout)} },
		New: func(c any, env actions.Env) (actions.Action, error) {
			return New(*c.(*Config)), nil
		},
	})
}

// Action runs a command.
type Action struct{ c Config }

var _ actions.Action = (*Action)(nil)

// New returns an exec action.
func New(c Config) *Action { return &Action{c: c} }

// Env returns the MEDIC_* variables describing inc.
func Env(inc actions.Incident) []string {
	lbls, _ := json.Marshal(inc.Labels)
	return []string{
		"MEDIC_ALERT=" + inc.Alert,
		"MEDIC_INCIDENT_ID=" + inc.ID,
		"MEDIC_LABELS=" + string(lbls),
		"MEDIC_ATTEMPT=" + strconv.Itoa(inc.Attempt),
		"MEDIC_MAX_ATTEMPTS=" + strconv.Itoa(inc.MaxAttempts),
		"MEDIC_STEP=" + strconv.Itoa(inc.Step),
		"MEDIC_ACTION=" + inc.Action,
		"MEDIC_VALUE=" + strconv.FormatFloat(inc.Value, 'g', -1, 64),
	}
}

// outputGrace is how long output is still collected after the command
// exits and its process group is killed: a child that escaped the group
// (setsid) and keeps the pipe open is not waited for longer.
const outputGrace = 2 * time.Second

// Run starts the command in its own process group and waits for it. The
// command's exit status alone decides the result. When it exits, every
// process left in its group (daemons it started in the background) is
// killed, so nothing an attempt started outlives the attempt; on timeout or
// cancellation the whole group is killed at once.
func (a *Action) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, a.c.Timeout.D())
	defer cancel()
	cmd := osexec.CommandContext(ctx, a.c.Command[0], a.c.Command[1:]...)
	cmd.Dir = a.c.Dir
	cmd.Env = append(os.Environ(), Env(inc)...)
	for k, v := range a.c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the whole group, so a shell's children die too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res := actions.Result{Details: map[string]any{"command": a.c.Command}}
	// Our own pipe, handed to the command as a file: cmd.Wait then returns
	// when the command exits, not when the last holder of its stdout (a
	// background child) closes it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return a.startFailed(res, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return a.startFailed(res, err)
	}
	out := &Bounded{Max: MaxOutput}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, pr)
	}()
	// Wait for the command to exit without reaping it: while it is a
	// zombie its pid (the group's id) cannot be reused, so the group kill
	// below reaches only what the command left behind.
	waitExited(cmd.Process.Pid)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(outputGrace):
		res.Details["outputIncomplete"] = true // a child outside the group still holds the pipe
	}
	pr.Close()
	<-copied
	res.Output = out.String()
	res.Details["durationSeconds"] = time.Since(start).Seconds()
	res.Details["exitCode"] = cmd.ProcessState.ExitCode()
	switch {
	case err == nil:
		res.Message = "exit 0"
		return res, nil
	case ctx.Err() == context.DeadlineExceeded:
		res.Message = fmt.Sprintf("timed out after %s; process group killed", a.c.Timeout)
		return res, errors.New(res.Message)
	case ctx.Err() != nil:
		res.Message = "cancelled; process group killed"
		return res, ctx.Err()
	}
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		res.Message = fmt.Sprintf("exit %d", code)
		if code < 0 {
			res.Message = ee.ProcessState.String() // "signal: killed"
		}
		err = fmt.Errorf("%s: %s", a.c.Command[0], ee.ProcessState)
		if slices.Contains(a.c.PermanentExitCodes, code) {
			return res, actions.Permanent(err)
		}
		return res, err
	}
	res.Message = err.Error()
	return res, err
}

// startFailed classifies a command that could not be started. Not found,
// not executable, a bad dir: retrying won't help. Running out of file
// descriptors, memory or processes is the machine's state at that moment,
// and retryable (actions.IsPermanent never holds for it).
func (a *Action) startFailed(res actions.Result, err error) (actions.Result, error) {
	res.Message = err.Error()
	if actions.ResourceExhausted(err) {
		return res, fmt.Errorf("start %s: %w", a.c.Command[0], err)
	}
	return res, actions.Permanent(err)
}

// waitExited blocks until process pid has exited, leaving it unreaped.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
