package supervisor

import (
	"maps"
	"net/http"
	"runtime"

	"github.com/medic-sidecar/medic/internal/version"
	"github.com/medic-sidecar/medic/supervisor/api"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// api is the Prometheus-compatible HTTP API on the store, answered by the
// engine the rules run on.
func (s *Supervisor) api() http.Handler {
	eng, q := s.engine.PromQL()
	return api.New(api.Options{Engine: eng, Queryable: q, Parser: config.ExprParser, Rules: s.rulesWithLadders,
		EvaluationInterval: s.cfg.EvaluationInterval.D(), Now: s.clk.Now, Version: Version, Revision: version.Get().Revision, GoVersion: runtime.Version(),
		Logger: s.log.With("component", "api")})
}

// rulesWithLadders is the rules' status with each rule's ladder.
func (s *Supervisor) rulesWithLadders() []rules.RuleStatus {
	rs := s.mgr.Status()
	for i := range rs {
		rs[i].Ladder = s.ladders[rs[i].Alert]
	}
	return rs
}

// Summary is the banner of /status: what needs attention, counted.
type Summary struct {
	Firing      int `json:"firing"`
	Pending     int `json:"pending"`
	Remediating int `json:"remediating"`
	// Held incidents wait on a guard (precondition, fleet, pause, budget, state).
	Held       int `json:"held"`
	Exhausted  int `json:"exhausted"`
	ProbesDown int `json:"probesDown"`
	RuleErrors int `json:"ruleErrors"`
}

// explain links what /status shows so it reads as one story: each rule
// gets its ladder, each active alert the incident remediating it, and the
// summary counts what needs attention.
func (s *Supervisor) explain(st *Status) {
	open := map[string][]int{} // alert name -> indexes of open incidents
	for i, inc := range st.Incidents {
		switch inc.State {
		case remedy.StateResolved:
			continue
		case remedy.StateHeld:
			st.Summary.Held++
		case remedy.StateExhausted:
			st.Summary.Exhausted++
		default:
			st.Summary.Remediating++
		}
		open[inc.Alert] = append(open[inc.Alert], i)
	}
	st.Alerts = []rules.Alert{}
	for i := range st.Rules {
		r := &st.Rules[i]
		r.Ladder = s.ladders[r.Alert]
		if r.Error != "" {
			st.Summary.RuleErrors++
		}
		for j := range r.Active {
			a := &r.Active[j]
			switch a.State {
			case rules.StateFiring:
				st.Summary.Firing++
			case rules.StatePending:
				st.Summary.Pending++
			}
			lm := a.Labels.Map()
			for _, k := range open[a.Rule] {
				if maps.Equal(st.Incidents[k].Labels, lm) {
					a.Incident = st.Incidents[k].ID
				}
			}
		}
		st.Alerts = append(st.Alerts, r.Active...)
	}
	for _, p := range st.Probes {
		if !p.LastSeen.IsZero() && p.Up != 1 {
			st.Summary.ProbesDown++
		}
	}
}
