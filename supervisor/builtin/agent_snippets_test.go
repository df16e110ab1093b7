package builtin_test

import (
	"testing"

	_ "github.com/medic-sidecar/medic/supervisor/builtin"
	"github.com/medic-sidecar/medic/supervisor/config"
)

// spireSnippets are the probe and action parts handed to the lead for
// examples/spire-agent.yaml; they must load as they are.
const spireSnippets = `
probes:
  - name: spire-server
    tcp: {address: "${SPIRE_SERVER_ADDRESS:-spire-server.spire:8081}", interval: 5s, timeout: 2s}
  - name: spire-live
    http: {url: "http://127.0.0.1:8080/live", interval: 5s, timeout: 2s}
  - name: spire-ready
    http: {url: "http://127.0.0.1:8080/ready", interval: 5s, timeout: 2s}
  - name: svid
    cert:
      workloadAPI: {socket: "unix:///run/spire/sockets/agent.sock"}
      interval: 30s
      overdueAt: 60%
actions:
  restart-agent:
    restart: {mode: signal, process: spire-agent, signal: SIGTERM, gracePeriod: 10s}
    requires: medic_probe_up{probe="spire-server"} == 1
    backoff: {policy: exponential, initial: 10s, max: 5m, attempts: 2}
    budget: {max: 3, window: 1h}
    verify: 60s
  restart-agent-probe:
    restart: {mode: probe, failureThreshold: 3, periodSeconds: 10}
    requires: medic_probe_up{probe="spire-server"} == 1
    verify: 90s
  refresh-svid-files:
    certRefresh:
      socket: "unix:///run/spire/sockets/agent.sock"
      certFile: /certs/svid.pem
      keyFile: /certs/svid_key.pem
      bundleFile: /certs/bundle.pem
      notify: {signal: SIGHUP, pidFile: /run/nginx/nginx.pid}
    verify: 30s
rules:
  - alert: SPIREAgentNotLive
    expr: medic_probe_up{probe="spire-live"} == 0
    for: 30s
    remediate: [restart-agent]
  - alert: SVIDRotationOverdue
    expr: medic_cert_rotation_overdue_seconds{probe="svid"} > 0
    for: 1m
    remediate: [restart-agent]
`

func TestSpireSnippetsLoad(t *testing.T) {
	c, err := config.Parse([]byte(spireSnippets))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, p := range c.Probes {
		kinds[p.Name] = p.Kind
	}
	for name, a := range c.Actions {
		kinds[name] = a.Kind
	}
	want := map[string]string{
		"spire-server": "tcp", "spire-live": "http", "spire-ready": "http", "svid": "cert",
		"restart-agent": "restart", "restart-agent-probe": "restart", "refresh-svid-files": "certRefresh",
	}
	for k, v := range want {
		if kinds[k] != v {
			t.Errorf("%s: kind %q, want %q", k, kinds[k], v)
		}
	}
}
