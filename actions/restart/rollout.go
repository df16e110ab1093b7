package restart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	appsv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/apps/v1"
)

// ModeRollout restarts a workload's pods the way `kubectl rollout restart`
// does: it sets the pod template annotation RestartedAtAnnotation and the
// workload's controller rolls the pods.
const ModeRollout = "rollout"

// RestartedAtAnnotation is the pod template annotation kubectl uses.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Workload kinds rollout can restart.
const (
	KindDeployment  = "Deployment"
	KindDaemonSet   = "DaemonSet"
	KindStatefulSet = "StatefulSet"
	kindReplicaSet  = "ReplicaSet"
)

func init() {
	modes[ModeRollout] = mode{validate: validateRollout, build: buildRollout}
}

func validateRollout(c *Config) error {
	var errs []error
	switch c.WorkloadKind {
	case "", KindDeployment, KindDaemonSet, KindStatefulSet:
	default:
		errs = append(errs, cfg.Errorf("workloadKind", "must be Deployment, DaemonSet or StatefulSet, not %q", c.WorkloadKind))
	}
	if (c.WorkloadKind == "") != (c.WorkloadName == "") {
		errs = append(errs, cfg.Errorf("workloadName", "workloadKind and workloadName go together (or neither: the owner of the pod is found through its ownerReferences)"))
	}
	if c.WorkloadName != "" && c.Pod != "" {
		errs = append(errs, cfg.Errorf("pod", "set either pod (its owner is restarted) or workloadKind/workloadName, not both"))
	}
	if c.Namespace != "" && c.Pod == "" && c.WorkloadName == "" {
		errs = append(errs, cfg.Errorf("namespace", "needs pod or workloadKind/workloadName (the default target is medic's own pod)"))
	}
	if c.Evict {
		errs = append(errs, cfg.Errorf("evict", "applies to mode pod only"))
	}
	return errors.Join(errs...)
}

func buildRollout(c *Config, env actions.Env) (actions.Action, error) {
	r := &rolloutRestart{clock: env.ClockOrReal()}
	if c.WorkloadName != "" {
		k := env.Kube
		if k == nil || k.Client == nil {
			return nil, fmt.Errorf("restart mode %s needs the Kubernetes API: medic is not running in a cluster (no in-cluster config or --kubeconfig)", ModeRollout)
		}
		ns := c.Namespace
		if ns == "" {
			ns = k.Namespace
		}
		if ns == "" {
			return nil, fmt.Errorf("restart mode %s: no namespace for %s %s: set namespace or POD_NAMESPACE from the Downward API", ModeRollout, c.WorkloadKind, c.WorkloadName)
		}
		r.kube, r.namespace, r.kind, r.name = k, ns, c.WorkloadKind, c.WorkloadName
		return r, nil
	}
	k, ns, pod, err := kubeTarget(c, env, ModeRollout)
	if err != nil {
		return nil, err
	}
	r.kube, r.namespace, r.pod = k, ns, pod
	return r, nil
}

// rolloutRestart patches a workload's pod template restartedAt annotation:
// the named workload, or the controller owning a pod (Pod → ReplicaSet →
// Deployment, or Pod → DaemonSet/StatefulSet), matched by UID at each hop.
type rolloutRestart struct {
	kube      *actions.KubeEnv
	clock     clock.Clock
	namespace string
	pod       string // find the owner of this pod, or:
	kind      string // the named workload
	name      string
	// beforePatch, when set (tests), runs between reading the workload and patching it.
	beforePatch func()
}

var _ actions.Action = (*rolloutRestart)(nil)

// workload is what gets patched: its kind, name and, when found through
// ownerReferences, the UID the reference names.
type workload struct {
	kind string
	name string
	uid  types.UID
}

func (w workload) String() string { return w.kind + "/" + w.name }

// Run finds the workload, checks a restart will roll pods, and patches the
// annotation with the UID as a precondition (a workload recreated under
// the same name is not the owner medic found). In a dry run the API server
// validates the patch without persisting it (DryRun=All).
func (r *rolloutRestart) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	res := actions.Result{Details: map[string]any{"namespace": r.namespace}}
	w := workload{kind: r.kind, name: r.name}
	if r.pod != "" {
		res.Details["pod"] = r.namespace + "/" + r.pod
		var err error
		if w, err = r.owner(ctx); err != nil {
			res.Message = "cannot find the workload owning pod " + r.namespace + "/" + r.pod
			return res, err
		}
	}
	res.Details["workload"] = w.String()
	uid, err := r.check(ctx, w)
	if err != nil {
		res.Message = "cannot restart " + w.String()
		return res, err
	}
	if r.beforePatch != nil {
		r.beforePatch()
	}
	at := r.clock.Now().UTC().Format(time.RFC3339)
	patch, err := json.Marshal(map[string]any{
		// A UID in the patch is a precondition: the API server refuses
		// (422 on metadata.uid) if the object's UID differs.
		"metadata": map[string]any{"uid": uid},
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{RestartedAtAnnotation: at},
		}}},
	})
	if err != nil {
		return res, fmt.Errorf("restart rollout: patch: %w", err)
	}
	opts := metav1.PatchOptions{FieldManager: "medic"}
	if inc.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	apps := r.kube.Client
	switch w.kind {
	case KindDeployment:
		_, err = apps.Deployments(r.namespace).Patch(ctx, w.name, types.StrategicMergePatchType, patch, opts)
	case KindDaemonSet:
		_, err = apps.DaemonSets(r.namespace).Patch(ctx, w.name, types.StrategicMergePatchType, patch, opts)
	case KindStatefulSet:
		_, err = apps.StatefulSets(r.namespace).Patch(ctx, w.name, types.StrategicMergePatchType, patch, opts)
	}
	what := fmt.Sprintf("restart rollout: patch %s %s/%s (uid %s)", RestartedAtAnnotation, r.namespace, w, uid)
	if err != nil {
		res.Message = "patch failed"
		if uidMismatch(err) {
			return res, actions.Permanent(fmt.Errorf("%s: refused, the workload was replaced since it was read: %w", what, err))
		}
		return res, apiError(what, err)
	}
	res.Details["restartedAt"] = at
	res.Message = fmt.Sprintf("set %s=%s on %s/%s", RestartedAtAnnotation, at, r.namespace, w)
	if inc.DryRun {
		res.Message = "dry run: the API server would have " + res.Message
	}
	return res, nil
}

// owner follows the pod's controller reference to a Deployment (through
// its ReplicaSet), DaemonSet or StatefulSet.
func (r *rolloutRestart) owner(ctx context.Context) (workload, error) {
	ref := r.namespace + "/" + r.pod
	pod, err := r.kube.Client.Pods(r.namespace).Get(ctx, r.pod, metav1.GetOptions{})
	if err != nil {
		return workload{}, apiError("restart rollout: get pod "+ref, err)
	}
	c := metav1.GetControllerOf(pod)
	if c == nil {
		return workload{}, actions.Permanent(fmt.Errorf("restart rollout: pod %s has no controller ownerReference; nothing rolls it out (use mode pod)", ref))
	}
	switch {
	case isApps(c) && (c.Kind == KindDaemonSet || c.Kind == KindStatefulSet):
		return workload{kind: c.Kind, name: c.Name, uid: c.UID}, nil
	case isApps(c) && c.Kind == kindReplicaSet:
		rs, err := r.kube.Client.ReplicaSets(r.namespace).Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return workload{}, apiError(fmt.Sprintf("restart rollout: get ReplicaSet %s/%s owning pod %s", r.namespace, c.Name, ref), err)
		}
		if rs.UID != c.UID {
			return workload{}, actions.Permanent(fmt.Errorf("restart rollout: ReplicaSet %s/%s has uid %s, but pod %s is owned by uid %s; not patching a workload that is not provably the owner",
				r.namespace, c.Name, rs.UID, ref, c.UID))
		}
		d := metav1.GetControllerOf(rs)
		if d == nil || !isApps(d) || d.Kind != KindDeployment {
			return workload{}, actions.Permanent(fmt.Errorf("restart rollout: pod %s belongs to ReplicaSet %s, which no Deployment controls; nothing rolls it out (use mode pod)", ref, rs.Name))
		}
		return workload{kind: KindDeployment, name: d.Name, uid: d.UID}, nil
	}
	return workload{}, actions.Permanent(fmt.Errorf("restart rollout: pod %s is controlled by %s %s/%s; rollout restarts Deployments, DaemonSets and StatefulSets only (use mode pod)",
		ref, c.APIVersion, c.Kind, c.Name))
}

func isApps(ref *metav1.OwnerReference) bool {
	return ref.APIVersion == appsv1.SchemeGroupVersion.String()
}

// check reads the workload, verifies it is the one referenced (UID) and
// that a template change will roll its pods; it returns the UID.
func (r *rolloutRestart) check(ctx context.Context, w workload) (types.UID, error) {
	apps := r.kube.Client
	get := fmt.Sprintf("restart rollout: get %s/%s", r.namespace, w)
	var (
		meta    metav1.ObjectMeta
		onlyDel bool
		paused  bool
		err     error
	)
	switch w.kind {
	case KindDeployment:
		var d *appsv1.Deployment
		if d, err = apps.Deployments(r.namespace).Get(ctx, w.name, metav1.GetOptions{}); err == nil {
			meta, paused = d.ObjectMeta, d.Spec.Paused
		}
	case KindDaemonSet:
		var d *appsv1.DaemonSet
		if d, err = apps.DaemonSets(r.namespace).Get(ctx, w.name, metav1.GetOptions{}); err == nil {
			meta, onlyDel = d.ObjectMeta, d.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType
		}
	case KindStatefulSet:
		var s *appsv1.StatefulSet
		if s, err = apps.StatefulSets(r.namespace).Get(ctx, w.name, metav1.GetOptions{}); err == nil {
			meta, onlyDel = s.ObjectMeta, s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType
		}
	default:
		return "", actions.Permanent(fmt.Errorf("restart rollout: unsupported workload kind %q", w.kind))
	}
	if err != nil {
		return "", apiError(get, err)
	}
	switch {
	case w.uid != "" && meta.UID != w.uid:
		return "", actions.Permanent(fmt.Errorf("%s: uid is %s, but the pod's owner reference names uid %s; not patching a workload that is not provably the owner", get, meta.UID, w.uid))
	case meta.DeletionTimestamp != nil:
		return "", actions.Permanent(fmt.Errorf("%s: being deleted", get))
	case paused:
		return "", actions.Permanent(fmt.Errorf("%s: the Deployment is paused, a template change would roll nothing", get))
	case onlyDel:
		return "", actions.Permanent(fmt.Errorf("%s: updateStrategy is OnDelete, a template change would roll nothing (use mode pod)", get))
	}
	return meta.UID, nil
}

// uidMismatch reports the API server refusing the patch's metadata.uid
// (422 "field is immutable" on metadata.uid, or a 409 precondition failure).
func uidMismatch(err error) bool {
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		return false
	}
	st := s.Status()
	if st.Code == 409 {
		return true
	}
	if st.Details == nil {
		return false
	}
	for _, c := range st.Details.Causes {
		if c.Field == "metadata.uid" {
			return true
		}
	}
	return false
}
