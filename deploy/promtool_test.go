package deploy_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/testpeers/workloadapi"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
)

// scrapeLabels are what a PodMonitor scrape adds to medic's own labels.
var scrapeLabels = []string{"namespace", "pod", "container", "endpoint", "instance", "job", "service"}

// notRunHere are medic metrics of parts a test medic outside Kubernetes and
// without plugins does not start (checked by name only).
var notRunHere = map[string]bool{"medic_kube_paused": true, "medic_kube_events_dropped_total": true, "medic_plugin_quarantined": true,
	"medic_stream_last_message_timestamp_seconds": true}

// promtoolTests is the part of prometheusrule_test.yaml the Go tests read.
type promtoolTests struct {
	Tests []struct {
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromqlExprTest []struct {
			Expr       string           `yaml:"expr"`
			ExpSamples []map[string]any `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

func readPromtoolTests(t *testing.T) promtoolTests {
	t.Helper()
	b, err := os.ReadFile("monitoring/prometheusrule_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pt promtoolTests
	if err := yaml.Unmarshal(b, &pt); err != nil {
		t.Fatal(err)
	}
	return pt
}

func readPrometheusRule(t *testing.T) (promRule, *yaml.Node) {
	t.Helper()
	b, err := os.ReadFile("monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr promRule
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return pr, &doc
}

// promtool returns Debian's (or $MEDIC_PROMTOOL's) promtool; missing, the
// test skips locally and fails in CI.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MEDIC_PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_PROMTOOL") == "1" {
		t.Fatal("promtool not found (apt install prometheus)")
	}
	t.Skip("promtool not found (apt install prometheus); CI=true makes this a failure")
	return ""
}

// TestPromtoolEveryAlertFires runs `promtool test rules` on
// monitoring/prometheusrule_test.yaml against the PrometheusRule's groups,
// and checks that the file has a test in which each alert fires.
func TestPromtoolEveryAlertFires(t *testing.T) {
	pr, doc := readPrometheusRule(t)
	pt := readPromtoolTests(t)
	fires := map[string]bool{}
	for _, tc := range pt.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			}
		}
	}
	// A recording rule needs a test in which its series has a sample.
	recorded := map[string]bool{}
	for _, tc := range pt.Tests {
		for _, et := range tc.PromqlExprTest {
			if len(et.ExpSamples) > 0 {
				recorded[strings.TrimSpace(strings.Split(et.Expr, "{")[0])] = true
			}
		}
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			switch {
			case r.Record != "" && !recorded[r.Record]:
				t.Errorf("%s: no promtool test in which it records a sample", r.Record)
			case r.Record == "" && !fires[r.Alert]:
				t.Errorf("%s: no promtool test in which it fires", r.Alert)
			}
		}
	}
	bin := promtool(t)

	// promtool reads plain rule groups: spec.groups, as written.
	var spec *yaml.Node
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "spec" {
			spec = root.Content[i+1]
		}
	}
	rules, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testFile, err := os.ReadFile("monitoring/prometheusrule_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600)
	os.WriteFile(filepath.Join(dir, "prometheusrule_test.yaml"), testFile, 0o600)
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "prometheusrule_test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// runningMedicSeries starts medic with examples/spire-agent.yaml (the
// Workload API on a loopback socket, the other peers absent) and returns the series on its /metrics once every probe
// has reported: the real names, label names and zero-initialised values.
func runningMedicSeries(t *testing.T) []labels.Labels {
	t.Helper()
	t.Setenv("MEDIC_STATE_DIR", filepath.Join(t.TempDir(), "state"))
	t.Setenv("SPIRE_SERVER_ADDRESS", "127.0.0.1:1")
	t.Setenv("ALERTMANAGER_URL", "")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	wl, err := workloadapi.Start(workloadapi.Options{SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Close()
	b, err := os.ReadFile("../examples/spire-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(strings.ReplaceAll(string(b), "/run/spire/sockets/agent.sock", sock)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Config: c, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen := 0
		for _, p := range sup.Status().Probes {
			if !p.LastSeen.IsZero() && (p.Name != "svid" || p.Up == 1) {
				seen++
			}
		}
		if seen == len(c.Probes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes did not report within 30s: %+v", sup.Status().Probes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mfs, err := sup.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []labels.Labels
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b := labels.NewScratchBuilder(len(m.GetLabel()) + 1)
			b.Add(labels.MetricName, mf.GetName())
			for _, lp := range m.GetLabel() {
				b.Add(lp.GetName(), lp.GetValue())
			}
			b.Sort()
			out = append(out, b.Labels())
		}
	}
	return out
}

// TestMonitoringMatchesMedicMetrics checks the alerts and their promtool
// tests against a running medic: every selector in prometheusrule.yaml
// selects at least one series medic exports right after start (so a wrong
// label, like state= for outcome=, or a counter that is not zero-initialised
// fails here), and every promtool input series, without the scrape's
// labels, is a series medic exports.
func TestMonitoringMatchesMedicMetrics(t *testing.T) {
	series := runningMedicSeries(t)
	exported := exportedMetrics(t)
	pr, _ := readPrometheusRule(t)
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert+r.Record, err)
			}
			for _, ms := range parser.ExtractSelectors(expr) {
				checkSelector(t, r.Alert+r.Record, ms, series, exported)
			}
		}
	}
	for _, tc := range readPromtoolTests(t).Tests {
		for _, in := range tc.InputSeries {
			lset, err := parser.NewParser(parser.Options{}).ParseMetric(in.Series)
			if err != nil {
				t.Fatalf("%s: %v", in.Series, err)
			}
			name := lset.Get(labels.MetricName)
			if !exported[name] {
				t.Errorf("promtool series %s: medic does not export %s", in.Series, name)
				continue
			}
			own := labels.NewBuilder(lset).Del(scrapeLabels...).Labels()
			if notRunHere[name] {
				continue
			}
			if !slices.ContainsFunc(series, func(l labels.Labels) bool { return labels.Equal(l, own) }) {
				t.Errorf("promtool series %s: medic exports no series %s; of that name it has:\n%s", in.Series, own, named(series, name))
			}
		}
	}
}

func checkSelector(t *testing.T, alert string, ms []*labels.Matcher, series []labels.Labels, exported map[string]bool) {
	t.Helper()
	var name string
	for _, m := range ms {
		if m.Name == labels.MetricName {
			name = m.Value
		}
	}
	if !strings.HasPrefix(name, "medic_") {
		return
	}
	if !exported[name] {
		t.Errorf("%s reads %s, which medic does not export", alert, name)
		return
	}
	if notRunHere[name] {
		return
	}
	for _, l := range series {
		ok := true
		for _, m := range ms {
			if !m.Matches(l.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
	}
	t.Errorf("%s: selector %v matches no series of a running medic; of that name it has:\n%s", alert, ms, named(series, name))
}

func named(series []labels.Labels, name string) string {
	var b strings.Builder
	for _, l := range series {
		if l.Get(labels.MetricName) == name {
			b.WriteString("  " + l.String() + "\n")
		}
	}
	return b.String()
}

// TestPodMonitor checks the PodMonitor's shape: it scrapes the port named
// medic-metrics (metricsListen) on /metrics, in every namespace.
func TestPodMonitor(t *testing.T) {
	b, err := os.ReadFile("monitoring/podmonitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pm struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			NamespaceSelector struct {
				Any bool `yaml:"any"`
			} `yaml:"namespaceSelector"`
			Selector            map[string]any `yaml:"selector"`
			PodMetricsEndpoints []struct {
				Port          string `yaml:"port"`
				Path          string `yaml:"path"`
				Interval      string `yaml:"interval"`
				ScrapeTimeout string `yaml:"scrapeTimeout"`
				HonorLabels   bool   `yaml:"honorLabels"`
			} `yaml:"podMetricsEndpoints"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&pm); err != nil {
		t.Fatal(err)
	}
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" || pm.Metadata.Name == "" {
		t.Fatalf("%s %s %q", pm.APIVersion, pm.Kind, pm.Metadata.Name)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("endpoints: %+v", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port != "medic-metrics" || ep.Path != "/metrics" || ep.HonorLabels {
		t.Errorf("endpoint %+v: want port medic-metrics, path /metrics, honorLabels false", ep)
	}
	if !pm.Spec.NamespaceSelector.Any || len(pm.Spec.Selector) != 0 {
		t.Errorf("want every pod in every namespace (kept by the port name): %+v", pm.Spec)
	}
}
