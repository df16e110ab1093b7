package ruletest

import (
	"sort"
	"time"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/replay"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// remediation is the medic config a remediation_test runs.
type remediation struct {
	cfg *config.Config
}

// loadMedicConfig loads medic_config; its rules are the default rules under test.
func loadMedicConfig(path string) (*remediation, []rules.GroupSpec, error) {
	c, err := config.LoadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return &remediation{cfg: c}, c.RuleGroups(), nil
}

type simulation struct {
	sim *replay.Sim
}

func (r *remediation) start(eng *rules.Engine, start time.Time) (*simulation, error) {
	sim, err := replay.NewSim(replay.SimOptions{Config: r.cfg, Query: eng.Query, Start: start})
	if err != nil {
		return nil, err
	}
	return &simulation{sim: sim}, nil
}

func (s *simulation) observe(ts time.Time, firing []rules.Alert) { s.sim.Step(ts, firing) }

func (s *simulation) stop() { s.sim.Close() }

// attemptsAt runs the ladder up to t and lists every attempt so far, in
// the order they started.
func (s *simulation) attemptsAt(t time.Time) []ExpAttempt {
	s.sim.AdvanceTo(t)
	type at struct {
		start time.Time
		seq   int
		a     ExpAttempt
	}
	var all []at
	for _, inc := range s.sim.Incidents() {
		for _, a := range inc.Attempts {
			all = append(all, at{a.StartedAt, len(all), ExpAttempt{Action: a.Action, Result: a.Result, Reason: a.Reason}})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].start.Before(all[j].start) })
	out := make([]ExpAttempt, 0, len(all))
	for _, a := range all {
		out = append(out, a.a)
	}
	return out
}
