package config

import (
	"fmt"
	"maps"
	"slices"

	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// Guard is one check an action's attempts go through, as medic validate
// and /status list them.
type Guard struct {
	// Guard is the suppression reason it reports: dryRun, paused, budget,
	// precondition, fleet-outage, fleet.
	Guard string `json:"guard"`
	// Active is false when it is configured but does nothing now (a
	// requirement on a source without a url; a fleet limit outside
	// Kubernetes).
	Active bool   `json:"active"`
	Detail string `json:"detail"`
}

// ActionGuards is one action's guards.
type ActionGuards struct {
	Action string  `json:"action"`
	Guards []Guard `json:"guards"`
}

// Guards lists every action's guards in order of evaluation. inCluster
// says whether fleet limits are enforced (Kubernetes Leases); nil: not
// known (medic validate), described as "enforced in Kubernetes only".
func (c *Config) Guards(inCluster *bool) []ActionGuards {
	var out []ActionGuards
	for _, n := range slices.Sorted(maps.Keys(c.Actions)) {
		a := c.Actions[n]
		var gs []Guard
		if c.DryRun {
			gs = append(gs, Guard{remedy.ReasonDryRun, true, "dryRun: true — decisions are made, nothing is run"})
		}
		gs = append(gs, Guard{remedy.ReasonPaused, true, "the pause file in stateDir or the medic.io/pause annotation"})
		for _, r := range a.Requires.Remedy() {
			g := Guard{Guard: r.Reason, Active: true}
			where := "local store"
			if r.Source != "" {
				src := c.Sources[r.Source]
				where = "source " + r.Source + ": " + src.Describe()
				g.Active = src.Enabled()
			}
			g.Detail = fmt.Sprintf("%s (%s; onError %s)", r.Expr, where, r.OnError)
			if !g.Active {
				g.Detail += " — inactive: counts as met"
			}
			gs = append(gs, g)
		}
		gs = append(gs, Guard{remedy.ReasonConcurrency, true, "one incident at a time runs it on this medic"})
		if a.Budget != nil {
			gs = append(gs, Guard{remedy.ReasonBudget, true, fmt.Sprintf("at most %d runs per %s", a.Budget.Max, a.Budget.Window)})
		}
		if f := a.Fleet; f != nil {
			g := Guard{Guard: remedy.ReasonFleet, Active: inCluster == nil || *inCluster}
			g.Detail = fmt.Sprintf("at most %d at once across the namespace (Kubernetes Leases", f.Max)
			if f.Hold > 0 {
				g.Detail += fmt.Sprintf(", each held %s", f.Hold)
			}
			onErr := f.OnAPIError
			if onErr == "" {
				onErr = FleetWait
			}
			g.Detail += "; onAPIError " + onErr + ")"
			switch {
			case inCluster == nil:
				g.Detail += " — enforced in Kubernetes only"
			case !*inCluster:
				g.Detail += " — inactive: not in Kubernetes"
			}
			gs = append(gs, g)
		}
		out = append(out, ActionGuards{Action: n, Guards: gs})
	}
	return out
}

// SortedKeys returns m's keys in order.
func SortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
