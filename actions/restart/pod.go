package restart

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	policyv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/policy/v1"
)

// ModePod deletes (or evicts) a pod; its controller creates a new one.
const ModePod = "pod"

func init() {
	modes[ModePod] = mode{validate: validatePod, build: buildPod}
}

func validatePod(c *Config) error {
	var errs []error
	if c.WorkloadKind != "" || c.WorkloadName != "" {
		errs = append(errs, cfg.Errorf("workloadKind", "applies to mode rollout only"))
	}
	if c.Namespace != "" && c.Pod == "" {
		errs = append(errs, cfg.Errorf("pod", "must be set when namespace is (the default target is medic's own pod)"))
	}
	return errors.Join(errs...)
}

// kubeTarget resolves the namespace and pod an action acts on: the
// configured ones, else medic's own pod.
func kubeTarget(c *Config, env actions.Env, mode string) (*actions.KubeEnv, string, string, error) {
	k := env.Kube
	if k == nil || k.Client == nil {
		return nil, "", "", fmt.Errorf("restart mode %s needs the Kubernetes API: medic is not running in a cluster (no in-cluster config or --kubeconfig)", mode)
	}
	ns, pod := c.Namespace, c.Pod
	if ns == "" {
		ns = k.Namespace
	}
	if pod == "" {
		pod = k.Pod
	}
	if ns == "" || pod == "" {
		return nil, "", "", fmt.Errorf("restart mode %s: no target pod: set pod (and namespace) or POD_NAME and POD_NAMESPACE from the Downward API", mode)
	}
	return k, ns, pod, nil
}

func buildPod(c *Config, env actions.Env) (actions.Action, error) {
	k, ns, pod, err := kubeTarget(c, env, ModePod)
	if err != nil {
		return nil, err
	}
	return &podRestart{kube: k, namespace: ns, pod: pod, evict: c.Evict}, nil
}

// podRestart deletes or evicts one pod, the one it read: the delete
// carries a UID precondition, so a pod recreated under the same name in
// between is never touched.
type podRestart struct {
	kube      *actions.KubeEnv
	namespace string
	pod       string
	evict     bool
	// afterGet, when set (tests), runs between reading the pod and deleting it.
	afterGet func(*corev1.Pod)
}

var _ actions.Action = (*podRestart)(nil)

// Run reads the pod, then deletes or evicts exactly that pod (UID
// precondition). In a dry run the API server does everything but persist
// (DryRun=All), so permissions, preconditions and PodDisruptionBudgets are
// still checked.
func (p *podRestart) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	ref := p.namespace + "/" + p.pod
	verb := "delete"
	if p.evict {
		verb = "evict"
	}
	res := actions.Result{Details: map[string]any{"pod": ref, "evict": p.evict}}
	pods := p.kube.Client.Pods(p.namespace)
	pod, err := pods.Get(ctx, p.pod, metav1.GetOptions{})
	if err != nil {
		res.Message = "cannot read pod " + ref
		return res, apiError(fmt.Sprintf("restart pod: get pod %s", ref), err)
	}
	uid := pod.UID
	res.Details["uid"] = string(uid)
	if pod.DeletionTimestamp != nil {
		res.Message = fmt.Sprintf("pod %s (uid %s) is already terminating since %s", ref, uid, pod.DeletionTimestamp.UTC().Format("15:04:05Z"))
		return res, nil
	}
	if p.afterGet != nil {
		p.afterGet(pod)
	}
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	if inc.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if p.evict {
		// pods.EvictV1 without client-go's own retries: a budget refusal is a
		// 429 with Retry-After, which client-go would otherwise retry (up to
		// 10 times, 10 s apart) inside this attempt. The step's backoff is
		// the retry policy.
		err = p.kube.Client.CoreREST().Post().
			Namespace(p.namespace).Resource("pods").Name(p.pod).SubResource("eviction").
			Body(&policyv1.Eviction{
				ObjectMeta:    metav1.ObjectMeta{Name: p.pod, Namespace: p.namespace},
				DeleteOptions: &opts,
			}).
			MaxRetries(0).Do(ctx).Error()
	} else {
		err = pods.Delete(ctx, p.pod, opts)
	}
	if err != nil {
		res.Message = fmt.Sprintf("%s pod %s failed", verb, ref)
		return res, p.deleteError(ctx, verb, ref, uid, err)
	}
	res.Message = fmt.Sprintf("deleted pod %s (uid %s)", ref, uid)
	if p.evict {
		res.Message = fmt.Sprintf("evicted pod %s (uid %s)", ref, uid)
	}
	if inc.DryRun {
		res.Message = "dry run: the API server would have " + res.Message
	}
	return res, nil
}

func (p *podRestart) deleteError(ctx context.Context, verb, ref string, uid types.UID, err error) error {
	what := fmt.Sprintf("restart pod: %s pod %s (uid %s)", verb, ref, uid)
	switch {
	case apierrors.IsConflict(err):
		// The UID precondition failed: the pod was replaced after we read it.
		now := "gone"
		if cur, gerr := p.kube.Client.Pods(p.namespace).Get(ctx, p.pod, metav1.GetOptions{}); gerr == nil {
			now = "uid " + string(cur.UID)
		}
		return actions.Permanent(fmt.Errorf("%s: refused, the pod was replaced since it was read (now %s); not deleting a pod medic did not read: %w", what, now, err))
	case apierrors.IsTooManyRequests(err) && verb == "evict" && strings.Contains(err.Error(), "disruption budget"):
		return fmt.Errorf("%s: blocked by a PodDisruptionBudget (will retry): %w", what, err)
	}
	return apiError(what, err)
}

// apiError classifies a Kubernetes API error for the remedy engine:
// permanent when retrying cannot help (not found, forbidden, invalid,
// unauthorized), retryable otherwise (timeouts, 5xx, 429, conflicts,
// connection errors) so the step's backoff applies.
func apiError(what string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return actions.Permanent(fmt.Errorf("%s: not found: %w", what, err))
	case apierrors.IsForbidden(err):
		return actions.Permanent(fmt.Errorf("%s: forbidden: medic's ServiceAccount lacks this permission (see deploy/base/role.yaml): %w", what, err))
	case apierrors.IsUnauthorized(err):
		return actions.Permanent(fmt.Errorf("%s: unauthorized: medic's credentials were refused: %w", what, err))
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err):
		return actions.Permanent(fmt.Errorf("%s: rejected by the API server: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}
