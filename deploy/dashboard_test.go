package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type dashPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

type dashboard struct {
	Title      string      `json:"title"`
	UID        string      `json:"uid"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// grafanaVars are Grafana's range variables, replaced by durations so the
// PromQL parser reads the query as Prometheus will.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "6h", "$__interval", "30s")

var labelValuesRe = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// TestDashboardQueriesReadMedicMetrics parses every panel query of
// monitoring/dashboard.json (and the template variables' queries) with the
// PromQL parser and checks each metric is one medic exports; selectors on
// metrics a running medic has must match its series (the pod's labels from
// the scrape aside). It also checks the dashboard shows what it promises.
func TestDashboardQueriesReadMedicMetrics(t *testing.T) {
	b, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("title %q uid %q", d.Title, d.UID)
	}
	exported := exportedMetrics(t)
	series := runningMedicSeries(t)
	read := map[string]bool{}
	check := func(where, q string) {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(q))
		if err != nil {
			t.Errorf("%s: %q: %v", where, q, err)
			return
		}
		for _, ms := range parser.ExtractSelectors(expr) {
			var own []*labels.Matcher
			for _, m := range ms {
				if m.Name == labels.MetricName {
					read[m.Value] = true
				}
				if !slices.Contains(scrapeLabels, m.Name) {
					own = append(own, m)
				}
			}
			checkSelector(t, where, own, series, exported)
		}
	}
	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				check("panel "+p.Title+" "+tg.RefID, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesRe.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		check("variable "+v.Name, m[1])
	}
	// What the dashboard promises (issue 8): probes up and last error, alerts
	// by state, attempts by result, suppressions by reason, budgets,
	// incidents open and exhausted, stream last-message age, certificate expiry.
	for _, m := range []string{"medic_probe_up", "medic_probe_failures_total", "medic_alerts", "medic_remediation_attempts_total",
		"medic_remediations_suppressed_total", "medic_budget_used", "medic_incidents_open", "medic_incidents_total",
		"medic_stream_last_message_timestamp_seconds", "medic_cert_not_after_timestamp_seconds"} {
		if !read[m] {
			t.Errorf("no panel reads %s", m)
		}
	}
}
