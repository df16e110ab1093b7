// Package v1 is coordination.k8s.io/v1 Lease (see package api): medic's
// fleet limit updates Leases, so LeaseSpec holds every field of the kind.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/medic-sidecar/medic/internal/kubeclient/api"
)

// SchemeGroupVersion is coordination.k8s.io/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: "coordination.k8s.io", Version: "v1"}

// AddToScheme registers Lease and LeaseList (and the meta/v1 option types) in s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Lease{}, &LeaseList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// Lease is a coordination.k8s.io/v1 Lease.
type Lease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              LeaseSpec `json:"spec,omitempty"`
}

// LeaseSpec is every field of the Lease's spec (an Update must not drop any).
type LeaseSpec struct {
	HolderIdentity       *string                   `json:"holderIdentity,omitempty"`
	LeaseDurationSeconds *int32                    `json:"leaseDurationSeconds,omitempty"`
	AcquireTime          *metav1.MicroTime         `json:"acquireTime,omitempty"`
	RenewTime            *metav1.MicroTime         `json:"renewTime,omitempty"`
	LeaseTransitions     *int32                    `json:"leaseTransitions,omitempty"`
	Strategy             *CoordinatedLeaseStrategy `json:"strategy,omitempty"`
	PreferredHolder      *string                   `json:"preferredHolder,omitempty"`
}

// CoordinatedLeaseStrategy names a leader election strategy.
type CoordinatedLeaseStrategy string

// LeaseList is a list of Leases.
type LeaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Lease `json:"items"`
}

func ptr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// DeepCopyInto copies l into out.
func (l *Lease) DeepCopyInto(out *Lease) {
	*out = *l
	l.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	s := &l.Spec
	out.Spec = LeaseSpec{
		HolderIdentity: ptr(s.HolderIdentity), LeaseDurationSeconds: ptr(s.LeaseDurationSeconds),
		AcquireTime: ptr(s.AcquireTime), RenewTime: ptr(s.RenewTime), LeaseTransitions: ptr(s.LeaseTransitions),
		Strategy: ptr(s.Strategy), PreferredHolder: ptr(s.PreferredHolder),
	}
}

// DeepCopy returns a copy of l.
func (l *Lease) DeepCopy() *Lease {
	if l == nil {
		return nil
	}
	out := new(Lease)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *Lease) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	return l.DeepCopy()
}

// DeepCopyObject implements runtime.Object.
func (l *LeaseList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &LeaseList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*Lease).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}
