package restart

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/livez"
)

// ModeProbe makes medic's /livez/agent endpoint fail so that the agent
// container's livenessProbe (pointed at it) fails and the kubelet
// restarts the agent. It needs no privileges.
const ModeProbe = "probe"

func init() {
	modes[ModeProbe] = mode{validate: validateProbe, build: buildProbe}
}

func validateProbe(c *Config) error {
	errs := c.otherModeFields(ModeProbe)
	if c.FailureThreshold < 1 {
		errs = append(errs, cfg.Errorf("failureThreshold", "must be at least 1 (the agent container's livenessProbe.failureThreshold)"))
	}
	if c.PeriodSeconds < 1 {
		errs = append(errs, cfg.Errorf("periodSeconds", "must be at least 1 (the agent container's livenessProbe.periodSeconds)"))
	}
	return errors.Join(errs...)
}

// HoldFor is how long /livez/agent fails: hold when set, else
// failureThreshold × periodSeconds + one more period, so the kubelet sees
// failureThreshold consecutive failures whatever the phase of its timer.
func HoldFor(c *Config) time.Duration {
	if c.Hold > 0 {
		return c.Hold.D()
	}
	return time.Duration(c.FailureThreshold*c.PeriodSeconds+c.PeriodSeconds) * time.Second
}

// LivenessSwitch is the agent-liveness endpoint (/livez/agent,
// internal/livez) that probe mode flips to failing for a hold period.
type LivenessSwitch interface {
	// FailFor makes the endpoint answer 503 for d and returns when it will recover.
	FailFor(d time.Duration) time.Time
}

var _ LivenessSwitch = (*livez.Switch)(nil)

// reasoner is implemented by switches that show a reason in their 503
// body (internal/livez.Switch).
type reasoner interface {
	FailForReason(d time.Duration, reason string) time.Time
}

func buildProbe(c *Config, env actions.Env) (actions.Action, error) {
	if err := validateProbe(c); err != nil {
		return nil, err
	}
	if env.AgentLiveness == nil {
		return nil, errors.New("restart mode probe needs medic's /livez/agent endpoint, and none was provided")
	}
	return &ProbeAction{sw: env.AgentLiveness, hold: HoldFor(c), threshold: c.FailureThreshold, period: c.PeriodSeconds}, nil
}

// ProbeAction is restart mode probe. Run flips the switch and returns at
// once: the restart itself happens later, when the kubelet has seen
// enough failed probes, so the step's verify window (which should be at
// least the hold plus the agent's start-up time) judges the outcome.
type ProbeAction struct {
	sw        LivenessSwitch
	hold      time.Duration
	threshold int
	period    int
}

var _ actions.Action = (*ProbeAction)(nil)

// Run makes /livez/agent answer 503 for the hold period.
func (a *ProbeAction) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	if err := ctx.Err(); err != nil {
		return actions.Result{}, err
	}
	reason := fmt.Sprintf("agent restart requested by medic: incident %s (%s), attempt %d", inc.ID, inc.Alert, inc.Attempt)
	var until time.Time
	if r, ok := a.sw.(reasoner); ok {
		until = r.FailForReason(a.hold, reason)
	} else {
		until = a.sw.FailFor(a.hold)
	}
	return actions.Result{
		Message: fmt.Sprintf("/livez/agent answers 503 until %s (hold %s); the kubelet restarts the agent after %d failed probes %ds apart",
			until.UTC().Format(time.RFC3339), a.hold, a.threshold, a.period),
		Details: map[string]any{
			"holdSeconds":      a.hold.Seconds(),
			"failingUntil":     until.UTC().Format(time.RFC3339Nano),
			"failureThreshold": a.threshold,
			"periodSeconds":    a.period,
		},
	}, nil
}
