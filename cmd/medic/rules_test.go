package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTestRulesCommand(t *testing.T) {
	files, _ := filepath.Glob("../../examples/rules/*.test.yml")
	code, out, stderr := runCLI(context.Background(), append([]string{"test", "rules"}, files...)...)
	if code != 0 || strings.Count(out, "SUCCESS") != len(files) || len(files) < 2 {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.test.yml")
	rules, _ := filepath.Abs("../../examples/rules/spire-agent.rules.yml")
	os.WriteFile(bad, []byte("rule_files: ["+rules+"]\ntests:\n  - input_series: [{series: 'medic_probe_up{probe=\"spire\"}', values: '0x20'}]\n"+
		"    alert_rule_test: [{eval_time: 5m, alertname: SPIREAgentMetricsDown, exp_alerts: []}]\n"), 0o600)
	code, _, stderr = runCLI(context.Background(), "test", "rules", bad)
	if code != 1 || !strings.Contains(stderr, "alertname: SPIREAgentMetricsDown, time: 5m") {
		t.Fatalf("failing test: exit %d\n%s", code, stderr)
	}
	for _, args := range [][]string{{"test"}, {"test", "rules"}, {"test", "alerts", "x"}} {
		if code, _, _ := runCLI(context.Background(), args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestValidateWarnsAboutPrometheusOnlySelectors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.yml"), []byte("groups:\n  - name: g\n    rules:\n      - alert: AgentDown\n        expr: up{job=\"spire-agent\"} == 0\n"), 0o600)
	conf := filepath.Join(dir, "medic.yaml")
	os.WriteFile(conf, []byte("stateDir: "+dir+"\nprobes:\n  - name: spire\n    tcp: {address: \"127.0.0.1:1\"}\nruleFiles: [r.yml]\n"), 0o600)
	code, out, stderr := runCLI(context.Background(), "validate", "--config", conf)
	if code != 0 || !strings.Contains(out, "valid (1 probe, 1 rule") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		"warning: " + filepath.Join(dir, "r.yml") + ":4: alert AgentDown: up{job=\"spire-agent\"} selects `up`",
		`medic's equivalent is medic_probe_up{probe="<name>"} (probes: spire)`,
		`matches on "job"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("missing %q in:\n%s", want, stderr)
		}
	}
}
