// Package v1 is policy/v1 Eviction (see package api): the body medic posts
// to a pod's eviction subresource.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SchemeGroupVersion is policy/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: "policy", Version: "v1"}

// AddToScheme registers Eviction (and the meta/v1 option types) in s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Eviction{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// Eviction evicts the pod it names, under its delete options.
type Eviction struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	DeleteOptions     *metav1.DeleteOptions `json:"deleteOptions,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (e *Eviction) DeepCopyObject() runtime.Object {
	if e == nil {
		return nil
	}
	out := *e
	e.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if e.DeleteOptions != nil {
		out.DeleteOptions = e.DeleteOptions.DeepCopy()
	}
	return &out
}
