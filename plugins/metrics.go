package plugins

import "github.com/prometheus/client_golang/prometheus"

// Call results, the values of medic_plugin_calls_total's result label.
const (
	ResultSucceeded   = "succeeded"   // the plugin reported success
	ResultRetryable   = "retryable"   // the plugin reported a retryable error
	ResultPermanent   = "permanent"   // the plugin reported a permanent error
	ResultTimeout     = "timeout"     // the plugin ignored its deadline and was killed
	ResultCrashed     = "crashed"     // the plugin died or became unreachable during the call
	ResultCanceled    = "canceled"    // medic cancelled the call
	ResultUnavailable = "unavailable" // not called: not running, restarting, quarantined or failing to start
)

// metrics are a host's collectors; the lead registers them on medic's registry.
type metrics struct {
	up          *prometheus.GaugeVec
	restarts    *prometheus.CounterVec
	calls       *prometheus.CounterVec
	quarantined *prometheus.GaugeVec
}

func newMetrics() *metrics {
	return &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "medic_plugin_up",
			Help: "1 while the remediation plugin's process is running and answered its handshake.",
		}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_plugin_restarts_total",
			Help: "Restarts of a remediation plugin after it crashed, hung or failed to start.",
		}, []string{"plugin"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_plugin_calls_total",
			Help: "Remediate calls to a plugin by result: succeeded, retryable, permanent, timeout, crashed, canceled, unavailable.",
		}, []string{"plugin", "result"}),
		quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "medic_plugin_quarantined",
			Help: "1 while the plugin is quarantined for crashing too often; its actions fail as permanent errors.",
		}, []string{"plugin"}),
	}
}

// init creates every plugin's series so they exist before the first event.
func (m *metrics) init(name string) {
	m.up.WithLabelValues(name).Set(0)
	m.restarts.WithLabelValues(name)
	m.quarantined.WithLabelValues(name).Set(0)
	for _, r := range []string{ResultSucceeded, ResultRetryable, ResultPermanent, ResultTimeout, ResultCrashed, ResultCanceled, ResultUnavailable} {
		m.calls.WithLabelValues(name, r)
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.restarts, m.calls, m.quarantined}
}
