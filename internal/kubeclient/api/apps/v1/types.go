// Package v1 is the part of apps/v1 medic uses (see package api): the
// metadata of the workloads restart mode rollout patches, and the spec
// fields that decide whether a template change rolls their pods.
// Read and merge-patched only: never Update these.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/medic-sidecar/medic/internal/kubeclient/api"
)

// SchemeGroupVersion is apps/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: "apps", Version: "v1"}

// AddToScheme registers the workload kinds (and the meta/v1 option types) in s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&Deployment{}, &DeploymentList{}, &DaemonSet{}, &DaemonSetList{},
		&StatefulSet{}, &StatefulSetList{}, &ReplicaSet{}, &ReplicaSetList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// Update strategies under which a template change does not roll pods.
const (
	OnDeleteDaemonSetStrategyType   DaemonSetUpdateStrategyType   = "OnDelete"
	OnDeleteStatefulSetStrategyType StatefulSetUpdateStrategyType = "OnDelete"
)

// Deployment is a Deployment's metadata and whether it is paused.
type Deployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              DeploymentSpec `json:"spec,omitempty"`
}

// DeploymentSpec holds spec.paused.
type DeploymentSpec struct {
	Paused bool `json:"paused,omitempty"`
}

// DaemonSet is a DaemonSet's metadata and update strategy.
type DaemonSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              DaemonSetSpec `json:"spec,omitempty"`
}

// DaemonSetSpec holds spec.updateStrategy.
type DaemonSetSpec struct {
	UpdateStrategy DaemonSetUpdateStrategy `json:"updateStrategy,omitempty"`
}

// DaemonSetUpdateStrategy holds its type.
type DaemonSetUpdateStrategy struct {
	Type DaemonSetUpdateStrategyType `json:"type,omitempty"`
}

// DaemonSetUpdateStrategyType is RollingUpdate or OnDelete.
type DaemonSetUpdateStrategyType string

// StatefulSet is a StatefulSet's metadata and update strategy.
type StatefulSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              StatefulSetSpec `json:"spec,omitempty"`
}

// StatefulSetSpec holds spec.updateStrategy.
type StatefulSetSpec struct {
	UpdateStrategy StatefulSetUpdateStrategy `json:"updateStrategy,omitempty"`
}

// StatefulSetUpdateStrategy holds its type.
type StatefulSetUpdateStrategy struct {
	Type StatefulSetUpdateStrategyType `json:"type,omitempty"`
}

// StatefulSetUpdateStrategyType is RollingUpdate or OnDelete.
type StatefulSetUpdateStrategyType string

// ReplicaSet is a ReplicaSet's metadata (its owner is the Deployment).
type ReplicaSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// Lists of the kinds above.
type (
	DeploymentList struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata,omitempty"`
		Items           []Deployment `json:"items"`
	}
	DaemonSetList struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata,omitempty"`
		Items           []DaemonSet `json:"items"`
	}
	StatefulSetList struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata,omitempty"`
		Items           []StatefulSet `json:"items"`
	}
	ReplicaSetList struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata,omitempty"`
		Items           []ReplicaSet `json:"items"`
	}
)

// The kinds hold no pointers or slices beyond ObjectMeta and ListMeta, so a
// deep copy is a copy plus those.

func copyMeta(in, out *metav1.ObjectMeta) { in.DeepCopyInto(out) }

// DeepCopyInto copies d into out.
func (d *Deployment) DeepCopyInto(out *Deployment) {
	*out = *d
	copyMeta(&d.ObjectMeta, &out.ObjectMeta)
}

// DeepCopyInto copies d into out.
func (d *DaemonSet) DeepCopyInto(out *DaemonSet) { *out = *d; copyMeta(&d.ObjectMeta, &out.ObjectMeta) }

// DeepCopyInto copies s into out.
func (s *StatefulSet) DeepCopyInto(out *StatefulSet) {
	*out = *s
	copyMeta(&s.ObjectMeta, &out.ObjectMeta)
}

// DeepCopyInto copies r into out.
func (r *ReplicaSet) DeepCopyInto(out *ReplicaSet) {
	*out = *r
	copyMeta(&r.ObjectMeta, &out.ObjectMeta)
}

// DeepCopyObject implements runtime.Object.
func (d *Deployment) DeepCopyObject() runtime.Object {
	out := new(Deployment)
	d.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (d *DaemonSet) DeepCopyObject() runtime.Object {
	out := new(DaemonSet)
	d.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (s *StatefulSet) DeepCopyObject() runtime.Object {
	out := new(StatefulSet)
	s.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (r *ReplicaSet) DeepCopyObject() runtime.Object {
	out := new(ReplicaSet)
	r.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *DeploymentList) DeepCopyObject() runtime.Object {
	out := &DeploymentList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*Deployment).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *DaemonSetList) DeepCopyObject() runtime.Object {
	out := &DaemonSetList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*DaemonSet).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *StatefulSetList) DeepCopyObject() runtime.Object {
	out := &StatefulSetList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*StatefulSet).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *ReplicaSetList) DeepCopyObject() runtime.Object {
	out := &ReplicaSetList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*ReplicaSet).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}
