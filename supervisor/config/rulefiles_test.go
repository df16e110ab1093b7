package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
)

const fileRules = `groups:
  - name: spire
    rules:
      - record: spire:ok:rate
        expr: rate(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[2m])
      - alert: NotSyncing
        expr: spire:ok:rate == 0
        for: 30s
      - alert: Annotated
        expr: medic_probe_up{probe="spire"} == 0
        annotations: {medic.io/remediate: "restart-agent"}
      - alert: Overridden
        expr: medic_probe_up{probe="spire"} == 0
        annotations: {medic.io/remediate: "no-such-action"}
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRuleFilesAndRemediations(t *testing.T) {
	conf := valid + `ruleFiles: ["rules/*.yml"]
remediations:
  NotSyncing: [restart-agent]
  Overridden: []
`
	dir := writeFiles(t, map[string]string{"medic.yaml": conf, "rules/spire.yml": fileRules})
	c, err := LoadFile(filepath.Join(dir, "medic.yaml"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	gs := c.RuleGroups()
	if len(gs) != 2 || gs[0].Name != InlineGroup || gs[1].Name != "spire" || len(gs[1].Rules) != 4 {
		t.Fatalf("groups %+v", gs)
	}
	if gs[1].Rules[0].Record != "spire:ok:rate" || !strings.HasSuffix(gs[1].Rules[1].Where, "rules/spire.yml:6") {
		t.Errorf("rules %+v", gs[1].Rules)
	}
	l := c.Ladders()
	if strings.Join(l["NotSyncing"], ",") != "restart-agent" || strings.Join(l["Annotated"], ",") != "restart-agent" {
		t.Errorf("ladders %v", l)
	}
	if _, ok := l["Overridden"]; ok {
		t.Errorf("remediations: {Overridden: []} must switch the annotation's ladder off: %v", l)
	}
	if strings.Join(l["SPIREAgentSyncFailure"], ",") != "restart-agent" {
		t.Errorf("inline ladder lost: %v", l)
	}
	if len(c.AllExprs()) != 6 {
		t.Errorf("exprs %v", c.AllExprs())
	}
}

func TestRuleFileProblemsHavePathAndLine(t *testing.T) {
	conf := valid + `ruleFiles: ["rules/*.yml", "missing.yml"]
remediations:
  NotSyncing: [restart-agent, typo-action]
  NoSuchAlert: [restart-agent]
`
	bad := strings.Replace(fileRules, "for: 30s", "for: 30s\n        remediate: [x]", 1)
	dir := writeFiles(t, map[string]string{"medic.yaml": conf, "rules/spire.yml": bad})
	_, err := LoadFile(filepath.Join(dir, "medic.yaml"))
	if err == nil {
		t.Fatal("accepted")
	}
	var got []string
	for _, e := range cfg.Sorted(err) {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"rules/spire.yml:9: field remediate not found",
		"ruleFiles[1]: " + dir + "/missing.yml: no rule file matches (line 25)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "spire.yml:9: field remediate not found in type rulefmt.Rule (line") {
		t.Errorf("a rule file's line is not the config's:\n%s", all)
	}
	dir = writeFiles(t, map[string]string{"medic.yaml": valid + `ruleFiles: ["r.yml"]
remediations:
  NotSyncing: [restart-agent, typo-action]
  NoSuchAlert: [restart-agent]
`, "r.yml": strings.ReplaceAll(fileRules, "no-such-action", "restart-agent")})
	_, err = LoadFile(filepath.Join(dir, "medic.yaml"))
	for _, want := range []string{
		`remediations.NotSyncing[1]: unknown action "typo-action" (defined: restart-agent) (line 27)`,
		`remediations.NoSuchAlert: no alerting rule named "NoSuchAlert" in rules[] or ruleFiles (line 28)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// The annotation of a rule not overridden names an unknown action.
	dir = writeFiles(t, map[string]string{"medic.yaml": valid + "ruleFiles: [r.yml]\n", "r.yml": fileRules})
	_, err = LoadFile(filepath.Join(dir, "medic.yaml"))
	if err == nil || !strings.Contains(err.Error(), `r.yml:12: alert "Overridden": medic.io/remediate names unknown action "no-such-action"`) {
		t.Errorf("annotation with an unknown action: %v", err)
	}
}

// TestRuleFileRetryExhaustedAfter: a rule-file alert sets its
// retryExhaustedAfter with an annotation (either spelling); a bad value,
// one under 1m or one on an alert without a ladder is an error with the
// file and line.
func TestRuleFileRetryExhaustedAfter(t *testing.T) {
	rulesWith := func(ann string) string {
		return strings.Replace(fileRules, `annotations: {medic.io/remediate: "restart-agent"}`,
			`annotations: {medic.io/remediate: "restart-agent", `+ann+`}`, 1)
	}
	for _, ann := range []string{`medic.io/retry-exhausted-after: 30m`, `medic_retry_exhausted_after: "30m"`} {
		dir := writeFiles(t, map[string]string{"medic.yaml": valid + "ruleFiles: [r.yml]\nremediations: {Overridden: []}\n", "r.yml": rulesWith(ann)})
		c, err := LoadFile(filepath.Join(dir, "medic.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.RetryExhaustedAfter(); got["Annotated"] != 30*time.Minute || len(got) != 1 {
			t.Errorf("%s: retryExhaustedAfter %v", ann, got)
		}
	}
	for ann, want := range map[string]string{
		`medic_retry_exhausted_after: "soon"`: `r.yml:9: alert "Annotated": medic_retry_exhausted_after: not a valid duration string: "soon"`,
		`medic_retry_exhausted_after: "30s"`:  `r.yml:9: alert "Annotated": medic_retry_exhausted_after: must be at least 1m (0 disables), not 30s`,
	} {
		dir := writeFiles(t, map[string]string{"medic.yaml": valid + "ruleFiles: [r.yml]\nremediations: {Overridden: []}\n", "r.yml": rulesWith(ann)})
		if _, err := LoadFile(filepath.Join(dir, "medic.yaml")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q, got %v", ann, want, err)
		}
	}
	noLadder := strings.Replace(fileRules, "for: 30s", "for: 30s\n        annotations: {medic_retry_exhausted_after: 1h}", 1)
	dir := writeFiles(t, map[string]string{"medic.yaml": valid + "ruleFiles: [r.yml]\nremediations: {Overridden: []}\n", "r.yml": noLadder})
	if _, err := LoadFile(filepath.Join(dir, "medic.yaml")); err == nil || !strings.Contains(err.Error(), `alert "NotSyncing": medic_retry_exhausted_after: has no effect without a remediation`) {
		t.Errorf("no ladder: %v", err)
	}
}
