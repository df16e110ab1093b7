package kubeclient_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"reflect"

	upcoordv1 "k8s.io/api/coordination/v1"
	upcorev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/medic-sidecar/medic/internal/kubeclient"
	coordv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/coordination/v1"
	"github.com/medic-sidecar/medic/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// Every verb of Resource against the real API server, as the medic user
// (deploy/base's Role allows leases get/create/update): the typed client
// must round-trip objects exactly as client-go's generated clients do.
func TestLeaseVerbs(t *testing.T) {
	env := kubetest.Start(t)
	cs := env.MedicClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leases := cs.Leases(env.Namespace)
	name := fmt.Sprintf("kubeclient-%d", time.Now().UnixNano())

	holder := "a"
	created, err := leases.Create(ctx, &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "medic"}},
		Spec:       coordv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.UID == "" || created.ResourceVersion == "" {
		t.Fatalf("create returned no server fields: %+v", created.ObjectMeta)
	}
	got, err := leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil || *got.Spec.HolderIdentity != "a" {
		t.Fatalf("get: %v %+v", err, got)
	}
	holder2 := "b"
	got.Spec.HolderIdentity = &holder2
	upd, err := leases.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || *upd.Spec.HolderIdentity != "b" || upd.ResourceVersion == got.ResourceVersion {
		t.Fatalf("update: %v %+v", err, upd)
	}
	// A stale resourceVersion is a conflict: the fleet semaphore depends on it.
	if _, err := leases.Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: want conflict, got %v", err)
	}
	if _, err := leases.Get(ctx, "no-such-lease", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get missing: want not found, got %v", err)
	}
}

// medic's Lease replaces the whole object on Update, so its spec must hold
// every field of coordination.k8s.io/v1's (a field it lacked would be
// cleared by each renewal). Checked against k8s.io/api's own type, so a
// field added in a newer API shows up here when k8s.io/api is upgraded.
func TestLeaseSpecHasEveryField(t *testing.T) {
	ours := map[string]bool{}
	for f := range reflect.TypeFor[coordv1.LeaseSpec]().Fields() {
		ours[f.Tag.Get("json")] = true
	}
	for f := range reflect.TypeFor[upcoordv1.LeaseSpec]().Fields() {
		if !ours[f.Tag.Get("json")] {
			t.Errorf("LeaseSpec lacks %s (json %q): an Update would clear it", f.Name, f.Tag.Get("json"))
		}
	}
}

// Pods: get, merge patch, list and delete with a UID precondition, as the
// admin (the medic user may only get pods).
func TestPodVerbs(t *testing.T) {
	env := kubetest.Start(t)
	cs, err := kubeclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := cs.Pods(env.Namespace)
	name := fmt.Sprintf("kubeclient-pod-%d", time.Now().UnixNano())
	pod, err := env.AdminClient(t).CoreV1().Pods(env.Namespace).Create(ctx, &upcorev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       upcorev1.PodSpec{Containers: []upcorev1.Container{{Name: "c", Image: "example.invalid/c:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil || got.UID != pod.UID || got.Name != name {
		t.Fatalf("get: %v %+v", err, got.ObjectMeta)
	}
	patched, err := pods.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"medic.io/pause":"true"}}}`), metav1.PatchOptions{})
	if err != nil || patched.Annotations["medic.io/pause"] != "true" {
		t.Fatalf("patch: %v %+v", err, patched.Annotations)
	}
	list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v %d", err, len(list.Items))
	}
	wrong := types.UID("not-the-uid")
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &wrong}}); !apierrors.IsConflict(err) {
		t.Fatalf("delete with a wrong UID: want conflict, got %v", err)
	}
	zero := int64(0)
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}}); err != nil {
		t.Fatalf("delete: %v", err)
	}
}
