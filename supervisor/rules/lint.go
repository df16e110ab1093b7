package rules

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// ProbeInfo names one configured probe for Lint.
type ProbeInfo struct {
	Name, Kind string
}

// Kinds of probes that ingest an agent's own metric names (anything else
// only produces medic_* series).
var ingestingKinds = []string{"scrape"}

// Lint finds selectors in rules (and extra expressions, e.g. preconditions,
// keyed by where they are) that can never match what medic's probes
// store: Prometheus's `up`, the `job`/`instance` labels a Prometheus
// server adds, probe names that are not configured, and agent metric
// names when no probe ingests agent metrics. It returns one warning per
// problem, naming medic's equivalent; a rule pasted from a Prometheus
// server is the usual cause.
func Lint(groups []GroupSpec, extra map[string]string, probes []ProbeInfo) []string {
	var names []string
	ingest := false
	for _, p := range probes {
		names = append(names, p.Name)
		if slices.Contains(ingestingKinds, p.Kind) {
			ingest = true
		}
	}
	sort.Strings(names)
	recorded := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	probeList := strings.Join(names, ", ")
	if probeList == "" {
		probeList = "none configured"
	}
	type item struct{ where, expr string }
	var items []item
	for _, g := range groups {
		for _, r := range g.Rules {
			where := r.Where
			if where == "" {
				where = "rules"
			}
			name := r.Alert
			kind := "alert"
			if r.Record != "" {
				name, kind = r.Record, "record"
			}
			items = append(items, item{fmt.Sprintf("%s: %s %s", where, kind, name), r.Expr})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		items = append(items, item{k, extra[k]})
	}
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, it := range items {
		e, err := exprParser.ParseExpr(it.expr)
		if err != nil {
			continue // reported as an error elsewhere
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			metric := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					metric = m.Value
				}
			}
			sel := vs.String()
			switch {
			case metric == "up":
				add(fmt.Sprintf("%s: %s selects `up`, which only a Prometheus server records; medic's equivalent is medic_probe_up{probe=\"<name>\"} (probes: %s)", it.where, sel, probeList))
			case metric != "" && !strings.HasPrefix(metric, "medic_") && !recorded[metric] && !ingest:
				add(fmt.Sprintf("%s: %s selects %s, but no probe ingests an agent's metrics (only scrape probes do; probes: %s)", it.where, sel, metric, probeList))
			}
			for _, m := range vs.LabelMatchers {
				if m.Matches("") {
					continue // also matches series without the label
				}
				switch m.Name {
				case "job", "instance":
					add(fmt.Sprintf("%s: %s matches on %q, a label a Prometheus server adds; medic's series have none: they carry probe=\"<name>\" instead (probes: %s)", it.where, sel, m.Name, probeList))
				case "probe":
					if m.Type == labels.MatchEqual && !slices.Contains(names, m.Value) {
						add(fmt.Sprintf("%s: %s: no probe named %q (probes: %s)", it.where, sel, m.Value, probeList))
					}
				}
			}
			return nil
		})
	}
	return out
}
