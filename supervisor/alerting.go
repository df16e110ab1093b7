package supervisor

import (
	"net"
	"os"
	"time"

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
