package kube_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic-sidecar/medic/internal/kubetest"
	"github.com/medic-sidecar/medic/supervisor/kube"
)

// pauseBound is how soon Paused must follow the annotation: a watch event,
// not a resync (the resync period here is an hour).
const pauseBound = 5 * time.Second

func TestPauseFollowsTheAnnotation(t *testing.T) {
	env := kubetest.Start(t)
	pod := newPod(t, env, "pause-me", nil)
	w, err := kube.NewPauseWatcher(kube.PauseOptions{
		Client:    env.MedicClient(t), // deploy/base's Role: pods get/list/watch
		Namespace: env.Namespace, Pod: pod.Name, Resync: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	eventually(t, pauseBound, "synced", func() (bool, string) { return w.HasSynced(), "not synced" })
	if p, r := w.Paused(); p {
		t.Fatalf("paused before any annotation: %q", r)
	}
	admin := env.AdminClient(t)
	follow := func(ann map[string]any, want bool, wantReason string) {
		t.Helper()
		start := time.Now()
		patchAnnotations(t, admin, env.Namespace, pod.Name, ann)
		eventually(t, pauseBound, fmt.Sprintf("Paused()=%v after %v", want, ann), func() (bool, string) {
			p, r := w.Paused()
			return p == want && r == wantReason, fmt.Sprintf("%v %q", p, r)
		})
		t.Logf("%v -> paused=%v in %s", ann, want, time.Since(start).Round(time.Millisecond))
	}
	follow(map[string]any{kube.PauseAnnotation: "true"}, true, "pod annotation medic.io/pause=true")
	follow(map[string]any{kube.PauseReasonAnnotation: "node drain"}, true, "pod annotation medic.io/pause=true: node drain")
	follow(map[string]any{kube.PauseAnnotation: "false"}, false, "")
	follow(map[string]any{kube.PauseAnnotation: "1"}, true, "pod annotation medic.io/pause=1: node drain")
	follow(map[string]any{kube.PauseAnnotation: nil}, false, "")
	follow(map[string]any{kube.PauseAnnotation: "yes please"}, false, "") // not a boolean: not paused

	if got := testutil.ToFloat64(w.Collectors()[1]); got != 4 {
		t.Errorf("transitions = %v, want 4", got)
	}
	if got := testutil.ToFloat64(w.Collectors()[0]); got != 0 {
		t.Errorf("medic_kube_paused = %v, want 0", got)
	}
}

func TestPauseStateIsKeptWhenTheWatchIsForbidden(t *testing.T) {
	env := kubetest.Start(t)
	// medic may not watch pods outside its namespace: the informer fails
	// to list, the state stays "not paused" and the failure is counted.
	w, err := kube.NewPauseWatcher(kube.PauseOptions{Client: env.MedicClient(t), Namespace: "default", Pod: "other"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	eventually(t, 10*time.Second, "watch error counted", func() (bool, string) {
		n := testutil.ToFloat64(w.Collectors()[2])
		return n >= 1, fmt.Sprintf("%v errors", n)
	})
	if p, _ := w.Paused(); p || w.HasSynced() {
		t.Errorf("paused=%v synced=%v with a forbidden watch", p, w.HasSynced())
	}
}

func TestPauseState(t *testing.T) {
	for _, c := range []struct {
		ann    map[string]string
		paused bool
	}{
		{nil, false},
		{map[string]string{"medic.io/pause": "true"}, true},
		{map[string]string{"medic.io/pause": " TRUE "}, true},
		{map[string]string{"medic.io/pause": "false"}, false},
		{map[string]string{"medic.io/pause": ""}, false},
		{map[string]string{"medic.io/pause-reason": "x"}, false},
	} {
		if p, _ := kube.PauseState(c.ann); p != c.paused {
			t.Errorf("%v: paused=%v, want %v", c.ann, p, c.paused)
		}
	}
}
