package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/medic-sidecar/medic/internal/kubeclient"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// Pause annotations on medic's own pod.
const (
	// PauseAnnotation set to "true" stops medic from acting (every attempt
	// is suppressed with reason paused); probes, rules and reports go on.
	//   kubectl annotate pod <pod> medic.io/pause=true
	PauseAnnotation = "medic.io/pause"
	// PauseReasonAnnotation optionally says why, for /status and Events.
	PauseReasonAnnotation = "medic.io/pause-reason"
)

// DefaultPauseResync is the informer's resync period.
const DefaultPauseResync = 5 * time.Minute

// PauseOptions configure a PauseWatcher.
type PauseOptions struct {
	Client *kubeclient.Clientset
	// Namespace and Pod name medic's own pod.
	Namespace string
	Pod       string
	// Resync re-delivers the cached pod periodically (default 5 min); the
	// watch itself delivers changes as they happen.
	Resync time.Duration
	Logger *slog.Logger
}

// PauseWatcher follows the medic.io/pause annotation of medic's pod with
// an informer (list + watch on that one pod, re-listed after watch
// errors). It implements remedy.Pauser. Until the first list, and when the
// API server cannot be reached, it keeps the last state it saw (initially
// not paused): losing the API server never stops local remediation.
type PauseWatcher struct {
	o        PauseOptions
	log      *slog.Logger
	informer cache.SharedIndexInformer

	state  atomic.Pointer[pauseState]
	mu     sync.Mutex
	failed bool

	paused      prometheus.Gauge
	transitions prometheus.Counter
	watchErrors prometheus.Counter
}

var _ remedy.Pauser = (*PauseWatcher)(nil)

type pauseState struct {
	paused bool
	reason string
}

// NewPauseWatcher builds the watcher; Run starts it.
func NewPauseWatcher(o PauseOptions) (*PauseWatcher, error) {
	if o.Client == nil {
		return nil, errors.New("kube pause: no client")
	}
	if o.Namespace == "" || o.Pod == "" {
		return nil, errors.New("kube pause: medic's pod is unknown (set POD_NAME and POD_NAMESPACE from the Downward API)")
	}
	if o.Resync <= 0 {
		o.Resync = DefaultPauseResync
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &PauseWatcher{
		o:   o,
		log: o.Logger.With("component", "kube-pause", "pod", o.Namespace+"/"+o.Pod),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_kube_paused",
			Help: "1 while medic's pod carries the annotation medic.io/pause=true.",
		}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_kube_pause_transitions_total",
			Help: "Changes of the medic.io/pause annotation seen on medic's pod.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_kube_pause_watch_errors_total",
			Help: "Failed lists or watches of medic's pod (the last seen pause state is kept).",
		}),
	}
	w.state.Store(&pauseState{})
	lw := cache.NewListWatchFromClient(o.Client.CoreREST(), "pods", o.Namespace,
		fields.OneTermEqualSelector("metadata.name", o.Pod))
	w.informer = cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{ResyncPeriod: o.Resync})
	if err := w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		w.watchErrors.Inc()
		w.setFailed(true, err)
	}); err != nil {
		return nil, fmt.Errorf("kube pause: %w", err)
	}
	_, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj) },
		UpdateFunc: func(_, obj any) { w.observe(obj) },
		DeleteFunc: func(any) { w.set(pauseState{}) },
	})
	if err != nil {
		return nil, fmt.Errorf("kube pause: %w", err)
	}
	return w, nil
}

// Run runs the informer until ctx ends. It returns nil.
func (w *PauseWatcher) Run(ctx context.Context) error {
	w.informer.RunWithContext(ctx)
	return nil
}

// HasSynced reports whether the pod has been listed at least once.
func (w *PauseWatcher) HasSynced() bool { return w.informer.HasSynced() }

// Paused reports whether medic's pod carries medic.io/pause=true, with
// the reason (medic.io/pause-reason when set).
func (w *PauseWatcher) Paused() (bool, string) {
	s := w.state.Load()
	return s.paused, s.reason
}

// Collectors returns the watcher's metrics for medic's registry.
func (w *PauseWatcher) Collectors() []prometheus.Collector {
	return []prometheus.Collector{w.paused, w.transitions, w.watchErrors}
}

func (w *PauseWatcher) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	w.setFailed(false, nil)
	paused, reason := PauseState(pod.Annotations)
	w.set(pauseState{paused: paused, reason: reason})
}

// PauseState reads the pause annotations: paused when medic.io/pause parses
// as true (strconv.ParseBool: "true", "1", "t", …).
func PauseState(ann map[string]string) (paused bool, reason string) {
	v, ok := ann[PauseAnnotation]
	if !ok {
		return false, ""
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil || !b {
		return false, ""
	}
	reason = "pod annotation " + PauseAnnotation + "=" + v
	if r := strings.TrimSpace(ann[PauseReasonAnnotation]); r != "" {
		reason += ": " + r
	}
	return true, reason
}

func (w *PauseWatcher) set(st pauseState) {
	old := w.state.Swap(&st)
	if old.paused == st.paused && old.reason == st.reason {
		return
	}
	if old.paused != st.paused {
		w.transitions.Inc()
	}
	if st.paused {
		w.paused.Set(1)
		w.log.Info("remediation paused", "reason", st.reason)
	} else {
		w.paused.Set(0)
		w.log.Info("remediation resumed")
	}
}

// setFailed logs list/watch trouble once per change of state.
func (w *PauseWatcher) setFailed(failed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if failed == w.failed {
		return
	}
	w.failed = failed
	if failed {
		paused, _ := w.Paused()
		w.log.Warn("cannot watch medic's pod for the pause annotation; keeping the last state", "paused", paused, "err", err)
	} else {
		w.log.Info("watching medic's pod for the pause annotation again")
	}
}
