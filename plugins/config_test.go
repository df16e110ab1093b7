package plugins_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/config"
)

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestConfigSectionDecodesWithDefaults(t *testing.T) {
	c, err := config.Parse([]byte(`
plugins:
  hook:
    path: /opt/medic/plugins/webhook
    sha256: ` + sum + `
    args: [--verbose]
    env: {HOOK_SECRET: s3cret}
    timeout: 10s
    start: eager
    quarantine: {maxCrashes: 2}
actions:
  notify:
    plugin:
      name: hook
      config:
        url: http://example.invalid/hook
        headers: {X-Team: sre}
        retries: 3
        1: numeric key
rules:
  - alert: AgentDown
    expr: up == 0
    remediate: [notify]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Plugins["hook"]
	want := plugins.DefaultConfig()
	want.Path, want.SHA256, want.Args = "/opt/medic/plugins/webhook", sum, []string{"--verbose"}
	want.Env = map[string]string{"HOOK_SECRET": "s3cret"}
	want.Timeout, want.Start, want.Quarantine.MaxCrashes = cfg.Duration(10*time.Second), plugins.StartEager, 2
	if got, _ := json.Marshal(p); string(got) != string(must(json.Marshal(want))) || p.Env["HOOK_SECRET"] != "s3cret" {
		t.Fatalf("plugin config = %s, want %s", got, must(json.Marshal(want)))
	}
	a := c.Actions["notify"]
	if a.Kind != plugins.KindName {
		t.Fatalf("kind = %q", a.Kind)
	}
	raw, err := a.Spec.(*plugins.ActionConfig).JSON()
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"1":"numeric key","headers":{"X-Team":"sre"},"retries":3,"url":"http://example.invalid/hook"}`
	if string(raw) != wantJSON {
		t.Fatalf("plugin receives %s, want %s", raw, wantJSON)
	}
	if b, _ := json.Marshal(c); strings.Contains(string(b), "s3cret") {
		t.Fatal("plugin env (secrets) leaks into the JSON form of the config")
	}
}

func TestConfigProblemsHaveFieldPaths(t *testing.T) {
	_, err := config.Parse([]byte(`
plugins:
  hook:
    path: webhook
    sha256: abc
    shaa256: x
    timeout: 0s
    start: sometimes
    env: {"BAD-NAME": x}
    restart: {initial: 10s, max: 1s}
    quarantine: {maxCrashes: 0, window: 0s}
  "bad name": {path: /x, sha256: ` + sum + `}
actions:
  notify:
    plugin: {name: nohook}
  notify2:
    plugin: {config: {a: .inf}}
rules:
  - alert: AgentDown
    expr: up == 0
    remediate: [notify]
`))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	got := err.Error()
	for _, want := range []string{
		`plugins.hook.path: "webhook" must be an absolute path (line 4)`,
		`plugins.hook.sha256: must be 64 hex digits, got "abc" (line 5)`,
		`plugins.hook.shaa256: unknown field (did you mean "sha256"?) (line 6)`,
		`plugins.hook.timeout: must be greater than 0 (line 7)`,
		`plugins.hook.start: must be lazy or eager, not "sometimes" (line 8)`,
		`plugins.hook.env.BAD-NAME: invalid environment variable name`,
		`plugins.hook.restart.max: must not be less than initial (10s)`,
		`plugins.hook.quarantine.maxCrashes: must be at least 1`,
		`plugins.hook.quarantine.window: must be greater than 0`,
		`plugins.bad name: plugin name "bad name"`,
		`actions.notify.plugin.name: unknown plugin "nohook" (configured: bad name, hook)`,
		`actions.notify2.plugin.name: is required`,
		`actions.notify2.plugin.config: a: +Inf is not a JSON number`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("errors:\n%s", got)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
