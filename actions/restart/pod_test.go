package restart

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/medic-sidecar/medic/actions"
	kcorev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	"github.com/medic-sidecar/medic/internal/kubetest"
)

func TestPodDeletesMedicsOwnPodWithItsUID(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	pod := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "self-delete"}})

	// Default target: medic's own pod (the Downward API identity).
	a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode = ModePod })
	res, err := run(a, false)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(res.Message, "deleted pod "+ke.Namespace+"/self-delete (uid "+string(pod.UID)+")") || res.Details["uid"] != string(pod.UID) {
		t.Errorf("result = %+v", res)
	}
	if _, ok := getPod(t, admin, ke.Namespace, pod.Name); ok {
		t.Error("pod still exists")
	}
	// Gone now: not found is permanent.
	_, err = run(a, false)
	wantPermanent(t, err, "not found")
}

func TestPodRefusesAReplacedPod(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	old := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "replaced"}})
	a := build(t, kubeEnv(t, ke, ""), func(c *Config) { c.Mode, c.Pod = ModePod, "replaced" })
	var replacement *corev1.Pod
	// Between medic reading the pod and deleting it, the pod is replaced
	// by another one with the same name (a new UID).
	a.(*podRestart).afterGet = func(*kcorev1.Pod) {
		forceDelete(admin, ke.Namespace, "replaced")
		replacement = createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "replaced"}})
	}
	_, err := run(a, false)
	wantPermanent(t, err, "the pod was replaced since it was read (now uid "+string(replacement.UID)+")")
	if !strings.Contains(err.Error(), string(old.UID)) {
		t.Errorf("error does not name the uid medic read: %v", err)
	}
	cur, ok := getPod(t, admin, ke.Namespace, "replaced")
	if !ok || cur.UID != replacement.UID {
		t.Fatalf("the replacement pod was touched: exists %v", ok)
	}
}

func TestPodForbiddenOutsideItsNamespace(t *testing.T) {
	ke := kubetest.Start(t)
	createPod(t, ke.AdminClient(t), "default", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "not-medics"}})
	a := build(t, kubeEnv(t, ke, ""), func(c *Config) { c.Mode, c.Namespace, c.Pod = ModePod, "default", "not-medics" })
	_, err := run(a, false)
	wantPermanent(t, err, "forbidden: medic's ServiceAccount lacks this permission")
	if _, ok := getPod(t, ke.AdminClient(t), "default", "not-medics"); !ok {
		t.Error("pod outside medic's namespace was deleted")
	}
}

func TestPodDryRunKeepsThePod(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	pod := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dry"}})
	for _, evict := range []bool{false, true} {
		a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode, c.Evict = ModePod, evict })
		res, err := run(a, true)
		if err != nil || !strings.HasPrefix(res.Message, "dry run: the API server would have") {
			t.Fatalf("evict=%v: %+v, %v", evict, res, err)
		}
		if _, ok := getPod(t, admin, ke.Namespace, pod.Name); !ok {
			t.Fatalf("evict=%v: dry run deleted the pod", evict)
		}
	}
}

func TestPodOnANodeTerminatesGracefully(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	// With a nodeName the API server deletes gracefully: the pod stays,
	// terminating, until its kubelet confirms (no kubelet runs here).
	pod := createPod(t, admin, ke.Namespace, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "on-node"},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: podSpec.Containers},
	})
	a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode = ModePod })
	if _, err := run(a, false); err != nil {
		t.Fatal(err)
	}
	cur, ok := getPod(t, admin, ke.Namespace, pod.Name)
	if !ok || cur.DeletionTimestamp == nil {
		t.Fatalf("want a terminating pod, got exists=%v", ok)
	}
	// A second attempt sees it terminating and does not delete again.
	res, err := run(a, false)
	if err != nil || !strings.Contains(res.Message, "already terminating") {
		t.Fatalf("second attempt: %+v, %v", res, err)
	}
}

func TestPodEviction(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	pod := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evict-me"}})
	a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode, c.Evict = ModePod, true })
	res, err := run(a, false)
	if err != nil || !strings.Contains(res.Message, "evicted pod") {
		t.Fatalf("evict: %+v, %v", res, err)
	}
	if _, ok := getPod(t, admin, ke.Namespace, pod.Name); ok {
		t.Error("evicted pod still exists")
	}
}

func TestPodEvictionRespectsADisruptionBudget(t *testing.T) {
	ke := kubetest.Start(t)
	admin := ke.AdminClient(t)
	ctx := context.Background()
	labels := map[string]string{"app": "guarded"}
	pod := createPod(t, admin, ke.Namespace, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Labels: labels}})
	// A running pod (pending ones may always be evicted) ...
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := admin.CoreV1().Pods(ke.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// ... under a budget that allows no disruption.
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}
	if _, err := admin.PolicyV1().PodDisruptionBudgets(ke.Namespace).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.PolicyV1().PodDisruptionBudgets(ke.Namespace).Delete(context.Background(), "guarded", metav1.DeleteOptions{})
	})
	a := build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode, c.Evict = ModePod, true })
	_, err := run(a, false)
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "PodDisruptionBudget") {
		t.Fatalf("err = %v (permanent %v), want a retryable PodDisruptionBudget error", err, actions.IsPermanent(err))
	}
	t.Logf("blocked: %v", err)
	if _, ok := getPod(t, admin, ke.Namespace, pod.Name); !ok {
		t.Fatal("a pod guarded by a budget was deleted")
	}
	// Plain delete (evict: false) does not consult budgets: the operator's choice.
	a = build(t, kubeEnv(t, ke, pod.Name), func(c *Config) { c.Mode = ModePod })
	if _, err := run(a, false); err != nil {
		t.Fatal(err)
	}
}
