package ruletest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/medic-sidecar/medic/supervisor/builtin" // probe and action kinds of the example config
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

const examples = "../../examples/rules"

func TestExampleRuleTestsPass(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examples, "*.test.yml"))
	if len(files) < 2 {
		t.Fatalf("example tests missing: %v", files)
	}
	for _, f := range files {
		if errs := RunFile(f); len(errs) > 0 {
			t.Errorf("%s:\n%v", f, errs)
		}
	}
}

// The standard rule file must stay what examples/spire-agent.yaml runs.
func TestExampleRuleFileMatchesConfig(t *testing.T) {
	c, err := config.LoadFile("../../examples/spire-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := rules.LoadFiles([]string{filepath.Join(examples, "spire-agent.rules.yml")})
	if err != nil {
		t.Fatal(err)
	}
	fr := gs[0].FileRules()
	if len(fr) != len(c.Rules) {
		t.Fatalf("%d rules in the file, %d in the config", len(fr), len(c.Rules))
	}
	for i, r := range c.Rules {
		f := fr[i]
		_, ann, _ := rules.LadderAnnotation(f.Annotations)
		if f.Alert != r.Alert || f.Expr != r.Expr || time.Duration(f.For) != r.For.D() ||
			strings.Join(rules.ParseLadder(ann), ",") != strings.Join(r.Remediate, ",") ||
			fmt.Sprint(f.Labels) != fmt.Sprint(r.Labels) || f.Annotations["summary"] != r.Annotations["summary"] ||
			f.Annotations["description"] != r.Annotations["description"] {
			t.Errorf("rule %d differs:\nfile:   %+v\nconfig: %+v", i, f.Rule, *r)
		}
	}
}

func writeTest(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	src, _ := os.ReadFile(filepath.Join(examples, "spire-agent.rules.yml"))
	os.WriteFile(filepath.Join(dir, "spire-agent.rules.yml"), src, 0o600)
	p := filepath.Join(dir, "t.test.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// failing is a test file promtool and medic must both fail, the same way.
const failing = `rule_files: [spire-agent.rules.yml]
evaluation_interval: 15s
tests:
  - name: wrong
    interval: 15s
    input_series:
      - series: 'medic_probe_up{probe="spire"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 2m
        alertname: SPIREAgentMetricsDown
        exp_alerts:
          - exp_labels: {severity: critical, probe: spire}
    promql_expr_test:
      - expr: medic_probe_up
        eval_time: 1m
        exp_samples:
          - labels: 'medic_probe_up{probe="spire"}'
            value: 1
`

func TestFailureOutputIsPromtoolLike(t *testing.T) {
	p := writeTest(t, failing)
	var out, errb bytes.Buffer
	if code := Run(&out, &errb, p); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	got := errb.String()
	for _, want := range []string{
		"  FAILED:\n",
		"    name: wrong,\n    alertname: SPIREAgentMetricsDown, time: 2m, \n        exp:[\n            0:\n              Labels:{alertname=\"SPIREAgentMetricsDown\", probe=\"spire\", severity=\"critical\"}",
		"        got:[\n            0:\n              Labels:{alertname=\"SPIREAgentMetricsDown\", probe=\"spire\", severity=\"page\"}\n              Annotations:{}\n            ]",
		"    expr: \"medic_probe_up\", time: 1m,\n        exp: {__name__=\"medic_probe_up\", probe=\"spire\"} 1E+00\n        got: {__name__=\"medic_probe_up\", probe=\"spire\"} 0E+00",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing\n%s\nin\n%s", want, got)
		}
	}
	if !strings.Contains(out.String(), "Unit Testing:  "+p) {
		t.Errorf("stdout %q", out.String())
	}
}

func TestBadFilesFail(t *testing.T) {
	for name, body := range map[string]string{
		"unknown field":  "rule_files: [spire-agent.rules.yml]\ntests: []\nbogus: 1\n",
		"bad series":     "rule_files: [spire-agent.rules.yml]\ntests:\n  - input_series: [{series: 'x{', values: '1'}]\n    promql_expr_test: [{expr: x, eval_time: 0m}]\n",
		"missing rules":  "rule_files: [nope.yml]\ntests: []\n",
		"no medicconfig": "rule_files: [spire-agent.rules.yml]\ntests:\n  - remediation_test: [{eval_time: 1m, exp_attempts: []}]\n",
	} {
		if errs := RunFile(writeTest(t, body)); len(errs) == 0 {
			t.Errorf("%s: passed", name)
		}
	}
}

// promtool (Debian's prometheus package) agrees: the shared test passes
// and the failing one fails under both.
func TestPromtoolAgrees(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed")
	}
	out, err := exec.Command(bin, "test", "rules", filepath.Join(examples, "spire-agent.test.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool: %v\n%s", err, out)
	}
	p := writeTest(t, failing)
	out, err = exec.Command(bin, "test", "rules", p).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("promtool on the failing test: %v\n%s", err, out)
	}
	var mo, me bytes.Buffer
	Run(&mo, &me, p)
	// The failure blocks (everything after FAILED:) are the same text.
	pb := string(out[strings.Index(string(out), "FAILED:"):])
	mb := me.String()[strings.Index(me.String(), "FAILED:"):]
	if strings.Join(strings.Fields(pb), " ") != strings.Join(strings.Fields(mb), " ") {
		t.Errorf("failure output differs\npromtool:\n%s\nmedic:\n%s", pb, mb)
	}
}
