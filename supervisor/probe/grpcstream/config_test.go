package grpcstream_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/probe/grpcstream"

	_ "github.com/medic-sidecar/medic/supervisor/builtin"
)

func parseProbe(t *testing.T, body string) (*grpcstream.Config, error) {
	t.Helper()
	doc := "probes:\n  - name: relay\n    grpcStream:\n" + indent(body, "      ")
	c, err := config.Parse([]byte(doc))
	if err != nil {
		return nil, err
	}
	return c.Probes[0].Spec.(*grpcstream.Config), nil
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestDefaults(t *testing.T) {
	c, err := parseProbe(t, "target: relay:32767\ninsecure: true")
	if err != nil {
		t.Fatal(err)
	}
	if c.API != "kubearmor" || c.Keepalive.Time.D() != 15*time.Second || c.Keepalive.Timeout.D() != 5*time.Second ||
		c.DialTimeout.D() != 10*time.Second || c.HealthCheck.Interval != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	b := c.Backoff
	if b.Policy != "exponential" || b.Initial.D() != time.Second || b.Max.D() != 30*time.Second || b.Jitter != 20 || b.Attempts != 0 {
		t.Fatalf("backoff defaults: %+v", b)
	}
}

func TestEveryKeyDecodes(t *testing.T) {
	c, err := parseProbe(t, `
target: dns:///kubearmor.kubearmor:32767
api: kubearmor
stream: messages
filter: anything-goes-for-messages
healthCheck: {interval: 30s, timeout: 2s}
tls: {caFile: /etc/ca.pem, certFile: /etc/c.pem, keyFile: /etc/k.pem, serverName: kubearmor}
keepalive: {time: 10s, timeout: 2s}
dialTimeout: 3s
backoff: {policy: fibonacci, initial: 500ms, max: 1m, jitter: 10%}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream != "messages" || c.TLS.ServerName != "kubearmor" || c.HealthCheck.Interval.D() != 30*time.Second ||
		c.Backoff.Policy != "fibonacci" || c.DialTimeout.D() != 3*time.Second {
		t.Fatalf("%+v", c)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string // path: message fragments
	}{
		{"nothing", "api: kubearmor", []string{
			"probes[0].grpcStream.target: is required",
			"probes[0].grpcStream.tls: is required unless insecure: true",
		}},
		{"both transports", "target: x:1\ninsecure: true\ntls: {caFile: /ca.pem}", []string{"probes[0].grpcStream.insecure: conflicts with tls"}},
		{"half a key pair", "target: x:1\ntls: {certFile: /c.pem}", []string{"probes[0].grpcStream.tls: certFile and keyFile must be given together"}},
		{"alerts bad filter", "target: x:1\ninsecure: true\nfilter: system", []string{
			`probes[0].grpcStream.filter: "system" is not accepted on alerts: the relay takes only "all" or "policy"`}},
		{"logs bad filter", "target: x:1\ninsecure: true\nstream: logs\nfilter: policy", []string{
			`probes[0].grpcStream.filter: "policy" is not accepted on logs`}},
		{"bad stream", "target: x:1\ninsecure: true\nstream: events", []string{"probes[0].grpcStream.stream: must be alerts, logs or messages"}},
		{"bad api", "target: x:1\ninsecure: true\napi: http", []string{"probes[0].grpcStream.api: must be kubearmor or grpc-health"}},
		{"health with stream keys", "target: x:1\ninsecure: true\napi: grpc-health\nstream: logs\nfilter: all\nhealthCheck: {interval: 5s}", []string{
			"probes[0].grpcStream.stream: is for api kubearmor only",
			"probes[0].grpcStream.filter: is for api kubearmor only",
			"probes[0].grpcStream.healthCheck: is for api kubearmor only",
		}},
		{"service on kubearmor", "target: x:1\ninsecure: true\nservice: x", []string{"probes[0].grpcStream.service: is for api grpc-health only"}},
		{"keepalive below grpc floor", "target: x:1\ninsecure: true\nkeepalive: {time: 5s, timeout: 0s}", []string{
			"probes[0].grpcStream.keepalive.time: must be at least 10s (grpc-go raises",
			"probes[0].grpcStream.keepalive.timeout: must be greater than 0",
		}},
		{"backoff gives up", "target: x:1\ninsecure: true\nbackoff: {attempts: 3, maxDuration: 1m, max: 0s}", []string{
			"probes[0].grpcStream.backoff.attempts: must be 0 (unlimited)",
			"probes[0].grpcStream.backoff.maxDuration: must be 0",
			"probes[0].grpcStream.backoff.max: must be greater than 0",
		}},
		{"unknown key", "target: x:1\ninsecure: true\nheartbeat: 15s", []string{"probes[0].grpcStream.heartbeat: unknown field"}},
		{"bad duration", "target: x:1\ninsecure: true\ndialTimeout: soon", []string{"probes[0].grpcStream.dialTimeout: invalid duration"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseProbe(t, tc.body)
			if err == nil {
				t.Fatal("want errors")
			}
			var got []string
			for _, e := range cfg.Sorted(err) {
				got = append(got, e.Error())
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in:\n%s", w, all)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("want %d errors, got %d:\n%s", len(tc.want), len(got), all)
			}
		})
	}
}

func TestValidFiltersPerStream(t *testing.T) {
	ok := map[string][]string{
		"alerts":   {"", "all", "policy"},
		"logs":     {"", "all", "system"},
		"messages": {"", "all", "policy", "system", "x"},
	}
	for stream, filters := range ok {
		for _, f := range filters {
			body := "target: x:1\ninsecure: true\nstream: " + stream
			if f != "" {
				body += "\nfilter: " + f
			}
			if _, err := parseProbe(t, body); err != nil {
				t.Errorf("%s/%q: %v", stream, f, err)
			}
		}
	}
}

// TestExampleConfig loads examples/kubearmor-relay.yaml with the config
// loader. Until the reconnect action kind lands, a stand-in kind that
// accepts {probe: <name>} is registered so the rest of the file is
// still checked.
func TestExampleConfig(t *testing.T) {
	if _, ok := actions.Lookup("reconnect"); !ok {
		actions.Register(actions.Kind{
			Name:      "reconnect",
			NewConfig: func() any { return &standInReconnect{} },
			New:       func(any, actions.Env) (actions.Action, error) { return nil, errors.New("stand-in") },
		})
	}
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", "kubearmor-relay.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(b)
	if err != nil {
		t.Fatalf("%s:\n%v", path, err)
	}
	if len(c.Probes) != 1 || c.Probes[0].Kind != grpcstream.Kind || len(c.Rules) != 2 {
		t.Fatalf("unexpected shape: %+v", c)
	}
	if got := c.Rules[1].Expr; got != `time() - medic_stream_last_message_timestamp_seconds{probe="relay"} > 60` {
		t.Fatalf("gap rule %q", got)
	}
	if c.Actions["reconnect-relay"].Kind != "reconnect" || len(c.Actions) != 1 {
		t.Fatal("ladder kinds")
	}
}

// standInReconnect mirrors the reconnect action's probe: key (stand-in
// for the kind owned elsewhere).
type standInReconnect struct {
	Probe string `yaml:"probe"`
}
