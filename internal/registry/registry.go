// Package registry is the small name → kind table that probe and action
// kinds register themselves in (each kind's package calls Register from
// init; config decoding looks kinds up by their YAML key).
package registry

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Registry maps names to values of one kind type.
type Registry[K any] struct {
	what  string // "probe", "action": for the duplicate panic
	mu    sync.RWMutex
	kinds map[string]K
}

// New returns an empty registry; what names its kind in panics.
func New[K any](what string) *Registry[K] {
	return &Registry[K]{what: what, kinds: map[string]K{}}
}

// Register adds k under name; a duplicate name panics (a programming error).
func (r *Registry[K]) Register(name string, k K) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.kinds[name]; dup {
		panic(fmt.Sprintf("%s kind %q registered twice", r.what, name))
	}
	r.kinds[name] = k
}

// Lookup returns the kind registered under name.
func (r *Registry[K]) Lookup(name string) (K, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.kinds[name]
	return k, ok
}

// Names lists registered names, sorted.
func (r *Registry[K]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.kinds))
}
