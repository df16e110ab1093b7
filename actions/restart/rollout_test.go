package restart

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/medic-sidecar/medic/internal/kubetest"
)

// No controllers run against the test API server: Deployments create no
// ReplicaSets, so the chain Deployment → ReplicaSet → Pod is built by hand
// with ownerReferences, as the controllers would.

func template(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       *podSpec.DeepCopy(),
	}
}

func selector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func controllerRef(kind, name string, uid types.UID) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}
}

func createDeployment(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.DeploymentSpec{Selector: selector(name), Template: template(name)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	t.Cleanup(func() { _ = cs.AppsV1().Deployments(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return d
}

// deploymentChain creates Deployment name, ReplicaSet name-abc owned by it,
// and Pod name-abc-xyz owned by the ReplicaSet.
func deploymentChain(t *testing.T, cs kubernetes.Interface, ns, name string) (*appsv1.Deployment, *appsv1.ReplicaSet, *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	d := createDeployment(t, cs, ns, name)
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-abc", OwnerReferences: []metav1.OwnerReference{controllerRef("Deployment", d.Name, d.UID)}},
		Spec:       appsv1.ReplicaSetSpec{Selector: selector(name), Template: template(name)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create replicaset: %v", err)
	}
	t.Cleanup(func() { _ = cs.AppsV1().ReplicaSets(ns).Delete(context.Background(), rs.Name, metav1.DeleteOptions{}) })
	pod := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: rs.Name + "-xyz", Labels: map[string]string{"app": name},
		OwnerReferences: []metav1.OwnerReference{controllerRef("ReplicaSet", rs.Name, rs.UID)},
	}})
	return d, rs, pod
}

func restartedAt(t *testing.T, cs kubernetes.Interface, ns, kind, name string) string {
	t.Helper()
	ctx := context.Background()
	var (
		tmpl corev1.PodTemplateSpec
		err  error
	)
	switch kind {
	case KindDeployment:
		var d *appsv1.Deployment
		if d, err = cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			tmpl = d.Spec.Template
		}
	case KindDaemonSet:
		var d *appsv1.DaemonSet
		if d, err = cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			tmpl = d.Spec.Template
		}
	case KindStatefulSet:
		var s *appsv1.StatefulSet
		if s, err = cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			tmpl = s.Spec.Template
		}
	}
	if err != nil {
		t.Fatalf("get %s %s: %v", kind, name, err)
	}
	return tmpl.Annotations[RestartedAtAnnotation]
}

func TestRolloutPatchesTheDeploymentThroughOwnerReferences(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	d, _, pod := deploymentChain(t, admin, ke.Namespace, "relay")
	// medic runs in that pod: the default target is its own pod's owner.
	a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode = ModeRollout })
	res, err := run(a, false)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := epoch.Format(time.RFC3339)
	if got := restartedAt(t, admin, ke.Namespace, KindDeployment, d.Name); got != want {
		t.Fatalf("restartedAt = %q, want %q", got, want)
	}
	if res.Details["workload"] != "Deployment/relay" || !strings.Contains(res.Message, RestartedAtAnnotation+"="+want) {
		t.Errorf("result = %+v", res)
	}
	// The pod template changed and nothing else: labels and containers stay.
	cur, _ := admin.AppsV1().Deployments(ke.Namespace).Get(context.Background(), d.Name, metav1.GetOptions{})
	if cur.Spec.Template.Labels["app"] != "relay" || len(cur.Spec.Template.Spec.Containers) != 1 || cur.Generation != d.Generation+1 {
		t.Errorf("template after patch: %+v (generation %d -> %d)", cur.Spec.Template, d.Generation, cur.Generation)
	}
}

func TestRolloutDaemonSetAndStatefulSetDirectly(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	ctx := context.Background()
	ds, err := admin.AppsV1().DaemonSets(ke.Namespace).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "spire-agent"},
		Spec:       appsv1.DaemonSetSpec{Selector: selector("spire-agent"), Template: template("spire-agent")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.AppsV1().DaemonSets(ke.Namespace).Delete(context.Background(), ds.Name, metav1.DeleteOptions{})
	})
	ss, err := admin.AppsV1().StatefulSets(ke.Namespace).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "store"},
		Spec:       appsv1.StatefulSetSpec{ServiceName: "store", Selector: selector("store"), Template: template("store")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.AppsV1().StatefulSets(ke.Namespace).Delete(context.Background(), ss.Name, metav1.DeleteOptions{})
	})
	for _, c := range []struct {
		kind, name string
		uid        types.UID
	}{{KindDaemonSet, ds.Name, ds.UID}, {KindStatefulSet, ss.Name, ss.UID}} {
		pod := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: c.name + "-0", OwnerReferences: []metav1.OwnerReference{controllerRef(c.kind, c.name, c.uid)}}})
		a := build(t, kubeEnv(t, ke, pod.Name), func(cf *Config) { cf.Mode = ModeRollout })
		if _, err := run(a, false); err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		if got := restartedAt(t, admin, ke.Namespace, c.kind, c.name); got != epoch.Format(time.RFC3339) {
			t.Errorf("%s restartedAt = %q", c.kind, got)
		}
	}

	// Named in config instead of found through a pod.
	a := build(t, kubeEnv(t, ke, ""), func(c *Config) {
		c.Mode, c.WorkloadKind, c.WorkloadName = ModeRollout, KindDaemonSet, "spire-agent"
	})
	a.(*rolloutRestart).clock.(interface{ Advance(time.Duration) }).Advance(time.Hour)
	if _, err := run(a, false); err != nil {
		t.Fatal(err)
	}
	if got := restartedAt(t, admin, ke.Namespace, KindDaemonSet, "spire-agent"); got != epoch.Add(time.Hour).Format(time.RFC3339) {
		t.Errorf("named DaemonSet restartedAt = %q", got)
	}

	// An OnDelete DaemonSet would roll nothing: refused.
	ds, _ = admin.AppsV1().DaemonSets(ke.Namespace).Get(ctx, "spire-agent", metav1.GetOptions{})
	ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	if _, err := admin.AppsV1().DaemonSets(ke.Namespace).Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = run(a, false)
	wantPermanent(t, err, "updateStrategy is OnDelete")
}

func TestRolloutRefusesAnOwnerItCannotProve(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	ctx := context.Background()

	// The pod's ReplicaSet reference carries a UID that is not the
	// ReplicaSet's (the ReplicaSet was recreated under the same name).
	d, rs, _ := deploymentChain(t, admin, ke.Namespace, "stale")
	orphan := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "stale-other", OwnerReferences: []metav1.OwnerReference{controllerRef("ReplicaSet", rs.Name, "00000000-0000-0000-0000-000000000001")}}})
	a := build(t, kubeEnv(t, ke, orphan.Name), func(c *Config) { c.Mode = ModeRollout })
	_, err := run(a, false)
	wantPermanent(t, err, "not provably the owner")
	if got := restartedAt(t, admin, ke.Namespace, KindDeployment, d.Name); got != "" {
		t.Errorf("deployment patched: %q", got)
	}

	// The Deployment is replaced between medic reading it and patching it:
	// the UID in the patch makes the API server refuse.
	d2, _, pod := deploymentChain(t, admin, ke.Namespace, "swapped")
	a = build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode = ModeRollout })
	a.(*rolloutRestart).beforePatch = func() {
		if err := admin.AppsV1().Deployments(ke.Namespace).Delete(ctx, d2.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		createDeployment(t, admin, ke.Namespace, d2.Name)
	}
	_, err = run(a, false)
	wantPermanent(t, err, "the workload was replaced since it was read")
	if got := restartedAt(t, admin, ke.Namespace, KindDeployment, d2.Name); got != "" {
		t.Errorf("replacement deployment patched: %q", got)
	}

	// A bare pod and a ReplicaSet without a Deployment: nothing to roll.
	bare := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bare"}})
	a = build(t, kubeEnv(t, ke, bare.Name), func(c *Config) { c.Mode = ModeRollout })
	_, err = run(a, false)
	wantPermanent(t, err, "has no controller ownerReference")

	lone, err := admin.AppsV1().ReplicaSets(ke.Namespace).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "lone"},
		Spec:       appsv1.ReplicaSetSpec{Selector: selector("lone"), Template: template("lone")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.AppsV1().ReplicaSets(ke.Namespace).Delete(context.Background(), lone.Name, metav1.DeleteOptions{})
	})
	lonePod := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "lone-1", Labels: map[string]string{"app": "lone"},
		OwnerReferences: []metav1.OwnerReference{controllerRef("ReplicaSet", lone.Name, lone.UID)}}})
	a = build(t, kubeEnv(t, ke, lonePod.Name), func(c *Config) { c.Mode = ModeRollout })
	_, err = run(a, false)
	wantPermanent(t, err, "which no Deployment controls")
}

func TestRolloutDryRunAndPermissions(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	d, _, pod := deploymentChain(t, admin, ke.Namespace, "dry-rollout")
	a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode = ModeRollout })
	res, err := run(a, true)
	if err != nil || !strings.HasPrefix(res.Message, "dry run:") {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if got := restartedAt(t, admin, ke.Namespace, KindDeployment, d.Name); got != "" {
		t.Errorf("dry run patched: %q", got)
	}
	// Outside medic's namespace the Role grants nothing.
	other := createDeployment(t, admin, "default", "elsewhere")
	a = build(t, kubeEnv(t, ke, ""), func(c *Config) {
		c.Mode, c.Namespace, c.WorkloadKind, c.WorkloadName = ModeRollout, "default", KindDeployment, other.Name
	})
	_, err = run(a, false)
	wantPermanent(t, err, "forbidden")
}
