package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// promRule is the part of a PrometheusRule the test reads.
type promRule struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	} `yaml:"spec"`
}

var medicMetricRe = regexp.MustCompile(`"(medic_[a-z0-9_]+)"`)

// recordRe is a recording rule's name: level:metric:operations.
var recordRe = regexp.MustCompile(`^[a-z_]+:medic_[a-z0-9_]+:[a-z0-9_]+$`)

// exportedMetrics collects every "medic_…" string literal in medic's
// non-test Go sources: the names medic can export.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range medicMetricRe.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestPrometheusRuleOnMedic checks deploy/monitoring/prometheusrule.yaml:
// the PrometheusRule shape, every expression is valid PromQL, and every
// medic_* metric it reads is one medic exports (so a renamed metric cannot
// silently turn an alert into one that never fires).
func TestPrometheusRuleOnMedic(t *testing.T) {
	b, err := os.ReadFile("monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr promRule
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("%s %s, want monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
	}
	exported := exportedMetrics(t)
	if !exported["medic_incidents_total"] {
		t.Fatal("metric scan found nothing: the walk is broken")
	}
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			n++
			switch {
			case r.Record != "":
				if r.Alert != "" || !recordRe.MatchString(r.Record) {
					t.Errorf("recording rule %q: want a name level:medic_…:operations and no alert", r.Record)
				}
				r.Alert = r.Record // for the messages below
			case r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "":
				t.Errorf("%s: alert, labels.severity and annotations.summary are required", r.Alert)
			}
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
				continue
			}
			for _, vs := range parser.ExtractSelectors(expr) {
				for _, m := range vs {
					if m.Name == "__name__" && strings.HasPrefix(m.Value, "medic_") && !exported[m.Value] {
						t.Errorf("%s reads %s, which medic does not export", r.Alert, m.Value)
					}
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("%d rules", n)
	}
}
