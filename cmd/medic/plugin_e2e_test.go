package main

import (
	"os"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/plugintest"
)

// TestE2EPluginStepThroughMedicRun drives a real plugin binary (the hello
// example) as the first step of a ladder through `medic run`: it runs,
// does not fix the hung agent, and the ladder escalates to the restart.
// Stopping medic leaves no plugin process behind.
func TestE2EPluginStepThroughMedicRun(t *testing.T) {
	bin, err := plugintest.Build(t.TempDir(), "github.com/medic-sidecar/medic/plugins/examples/hello", "hello")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := plugintest.SHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	e := newE2E(t, `
plugins:
  hello: {path: "`+bin+`", sha256: "`+sum+`", start: eager}`, `
  say-hello:
    plugin: {name: hello, config: {greeting: "hi"}}
    backoff: {policy: constant, initial: 100ms, attempts: 1}
    verify: 1s`, "say-hello, restart-agent")
	before := plugintest.Children(os.Getpid())
	e.start()
	e.fail()
	s := e.waitIncident("resolved", 30*time.Second)
	inc := s.Incidents[0]
	if inc.FixedBy != "restart-agent" || len(inc.Attempts) < 2 {
		t.Fatalf("incident %+v", inc)
	}
	first := inc.Attempts[0]
	if first.Action != "say-hello" || first.Result != "failed" || first.Reason != "verify" {
		t.Fatalf("plugin attempt %+v", first)
	}
	if v := e.metric(`medic_plugin_calls_total{plugin="hello",result="succeeded"}`); v != 1 {
		t.Fatalf("plugin calls metric = %v", v)
	}
	var msg string
	for _, l := range e.audit() {
		if l.Action == "say-hello" && l.Type == "RemediationFailed" {
			msg = l.Reason
		}
	}
	if msg != "verify" {
		t.Fatalf("audit has no failed plugin attempt")
	}
	e.stop()
	if kids := newChildren(before); len(kids) != 0 {
		t.Fatalf("plugin processes left after stop: %v", kids)
	}

}

// newChildren lists this process's children that were not in before
// (other tests may own long-lived children, e.g. the shared API server).
func newChildren(before []int) []int {
	old := map[int]bool{}
	for _, p := range before {
		old[p] = true
	}
	var out []int
	for _, p := range plugintest.Children(os.Getpid()) {
		if !old[p] {
			out = append(out, p)
		}
	}
	return out
}
