package api_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	coordv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/coordination/v1"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	eventsv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/events/v1"
)

// A deep copy shares nothing with its original: changing every pointer,
// map and slice of the copy leaves the original as it was.
func TestDeepCopiesShareNothing(t *testing.T) {
	holder, d := "a", int32(10)
	now := metav1.NewMicroTime(time.Unix(100, 0))
	lease := &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "l", Annotations: map[string]string{"k": "v"}},
		Spec:       coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &d, RenewTime: &now},
	}
	list := &coordv1.LeaseList{Items: []coordv1.Lease{*lease.DeepCopy()}}
	lc := lease.DeepCopyObject().(*coordv1.Lease)
	*lc.Spec.HolderIdentity, *lc.Spec.LeaseDurationSeconds = "b", 20
	lc.Spec.RenewTime.Time = time.Unix(200, 0)
	lc.Annotations["k"] = "changed"
	llc := list.DeepCopyObject().(*coordv1.LeaseList)
	*llc.Items[0].Spec.HolderIdentity = "c"
	if holder != "a" || d != 10 || !now.Equal(&metav1.MicroTime{Time: time.Unix(100, 0)}) || lease.Annotations["k"] != "v" ||
		*list.Items[0].Spec.HolderIdentity != "a" {
		t.Errorf("lease copy shares state: holder %q duration %d renew %v annotations %v list holder %q",
			holder, d, now, lease.Annotations, *list.Items[0].Spec.HolderIdentity)
	}

	pods := &corev1.PodList{Items: []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}}}}
	pc := pods.DeepCopyObject().(*corev1.PodList)
	pc.Items[0].Labels["app"] = "y"
	if pods.Items[0].Labels["app"] != "x" {
		t.Errorf("pod list copy shares labels")
	}

	ev := &eventsv1.Event{Series: &eventsv1.EventSeries{Count: 2}, Related: &corev1.ObjectReference{Name: "r"}}
	ec := ev.DeepCopyObject().(*eventsv1.Event)
	ec.Series.Count, ec.Related.Name = 3, "s"
	if ev.Series.Count != 2 || ev.Related.Name != "r" {
		t.Errorf("event copy shares series or related: %+v %+v", ev.Series, ev.Related)
	}
}
