package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// Integration is everything the supervisor wires from Kubernetes: the
// client, the Events sink and the pause watcher on medic's own pod.
//
//	c, reason, err := kube.NewClient(kube.Options{Kubeconfig: flag, Logger: log})
//	// err: fail; c == nil: run without Kubernetes (reason already logged)
//	k, err := kube.NewIntegration(c, kube.IntegrationOptions{Clock: clk, Logger: log})
//	reg.MustRegister(k.Collectors()...)
//	remedy.Options{Sinks: append(sinks, k.Sinks()...), Pausers: append(pausers, k.Pausers()...)}
//	actions.Env{..., Kube: k.ActionsEnv()}
//	go k.Run(ctx)
//
// Every method is safe on a nil *Integration (medic outside a cluster).
type Integration struct {
	Client *Client
	// Events and Pause are nil when medic's own pod is unknown (no
	// POD_NAME/POD_NAMESPACE): the API is still there for actions that
	// name their target.
	Events *EventSink
	Pause  *PauseWatcher
	// FleetSem enforces actions' fleet limits (Leases in medic's
	// namespace, held as medic's pod); nil without a pod identity.
	FleetSem *Fleet
}

// IntegrationOptions tune NewIntegration; zero values take the defaults
// of EventOptions and PauseOptions.
type IntegrationOptions struct {
	Clock  clock.Clock
	Logger *slog.Logger
	Events EventOptions // Client, Regarding, Clock and Logger are filled in
	Pause  PauseOptions // Client, Namespace, Pod and Logger are filled in
}

// NewIntegration builds the Events sink and the pause watcher for c. A nil
// c gives a nil Integration.
func NewIntegration(c *Client, o IntegrationOptions) (*Integration, error) {
	if c == nil {
		return nil, nil
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Integration{Client: c}
	if err := c.Identity.Validate(); err != nil {
		o.Logger.Warn("Kubernetes API available, but no Events and no pause annotation", "reason", err.Error())
		return k, nil
	}
	eo := o.Events
	eo.Client, eo.Regarding, eo.Clock, eo.Logger = c.Interface, PodReference(c.Identity), o.Clock, o.Logger
	var err error
	if k.Events, err = NewEventSink(eo); err != nil {
		return nil, err
	}
	po := o.Pause
	po.Client, po.Namespace, po.Pod, po.Logger = c.Interface, c.Identity.Namespace, c.Identity.Pod, o.Logger
	if k.Pause, err = NewPauseWatcher(po); err != nil {
		return nil, err
	}
	if k.FleetSem, err = NewFleet(FleetOptions{Client: c.Interface, Namespace: c.Identity.Namespace,
		Identity: c.Identity.Pod, Clock: o.Clock, Logger: o.Logger}); err != nil {
		return nil, err
	}
	o.Logger.Info("Kubernetes integration on", "source", c.Source, "pod", c.Identity.String())
	return k, nil
}

// Run runs the Events writer and the pause watcher until ctx ends.
func (k *Integration) Run(ctx context.Context) error {
	if k == nil {
		return nil
	}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{k.eventsRun, k.pauseRun} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

func (k *Integration) eventsRun(ctx context.Context) error {
	if k.Events == nil {
		return nil
	}
	return k.Events.Run(ctx)
}

func (k *Integration) pauseRun(ctx context.Context) error {
	if k.Pause == nil {
		return nil
	}
	return k.Pause.Run(ctx)
}

// Sinks returns the Events sink, if any.
func (k *Integration) Sinks() []remedy.Sink {
	if k == nil || k.Events == nil {
		return nil
	}
	return []remedy.Sink{k.Events}
}

// Pausers returns the pause watcher, if any.
func (k *Integration) Pausers() []remedy.Pauser {
	if k == nil || k.Pause == nil {
		return nil
	}
	return []remedy.Pauser{k.Pause}
}

// Fleet is remedy.Options.Fleet: nil outside a cluster or without a pod
// identity (fleet limits are then not enforced).
func (k *Integration) Fleet() remedy.Fleet {
	if k == nil || k.FleetSem == nil {
		return nil
	}
	return k.FleetSem
}

// ActionsEnv is actions.Env.Kube (nil outside a cluster).
func (k *Integration) ActionsEnv() *actions.KubeEnv {
	if k == nil {
		return nil
	}
	return k.Client.ActionsEnv()
}

// Collectors returns the metrics of the Events sink and the pause watcher.
func (k *Integration) Collectors() []prometheus.Collector {
	if k == nil {
		return nil
	}
	var cs []prometheus.Collector
	if k.Events != nil {
		cs = append(cs, k.Events.Collectors()...)
	}
	if k.Pause != nil {
		cs = append(cs, k.Pause.Collectors()...)
	}
	return cs
}

// String describes the integration in one line (fmt's %v); a nil
// Integration is medic outside a cluster.
func (k *Integration) String() string {
	if k == nil {
		return "off (not in a cluster)"
	}
	if k.Events == nil {
		return fmt.Sprintf("API only (%s; medic's pod unknown)", k.Client.Source)
	}
	return fmt.Sprintf("on (%s, pod %s)", k.Client.Source, k.Client.Identity)
}
