// Package kubeclient is the part of the Kubernetes API that medic uses,
// and nothing more: pods (get, delete, evict, watch), events.k8s.io/v1
// Events, coordination.k8s.io/v1 Leases, and the apps/v1 workloads that
// restart mode rollout patches.
//
// client-go's full clientset (k8s.io/client-go/kubernetes) and its scheme
// register every built-in API group; linking them cost medic ~40 MB of
// binary that the container's memory cgroup is charged for in page cache.
// This package builds small typed clients (Resource) on a scheme holding
// only the groups above (and policy/v1 for evictions), so the rest is
// never linked. The types themselves are medic's own small structs
// (package api and below) rather than k8s.io/api's: those carry every
// field of their group with generated protobuf code, -4.3 MB of binary.
package kubeclient

import (
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	appsv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/apps/v1"
	coordv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/coordination/v1"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	eventsv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/events/v1"
	policyv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/policy/v1"
)

// apiScheme holds exactly the API types medic reads or writes, with its
// codecs. It is built on first use, not at package init: medic outside a
// cluster never touches it (init work touches code and tables all over the
// binary, and each touch maps 64 KiB of it that every medic pays for).
var apiScheme = sync.OnceValue(func() *schemeCodecs {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, eventsv1.AddToScheme, coordv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err) // programming error: the types above always register
		}
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return &schemeCodecs{codecs: serializer.NewCodecFactory(s), params: runtime.NewParameterCodec(s)}
})

type schemeCodecs struct {
	codecs serializer.CodecFactory
	params runtime.ParameterCodec
}

// Typed clients of one resource, as client-go's generated clientset has them.
type (
	Pods         = Resource[*corev1.Pod, *corev1.PodList]
	Events       = Resource[*eventsv1.Event, *eventsv1.EventList]
	Leases       = Resource[*coordv1.Lease, *coordv1.LeaseList]
	Deployments  = Resource[*appsv1.Deployment, *appsv1.DeploymentList]
	DaemonSets   = Resource[*appsv1.DaemonSet, *appsv1.DaemonSetList]
	StatefulSets = Resource[*appsv1.StatefulSet, *appsv1.StatefulSetList]
	ReplicaSets  = Resource[*appsv1.ReplicaSet, *appsv1.ReplicaSetList]
)

// Clientset is medic's Kubernetes client: one REST client per API group.
type Clientset struct {
	core, apps, events, coord rest.Interface
}

// NewForConfig builds the clientset from a REST configuration (QPS, burst,
// timeout and user agent are taken from it; one rate limiter is shared by
// all groups, as in client-go's clientset).
func NewForConfig(c *rest.Config) (*Clientset, error) {
	c = rest.CopyConfig(c)
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		burst := c.Burst
		if burst <= 0 {
			burst = 10
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, burst)
	}
	httpClient, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cs := &Clientset{}
	for _, g := range []struct {
		gv   schema.GroupVersion
		api  string
		into *rest.Interface
	}{
		{corev1.SchemeGroupVersion, "/api", &cs.core},
		{appsv1.SchemeGroupVersion, "/apis", &cs.apps},
		{eventsv1.SchemeGroupVersion, "/apis", &cs.events},
		{coordv1.SchemeGroupVersion, "/apis", &cs.coord},
	} {
		gc := *c
		gv := g.gv
		gc.GroupVersion = &gv
		gc.APIPath = g.api
		gc.NegotiatedSerializer = apiScheme().codecs.WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(&gc, httpClient)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client %s: %w", gv, err)
		}
		*g.into = rc
	}
	return cs, nil
}

// CoreREST is the core/v1 REST client (subresources such as pods/eviction,
// and informers' list-watch).
func (c *Clientset) CoreREST() rest.Interface { return c.core }

// Pods in namespace ns.
func (c *Clientset) Pods(ns string) *Pods {
	return newResource[*corev1.Pod, *corev1.PodList](c.core, "pods", ns,
		func() *corev1.Pod { return &corev1.Pod{} }, func() *corev1.PodList { return &corev1.PodList{} })
}

// Events (events.k8s.io/v1) in namespace ns.
func (c *Clientset) Events(ns string) *Events {
	return newResource[*eventsv1.Event, *eventsv1.EventList](c.events, "events", ns,
		func() *eventsv1.Event { return &eventsv1.Event{} }, func() *eventsv1.EventList { return &eventsv1.EventList{} })
}

// Leases (coordination.k8s.io/v1) in namespace ns.
func (c *Clientset) Leases(ns string) *Leases {
	return newResource[*coordv1.Lease, *coordv1.LeaseList](c.coord, "leases", ns,
		func() *coordv1.Lease { return &coordv1.Lease{} }, func() *coordv1.LeaseList { return &coordv1.LeaseList{} })
}

// Deployments (apps/v1) in namespace ns.
func (c *Clientset) Deployments(ns string) *Deployments {
	return newResource[*appsv1.Deployment, *appsv1.DeploymentList](c.apps, "deployments", ns,
		func() *appsv1.Deployment { return &appsv1.Deployment{} }, func() *appsv1.DeploymentList { return &appsv1.DeploymentList{} })
}

// DaemonSets (apps/v1) in namespace ns.
func (c *Clientset) DaemonSets(ns string) *DaemonSets {
	return newResource[*appsv1.DaemonSet, *appsv1.DaemonSetList](c.apps, "daemonsets", ns,
		func() *appsv1.DaemonSet { return &appsv1.DaemonSet{} }, func() *appsv1.DaemonSetList { return &appsv1.DaemonSetList{} })
}

// StatefulSets (apps/v1) in namespace ns.
func (c *Clientset) StatefulSets(ns string) *StatefulSets {
	return newResource[*appsv1.StatefulSet, *appsv1.StatefulSetList](c.apps, "statefulsets", ns,
		func() *appsv1.StatefulSet { return &appsv1.StatefulSet{} }, func() *appsv1.StatefulSetList { return &appsv1.StatefulSetList{} })
}

// ReplicaSets (apps/v1) in namespace ns.
func (c *Clientset) ReplicaSets(ns string) *ReplicaSets {
	return newResource[*appsv1.ReplicaSet, *appsv1.ReplicaSetList](c.apps, "replicasets", ns,
		func() *appsv1.ReplicaSet { return &appsv1.ReplicaSet{} }, func() *appsv1.ReplicaSetList { return &appsv1.ReplicaSetList{} })
}
