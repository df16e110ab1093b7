package grpcstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/testpeers/relay"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// TestEndToEndThroughSupervisor runs medic's supervisor (probes, store,
// rules, remedy, exec action) against the relay peer: the relay exits,
// then goes silent; each time the matching rule fires, the ladder's exec
// action runs (it writes a marker, the test plays the orchestrator and
// brings the relay back), and the incident resolves as fixed.
func TestEndToEndThroughSupervisor(t *testing.T) {
	s, err := relay.Start(relay.Options{Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	marker := filepath.Join(dir, "restarts")
	doc := fmt.Sprintf(`
stateDir: %s
evaluationInterval: 100ms
probes:
  - name: relay
    grpcStream:
      target: %s
      insecure: true
      backoff: {initial: 50ms, max: 200ms, jitter: 0%%}
actions:
  restart-relay:
    exec:
      command: [/bin/sh, -c, 'echo "$MEDIC_ALERT" >> %s']
      timeout: 5s
    backoff: {policy: constant, initial: 2s, attempts: 3}
    verify: 10s
rules:
  - alert: RelayStreamDown
    expr: medic_stream_up{probe="relay"} == 0
    remediate: [restart-relay]
  - alert: RelayEventGap
    expr: time() - medic_stream_last_message_timestamp_seconds{probe="relay"} > 2
    remediate: [restart-relay]
`, filepath.Join(dir, "state"), s.Addr(), marker)
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Config: c, Clock: clock.Real{}, Listener: ln,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Status is read the way an operator reads it: GET /status.
	status := func() statusDoc {
		t.Helper()
		var st statusDoc
		resp, err := http.Get("http://" + sup.Addr() + "/status?format=json")
		if err != nil {
			return st // the server may not be up yet
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; status: %+v", what, status())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	markers := func() []string {
		b, _ := os.ReadFile(marker)
		return strings.Fields(string(b))
	}
	resolved := func(alert string) bool {
		for _, inc := range status().Incidents {
			if inc.Alert == alert && inc.State == remedy.StateResolved.String() && inc.FixedBy == "restart-relay" {
				return true
			}
		}
		return false
	}
	probeUp := func() bool {
		for _, p := range status().Probes {
			if p.Name == "relay" && p.Up == 1 {
				return true
			}
		}
		return false
	}
	waitFor("probe up", probeUp)

	// The relay exits: RelayStreamDown fires and the ladder runs.
	s.Stop()
	waitFor("restart for RelayStreamDown", func() bool { return len(markers()) == 1 })
	if m := markers(); m[0] != "RelayStreamDown" {
		t.Fatalf("markers %v", m)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor("RelayStreamDown resolved as fixed", func() bool { return resolved("RelayStreamDown") })

	// The relay loses its upstream: the stream stays up, events stop.
	s.SetSilent(true)
	waitFor("restart for RelayEventGap", func() bool { return len(markers()) == 2 })
	if m := markers(); m[1] != "RelayEventGap" {
		t.Fatalf("markers %v", m)
	}
	if !probeUp() {
		t.Fatal("a silent relay keeps the stream up")
	}
	s.SetSilent(false)
	waitFor("RelayEventGap resolved as fixed", func() bool { return resolved("RelayEventGap") })
}

// statusDoc is the part of /status this test reads.
type statusDoc struct {
	Probes []struct {
		Name string  `json:"name"`
		Up   float64 `json:"up"`
	} `json:"probes"`
	Incidents []struct {
		Alert   string `json:"alert"`
		State   string `json:"state"`
		FixedBy string `json:"fixedBy"`
	} `json:"incidents"`
}
