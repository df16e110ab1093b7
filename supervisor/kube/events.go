package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/kubeclient"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	eventsv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/events/v1"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// EventSink defaults.
const (
	DefaultReportingController = "medic.io/medic"
	DefaultEventQueue          = 256
	DefaultEventQPS            = 0.2 // sustained: 12 API writes a minute
	DefaultEventBurst          = 10
	DefaultAggregateWindow     = 10 * time.Minute
	DefaultMaxSeries           = 512
	DefaultEventAttempts       = 3
	// eventRetryDelay is the pause after a transient API error, doubled
	// per consecutive failure of the same write.
	eventRetryDelay = 2 * time.Second
	// MaxNoteBytes is the API server's limit on an Event's note.
	MaxNoteBytes = 1024
)

// Event types (corev1.EventTypeNormal/Warning).
const (
	typeNormal  = corev1.EventTypeNormal
	typeWarning = corev1.EventTypeWarning
)

// incidentAction is the Event's action for incident-level events, which
// have no remediation action.
const incidentAction = "Incident"

// EventOptions configure an EventSink.
type EventOptions struct {
	// Client creates and patches events.k8s.io/v1 Events.
	Client *kubeclient.Clientset
	// Regarding is the object the Events are about: medic's pod (see
	// PodReference). A Pod without a UID gets it looked up once.
	Regarding corev1.ObjectReference
	// ReportingController defaults to "medic.io/medic".
	ReportingController string
	// ReportingInstance defaults to the regarding object's name.
	ReportingInstance string
	Clock             clock.Clock
	Logger            *slog.Logger
	// QueueSize bounds events waiting for the writer; Record drops (and
	// counts) beyond it rather than block the remediation ladder.
	QueueSize int
	// QPS and Burst are the token bucket for API writes (creates and
	// series updates together).
	QPS   float64
	Burst int
	// AggregateWindow: an event with the same reason, incident and action
	// (and sub-reason) as one seen within the window updates that Event's
	// series (count, lastObservedTime) instead of creating a new Event. The
	// note stays the first occurrence's: the API server keeps it immutable.
	AggregateWindow time.Duration
	// MaxSeries bounds the series tracked (and so the writes waiting for a
	// token); events beyond it are dropped and counted.
	MaxSeries int
	// Attempts is how many times one write is tried on transient API
	// errors before it is dropped.
	Attempts int
	// RequestTimeout bounds each API call (default DefaultTimeout).
	RequestTimeout time.Duration
}

// PodReference is the ObjectReference of medic's own pod.
func PodReference(id Identity) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: id.Namespace, Name: id.Pod}
}

// EventSink turns incident events into Kubernetes Events on medic's pod.
// Record never blocks: events go through a bounded queue to one writer
// (Run), which aggregates repeats into series, spends a token bucket on
// API writes, retries transient API errors a few times and otherwise
// drops — counted in medic_kube_events_dropped_total. API errors never
// reach the remediation ladder.
//
// Reasons are the remedy event types: IncidentOpened (Warning: the alert
// fired), RemediationStarted (Normal), RemediationSucceeded (Normal),
// RemediationFailed (Warning), RemediationSuppressed (Normal for dryRun and
// paused, which an operator chose; Warning for budget, precondition,
// concurrency and others, where medic wanted to act and could not),
// IncidentResolved (Normal), IncidentExhausted (Warning), IncidentRetried
// (Warning: an exhausted ladder is walked again after
// rules[].retryExhaustedAfter).
type EventSink struct {
	o     EventOptions
	log   *slog.Logger
	queue chan remedy.Event
	lim   *rate.Limiter

	// Owned by Run.
	series  map[seriesKey]*series
	pending []*series
	seq     uint32
	failing bool
	// holdUntil pauses writes after a transient API error.
	holdUntil time.Time
	// waiting is the loop iteration blocked in select, or -1 while busy
	// (tests use it to know the writer is idle).
	waiting atomic.Int64

	writes     *prometheus.CounterVec
	aggregated prometheus.Counter
	dropped    *prometheus.CounterVec
	pendingG   prometheus.Gauge
}

var _ remedy.Sink = (*EventSink)(nil)

// seriesKey groups repeats: the same reason (event type) in the same
// incident for the same action — and the same sub-reason (budget, verify,
// …), since an Event's type and note cannot change after creation.
type seriesKey struct {
	reason    remedy.EventType
	incident  string
	action    string
	subReason string
}

// series is one Event object and the occurrences folded into it.
type series struct {
	key      seriesKey
	name     string // the Event's name once created
	first    remedy.Event
	last     remedy.Event
	count    int32 // occurrences seen
	sent     int32 // occurrences the API server has (0: not created)
	lastSeen time.Time
	queued   bool
	tries    int
}

// NewEventSink validates opts and fills defaults. Call Run to start writing.
func NewEventSink(o EventOptions) (*EventSink, error) {
	if o.Client == nil {
		return nil, errors.New("kube events: no client")
	}
	if o.Regarding.Name == "" || o.Regarding.Kind == "" {
		return nil, errors.New("kube events: no regarding object (medic's pod: set POD_NAME and POD_NAMESPACE from the Downward API)")
	}
	if o.ReportingController == "" {
		o.ReportingController = DefaultReportingController
	}
	if o.ReportingInstance == "" {
		o.ReportingInstance = o.Regarding.Name
	}
	o.ReportingInstance = truncate(o.ReportingInstance, 128)
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultEventQueue
	}
	if o.QPS <= 0 {
		o.QPS = DefaultEventQPS
	}
	if o.Burst <= 0 {
		o.Burst = DefaultEventBurst
	}
	if o.AggregateWindow <= 0 {
		o.AggregateWindow = DefaultAggregateWindow
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = DefaultMaxSeries
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultEventAttempts
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultTimeout
	}
	s := &EventSink{
		o:      o,
		log:    o.Logger.With("component", "kube-events"),
		queue:  make(chan remedy.Event, o.QueueSize),
		lim:    rate.NewLimiter(rate.Limit(o.QPS), o.Burst),
		series: map[seriesKey]*series{},
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_kube_events_writes_total",
			Help: "Kubernetes Event API writes by reason and result (created, updated: a series count update, error).",
		}, []string{"reason", "result"}),
		aggregated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_kube_events_aggregated_total",
			Help: "Incident events folded into an existing Kubernetes Event's series instead of a new Event.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_kube_events_dropped_total",
			Help: "Incident events not written as Kubernetes Events, by cause (queue_full, backlog_full, api_error, rejected).",
		}, []string{"cause"}),
		pendingG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_kube_events_pending",
			Help: "Kubernetes Event writes waiting for a rate-limit token.",
		}),
	}
	for _, c := range []string{"queue_full", "backlog_full", "api_error", "rejected"} {
		s.dropped.WithLabelValues(c)
	}
	return s, nil
}

// Collectors returns the sink's metrics for medic's registry.
func (s *EventSink) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.writes, s.aggregated, s.dropped, s.pendingG}
}

// Record queues ev for the writer; it never blocks. A full queue drops
// the event and counts it.
func (s *EventSink) Record(ev remedy.Event) {
	select {
	case s.queue <- ev:
	default:
		s.dropped.WithLabelValues("queue_full").Inc()
	}
}

// Run writes queued events until ctx ends, then spends up to two seconds
// writing what is still queued (within the rate limit). It returns nil.
func (s *EventSink) Run(ctx context.Context) error {
	s.lookupUID(ctx)
	for i := int64(1); ; i++ {
		s.flush(ctx)
		var wait <-chan time.Time
		if len(s.pending) > 0 {
			wait = s.o.Clock.After(s.untilToken())
		}
		s.waiting.Store(i)
		select {
		case <-ctx.Done():
			s.drain()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			s.flush(fctx)
			cancel()
			return nil
		case ev := <-s.queue:
			s.waiting.Store(-1)
			s.absorb(ev)
			s.drain()
		case <-wait:
			s.waiting.Store(-1)
		}
	}
}

// drain absorbs everything queued now, so repeats aggregate before writing.
func (s *EventSink) drain() {
	for {
		select {
		case ev := <-s.queue:
			s.absorb(ev)
		default:
			return
		}
	}
}

// absorb folds ev into its series or starts a new one.
func (s *EventSink) absorb(ev remedy.Event) {
	now := s.o.Clock.Now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	key := seriesKey{reason: ev.Type, incident: ev.IncidentID, action: ev.Action, subReason: ev.Reason}
	if sr, ok := s.series[key]; ok && now.Sub(sr.lastSeen) <= s.o.AggregateWindow {
		sr.count++
		sr.last, sr.lastSeen = ev, now
		s.aggregated.Inc()
		s.enqueue(sr)
		return
	}
	if len(s.series) >= s.o.MaxSeries {
		s.sweep(now)
	}
	if len(s.series) >= s.o.MaxSeries {
		s.dropped.WithLabelValues("backlog_full").Inc()
		return
	}
	sr := &series{key: key, first: ev, last: ev, count: 1, lastSeen: now}
	s.series[key] = sr
	s.enqueue(sr)
}

// sweep forgets series outside the window with nothing left to write.
func (s *EventSink) sweep(now time.Time) {
	for k, sr := range s.series {
		if !sr.queued && now.Sub(sr.lastSeen) > s.o.AggregateWindow {
			delete(s.series, k)
		}
	}
}

func (s *EventSink) enqueue(sr *series) {
	if !sr.queued {
		sr.queued = true
		s.pending = append(s.pending, sr)
		s.pendingG.Set(float64(len(s.pending)))
	}
}

// untilToken is how long until the next write may go: a rate-limit
// token, and the end of a hold after an API error.
func (s *EventSink) untilToken() time.Duration {
	now := s.o.Clock.Now()
	r := s.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return max(d, s.holdUntil.Sub(now), time.Millisecond)
}

// flush writes pending series, oldest first, while tokens last.
func (s *EventSink) flush(ctx context.Context) {
	defer func() { s.pendingG.Set(float64(len(s.pending))) }()
	for len(s.pending) > 0 && ctx.Err() == nil {
		now := s.o.Clock.Now()
		if now.Before(s.holdUntil) || !s.lim.AllowN(now, 1) {
			return
		}
		sr := s.pending[0]
		s.pending = s.pending[1:]
		sr.queued = false
		err := s.write(ctx, sr)
		switch {
		case err == nil:
			sr.tries = 0
			s.setFailing(false, nil)
		case rejected(err):
			s.dropped.WithLabelValues("rejected").Inc()
			s.writes.WithLabelValues(string(sr.key.reason), "error").Inc()
			s.log.Warn("Kubernetes Event rejected; dropped", "reason", sr.key.reason, "incident", sr.key.incident, "err", err)
			s.forget(sr)
		default:
			s.writes.WithLabelValues(string(sr.key.reason), "error").Inc()
			s.setFailing(true, err)
			sr.tries++
			if sr.tries >= s.o.Attempts {
				s.dropped.WithLabelValues("api_error").Inc()
				s.forget(sr)
				continue
			}
			s.enqueue(sr)
			s.holdUntil = s.o.Clock.Now().Add(eventRetryDelay << (sr.tries - 1))
			return
		}
	}
}

// forget drops a series whose pending write was given up; occurrences the
// API server already has stay there.
func (s *EventSink) forget(sr *series) {
	if sr.sent == 0 {
		delete(s.series, sr.key)
		return
	}
	sr.count, sr.tries = sr.sent, 0
}

// setFailing logs API trouble once per change of state.
func (s *EventSink) setFailing(failing bool, err error) {
	if failing == s.failing {
		return
	}
	s.failing = failing
	if failing {
		s.log.Warn("cannot write Kubernetes Events; retrying within the rate limit, then dropping (remediation continues)", "err", err)
	} else {
		s.log.Info("writing Kubernetes Events again")
	}
}

// rejected reports API errors that retrying the same write cannot fix.
func rejected(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) ||
		apierrors.IsUnauthorized(err) || apierrors.IsMethodNotSupported(err)
}

// write creates sr's Event or updates its series to the current count.
func (s *EventSink) write(ctx context.Context, sr *series) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	events := s.o.Client.Events(s.o.Regarding.Namespace)
	if sr.sent > 0 {
		if sr.count == sr.sent {
			return nil
		}
		patch, err := json.Marshal(map[string]any{"series": eventsv1.EventSeries{
			Count:            sr.count,
			LastObservedTime: metav1.NewMicroTime(sr.last.Time),
		}})
		if err != nil {
			return fmt.Errorf("event series patch: %w", err)
		}
		_, err = events.Patch(ctx, sr.name, types.MergePatchType, patch, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			// Expired (events live an hour by default): start a new Event.
			sr.sent, sr.name = 0, ""
			return s.create(ctx, sr)
		}
		if err != nil {
			return fmt.Errorf("update event %s series: %w", sr.name, err)
		}
		sr.sent = sr.count
		s.writes.WithLabelValues(string(sr.key.reason), "updated").Inc()
		return nil
	}
	return s.create(ctx, sr)
}

func (s *EventSink) create(ctx context.Context, sr *series) error {
	ev := s.event(sr)
	for range 3 {
		_, err := s.o.Client.Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			ev.Name = s.name(sr.first.Time)
			continue
		}
		if err != nil {
			return fmt.Errorf("create event %s (%s): %w", ev.Name, ev.Reason, err)
		}
		sr.name, sr.sent = ev.Name, sr.count
		s.writes.WithLabelValues(string(sr.key.reason), "created").Inc()
		return nil
	}
	return fmt.Errorf("create event for %s: names kept colliding", ev.Reason)
}

// event builds the Event for sr (a series when it already has repeats).
func (s *EventSink) event(sr *series) *eventsv1.Event {
	action := sr.key.action
	if action == "" {
		action = incidentAction
	}
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.name(sr.first.Time),
			Namespace: s.o.Regarding.Namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "medic"},
		},
		EventTime:           metav1.NewMicroTime(sr.first.Time),
		ReportingController: s.o.ReportingController,
		ReportingInstance:   s.o.ReportingInstance,
		Action:              truncate(action, 128),
		Reason:              string(sr.key.reason),
		Regarding:           s.o.Regarding,
		Note:                Note(sr.last),
		Type:                EventType(sr.last),
	}
	if sr.count > 1 {
		ev.Series = &eventsv1.EventSeries{Count: sr.count, LastObservedTime: metav1.NewMicroTime(sr.last.Time)}
	}
	return ev
}

// name is "<pod>.<hex nanoseconds><hex sequence>", unique per sink, like
// client-go's recorder (events.k8s.io rejects generateName).
func (s *EventSink) name(t time.Time) string {
	s.seq++
	suffix := fmt.Sprintf(".%x%04x", t.UnixNano(), s.seq&0xffff)
	return truncate(s.o.Regarding.Name, 253-len(suffix)) + suffix
}

// lookupUID fills a Pod reference's UID once, best effort.
func (s *EventSink) lookupUID(ctx context.Context) {
	r := &s.o.Regarding
	if r.Kind != "Pod" || r.UID != "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	pod, err := s.o.Client.Pods(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if err != nil {
		s.log.Info("Events will name medic's pod without its UID", "pod", r.Namespace+"/"+r.Name, "err", err)
		return
	}
	r.UID, r.ResourceVersion = pod.UID, ""
}

// EventType is the Kubernetes Event type (Normal or Warning) for ev.
func EventType(ev remedy.Event) string {
	switch ev.Type {
	case remedy.IncidentOpened, remedy.RemediationFailed, remedy.IncidentExhausted, remedy.IncidentRetried,
		remedy.PluginCrashed, remedy.PluginQuarantined:
		return typeWarning
	case remedy.RemediationSuppressed:
		if ev.Reason == "dryRun" || ev.Reason == "paused" {
			return typeNormal
		}
		return typeWarning
	}
	return typeNormal
}

// Note is the Event's note: the alert, the action, the attempt n/m and
// step, the evidence value, the incident, the reason and the message, at
// most MaxNoteBytes.
func Note(ev remedy.Event) string {
	var b strings.Builder
	if ev.Alert == "" && ev.Plugin != "" { // a plugin's own lifecycle, not an incident
		fmt.Fprintf(&b, "plugin=%s", ev.Plugin)
		if ev.Message != "" {
			b.WriteString(": ")
			b.WriteString(ev.Message)
		}
		return truncate(b.String(), MaxNoteBytes)
	}
	fmt.Fprintf(&b, "alert=%s", ev.Alert)
	if ev.Action != "" {
		fmt.Fprintf(&b, " action=%s", ev.Action)
	}
	if ev.Attempt > 0 {
		fmt.Fprintf(&b, " attempt=%d/%d", ev.Attempt, ev.MaxAttempts)
	}
	if ev.Step > 0 {
		fmt.Fprintf(&b, " step=%d", ev.Step)
	}
	fmt.Fprintf(&b, " value=%s", strconv.FormatFloat(ev.Value, 'g', -1, 64))
	if ev.IncidentID != "" {
		fmt.Fprintf(&b, " incident=%s", ev.IncidentID)
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", ev.Reason)
	}
	if ev.DryRun {
		b.WriteString(" dryRun=true")
	}
	if ev.Duration > 0 {
		fmt.Fprintf(&b, " duration=%s", time.Duration(ev.Duration*float64(time.Second)).Round(time.Millisecond))
	}
	if ev.Message != "" {
		b.WriteString(": ")
		b.WriteString(ev.Message)
	}
	return truncate(b.String(), MaxNoteBytes)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
