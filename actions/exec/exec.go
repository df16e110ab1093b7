// Package exec is the built-in "exec" action: run a command with a
// timeout, the incident in its environment, and its output captured
// (bounded) into the audit record.
package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

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

// Run starts the command in its own process group and waits for it. On
// timeout or cancellation the whole group is killed.
func (a *Action) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, a.c.Timeout.D())
	defer cancel()
	cmd := osexec.CommandContext(ctx, a.c.Command[0], a.c.Command[1:]...)
	cmd.Dir = a.c.Dir
	cmd.Env = append(os.Environ(), Env(inc)...)
	for k, v := range a.c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &Bounded{Max: MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the whole group, so a shell's children die too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := actions.Result{Output: out.String(), Details: map[string]any{
		"command": a.c.Command, "durationSeconds": time.Since(start).Seconds(),
	}}
	if cmd.ProcessState != nil {
		res.Details["exitCode"] = cmd.ProcessState.ExitCode()
	}
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
		err = fmt.Errorf("%s: exit status %d", a.c.Command[0], code)
		if slices.Contains(a.c.PermanentExitCodes, code) {
			return res, actions.Permanent(err)
		}
		return res, err
	}
	// Could not start at all (not found, not executable): retrying won't help.
	res.Message = err.Error()
	return res, actions.Permanent(err)
}
