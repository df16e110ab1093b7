package supervisor

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/config"
)

func startForTest(t *testing.T, yaml string) (*Supervisor, *clock.Fake) {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s, err := New(Options{Config: c, Clock: clk, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	go s.server.Run(t.Context())
	s.remedy.Start(t.Context())
	t.Cleanup(func() { s.audit.Close() })
	return s, clk
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStatusWithNaNAlertValue: an alert whose value is NaN still gives a
// full /status document (it used to be 200 with an empty body).
func TestStatusWithNaNAlertValue(t *testing.T) {
	dir := t.TempDir()
	s, _ := startForTest(t, `listen: 127.0.0.1:0
stateDir: `+dir+`
actions:
  note:
    exec: {command: ["echo", "noted"], timeout: 5s}
    backoff: {policy: constant, initial: 1s, attempts: 1}
    verify: 1s
rules:
  - alert: RatioBroken
    expr: vector(0/0)
    remediate: [note]
`)
	s.EvalOnce(t.Context(), s.clk.Now())
	clk := s.clk.(*clock.Fake)
	waitFor(t, "the attempt to finish", func() bool {
		clk.Advance(time.Second) // through verify
		inc := s.Status().Incidents
		return len(inc) == 1 && len(inc[0].Attempts) == 1 && inc[0].Attempts[0].Result != "running"
	})
	code, body := httpGet(t, "http://"+s.Addr()+"/status?format=json")
	var st Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Incidents) != 1 || len(st.Alerts) != 1 {
		t.Fatalf("/status %d:\n%s", code, body)
	}
	if !strings.Contains(body, `"value": "NaN"`) || !strings.Contains(body, `"output": "noted\n"`) {
		t.Fatalf("/status lacks the NaN value or the output:\n%s", body)
	}
	if code, html := httpGet(t, "http://"+s.Addr()+"/status?format=html"); code != 200 || !strings.Contains(html, "RatioBroken") {
		t.Fatalf("html %d:\n%s", code, html)
	}
}

// TestReadOnlyStateDirStartsNotReadyAndActsOnNothing: medic starts on a
// state dir it cannot write (a read-only tmpfs), says so on /readyz and
// /status, and suppresses attempts with reason "state".
func TestReadOnlyStateDirStartsNotReadyAndActsOnNothing(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	marker := filepath.Join(t.TempDir(), "ran")
	s, _ := startForTest(t, `listen: 127.0.0.1:0
stateDir: `+dir+`
actions:
  restart-agent:
    exec: {command: ["touch", "`+marker+`"], timeout: 5s}
    backoff: {policy: constant, initial: 1s, attempts: 1}
    budget: {max: 2, window: 1h}
rules:
  - alert: AlwaysFiring
    expr: vector(1)
    remediate: [restart-agent]
`)
	s.EvalOnce(t.Context(), s.clk.Now())
	code, body := httpGet(t, "http://"+s.Addr()+"/readyz")
	if code != 503 || !strings.Contains(body, "cannot be written") || !strings.Contains(body, "read-only") {
		t.Fatalf("/readyz %d %q", code, body)
	}
	waitFor(t, "a suppressed attempt", func() bool {
		inc := s.Status().Incidents
		return len(inc) == 1 && len(inc[0].Attempts) > 0
	})
	st := s.Status()
	if a := st.Incidents[0].Attempts[0]; a.Result != "suppressed" || a.Reason != "state" {
		t.Fatalf("attempt %+v", a)
	}
	if st.State.Writable || len(st.State.Problems) == 0 || st.State.Dir != dir {
		t.Fatalf("/status state %+v", st.State)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the action ran although nothing could be recorded")
	}
}

// TestExecOutputIsRedactedEverywhere: a real exec action printing
// secrets; /status and the audit log show the output redacted.
func TestExecOutputIsRedactedEverywhere(t *testing.T) {
	dir := t.TempDir()
	s, clk := startForTest(t, `listen: 127.0.0.1:0
stateDir: `+dir+`
actions:
  dump-env:
    exec: {command: ["sh", "-c", "echo API_KEY=sekrit123; echo password: hunter2; echo on node-7"], timeout: 5s}
    backoff: {policy: constant, initial: 1s, attempts: 1}
    verify: 1s
    output: full
    redact: ['node-\d+']
rules:
  - alert: AlwaysFiring
    expr: vector(1)
    remediate: [dump-env]
`)
	s.EvalOnce(t.Context(), clk.Now())
	waitFor(t, "the attempt to finish", func() bool {
		clk.Advance(time.Second)
		inc := s.Status().Incidents
		return len(inc) == 1 && len(inc[0].Attempts) == 1 && inc[0].Attempts[0].Result != "running"
	})
	_, body := httpGet(t, "http://"+s.Addr()+"/status?format=json")
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	for what, text := range map[string]string{"/status": body, "audit.jsonl": string(audit)} {
		if strings.Contains(text, "sekrit123") || strings.Contains(text, "hunter2") || strings.Contains(text, "node-7") {
			t.Fatalf("%s leaks a secret:\n%s", what, text)
		}
		if !strings.Contains(text, `API_KEY=[REDACTED]`) {
			t.Fatalf("%s lacks the redacted output:\n%s", what, text)
		}
	}
	c, err := config.Parse([]byte("stateDir: /tmp/x\nactions:\n  a:\n    exec: {command: [x]}\n    output: most\n    redact: ['(']\n"))
	if err == nil {
		err = c.Validate()
	}
	if err == nil {
		t.Fatal("a bad output mode and pattern were accepted")
	} else if !strings.Contains(err.Error(), "actions.a.output") || !strings.Contains(err.Error(), "actions.a.redact[0]") {
		t.Fatalf("errors lack their paths: %v", err)
	}
}
