package restart_test

import (
	"strings"
	"testing"

	"github.com/medic-sidecar/medic/actions/restart"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/config"
)

// The pod and rollout keys as a user writes them, through medic's strict
// config loader.
func TestKubeModesFromYAML(t *testing.T) {
	c, err := config.Parse([]byte(`
actions:
  evict-self:
    restart: {mode: pod, evict: true}
  delete-relay:
    restart: {mode: pod, namespace: kubearmor, pod: kubearmor-relay-0}
  roll-agent:
    restart: {mode: rollout, workloadKind: DaemonSet, workloadName: spire-agent}
  roll-owner:
    restart: {mode: rollout}
`))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	got := c.Actions["roll-agent"].Spec.(*restart.Config)
	if got.Mode != restart.ModeRollout || got.WorkloadKind != restart.KindDaemonSet || got.WorkloadName != "spire-agent" {
		t.Errorf("roll-agent = %+v", got)
	}
	if !c.Actions["evict-self"].Spec.(*restart.Config).Evict {
		t.Error("evict-self: evict not set")
	}

	c, err = config.Parse([]byte(`
actions:
  bad:
    restart: {mode: rollout, workloadKind: Job, evict: true}
`))
	if err == nil {
		err = c.Validate()
	}
	var msgs []string
	for _, e := range cfg.Flatten(err) {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"actions.bad.restart.workloadKind: must be Deployment, DaemonSet or StatefulSet",
		"actions.bad.restart.workloadName:", "actions.bad.restart.evict: applies to mode pod only"} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q:\n%s", want, all)
		}
	}
}
