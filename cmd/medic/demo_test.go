package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// demoStateDir is the state directory the demo printed.
func demoStateDir(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`audit log\s+(\S+)/audit\.jsonl`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no audit log path in:\n%s", out)
	}
	return m[1]
}

// TestDemoExplainsItselfAndCleansUp: nothing happens to the alert before
// the fault, the firing line shows the label that tells which agent (not
// the selector's status="OK"), the last line points at no URL of a process
// that has exited, and the temporary state directory is gone.
func TestDemoExplainsItselfAndCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes ~12 s of real time")
	}
	t.Parallel()
	code, out, stderr := runCLI(context.Background(), "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	fault := strings.Index(out, "FAULT")
	if fault < 0 {
		t.Fatalf("no fault:\n%s", out)
	}
	for _, tr := range []string{"pending", "firing", "inactive", "resolved"} {
		if regexp.MustCompile(`s  ` + tr + ` `).MatchString(out[:fault]) {
			t.Errorf("alert %s before the fault:\n%s", tr, out)
		}
	}
	firing := regexp.MustCompile(`firing +SPIREAgentNotSyncing (.*)`).FindStringSubmatch(out)
	if firing == nil || !strings.Contains(firing[1], "host=demo-node") || strings.Contains(firing[1], "status=") ||
		!strings.Contains(firing[1], "has not synced") {
		t.Errorf("firing line %q: want the host and the summary, not status=OK", firing)
	}
	closing := out[strings.Index(out, "One full cycle"):]
	if strings.Contains(closing, "http://") {
		t.Errorf("the closing lines point at a URL of a medic that has stopped:\n%s", closing)
	}
	dir := demoStateDir(t, out)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (%v)", dir, err)
		os.RemoveAll(dir)
	}
}

// TestDemoKeepAndDuration: --duration keeps medic up (the closing line
// names its live /status) and --keep keeps the state directory.
func TestDemoKeepAndDuration(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes ~12 s of real time")
	}
	t.Parallel()
	code, out, stderr := runCLI(context.Background(), "demo", "--keep", "--duration", "100ms")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	dir := demoStateDir(t, out)
	defer os.RemoveAll(dir)
	if !regexp.MustCompile(`Still running for 100ms: open http://127\.0\.0\.1:\d+/status`).MatchString(out) {
		t.Errorf("no live /status URL:\n%s", out)
	}
	if _, err := os.Stat(dir + "/audit.jsonl"); err != nil || !strings.Contains(out, "Kept "+dir) {
		t.Errorf("--keep: %v\n%s", err, out)
	}
}
