// Package api holds the few Kubernetes API types medic reads or writes, as
// small structs in the layout of k8s.io/api (core/v1, apps/v1,
// coordination/v1, events/v1, policy/v1), with the same names and JSON
// field names, so the code that uses them reads as it would with k8s.io/api.
//
// Why not k8s.io/api: its packages carry every field of every kind of their
// group with generated protobuf, deep-copy and String code (~2 MB of
// machine code for core/v1 alone, plus their type descriptors and tables),
// and package init registers all of it. A Go binary's pages are mapped in
// 64 KiB runs around each touch, and the node's memory cgroup pays for
// them in every medic; medic uses a handful of fields. The structs here
// hold exactly those fields.
//
// The rule that keeps this safe: a type medic replaces on the server with
// PUT (Update) must hold every field of its kind, or the PUT would clear the
// fields it lacks. Only Lease is updated, and LeaseSpec is complete. Pods
// and the apps kinds are only read, deleted, evicted or merge-patched;
// Events are created and merge-patched. The objects are decoded as JSON by
// client-go's REST client (unknown fields are ignored).
package api

// CopyItems deep-copies a list's items with the item type's DeepCopyInto
// (nil stays nil).
func CopyItems[T any](in []T, copyInto func(*T, *T)) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i := range in {
		copyInto(&in[i], &out[i])
	}
	return out
}
