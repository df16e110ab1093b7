package remedy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the remedy engine's Prometheus metrics.
type Metrics struct {
	attempts   *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	open       prometheus.Gauge
	duration   *prometheus.HistogramVec
	incidents  *prometheus.CounterVec
	// byState counts open incidents by state at scrape time.
	byState *prometheus.Desc
	engine  atomic.Pointer[Engine]
}

// NewMetrics creates the engine's metrics (not registered).
func NewMetrics() *Metrics {
	return &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_remediation_attempts_total",
			Help: "Remediation attempts by action and result (succeeded, failed, suppressed).",
		}, []string{"action", "result"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_remediations_suppressed_total",
			Help: "Remediation attempts held back by a guard, by action and reason (dryRun, paused, budget, precondition, concurrency, fleet, fleet-outage, state).",
		}, []string{"action", "reason"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_incidents_open", Help: "Incidents not yet resolved (remediating or exhausted).",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "medic_remediation_duration_seconds", Help: "Time an action took to run, by action.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"action"}),
		byState: prometheus.NewDesc("medic_incidents",
			"Open incidents by state (remediating, held: waiting on a guard, exhausted).", []string{"state"}, nil),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_incidents_total", Help: "Incidents that ended, by alert and outcome (resolved, exhausted).",
		}, []string{"alert", "outcome"}),
	}
}

func (m *Metrics) init(action string) {
	for _, r := range []string{ResultSucceeded, ResultFailed, ResultSuppressed} {
		m.attempts.WithLabelValues(action, r)
	}
	for _, r := range []string{ReasonDryRun, ReasonPaused, ReasonBudget, ReasonPrecondition, ReasonConcurrency, ReasonFleet, ReasonFleetOutage, ReasonState} {
		m.suppressed.WithLabelValues(action, r)
	}
}

// InitAlert creates the incident counters of an alert with a ladder at 0
// (per outcome), so increase() sees its first resolved or exhausted incident.
func (m *Metrics) InitAlert(alert string) {
	for _, o := range []string{StateResolved.String(), StateExhausted.String()} {
		m.incidents.WithLabelValues(alert, o)
	}
}

// Collectors returns every metric for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.attempts, m.suppressed, m.open, m.duration, m.incidents, stateCollector{m}}
}

// stateCollector reports medic_incidents{state} from the engine's open
// incidents when scraped.
type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.byState }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[State]int{}
	if e := c.m.engine.Load(); e != nil {
		counts = e.openByState()
	}
	for _, st := range []State{StateRemediating, StateHeld, StateExhausted} {
		ch <- prometheus.MustNewConstMetric(c.m.byState, prometheus.GaugeValue, float64(counts[st]), st.String())
	}
}
