package kubeclient

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Object is an API object with a name.
type Object interface {
	runtime.Object
	GetName() string
}

// Resource is a typed client of one namespaced resource: the verbs medic
// uses, with the semantics of client-go's generated clients. (client-go's
// own generic gentype links client-go/testing and strategic merge patch
// with its OpenAPI models, ~3 MB that medic never runs.)
type Resource[T Object, L runtime.Object] struct {
	client   rest.Interface
	resource string
	ns       string
	newT     func() T
	newL     func() L
}

func newResource[T Object, L runtime.Object](c rest.Interface, resource, ns string, newT func() T, newL func() L) *Resource[T, L] {
	return &Resource[T, L]{client: c, resource: resource, ns: ns, newT: newT, newL: newL}
}

// Get fetches one object.
func (r *Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newT()
	err := r.client.Get().Namespace(r.ns).Resource(r.resource).Name(name).
		VersionedParams(&opts, apiScheme().params).Do(ctx).Into(out)
	return out, err
}

// List fetches the objects that opts selects.
func (r *Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newL()
	err := r.client.Get().Namespace(r.ns).Resource(r.resource).
		VersionedParams(&opts, apiScheme().params).Do(ctx).Into(out)
	return out, err
}

// Create creates obj.
func (r *Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newT()
	err := r.client.Post().Namespace(r.ns).Resource(r.resource).
		VersionedParams(&opts, apiScheme().params).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces obj (optimistic concurrency through its resourceVersion).
func (r *Resource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	out := r.newT()
	err := r.client.Put().Namespace(r.ns).Resource(r.resource).Name(obj.GetName()).
		VersionedParams(&opts, apiScheme().params).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Patch applies a patch of type pt to the named object (or a subresource).
func (r *Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error) {
	out := r.newT()
	err := r.client.Patch(pt).Namespace(r.ns).Resource(r.resource).Name(name).SubResource(subresources...).
		VersionedParams(&opts, apiScheme().params).Body(data).Do(ctx).Into(out)
	return out, err
}

// Delete deletes the named object.
func (r *Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.client.Delete().Namespace(r.ns).Resource(r.resource).Name(name).Body(&opts).Do(ctx).Error()
}
