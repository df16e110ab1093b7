// Package actions defines what a remediation is: the Action contract, the
// Incident it acts on, the Permanent error that stops retries, each action
// kind's registry entry, and the backoff policy every step follows.
//
// Built-in kinds live in subpackages (actions/exec, …) and register
// themselves; plugins are adapted to the same interface.
package actions

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/medic-sidecar/medic/internal/registry"
)

// Action performs one remediation attempt. It must honour ctx's deadline
// and cancellation. A nil error means the action did its part; whether the
// problem is fixed is decided by verification, not by the action.
// Return Permanent(err) when retrying cannot help.
type Action interface {
	Run(ctx context.Context, inc Incident) (Result, error)
}

// Result is what an attempt leaves in the audit record.
type Result struct {
	// Message is a one-line human summary ("destroyed 2 sockets").
	Message string `json:"message,omitempty"`
	// Output is captured process output, already bounded by the action.
	Output string `json:"output,omitempty"`
	// Details are structured facts for the audit record.
	Details map[string]any `json:"details,omitempty"`
}

// Incident is the problem an action is asked to fix, as seen when the
// attempt was decided.
type Incident struct {
	ID          string            `json:"id"`
	Alert       string            `json:"alert"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Value       float64           `json:"value"`
	Step        int               `json:"step"`    // 1-based ladder step
	Action      string            `json:"action"`  // configured action name
	Attempt     int               `json:"attempt"` // 1-based attempt within the step
	MaxAttempts int               `json:"maxAttempts"`
	Started     time.Time         `json:"started"`
	DryRun      bool              `json:"dryRun,omitempty"`
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the step's remaining attempts
// are skipped and the ladder escalates.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or anything it wraps) was marked
// Permanent. Resource exhaustion is never permanent, however it was marked:
// it says how the machine was at that moment, not that retrying cannot help.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) && !ResourceExhausted(err)
}

// ResourceExhausted reports whether err (or anything it wraps) is the
// kernel running out of something for a while: file descriptors (EMFILE,
// ENFILE: "too many open files"), memory (ENOMEM, ENOBUFS) or processes
// (EAGAIN from fork).
func ResourceExhausted(err error) bool {
	for _, e := range exhausted {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

var exhausted = []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.ENOBUFS, syscall.EAGAIN}

// Kind is one action type, keyed by its YAML key under actions.<name>.
type Kind struct {
	// Name is the YAML key, e.g. "exec".
	Name string
	// NewConfig returns a pointer to a config struct filled with defaults.
	// If it implements cfg.Validator, Validate is called after decoding.
	NewConfig func() any
	// New builds the action from a decoded, validated config.
	New func(config any, env Env) (Action, error)
}

var kinds = registry.New[Kind]("action")

// Register adds a kind; a duplicate name panics (a programming error).
func Register(k Kind) { kinds.Register(k.Name, k) }

// Lookup returns the kind registered under name.
func Lookup(name string) (Kind, bool) { return kinds.Lookup(name) }

// Kinds lists registered kind names, sorted.
func Kinds() []string { return kinds.Names() }
