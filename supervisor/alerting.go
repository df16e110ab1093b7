package supervisor

import (
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/notify"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// newNotifier builds the Alertmanager notifier of alerting:, or nil when
// no Alertmanager is configured.
func newNotifier(s *Supervisor, c *config.Config, ln net.Listener) (*notify.Notifier, error) {
	if !c.Alerting.Enabled() {
		return nil, nil
	}
	addr := c.Listen
	if ln != nil {
		addr = ln.Addr().String()
	}
	return notify.New(notify.Options{Config: c.Alerting, Logger: s.log.With("component", "notify"),
		EvaluationInterval: c.EvaluationInterval.D(), UserAgent: "medic/" + Version,
		GeneratorURL: notify.GeneratorURL(c.Alerting.ExternalURL, addr, os.LookupEnv)})
}

// notifyFiring hands the alerts firing at this evaluation to the notifier.
func (s *Supervisor) notifyFiring(now time.Time, firing []rules.Alert) {
	if s.notifier == nil {
		return
	}
	out := make([]notify.Alert, 0, len(firing))
	for _, a := range firing {
		out = append(out, notify.Alert{Labels: a.Labels, Annotations: a.Annotations, FiredAt: a.FiredAt})
	}
	s.notifier.Update(now, out)
}

// budgetCollector exports each action budget's use (what /status shows),
// for dashboards: runs in the current window and the maximum.
type budgetCollector struct {
	s         *Supervisor
	used, max *prometheus.Desc
}

func newBudgetCollector(s *Supervisor) *budgetCollector {
	return &budgetCollector{s: s,
		used: prometheus.NewDesc("medic_budget_used", "Runs of the action within its budget's current window.", []string{"action"}, nil),
		max:  prometheus.NewDesc("medic_budget_max", "Runs the action's budget allows per window.", []string{"action"}, nil),
	}
}

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.used; ch <- c.max }

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.s.budgetStatus(c.s.clk.Now()) {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(b.Used), b.Action)
		ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(b.Max), b.Action)
	}
}
