package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runCLI(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"run", "--nope"},
		{"validate"},
		{"validate", "--config", "x.yaml", "stray"},
		{"run", "--config", "x", "--log-format", "xml"},
	} {
		code, _, stderr := runCLI(context.Background(), args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if stderr == "" {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(context.Background(), "version")
	if code != 0 || !strings.HasPrefix(out, "medic ") {
		t.Fatalf("exit %d, %q", code, out)
	}
}

func TestExamplesAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) < 2 {
		t.Fatalf("examples missing: %v", files)
	}
	for _, f := range files {
		code, out, stderr := runCLI(context.Background(), "validate", "--config", f)
		if code != 0 || !strings.Contains(out, "valid") {
			t.Errorf("%s: exit %d\n%s%s", f, code, out, stderr)
		}
	}
}

func TestInvalidConfigListsEveryProblemAndStartsNothing(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte(`
listen: "127.0.0.1:0"
stateDir: `+state+`
evaluationInterval: fast
probes:
  - name: spire
    scrape: {url: "not a url", interval: 0s}
rules:
  - alert: A
    expr: "rate(x[5m]"
    remediate: [missing]
`), 0o600)
	for _, cmd := range []string{"validate", "run"} {
		code, _, stderr := runCLI(context.Background(), cmd, "--config", cfg)
		if code != 2 {
			t.Fatalf("%s: exit %d, want 2\n%s", cmd, code, stderr)
		}
		for _, want := range []string{"evaluationInterval: invalid duration", "probes[0].scrape", "rules[0].expr: invalid PromQL", "rules[0].remediate[0]", "(line "} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: missing %q in:\n%s", cmd, want, stderr)
			}
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatal("an invalid config created the state dir: something started")
	}
}

func TestRunStopsWithinTheGraceOnSignal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ok.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nstateDir: "+filepath.Join(dir, "s")+"\nevaluationInterval: 100ms\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { code, _, _ := runCLI(ctx, "run", "--config", cfg); done <- code }()
	time.Sleep(300 * time.Millisecond)
	cancel() // what SIGINT/SIGTERM do through signal.NotifyContext
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after signal", code)
		}
	case <-time.After(shutdownGrace):
		t.Fatal("medic run did not stop within the shutdown grace")
	}
}

func TestSIGTERMShutsDownOrderly(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ok.yaml")
	// Port 0: medic binds a free port itself and logs it (a port picked
	// free beforehand can be taken meanwhile as another dial's ephemeral one).
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nstateDir: "+filepath.Join(dir, "s")+"\nevaluationInterval: 100ms\n"), 0o600)
	cmd := exec.Command(self, "run", "--config", cfg, "--log-format", "text")
	cmd.Env = append(os.Environ(), "MEDIC_TEST_RUN_MAIN=1")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listen := regexp.MustCompile(`msg="medic starting".* listen=(127\.0\.0\.1:[0-9]+)`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := listen.FindStringSubmatch(stderr.String()); m != nil {
			resp, err := http.Get("http://" + m[1] + "/healthz")
			if err == nil {
				resp.Body.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("medic never came up:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "medic stopped") {
			t.Fatalf("no orderly stop logged:\n%s", stderr.String())
		}
		t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(shutdownGrace):
		cmd.Process.Kill()
		t.Fatal("not stopped within 10s of SIGTERM")
	}
}

// TestDemoCompletesOneCycle runs the README's first quick-start command.
func TestDemoCompletesOneCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes ~15 s of real time")
	}
	code, out, stderr := runCLI(context.Background(), "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	for _, step := range []string{"FAULT", "signal", "pending", "firing", "incident", "held", "attempt", "verified", "closed", "One full cycle"} {
		if !strings.Contains(out, step) {
			t.Errorf("demo output lacks %q:\n%s", step, out)
		}
	}
}

// Every command answers -h, --help and `medic help NAME` on stdout with
// exit 0, with its usage and examples.
func TestHelpOnStdoutWithExamples(t *testing.T) {
	for _, name := range visibleCommands() {
		for _, args := range [][]string{{name, "-h"}, {name, "--help"}, {"help", name}} {
			code, out, stderr := runCLI(context.Background(), args...)
			if code != 0 || stderr != "" {
				t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
			}
			if !strings.Contains(out, "usage:") || !strings.Contains(out, "examples:\n  medic ") && !strings.Contains(out, "examples:\n  source") {
				t.Errorf("%v: no usage with examples on stdout:\n%s", args, out)
			}
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, _ := runCLI(context.Background(), args...)
		if code != 0 || !strings.Contains(out, "validate") || !strings.Contains(out, "--version") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	code, _, stderr := runCLI(context.Background(), "help", "nope")
	if code != 2 || !strings.Contains(stderr, `unknown command "nope"`) {
		t.Errorf("help nope: exit %d, %q", code, stderr)
	}
}

func TestVersionFlagsAgree(t *testing.T) {
	_, want, _ := runCLI(context.Background(), "version")
	for _, args := range [][]string{{"--version"}, {"-v"}} {
		code, out, _ := runCLI(context.Background(), args...)
		if code != 0 || out != want {
			t.Errorf("%v: exit %d %q, want %q", args, code, out, want)
		}
	}
	if !strings.Contains(want, "revision ") || !strings.Contains(want, "go1.") {
		t.Errorf("version lacks revision or Go version: %q", want)
	}
}

func TestValidateCountsInTheSingular(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "one.yaml")
	os.WriteFile(f, []byte(`stateDir: `+dir+`
probes:
  - name: a
    tcp: {address: "127.0.0.1:1"}
actions:
  fix: {exec: {command: [/bin/true]}}
rules:
  - {alert: A, expr: 'medic_probe_up == 0', remediate: [fix]}
`), 0o600)
	code, out, stderr := runCLI(context.Background(), "validate", "--config", f)
	if code != 0 || !strings.Contains(out, "valid (1 probe, 1 rule, 1 action)") {
		t.Fatalf("exit %d %q %s", code, out, stderr)
	}
}

// The bash script completes commands and their flags (run in real bash).
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	_, script, _ := runCLI(context.Background(), "completion", "bash")
	for line, want := range map[string]string{
		"medic va":           "validate",
		"medic run --con":    "--config",
		"medic help ru":      "run",
		"medic completion f": "fish",
	} {
		words := strings.Fields(line)
		prog := script + "\nCOMP_WORDS=(" + line + "); COMP_CWORD=" + fmt.Sprint(len(words)-1) + "; _medic; echo \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%q: %q (%v), want %q", line, out, err, want)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		code, out, _ := runCLI(context.Background(), "completion", sh)
		if code != 0 || !strings.Contains(out, "validate") {
			t.Errorf("%s: exit %d", sh, code)
		}
	}
	if code, _, _ := runCLI(context.Background(), "completion", "tcsh"); code != 2 {
		t.Errorf("unknown shell: exit %d, want 2", code)
	}
}

// validate and run load through one check: what one rejects the other
// rejects too, with exit 2, every problem listed, and nothing created.
func TestValidateAndRunRejectTheSame(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for name, tc := range map[string]struct{ yaml, want string }{
		"stateDir is a file":     {"stateDir: " + file + "\n", "stateDir: " + file + " is a file, not a directory (line 2)"},
		"stateDir under a file":  {"stateDir: " + file + "/state\n", "stateDir: cannot create " + file + "/state: " + file + " is a file (line 2)"},
		"bad listen address":     {"metricsListen: ''\nstateDir: " + dir + "/s\n", "unused"},
		"broken template":        {"stateDir: " + dir + "/s\nrules:\n  - {alert: A, expr: up, annotations: {s: '{{ .x '}}\n", "rules[0].annotations.s: template"},
		"second document":        {"stateDir: " + dir + "/s\n---\nlisten: ':1'\n", "a second YAML document"},
		"interval below minimum": {"stateDir: " + dir + "/s\nevaluationInterval: 1ns\n", "evaluationInterval: 1ns is below the minimum"},
	} {
		f := filepath.Join(dir, "c.yaml")
		listen := "listen: 127.0.0.1:0\n"
		if name == "bad listen address" {
			listen, tc.yaml, tc.want = "listen: localhost\n", "stateDir: "+dir+"/s\n", `listen: "localhost" is not host:port`
		}
		os.WriteFile(f, []byte(listen+tc.yaml), 0o600)
		for _, cmd := range []string{"validate", "run"} {
			code, _, stderr := runCLI(context.Background(), cmd, "--config", f)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("%s: %s: exit %d, want 2 and %q in:\n%s", name, cmd, code, tc.want, stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "s")); !os.IsNotExist(err) {
			t.Fatalf("%s: the stateDir was created", name)
		}
	}
}

// medic validate lists each action's guards and says which are inactive:
// the SPIRE example's fleet-outage guard is off until its source has a url.
func TestValidateListsGuards(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MEDIC_STATE_DIR", dir)
	t.Setenv("MEDIC_FLEET_PROMETHEUS_URL", "")
	code, out, stderr := runCLI(context.Background(), "validate", "--config", "../../examples/spire-agent.yaml")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	for _, want := range []string{"source fleet: prometheus, disabled (no url)", "action restart-agent guards:",
		"  fleet-outage  INACTIVE ", "  precondition  active   medic_probe_up", "  fleet         active   at most 10"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	t.Setenv("MEDIC_FLEET_PROMETHEUS_URL", "http://prometheus.monitoring:9090")
	_, out, _ = runCLI(context.Background(), "validate", "--config", "../../examples/spire-agent.yaml")
	if !strings.Contains(out, "  fleet-outage  active   ") || !strings.Contains(out, "source fleet: prometheus http://prometheus.monitoring:9090 (timeout 3s)") {
		t.Errorf("the url did not activate the guard:\n%s", out)
	}
}
