package actions

import (
	"context"
	"log/slog"
	"time"

	"github.com/medic-sidecar/medic/internal/kubeclient"

	"github.com/medic-sidecar/medic/internal/clock"
)

// Env is what the supervisor hands an action kind when it builds one.
type Env struct {
	Name     string // the action's name in config
	Logger   *slog.Logger
	Clock    clock.Clock
	StateDir string
	// Probes finds a running probe by name (e.g. for reconnect probe:).
	Probes ProbeFinder
	// AgentLiveness is medic's /livez/agent endpoint (restart mode probe).
	AgentLiveness LivenessSwitch
	// Kube is the Kubernetes API and medic's own pod; nil outside a
	// cluster (restart modes pod and rollout need it).
	Kube *KubeEnv
	// Plugins runs remediation plugins (plugins.Host) for the plugin kind.
	Plugins PluginHost
}

// KubeEnv is medic's Kubernetes access: a clientset and its own pod
// (Downward API). supervisor/kube's Client.ActionsEnv builds it.
type KubeEnv struct {
	Client    *kubeclient.Clientset
	Namespace string
	Pod       string
	Node      string
}

// ProbeFinder looks up a running probe by name. The value is the probe
// itself; callers type-assert the capability they need.
type ProbeFinder interface {
	Probe(name string) (any, bool)
}

// Redialer is implemented by probes that own a connection medic can
// re-dial on demand (reconnect probe:). Redial drops the current
// connection, resets the reconnect backoff and dials again now.
type Redialer interface {
	Redial(reason string)
}

// LivenessSwitch is the agent-liveness endpoint (/livez/agent) that the
// restart action's probe mode flips to failing for a hold period.
type LivenessSwitch interface {
	// FailFor makes the endpoint answer 503 for d and returns when it will recover.
	FailFor(d time.Duration) time.Time
}

// PluginHost runs external remediation plugins (plugins.Host). Validate
// returns the plugin's problems with config as cfg.FieldErrors relative
// to config; Remediate runs one attempt. config is JSON.
type PluginHost interface {
	Validate(ctx context.Context, plugin string, config []byte) error
	Remediate(ctx context.Context, plugin string, inc Incident, config []byte) (Result, error)
}
