package remedy

import (
	"context"
	"time"
)

// EventType names a step in an incident's life. The Kubernetes Event
// reasons are derived from these.
type EventType string

// Event types, in the order an incident meets them.
const (
	IncidentOpened        EventType = "IncidentOpened"
	RemediationStarted    EventType = "RemediationStarted"
	RemediationSucceeded  EventType = "RemediationSucceeded" // the action ran and verification passed
	RemediationFailed     EventType = "RemediationFailed"
	RemediationSuppressed EventType = "RemediationSuppressed"
	IncidentResolved      EventType = "IncidentResolved"
	IncidentExhausted     EventType = "IncidentExhausted"
	IncidentRetried       EventType = "IncidentRetried" // an exhausted ladder is walked again

	// A plugin's own lifecycle (not tied to an incident): Plugin is set.
	PluginCrashed     EventType = "PluginCrashed"
	PluginQuarantined EventType = "PluginQuarantined"
	PluginReleased    EventType = "PluginReleased"
)

// Event is one observable step of an incident, delivered to every Sink
// (audit log, metrics, logs, Kubernetes Events).
type Event struct {
	Time        time.Time         `json:"time"`
	Type        EventType         `json:"type"`
	IncidentID  string            `json:"incident"`
	Alert       string            `json:"alert"`
	Labels      map[string]string `json:"labels,omitempty"`
	Value       float64           `json:"value"` // the alert's value at decision time (evidence)
	Action      string            `json:"action,omitempty"`
	Step        int               `json:"step,omitempty"`
	Attempt     int               `json:"attempt,omitempty"`
	MaxAttempts int               `json:"maxAttempts,omitempty"`
	// Result is succeeded | failed | suppressed for attempt events.
	Result string `json:"result,omitempty"`
	// Reason: for suppressions dryRun | paused | budget | precondition |
	// concurrency; for failures error | permanent | verify | timeout.
	Reason  string         `json:"reason,omitempty"`
	Message string         `json:"message,omitempty"`
	Output  string         `json:"output,omitempty"`
	Details map[string]any `json:"details,omitempty"`
	// Plugin names the plugin of a Plugin* event.
	Plugin   string  `json:"plugin,omitempty"`
	DryRun   bool    `json:"dryRun,omitempty"`
	Duration float64 `json:"durationSeconds,omitempty"`
}

// Sink receives incident events. Record must not block for long: a sink
// that talks to a remote API queues and drops rather than stalls the ladder.
type Sink interface {
	Record(ev Event)
}

// Pauser is a source of "do not act now" (the pause file, the pod's
// medic.io/pause annotation). Paused returns the reason when paused.
type Pauser interface {
	Paused() (bool, string)
}

// FleetLimit is a step's fleet-wide limit (actions.<name>.fleet): at most
// Max medic instances run the action at the same time, and, when Hold > 0,
// a slot stays taken until Hold after it was acquired, so at most Max runs
// start in any Hold period across the fleet.
type FleetLimit struct {
	Max  int
	Hold time.Duration
}

// Fleet coordinates one action across every medic instance of a fleet
// (supervisor/kube implements it with Kubernetes Leases).
type Fleet interface {
	// Acquire takes one of limit.Max slots of action at now. When every
	// slot is held by another instance it returns ok=false and a message
	// naming the holders. release gives the slot back (the slot stays
	// taken until acquire+Hold when Hold > 0); it is never nil when ok.
	// With dryRun nothing is written: ok says whether a slot is free, and
	// release does nothing. err is an API failure (ok is false).
	Acquire(ctx context.Context, action string, limit FleetLimit, now time.Time, dryRun bool) (release func(), ok bool, msg string, err error)
}
