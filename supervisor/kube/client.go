// Package kube is medic's Kubernetes integration: the client and medic's
// own pod identity (Downward API), Kubernetes Events for every remediation
// attempt and outcome (EventSink, a remedy.Sink), and the medic.io/pause
// annotation on medic's pod (PauseWatcher, a remedy.Pauser).
//
// Outside a cluster medic runs without any of it: NewClient returns a nil
// Client and the reason, which the supervisor logs once.
package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/internal/kubeclient"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/medic-sidecar/medic/actions"
)

// Downward API environment variables naming medic's own pod.
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvNodeName     = "NODE_NAME"
)

// serviceAccountNamespace is where the kubelet mounts the pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Client defaults.
const (
	DefaultQPS     = 5
	DefaultBurst   = 10
	DefaultTimeout = 10 * time.Second
)

// Options configure NewClient.
type Options struct {
	// Kubeconfig is a kubeconfig file (medic's --kubeconfig flag). Empty
	// means in-cluster configuration.
	Kubeconfig string
	// Context is the kubeconfig context; empty means its current context.
	Context string
	// QPS and Burst bound medic's own request rate (client-side).
	QPS   float32
	Burst int
	// Timeout bounds each request.
	Timeout time.Duration
	// UserAgent defaults to "medic".
	UserAgent string
	// Getenv reads the Downward API variables; nil means os.Getenv.
	Getenv func(string) string
	// Logger receives the one-line "running without Kubernetes" notice.
	Logger *slog.Logger
}

// Identity is medic's own pod, from the Downward API.
type Identity struct {
	Namespace string
	Pod       string
	Node      string
}

// String renders namespace/pod (on node).
func (id Identity) String() string {
	s := id.Namespace + "/" + id.Pod
	if id.Node != "" {
		s += " on " + id.Node
	}
	return s
}

// Validate reports what is missing for features that act on medic's own
// pod (Events, the pause annotation, restart modes pod and rollout).
func (id Identity) Validate() error {
	var missing []string
	if id.Pod == "" {
		missing = append(missing, EnvPodName)
	}
	if id.Namespace == "" {
		missing = append(missing, EnvPodNamespace)
	}
	if len(missing) > 0 {
		return fmt.Errorf("medic's pod is unknown: set %s from the Downward API (fieldRef metadata.name / metadata.namespace)",
			strings.Join(missing, " and "))
	}
	return nil
}

// Client is a Kubernetes API client and medic's identity.
type Client struct {
	// Interface is medic's typed client (only the API groups it uses).
	Interface *kubeclient.Clientset
	// Config is the REST configuration it was built from.
	Config *rest.Config
	// Identity is medic's own pod.
	Identity Identity
	// Source says where the configuration came from ("in-cluster",
	// "kubeconfig /path").
	Source string
}

// ErrNotInCluster is the reason NewClient returns no client when medic is
// neither in a pod nor given a kubeconfig.
var ErrNotInCluster = errors.New("not running in a Kubernetes pod and no kubeconfig given")

// NewClient builds the client from a kubeconfig path or, without one, the
// in-cluster configuration. When medic is not in a cluster (or the pod has
// no service account token) it returns a nil Client, the reason, and a nil
// error: medic runs without Kubernetes and says so once (to opts.Logger,
// if set). An error means a configuration that was asked for is broken.
func NewClient(opts Options) (*Client, string, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var (
		rc     *rest.Config
		source string
		kcNS   string
	)
	if opts.Kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: opts.Kubeconfig}
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: opts.Context})
		c, err := cc.ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
		}
		rc, source = c, "kubeconfig "+opts.Kubeconfig
		kcNS, _, _ = cc.Namespace()
	} else {
		c, err := rest.InClusterConfig()
		if err != nil {
			reason := ErrNotInCluster.Error()
			if !errors.Is(err, rest.ErrNotInCluster) {
				reason = "in-cluster configuration unusable: " + err.Error()
			}
			if opts.Logger != nil {
				opts.Logger.Info("running without Kubernetes: no Events, no pause annotation, no restart modes pod/rollout", "reason", reason)
			}
			return nil, reason, nil
		}
		rc, source = c, "in-cluster"
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst, rc.Timeout = opts.QPS, opts.Burst, opts.Timeout
	if rc.QPS == 0 {
		rc.QPS = DefaultQPS
	}
	if rc.Burst == 0 {
		rc.Burst = DefaultBurst
	}
	if rc.Timeout == 0 {
		rc.Timeout = DefaultTimeout
	}
	rc.UserAgent = opts.UserAgent
	if rc.UserAgent == "" {
		rc.UserAgent = "medic"
	}
	id := IdentityFromEnv(getenv)
	if id.Namespace == "" {
		id.Namespace = kcNS
	}
	c, err := NewForConfig(rc, id)
	if err != nil {
		return nil, "", err
	}
	c.Source = source
	return c, "", nil
}

// NewForConfig builds a Client from a REST configuration and an identity.
func NewForConfig(rc *rest.Config, id Identity) (*Client, error) {
	cs, err := kubeclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &Client{Interface: cs, Config: rc, Identity: id, Source: "config"}, nil
}

// IdentityFromEnv reads POD_NAME, POD_NAMESPACE and NODE_NAME; the
// namespace falls back to the service account's namespace file.
func IdentityFromEnv(getenv func(string) string) Identity {
	id := Identity{
		Pod:       strings.TrimSpace(getenv(EnvPodName)),
		Namespace: strings.TrimSpace(getenv(EnvPodNamespace)),
		Node:      strings.TrimSpace(getenv(EnvNodeName)),
	}
	if id.Namespace == "" {
		if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
			id.Namespace = strings.TrimSpace(string(b))
		}
	}
	return id
}

// ActionsEnv is what actions.Env.Kube needs: the clientset and medic's pod.
// A nil Client gives nil (restart modes pod and rollout then refuse to build).
func (c *Client) ActionsEnv() *actions.KubeEnv {
	if c == nil {
		return nil
	}
	return &actions.KubeEnv{Client: c.Interface, Namespace: c.Identity.Namespace, Pod: c.Identity.Pod, Node: c.Identity.Node}
}
