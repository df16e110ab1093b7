package rules

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/store"
)

const groupsFile = `groups:
  - name: spire
    interval: 10s
    rules:
      - record: spire:sync_ok:increase2m
        expr: increase(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[2m])
      - alert: SPIREAgentNotSyncing
        expr: spire:sync_ok:increase2m == 0
        for: 30s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.probe }} not syncing ({{ $value | humanize }})"
          medic.io/remediate: "reconnect-server, restart-agent"
`

const promRule = `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: spire
  labels: {release: prom}
spec:
  groups:
    - name: spire-agent
      rules:
        - alert: SPIREAgentDown
          expr: medic_probe_up{probe="spire"} == 0
          for: 1m
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: two}
spec:
  groups:
    - name: second
      rules:
        - record: x:y
          expr: vector(1)
`

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGroupsFileAndPrometheusRule(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.rules.yml", groupsFile)
	write(t, dir, "b.rules.yml", promRule)
	files, err := ExpandGlobs([]string{"*.rules.yml"}, dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("glob: %v %v", files, err)
	}
	gs, err := LoadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 3 || gs[0].Name != "spire" || gs[1].Name != "spire-agent" || gs[2].Name != "second" {
		t.Fatalf("groups: %+v", gs)
	}
	if time.Duration(gs[0].Interval) != 10*time.Second {
		t.Errorf("interval %v", gs[0].Interval)
	}
	rs := gs[0].FileRules()
	if rs[0].Record != "spire:sync_ok:increase2m" || rs[1].Alert != "SPIREAgentNotSyncing" || rs[1].Line != 7 {
		t.Errorf("rules: %+v", rs)
	}
	// The PrometheusRule's rule keeps its line in the manifest.
	if r := gs[1].FileRules()[0]; r.Line != 10 || r.Where() != files[1]+":10" {
		t.Errorf("PrometheusRule rule at %s, want line 10", r.Where())
	}
	if r := gs[2].FileRules()[0]; r.Line != 21 {
		t.Errorf("second document's rule at line %d, want 21", r.Line)
	}
	if got := ParseLadder(rs[1].Annotations[RemediateAnnotation]); strings.Join(got, "|") != "reconnect-server|restart-agent" {
		t.Errorf("ladder %v", got)
	}
}

func TestRuleFileErrorsHaveFileAndLine(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, content, want string }{
		{"badexpr.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n", "badexpr.yml:5:"},
		{"unknown.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n        remediate: [a]\n", "unknown.yml:6:"},
		{"both.yml", "groups:\n  - name: g\n    rules:\n      - alert: A\n        record: b\n        expr: x\n", "both.yml:5:17: 4:16: group \"g\", rule 1"},
		{"crd.yml", "kind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups:\n    - name: g\n      rules:\n        - alert: A\n          expr: sum(\n", "crd.yml:8:"},
		{"syntax.yml", "groups:\n  - name: g\n   rules: [\n", "syntax.yml:1: did not find"},
		{"notrules.yml", "listen: x\n", "not a rule file"},
	}
	for _, c := range cases {
		p := write(t, dir, c.name, c.content)
		_, err := LoadFiles([]string{p})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	if _, err := ExpandGlobs([]string{"nothing-*.yml"}, dir); err == nil {
		t.Error("a glob matching nothing must be an error")
	}
}

// A recording rule's result is in the store for the alert after it in the
// same group at the same evaluation; a vanished series gets a staleness marker.
func TestRecordingRuleFeedsAlertInGroupOrder(t *testing.T) {
	gs, err := ParseRuleFile("g.yml", []byte(groupsFile))
	if err != nil {
		t.Fatal(err)
	}
	spec := GroupSpec{Name: gs[0].Name, Interval: time.Duration(gs[0].Interval)}
	for _, r := range gs[0].FileRules() {
		spec.Rules = append(spec.Rules, RuleSpec{Alert: r.Alert, Record: r.Record, Expr: r.Expr, For: time.Duration(r.For),
			Labels: r.Labels, Annotations: r.Annotations, Where: r.Where()})
	}
	groups, err := NewGroups([]GroupSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Retention: time.Hour})
	eng := NewEngine(st, 0, slog.New(slog.DiscardHandler))
	m := NewGroupManager(eng, groups, st, slog.New(slog.DiscardHandler))
	base := time.Unix(1_800_000_000, 0)
	sync := labels.FromStrings("__name__", "spire_agent_manager_sync_fetch_entries_updates", "status", "OK", "probe", "spire")
	// Syncs every 5 s for 3 minutes, then none for 3 minutes.
	for i := 0; i <= 72; i++ {
		ts := base.Add(time.Duration(i) * 5 * time.Second)
		n := float64(min(i, 36))
		st.Append(sync, ts, n)
		m.Eval(context.Background(), ts)
	}
	// The group runs every 10 s, so records exist at even steps only.
	q, _ := eng.Query(context.Background(), `count_over_time(spire:sync_ok:increase2m[6m])`, base.Add(360*time.Second))
	if len(q) != 1 || q[0].F != 36 {
		t.Fatalf("recorded samples: %v, want 36 (every 10 s over the left-open 6 m)", q)
	}
	f := m.Firing()
	if len(f) != 1 || f[0].Rule != "SPIREAgentNotSyncing" || f[0].Labels.Get("severity") != "page" {
		t.Fatalf("firing: %+v", f)
	}
	if got := f[0].Annotations["summary"]; got != "spire not syncing (0)" {
		t.Errorf("summary %q (Prometheus templates: humanize)", got)
	}
	st2 := m.Status()
	if st2[0].Record != "spire:sync_ok:increase2m" || st2[0].Health != "ok" || st2[1].Alert != "SPIREAgentNotSyncing" {
		t.Errorf("status %+v", st2)
	}
}

func TestRecordingRuleStaleness(t *testing.T) {
	st := store.New(store.Options{Retention: time.Hour})
	eng := NewEngine(st, 0, slog.New(slog.DiscardHandler))
	r := &RecordingRule{Record: "r", Expr: "x > 0"}
	base := time.Unix(1_800_000_000, 0)
	x := labels.FromStrings("__name__", "x")
	st.Append(x, base, 1)
	if n, err := r.Eval(context.Background(), base, eng.Query, st); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	st.Append(x, base.Add(5*time.Second), 0)
	if n, _ := r.Eval(context.Background(), base.Add(5*time.Second), eng.Query, st); n != 0 {
		t.Fatal(n)
	}
	// Without the staleness marker r would still be visible for 5 minutes.
	v, _ := eng.Query(context.Background(), "r", base.Add(10*time.Second))
	if len(v) != 0 {
		t.Fatalf("r still visible after it stopped: %v", v)
	}
}

func TestLintWarnsAboutPrometheusOnlySelectors(t *testing.T) {
	groups := []GroupSpec{{Name: "g", Rules: []RuleSpec{
		{Alert: "Down", Expr: `up{job="spire-agent"} == 0`, Where: "f.yml:3"},
		{Alert: "Inst", Expr: `rate(spire_x_total{instance=~".+"}[5m]) > 0`, Where: "f.yml:6"},
		{Alert: "Probe", Expr: `medic_probe_up{probe="spirre"} == 0`, Where: "f.yml:9"},
		{Alert: "Fine", Expr: `medic_probe_up{probe="spire", job!="x"} == 0 or my:rec > 1`, Where: "f.yml:12"},
		{Record: "my:rec", Expr: `vector(1)`, Where: "f.yml:15"},
	}}}
	probes := []ProbeInfo{{Name: "spire", Kind: "tcp"}}
	w := Lint(groups, map[string]string{"actions.r.requires": `up == 1`}, probes)
	all := strings.Join(w, "\n")
	for _, want := range []string{
		"f.yml:3: alert Down: up{job=\"spire-agent\"} selects `up`",
		`medic_probe_up{probe="<name>"} (probes: spire)`,
		`f.yml:3: alert Down: up{job="spire-agent"} matches on "job"`,
		`f.yml:6: alert Inst: spire_x_total{instance=~".+"} selects spire_x_total, but no probe ingests`,
		`matches on "instance"`,
		`f.yml:9: alert Probe: medic_probe_up{probe="spirre"}: no probe named "spirre"`,
		"actions.r.requires: up selects `up`",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing warning %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "f.yml:12") || strings.Contains(all, "f.yml:15") {
		t.Errorf("false positive:\n%s", all)
	}
	// With a scrape probe, agent metric names are plausible.
	w = Lint(groups, nil, []ProbeInfo{{Name: "spire", Kind: "scrape"}})
	if strings.Contains(strings.Join(w, "\n"), "no probe ingests") {
		t.Errorf("scrape probe ingests agent metrics: %v", w)
	}
}
