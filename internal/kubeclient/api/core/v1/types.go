// Package v1 is the part of core/v1 medic uses (see package api).
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/medic-sidecar/medic/internal/kubeclient/api"
)

// SchemeGroupVersion is the core API group, version v1.
var SchemeGroupVersion = schema.GroupVersion{Group: "", Version: "v1"}

// Resource qualifies a core resource name (e.g. "pods") with its group.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// AddToScheme registers Pod and PodList (and the meta/v1 option types) in s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Pod{}, &PodList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// Event types, as core/v1 names them (events.k8s.io/v1 uses the same).
const (
	EventTypeNormal  = "Normal"
	EventTypeWarning = "Warning"
)

// Pod is a pod's metadata: its name, UID, annotations, owner references
// and deletion timestamp are all medic reads (restart modes pod and
// rollout, the pause annotation). Read-only: never Update a Pod.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// PodList is a list of pods.
type PodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pod `json:"items"`
}

// ObjectReference names an object (an Event's regarding object), with
// every field of core/v1's.
type ObjectReference struct {
	Kind            string    `json:"kind,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name,omitempty"`
	UID             types.UID `json:"uid,omitempty"`
	APIVersion      string    `json:"apiVersion,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	FieldPath       string    `json:"fieldPath,omitempty"`
}

// DeepCopyInto copies p into out.
func (p *Pod) DeepCopyInto(out *Pod) {
	*out = *p
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil
	}
	out := new(Pod)
	p.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &PodList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*Pod).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}
