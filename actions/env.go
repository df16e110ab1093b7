package actions

import (
	"context"
	"log/slog"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/kubeclient"
	"github.com/medic-sidecar/medic/internal/livez"
	"github.com/medic-sidecar/medic/supervisor/probe"
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
	AgentLiveness *livez.Switch
	// Kube is the Kubernetes API and medic's own pod; nil outside a
	// cluster (restart modes pod and rollout need it).
	Kube *KubeEnv
	// Plugins runs remediation plugins (plugins.Host) for the plugin kind.
	Plugins PluginHost
}

// ClockOrReal is Clock, or the real clock.
func (e Env) ClockOrReal() clock.Clock {
	if e.Clock == nil {
		return clock.Real{}
	}
	return e.Clock
}

// Log is the action's logger (Logger, or one that drops everything) with
// the action's name and kind on every line.
func (e Env) Log(kind string) *slog.Logger {
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("action", e.Name, "kind", kind)
}

// KubeEnv is medic's Kubernetes access: a clientset and its own pod
// (Downward API). supervisor/kube's Client.ActionsEnv builds it.
type KubeEnv struct {
	Client    *kubeclient.Clientset
	Namespace string
	Pod       string
	Node      string
}

// ProbeFinder looks up a running probe by name; an action asserts the
// capability it needs and defines it (reconnect's Redialer).
type ProbeFinder interface {
	Probe(name string) (probe.Probe, bool)
}

// PluginHost runs external remediation plugins (plugins.Host). Validate
// returns the plugin's problems with config as cfg.FieldErrors relative
// to config; Remediate runs one attempt. config is JSON.
type PluginHost interface {
	Validate(ctx context.Context, plugin string, config []byte) error
	Remediate(ctx context.Context, plugin string, inc Incident, config []byte) (Result, error)
}
