// Package v1 is events.k8s.io/v1 Event (see package api): medic creates
// Events and merge-patches their series; it never updates them.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/medic-sidecar/medic/internal/kubeclient/api"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
)

// SchemeGroupVersion is events.k8s.io/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: "events.k8s.io", Version: "v1"}

// AddToScheme registers Event and EventList (and the meta/v1 option types) in s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Event{}, &EventList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// Event is an events.k8s.io/v1 Event with the fields medic writes (the
// deprecated core/v1 compatibility fields are left out).
type Event struct {
	metav1.TypeMeta     `json:",inline"`
	metav1.ObjectMeta   `json:"metadata"`
	EventTime           metav1.MicroTime        `json:"eventTime"`
	Series              *EventSeries            `json:"series,omitempty"`
	ReportingController string                  `json:"reportingController,omitempty"`
	ReportingInstance   string                  `json:"reportingInstance,omitempty"`
	Action              string                  `json:"action,omitempty"`
	Reason              string                  `json:"reason,omitempty"`
	Regarding           corev1.ObjectReference  `json:"regarding,omitempty"`
	Related             *corev1.ObjectReference `json:"related,omitempty"`
	Note                string                  `json:"note,omitempty"`
	Type                string                  `json:"type,omitempty"`
}

// EventSeries is the count and last time of a repeated Event.
type EventSeries struct {
	Count            int32            `json:"count"`
	LastObservedTime metav1.MicroTime `json:"lastObservedTime"`
}

// EventList is a list of Events.
type EventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Event `json:"items"`
}

// DeepCopyInto copies e into out.
func (e *Event) DeepCopyInto(out *Event) {
	*out = *e
	e.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	e.EventTime.DeepCopyInto(&out.EventTime)
	if e.Series != nil {
		s := *e.Series
		out.Series = &s
	}
	if e.Related != nil {
		r := *e.Related
		out.Related = &r
	}
}

// DeepCopyObject implements runtime.Object.
func (e *Event) DeepCopyObject() runtime.Object {
	if e == nil {
		return nil
	}
	out := new(Event)
	e.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *EventList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &EventList{TypeMeta: l.TypeMeta, Items: api.CopyItems(l.Items, (*Event).DeepCopyInto)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}
