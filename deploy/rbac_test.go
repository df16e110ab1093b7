package deploy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/medic-sidecar/medic/internal/kubetest"
)

// access is one API permission.
type access struct {
	verb, group, resource, subresource string
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	return a.verb + " " + r
}

// needed is every call medic makes, and why. Keep it in step with the code:
// the restart and kube tests make these calls with the medic user too.
var needed = []access{
	{"create", "events.k8s.io", "events", ""}, // supervisor/kube EventSink: new Event
	{"patch", "events.k8s.io", "events", ""},  // EventSink: series count update
	{"get", "", "pods", ""},                   // EventSink pod UID; restart pod/rollout read the target
	{"list", "", "pods", ""},                  // PauseWatcher informer (field selector on its pod)
	{"watch", "", "pods", ""},                 // PauseWatcher informer
	{"delete", "", "pods", ""},                // restart mode pod
	{"create", "", "pods", "eviction"},        // restart mode pod, evict: true
	{"get", "apps", "replicasets", ""},        // rollout: Pod -> ReplicaSet -> Deployment
	{"get", "apps", "deployments", ""},        // rollout: UID and strategy checks
	{"patch", "apps", "deployments", ""},      // rollout: restartedAt
	{"get", "apps", "daemonsets", ""},
	{"patch", "apps", "daemonsets", ""},
	{"get", "apps", "statefulsets", ""},
	{"patch", "apps", "statefulsets", ""},
	{"get", "coordination.k8s.io", "leases", ""},    // fleet: read a slot
	{"create", "coordination.k8s.io", "leases", ""}, // fleet: first use of a slot
	{"update", "coordination.k8s.io", "leases", ""}, // fleet: take, renew, give back
}

// notNeeded must stay denied.
var notNeeded = []access{
	{"list", "", "secrets", ""},
	{"get", "", "secrets", ""},
	{"create", "", "pods", ""},
	{"update", "", "pods", ""},
	{"patch", "", "pods", ""},
	{"get", "", "configmaps", ""},
	{"create", "", "events", ""}, // core/v1 Events: medic writes events.k8s.io only
	{"delete", "events.k8s.io", "events", ""},
	{"delete", "apps", "deployments", ""},
	{"update", "apps", "deployments", ""},
	{"patch", "apps", "replicasets", ""},
	{"delete", "apps", "daemonsets", ""},
	{"create", "", "pods", "exec"},
	{"get", "", "nodes", ""},
	{"delete", "coordination.k8s.io", "leases", ""}, // fleet slots are given back, never deleted
	{"list", "coordination.k8s.io", "leases", ""},   // slots are read by name
	{"patch", "coordination.k8s.io", "leases", ""},
}

func TestRBACMedicRoleIsSufficientAndMinimal(t *testing.T) {
	env := kubetest.Start(t)
	medic := env.MedicClientset(t)
	ctx := context.Background()
	review := func(ns string, a access) bool {
		t.Helper()
		r, err := medic.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review %s: %v", a, err)
		}
		return r.Status.Allowed
	}
	for _, a := range needed {
		if !review(env.Namespace, a) {
			t.Errorf("medic may not %s in its namespace: deploy/base/role.yaml is not enough", a)
		}
		if review("default", a) {
			t.Errorf("medic may %s outside its namespace", a)
		}
	}
	for _, a := range notNeeded {
		if review(env.Namespace, a) {
			t.Errorf("medic may %s, which it never needs", a)
		}
	}
}

// TestRBACMedicCallsForReal makes the calls themselves with the medic
// token (the access review above asks the authorizer; this asks the API).
func TestRBACMedicCallsForReal(t *testing.T) {
	env := kubetest.Start(t)
	admin, medic := env.AdminClient(t), env.MedicClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := env.Namespace
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "rbac-probe"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s as medic: %v", what, err)
		}
	}
	_, err = medic.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	must("get pod", err)
	_, err = medic.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod.Name})
	must("list pods", err)
	w, err := medic.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod.Name})
	must("watch pods", err)
	if w != nil {
		w.Stop()
	}
	ev, err := medic.EventsV1().Events(ns).Create(ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("rbac-probe.%x", time.Now().UnixNano())},
		EventTime:  metav1.NowMicro(), ReportingController: "medic.io/medic", ReportingInstance: "rbac-probe",
		Action: "Test", Reason: "RemediationStarted", Type: "Normal", Note: "rbac test",
		Regarding: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
	}, metav1.CreateOptions{})
	must("create event", err)
	if ev != nil {
		_, err = medic.EventsV1().Events(ns).Patch(ctx, ev.Name, types.MergePatchType,
			[]byte(fmt.Sprintf(`{"series":{"count":2,"lastObservedTime":%q}}`, metav1.NowMicro().Format(metav1.RFC3339Micro))), metav1.PatchOptions{})
		must("patch event series", err)
	}
	must("evict pod (dry run)", medic.CoreV1().Pods(ns).EvictV1(ctx, evictionOf(pod, true)))
	uid := pod.UID
	must("delete pod", medic.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}))

	// Denied: secrets, and anything outside its namespace.
	if _, err := medic.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as medic: %v, want forbidden", err)
	}
	if _, err := medic.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods in default as medic: %v, want forbidden", err)
	}
	if _, err := medic.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create pod as medic: %v, want forbidden", err)
	}
}

func evictionOf(pod *corev1.Pod, dry bool) *policyv1.Eviction {
	e := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}}
	if dry {
		e.DeleteOptions = &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}
	}
	return e
}

func TestRBACHarnessUsesDeployBase(t *testing.T) {
	r, err := kubetest.LoadRBAC("")
	if err != nil {
		t.Fatal(err)
	}
	if r.ServiceAccount != "medic" || len(r.Roles) != 1 || len(r.RoleBindings) != 1 || len(r.ClusterRoles) != 0 {
		t.Fatalf("deploy/base RBAC: sa %q, %d roles, %d bindings, %d cluster roles",
			r.ServiceAccount, len(r.Roles), len(r.RoleBindings), len(r.ClusterRoles))
	}
	env := kubetest.Start(t)
	if env.MedicUser != "system:serviceaccount:"+kubetest.Namespace+":medic" {
		t.Errorf("medic user %q", env.MedicUser)
	}
}
