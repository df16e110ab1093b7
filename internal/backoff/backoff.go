// Package backoff is the retry policy medic uses wherever it waits between
// tries: between attempts of an action (remedy), between a probe's
// reconnects (grpcStream) and a plugin's restarts. It builds on go-retry.
package backoff

import (
	"errors"
	"fmt"
	"time"

	"github.com/sethvargo/go-retry"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
)

// Backoff policies.
const (
	PolicyExponential = "exponential"
	PolicyFibonacci   = "fibonacci"
	PolicyConstant    = "constant"
)

// Config is a step's retry policy: the delay between attempts of
// one action within an incident.
type Config struct {
	Policy      string       `yaml:"policy" json:"policy"`
	Initial     cfg.Duration `yaml:"initial" json:"initial"`
	Max         cfg.Duration `yaml:"max" json:"max"`
	Jitter      cfg.Percent  `yaml:"jitter" json:"jitter"`
	Attempts    int          `yaml:"attempts" json:"attempts"`
	MaxDuration cfg.Duration `yaml:"maxDuration" json:"maxDuration"`
}

// Default is the policy of an action that names none.
func Default() Config {
	return Config{
		Policy:   PolicyExponential,
		Initial:  cfg.Duration(5 * time.Second),
		Max:      cfg.Duration(5 * time.Minute),
		Jitter:   10,
		Attempts: 3,
	}
}

// Validate reports every problem with the policy.
func (b Config) Validate() error {
	var errs []error
	switch b.Policy {
	case PolicyExponential, PolicyFibonacci, PolicyConstant:
	default:
		errs = append(errs, cfg.Errorf("policy", "must be exponential, fibonacci or constant, not %q", b.Policy))
	}
	if b.Initial <= 0 {
		errs = append(errs, cfg.Errorf("initial", "must be greater than 0"))
	}
	if b.Max != 0 && b.Max < b.Initial {
		errs = append(errs, cfg.Errorf("max", "must not be less than initial (%s)", b.Initial))
	}
	if b.Attempts < 1 {
		errs = append(errs, cfg.Errorf("attempts", "must be at least 1"))
	}
	return errors.Join(errs...)
}

// String summarises the policy for logs and /status.
func (b Config) String() string {
	return fmt.Sprintf("%s %s..%s jitter %d%% x%d", b.Policy, b.Initial, b.Max, b.Jitter, b.Attempts)
}

// New turns a policy into a go-retry Backoff: the base sequence,
// jitter (± percent), a cap at max, attempts-1 retries, and maxDuration
// measured on clk from the moment of the call. Every step of every
// incident gets its own instance.
func New(c Config, clk clock.Clock) retry.Backoff {
	initial := c.Initial.D()
	if initial <= 0 {
		initial = time.Second
	}
	var b retry.Backoff
	switch c.Policy {
	case PolicyFibonacci:
		b = retry.NewFibonacci(initial)
	case PolicyConstant:
		b = retry.NewConstant(initial)
	default:
		b = retry.NewExponential(initial)
	}
	if c.Jitter > 0 {
		b = retry.WithJitterPercent(uint64(c.Jitter), b)
	}
	if c.Max > 0 {
		b = retry.WithCappedDuration(c.Max.D(), b)
	}
	attempts := max(c.Attempts, 1)
	b = retry.WithMaxRetries(uint64(attempts-1), b)
	if c.MaxDuration > 0 {
		b = withMaxDuration(c.MaxDuration.D(), clk, b)
	}
	return b
}

// withMaxDuration is go-retry's WithMaxDuration on an injected clock: it
// stops once the budget is spent and never waits past it.
func withMaxDuration(limit time.Duration, clk clock.Clock, next retry.Backoff) retry.Backoff {
	start := clk.Now()
	return retry.BackoffFunc(func() (time.Duration, bool) {
		left := limit - clk.Now().Sub(start)
		if left <= 0 {
			return 0, true
		}
		d, stop := next.Next()
		if stop {
			return 0, true
		}
		if d > left {
			d = left
		}
		return d, false
	})
}
