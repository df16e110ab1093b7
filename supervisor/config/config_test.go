package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/remedy"

	_ "github.com/medic-sidecar/medic/actions/exec"
)

// testProbeConfig is a probe kind registered only in this test binary, so
// config decoding can be tested without depending on real probe packages.
type testProbeConfig struct {
	URL      string       `yaml:"url"`
	Interval cfg.Duration `yaml:"interval"`
}

func (c *testProbeConfig) Validate() error {
	if c.URL == "" {
		return cfg.Errorf("url", "is required")
	}
	return nil
}

func init() {
	probe.Register(probe.Kind{Name: "testprobe", NewConfig: func() any { return &testProbeConfig{Interval: cfg.Duration(5e9)} }})
}

const valid = `
listen: ":9555"
stateDir: /tmp/medic
evaluationInterval: 5s
probes:
  - name: spire
    testprobe: {url: "http://127.0.0.1:9988/metrics"}
actions:
  restart-agent:
    exec:
      command: ["/bin/sh", "-c", "echo restart"]
      timeout: 10s
    backoff: {policy: fibonacci, initial: 2s, max: 1m, jitter: 10%, attempts: 4, maxDuration: 10m}
    verify: 1m
    budget: {max: 3, window: 1h}
    requires: 'medic_probe_up{probe="spire"} == 1'
rules:
  - alert: SPIREAgentSyncFailure
    expr: rate(spire_agent_manager_sync_fetch_entries_updates{status!="OK"}[5m]) > 0
    for: 30s
    keep_firing_for: 1m
    labels: {severity: page}
    annotations: {summary: "sync failing: {{ $labels.status }}"}
    remediate: [restart-agent]
`

func TestValidConfig(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatalf("valid config rejected:\n%v", err)
	}
	a := c.Actions["restart-agent"]
	if a.Kind != "exec" || a.Backoff.Policy != "fibonacci" || a.Backoff.Attempts != 4 || a.Budget.Max != 3 {
		t.Fatalf("action decoded wrong: %+v", a)
	}
	if c.Probes[0].Spec.(*testProbeConfig).Interval.D().Seconds() != 5 {
		t.Fatal("probe default interval lost")
	}
	if c.Rules[0].KeepFiringFor.D().Minutes() != 1 {
		t.Fatal("keep_firing_for not decoded")
	}
}

func TestDefaultsInOnePlace(t *testing.T) {
	c, err := Parse([]byte("actions:\n  a:\n    exec: {command: [/bin/true]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.StateDir != DefaultStateDir || c.EvaluationInterval.D() != DefaultEvaluationInterval {
		t.Fatalf("top-level defaults: %+v", c)
	}
	a := c.Actions["a"]
	if a.Verify.D() != DefaultVerify || a.Backoff.Policy != "exponential" || a.Backoff.Attempts != 3 {
		t.Fatalf("action defaults: %+v", a)
	}
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{"POD_NAME": "spire-agent-x7", "PORT": "9988"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := parse([]byte(`
stateDir: /var/lib/medic/${POD_NAME}
probes:
  - name: spire
    testprobe: {url: "http://127.0.0.1:${PORT}/metrics"}
rules:
  - alert: A
    expr: up{pod="${POD_NAME}"} == 0
    annotations: {x: "${MISSING:-fallback} $${literal}"}
`), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/medic/spire-agent-x7" || c.Probes[0].Spec.(*testProbeConfig).URL != "http://127.0.0.1:9988/metrics" {
		t.Fatalf("not expanded: %s %+v", c.StateDir, c.Probes[0].Spec)
	}
	if c.Rules[0].Annotations["x"] != "fallback ${literal}" {
		t.Fatalf("default/escape: %q", c.Rules[0].Annotations["x"])
	}
}

func TestInvalidConfigsListEveryProblemWithItsPath(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // "path: fragment" expected among the problems
	}{
		{"empty", "", []string{"config is empty"}},
		{"syntax", "listen: [", []string{"YAML syntax"}},
		{"unknown top-level key", "listen: x\nlisen: y\n", []string{"lisen: unknown field"}},
		{"wrong types", "dryRun: maybe\nevaluationInterval: soon\nstore: {maxSeries: many}\n", []string{
			"dryRun: cannot use \"maybe\" as bool", "evaluationInterval: invalid duration", "store.maxSeries: cannot use \"many\" as int"}},
		{"zero values", "listen: ''\nstateDir: ''\nevaluationInterval: 0s\n", []string{
			"listen: must not be empty", "stateDir: must not be empty", "evaluationInterval: must be greater than 0"}},
		{"probe problems", `
probes:
  - testprobe: {url: x}
  - name: a
  - name: b
    testprobe: {}
    other: {}
  - name: "bad name!"
    testprobe: {url: x, intervl: 5s}
  - name: a
    testprobe: {url: x}
`, []string{
			"probes[0].name: is required", "probes[1]: no probe kind given", "probes[2].other: unknown field",
			"probes[3].name: \"bad name!\"", "probes[3].testprobe.intervl: unknown field", "probes[4].name: \"a\" is already used by probes[1]"}},
		{"kind validation runs even when common fields are bad", `
actions:
  a:
    exec: {command: [], timeout: 0s}
    backoff: {policy: linear, initial: 0s, max: 1s, attempts: 0, jitter: 150%}
    verify: later
    budget: {max: 0, window: 0s}
    requires: 'up ==='
`, []string{
			"actions.a.exec.command: must name a program", "actions.a.exec.timeout: must be greater than 0",
			"actions.a.backoff.policy: must be exponential, fibonacci or constant", "actions.a.backoff.initial",
			"actions.a.backoff.attempts: must be at least 1", "actions.a.backoff.jitter: invalid percentage",
			"actions.a.verify: invalid duration", "actions.a.budget.max: must be at least 1",
			"actions.a.budget.window: must be greater than 0", "actions.a.requires: invalid PromQL"}},
		{"requires problems", `
actions:
  a:
    exec: {command: [x]}
    requires:
      - 'up == 1'
      - {expr: 'up ===', source: nowhere, onError: later, reason: because}
      - {source: fleet}
  c:
    exec: {command: [x]}
    requires: 'up[5m]'
`, []string{
			"actions.a.requires[1].expr: invalid PromQL", `actions.a.requires[1].source: no source named "nowhere" in sources:`,
			`actions.a.requires[1].onError: must be "hold" or "proceed", not "later"`,
			`actions.a.requires[1].reason: must be "precondition" or "fleet-outage", not "because"`,
			"actions.a.requires[2].expr: is required",
			"actions.c.requires: expression must return an instant vector or scalar"}},
		{"sources problems", `
sources:
  a: {prometheus: {url: "ftp://x", timeout: -1s}}
  b: {prometheus: {url: "http://p:9090", tls: {caFile: /x}, bearerTokenFile: /t, basicAuth: {passwordFile: /p}}}
  c: {}
  d: {prometheus: {url: "http://p", headers: {X: "a\nb"}}}
actions:
  a:
    exec: {command: [x]}
    requires: {expr: up, source: e}
`, []string{
			`sources.a.prometheus.url: "ftp://x": scheme must be http or https`,
			"sources.b.prometheus.tls: is set but the url scheme is http", "sources.b.prometheus.basicAuth.username: is required",
			"sources.b.prometheus.basicAuth: and bearerTokenFile are exclusive", "sources.c: no source kind given",
			"sources.d.prometheus.headers.X: header value must not contain CR, LF or NUL",
			`actions.a.requires.source: no source named "e" in sources:`}},
		{"sources decoding", "sources:\n  a: {prometheus: {url: x, timout: 1s}}\n", []string{"sources.a.prometheus.timout: unknown field"}},
		{"requires decoding", `
actions:
  a:
    exec: {command: [x]}
    requires:
      - 'up == 1'
      - {exr: up}
      - [up]
  b:
    exec: {command: [x]}
    requires: {expr: up, onErorr: hold}
`, []string{
			"actions.a.requires[1].exr: unknown field",
			"actions.a.requires[2]: expected an expression or a mapping", "actions.b.requires.onErorr: unknown field"}},
		{"two kinds in one action", "actions:\n  a:\n    exec: {command: [x]}\n    testprobe: {}\n", []string{
			"actions.a.testprobe: unknown field"}},
		{"no kind", "actions:\n  a:\n    verify: 1s\n", []string{"actions.a: no action kind given"}},
		{"rule problems", `
rules:
  - expr: up
  - alert: Bad-Name
    expr: 'rate(x[5m]'
  - alert: Range
    expr: 'x[5m]'
  - alert: A
    expr: up
    remediate: [nope]
    labels: {"bad-label": x}
    for: -5s
  - alert: A
    expr: up
    annotations: {a: b}
    extra: 1
`, []string{
			"rules[0].alert: is required", "rules[1].alert: \"Bad-Name\"", "rules[1].expr: invalid PromQL",
			"rules[2].expr: expression must return an instant vector", "rules[3].remediate[0]: unknown action \"nope\"",
			"rules[3].labels.bad-label: invalid label name", "rules[3].for: duration \"-5s\" must not be negative",
			"rules[4].alert: \"A\" is already defined by rules[3]", "rules[4].extra: unknown field"}},
		{"fleet", `
actions:
  a:
    exec: {command: [x]}
    fleet: {max: 0, hold: -1m, onAPIError: ignore}
`, []string{"actions.a.fleet.max: must be at least 1", "actions.a.fleet.hold: duration \"-1m\" must not be negative",
			"actions.a.fleet.onAPIError: must be \"wait\" or \"proceed\", not \"ignore\""}},
		{"retryExhaustedAfter", `
actions:
  a: {exec: {command: [x]}}
rules:
  - alert: Short
    expr: up
    remediate: [a]
    retryExhaustedAfter: 30s
  - alert: NoLadder
    expr: up
    retryExhaustedAfter: 1h
`, []string{"rules[0].retryExhaustedAfter: must be at least 1m (0 disables), not 30s",
			"rules[1].retryExhaustedAfter: has no effect without remediate"}},
		{"near-miss keys", "evaluationIntervall: 5s\nprobes:\n  - name: a\n    testprobe: {url: x, intervall: 5s}\n", []string{
			`evaluationIntervall: unknown field (did you mean "evaluationInterval"?)`,
			`probes[0].testprobe.intervall: unknown field (did you mean "interval"?)`}},
		{"a second document", "listen: x\n---\nlisten: y\n", []string{"a second YAML document (after ---) is not supported"}},
		{"a numeric name", "probes:\n  - name: 500\n    testprobe: {url: x}\n", []string{
			`probes[0].name: "500": must start with a letter or '_'`}},
		{"durations below the minimums", `
evaluationInterval: 1ns
probes:
  - name: a
    testprobe: {url: x, interval: 1ms}
actions:
  a:
    exec: {command: [x], timeout: 1ms}
    backoff: {initial: 1ns}
`, []string{"evaluationInterval: 1ns is below the minimum of 100ms", "probes[0].testprobe.interval: 1ms is below the minimum of 100ms",
			"actions.a.exec.timeout: 1ms is below the minimum of 10ms", "actions.a.backoff.initial: 1ns is below the minimum of 10ms"}},
		{"listen address and templates", `
listen: "localhost"
rules:
  - alert: A
    expr: up
    annotations: {summary: "{{ $labels.instance "}
    labels: {team: "{{ end }}"}
`, []string{`listen: "localhost" is not host:port`, "rules[0].annotations.summary: template: __alert_A:1: unclosed action",
			"rules[0].labels.team: template: __alert_A:1: unexpected {{end}}"}},
		{"unset env var", "stateDir: ${MEDIC_TEST_SURELY_UNSET}\n", []string{"stateDir: environment variable MEDIC_TEST_SURELY_UNSET is not set"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse([]byte(tc.yaml), func(string) (string, bool) { return "", false })
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			var msgs []string
			for _, e := range cfg.Sorted(err) {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing problem %q in:\n%s", w, all)
				}
			}
			for _, e := range cfg.Flatten(err) {
				var fe *cfg.FieldError
				if !errors.As(e, &fe) {
					t.Errorf("problem without a field path: %v", e)
				} else if fe.Line == 0 && tc.yaml != "" {
					t.Errorf("problem without a line: %v", e)
				}
			}
		})
	}
}

// requires: takes a string (the local store), a mapping or a list of
// either, and marshals back in the form it was written when it is one
// plain local expression.
func TestRequiresForms(t *testing.T) {
	c, err := Parse([]byte(`
actions:
  s:
    exec: {command: [x]}
    requires: 'medic_probe_up == 1'
  m:
    exec: {command: [x]}
    requires: {expr: 'up == 1', onError: proceed}
  l:
    exec: {command: [x]}
    requires:
      - 'medic_probe_up == 1'
      - {expr: 'vector(0) < 0.3', reason: fleet-outage}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]remedy.Requirement{
		"s": {{Expr: "medic_probe_up == 1", OnError: remedy.OnErrorHold, Reason: remedy.ReasonPrecondition}},
		"m": {{Expr: "up == 1", OnError: remedy.OnErrorProceed, Reason: remedy.ReasonPrecondition}},
		"l": {{Expr: "medic_probe_up == 1", OnError: remedy.OnErrorHold, Reason: remedy.ReasonPrecondition},
			{Expr: "vector(0) < 0.3", OnError: remedy.OnErrorHold, Reason: remedy.ReasonFleetOutage}},
	}
	for n, w := range want {
		if got := c.Actions[n].Requires.Remedy(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: got %+v, want %+v", n, got, w)
		}
	}
	js, err := json.Marshal(c.Actions["s"].Requires)
	if err != nil || string(js) != `"medic_probe_up == 1"` {
		t.Errorf("string form marshals as %s (%v), want the string", js, err)
	}
	js, _ = json.Marshal(c.Actions["m"].Requires)
	if string(js) != `[{"expr":"up == 1","onError":"proceed"}]` {
		t.Errorf("mapping form marshals as %s", js)
	}
	if got := c.AllExprs(); !slices.Contains(got, "medic_probe_up == 1") || !slices.Contains(got, "vector(0) < 0.3") {
		t.Errorf("AllExprs misses local requirements: %q", got)
	}
}

// A duplicate key is reported as such, with both lines, and not as the
// references to it that follow (regression: "unknown action "fix" (defined: )").
func TestDuplicateKeyNamesBothLines(t *testing.T) {
	_, err := Parse([]byte(`actions:
  fix:
    exec: {command: [a]}
  fix:
    exec: {command: [b]}
rules:
  - alert: A
    expr: up
    remediate: [fix]
`))
	if err == nil {
		t.Fatal("duplicate key accepted")
	}
	got := err.Error()
	if !strings.Contains(got, "actions.fix: duplicate key: first defined at line 2 (line 4)") {
		t.Errorf("no duplicate-key problem with both lines:\n%s", got)
	}
	if strings.Contains(got, "unknown action") {
		t.Errorf("a reference to the duplicated key is reported as unknown:\n%s", got)
	}
}

// Input that is not UTF-8, and tab indentation, are named with line and cause.
func TestEncodingAndTabsHaveLineAndCause(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"listen: x\nstateDir: \xff\xfe/tmp\n", "not UTF-8 text: byte 0xff at column 11 (save the file as UTF-8) (line 2)"},
		{"store:\n  maxSeries: 5\n\tretention: 1h\n", "indented with a tab; YAML indents with spaces"},
		{"store:\n\tmaxSeries: 5\n", "YAML syntax: indented with a tab"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
			continue
		}
		var fe *cfg.FieldError
		if !errors.As(err, &fe) || fe.Line == 0 {
			t.Errorf("%q: no line in %v", tc.in, err)
		}
	}
	_, err := Parse([]byte("store:\n  maxSeries: 5\n\tretention: 1h\n"))
	if !strings.Contains(err.Error(), "(line 3)") {
		t.Errorf("tab problem not on the tab's line: %v", err)
	}
}

func TestLinesPointAtTheField(t *testing.T) {
	_, err := Parse([]byte("listen: x\nstateDir: /tmp\nevaluationInterval: nope\n"))
	if err == nil || !strings.Contains(err.Error(), "evaluationInterval: invalid duration \"nope\"") || !strings.Contains(err.Error(), "(line 3)") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("probes: [{name: a, testprobe: {url: x}}]\nactions: {a: {exec: {command: [x]}}}\nrules: [{alert: A, expr: up, remediate: [a]}]"))
	f.Add([]byte("listen: &a [*a]\n"))
	f.Add([]byte("actions:\n  a: [1, 2]\nrules: {}\n"))
	f.Add([]byte("probes:\n  - !!binary AAAA\n"))
	f.Add([]byte("probes: [~]\nactions: {a: ~}\nrules: [~]\nplugins: {p: ~}\n")) // nil entries: a panic once
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parse(b, func(string) (string, bool) { return "v", true })
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && c != nil {
			t.Fatal("config returned with an error")
		}
	})
}

// Found by FuzzParse (testdata/fuzz/FuzzParse/2a8fc3657c77121f): an empty
// list item or map value decoded to a nil entry and crashed the parser.
func TestEmptyEntriesAreProblemsNotCrashes(t *testing.T) {
	for _, doc := range []string{"probes:\n-", "rules:\n-\n", "actions:\n  a:\n", "plugins:\n  p:\n"} {
		if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

// An empty entry does not shift the entries after it: their problems keep
// their own index (probes[2], not probes[1]).
func TestEmptyEntryKeepsTheIndexOfLaterEntries(t *testing.T) {
	_, err := Parse([]byte("probes:\n  - ~\n  - name: a\n    testprobe: {url: http://127.0.0.1:1/metrics}\n  - name: b\n    testprobe: {}\nrules:\n  - ~\n  - alert: X\n    expr: 'up =='\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"probes[0]: is empty", "probes[2].testprobe", "rules[0]: is empty", "rules[1].expr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	for _, bad := range []string{"probes[1].testprobe", "rules[0].expr"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("shifted index %q in:\n%v", bad, err)
		}
	}
}
