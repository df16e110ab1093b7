package remedy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
)

func TestDefaultRedaction(t *testing.T) {
	var p *OutputPolicy // the default
	for in, want := range map[string]string{
		"GITHUB_TOKEN=ghp_abc123def":                   "GITHUB_TOKEN=[REDACTED]",
		"export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K": "export AWS_SECRET_ACCESS_KEY=[REDACTED]",
		"password: hunter2 (from vault)":               "password: [REDACTED] (from vault)",
		`{"api_key": "k-123", "user": "bob"}`:          `{"api_key": [REDACTED], "user": "bob"}`,
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x": "Authorization: [REDACTED]",
		"curl -H 'X-Api-Key: abcdef123456' host":       "curl -H 'X-Api-Key: [REDACTED]' host",
		"using bearer eyJhbGciOiJIUzI1NiJ9 now":        "using bearer [REDACTED] now",
		"https://u/?token=abc&x=1":                     "https://u/?token=[REDACTED]&x=1",
		"restarted spire-agent (pid 42)":               "restarted spire-agent (pid 42)",
	} {
		if got := p.Redact(in); got != want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

func TestOutputModesAndCustomPatterns(t *testing.T) {
	long := strings.Repeat("line of output\n", 500) + "the end\n"
	res := actions.Result{Output: long + "SESSION_ID=s3cr3t\n", Message: "exit 0 with SESSION_ID=s3cr3t",
		Details: map[string]any{"command": []string{"deploy", "--password=pw1"}, "nested": map[string]any{"env": "TOKEN=t0k"}, "n": 1}}
	tail, err := NewOutputPolicy("", []string{`acct-\d+`, `user=(\w+)`})
	if err != nil {
		t.Fatal(err)
	}
	got := tail.Apply(res)
	if len(got.Output) > TailBytes+100 || !strings.HasSuffix(got.Output, "the end\nSESSION_ID=[REDACTED]\n") || !strings.HasPrefix(got.Output, "[… ") {
		t.Fatalf("tail output (%d bytes): %q", len(got.Output), got.Output[:80])
	}
	if got.Message != "exit 0 with SESSION_ID=[REDACTED]" || got.Details["command"].([]string)[1] != "--password=[REDACTED]" ||
		got.Details["nested"].(map[string]any)["env"] != "TOKEN=[REDACTED]" || got.Details["n"] != 1 {
		t.Fatalf("message/details: %q %v", got.Message, got.Details)
	}
	if res.Details["command"].([]string)[1] != "--password=pw1" {
		t.Fatal("the action's own result was modified")
	}
	if s := tail.Redact("acct-991 user=alice"); s != "[REDACTED] user=[REDACTED]" {
		t.Fatalf("custom patterns: %q", s)
	}
	full, _ := NewOutputPolicy(OutputFull, nil)
	if got := full.Apply(res); len(got.Output) != len(long)+len("SESSION_ID=[REDACTED]\n") {
		t.Fatalf("full kept %d bytes", len(got.Output))
	}
	none, _ := NewOutputPolicy(OutputNone, nil)
	if got := none.Apply(res); got.Output != "" {
		t.Fatalf("none kept %q", got.Output)
	}
	_, err = NewOutputPolicy("some", []string{"(", "x*"})
	if err == nil || !strings.Contains(err.Error(), "output") || !strings.Contains(err.Error(), "redact[0]") || !strings.Contains(err.Error(), "redact[1]") {
		t.Fatalf("validation: %v", err)
	}
}

// TestSecretsNeverLeaveTheEngine: a script that prints its environment
// leaks nothing to the snapshot, the audit log, incidents.json or the
// events (sinks: Kubernetes Events, logs).
func TestSecretsNeverLeaveTheEngine(t *testing.T) {
	dir := t.TempDir()
	audit, err := OpenAudit(filepath.Join(dir, FileAudit))
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	act := &outputAction{out: "PATH=/usr/bin\nSPIRE_JOIN_TOKEN=7d1c8a-secret\nAuthorization: Bearer eyJsecretsecret\n"}
	f := newFixture(t, Options{Journal: audit, StatePath: filepath.Join(dir, FileIncidents), Steps: map[string]*Step{
		"dump": {Name: "dump", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	}})
	f.fire("dump")
	f.rec.next(t, RemediationStarted)
	f.advance(10 * time.Second)
	f.rec.next(t, IncidentExhausted)
	var seen []string
	for _, ev := range f.rec.events {
		seen = append(seen, ev.Output, ev.Message)
	}
	for _, name := range []string{FileAudit, FileIncidents} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		seen = append(seen, string(b))
	}
	seen = append(seen, f.incident().Attempts[0].Output)
	all := strings.Join(seen, "\n")
	if strings.Contains(all, "7d1c8a") || strings.Contains(all, "eyJsecret") {
		t.Fatalf("a secret leaked:\n%s", all)
	}
	if !strings.Contains(f.incident().Attempts[0].Output, "SPIRE_JOIN_TOKEN=[REDACTED]") {
		t.Fatalf("output %q", f.incident().Attempts[0].Output)
	}
}
