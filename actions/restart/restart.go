// Package restart is the built-in "restart" action. One kind, four modes,
// each in its own file, each registering itself in modes:
//
//   - signal:  signal the agent process in the shared process namespace (signal.go)
//   - probe:   fail medic's /livez/agent so the kubelet restarts the agent (probe.go)
//   - pod:     delete (or evict) a pod with a UID precondition (pod.go)
//   - rollout: patch the owning workload's restartedAt annotation (rollout.go)
package restart

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
)

// Kind is the YAML key.
const Kind = "restart"

// Config is actions.<name>.restart. Fields apply to the modes named.
type Config struct {
	// Mode is signal | probe | pod | rollout.
	Mode string `yaml:"mode" json:"mode"`

	// signal: find the agent by exe basename, cmdline regex, or pid file.
	Process     string       `yaml:"process" json:"process,omitempty"`
	Cmdline     string       `yaml:"cmdline" json:"cmdline,omitempty"`
	PidFile     string       `yaml:"pidFile" json:"pidFile,omitempty"`
	Signal      string       `yaml:"signal" json:"signal,omitempty"`           // default SIGTERM
	GracePeriod cfg.Duration `yaml:"gracePeriod" json:"gracePeriod,omitempty"` // then SIGKILL
	All         bool         `yaml:"all" json:"all,omitempty"`                 // allow more than one match
	ProcRoot    string       `yaml:"procRoot" json:"procRoot,omitempty"`       // default /proc
	// Scope limits the processes signal mode may pick: "pod" (only those in
	// medic's own pod, by cgroup; an error when medic cannot place its pod),
	// "any" (every process the procfs root shows), or empty: "pod" when
	// medic finds itself in a pod, else "any".
	Scope string `yaml:"scope" json:"scope,omitempty"`

	// probe: how long /livez/agent answers 503. Zero derives it from the
	// agent container's livenessProbe: failureThreshold × periodSeconds + one period.
	Hold             cfg.Duration `yaml:"hold" json:"hold,omitempty"`
	FailureThreshold int          `yaml:"failureThreshold" json:"failureThreshold,omitempty"`
	PeriodSeconds    int          `yaml:"periodSeconds" json:"periodSeconds,omitempty"`

	// pod / rollout: the target; defaults to medic's own pod (Downward API).
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	Pod       string `yaml:"pod" json:"pod,omitempty"`
	Evict     bool   `yaml:"evict" json:"evict,omitempty"`
	// rollout: the workload; found through ownerReferences when empty.
	WorkloadKind string `yaml:"workloadKind" json:"workloadKind,omitempty"` // Deployment | DaemonSet | StatefulSet
	WorkloadName string `yaml:"workloadName" json:"workloadName,omitempty"`
}

// Defaults.
const (
	DefaultSignal           = "SIGTERM"
	DefaultGracePeriod      = 10 * time.Second
	DefaultFailureThreshold = 3
	DefaultPeriodSeconds    = 10
)

func defaults() *Config {
	return &Config{
		Signal:           DefaultSignal,
		GracePeriod:      cfg.Duration(DefaultGracePeriod),
		ProcRoot:         "/proc",
		FailureThreshold: DefaultFailureThreshold,
		PeriodSeconds:    DefaultPeriodSeconds,
	}
}

// mode is one restart strategy.
type mode struct {
	validate func(c *Config) error
	build    func(c *Config, env actions.Env) (actions.Action, error)
}

// modes is filled by each mode file's init.
var modes = map[string]mode{}

func modeNames() string {
	return strings.Join(slices.Sorted(maps.Keys(modes)), ", ")
}

// Validate checks the mode and delegates to it.
func (c *Config) Validate() error {
	m, ok := modes[c.Mode]
	if !ok {
		return cfg.Errorf("mode", "must be one of %s, not %q", modeNames(), c.Mode)
	}
	if m.validate == nil {
		return nil
	}
	return m.validate(c)
}

func init() {
	actions.Register(actions.Kind{
		Name:      Kind,
		NewConfig: func() any { return defaults() },
		New: func(c any, env actions.Env) (actions.Action, error) {
			rc := c.(*Config)
			m, ok := modes[rc.Mode]
			if !ok {
				return nil, fmt.Errorf("restart: unknown mode %q", rc.Mode)
			}
			return m.build(rc, env)
		},
	})
}
