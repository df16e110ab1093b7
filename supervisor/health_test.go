package supervisor

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/config"
)

func TestHealthzFailsWhenEvaluationStallsForThreeIntervals(t *testing.T) {
	c, err := config.Parse([]byte("listen: 127.0.0.1:0\nstateDir: " + t.TempDir() + "\nevaluationInterval: 5s\n"))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s, err := New(Options{Config: c, Clock: clk, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	// Serve without the loops: evaluation is driven by hand.
	go s.server.Run(t.Context())
	s.lastEval.Store(clk.Now().UnixNano())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d at start", code)
	}
	clk.Advance(14 * time.Second)
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d before 3 intervals", code)
	}
	clk.Advance(2 * time.Second)
	code, body := get("/healthz")
	if code != 503 || !strings.Contains(body, "stalled") {
		t.Fatalf("healthz %d %q after 16s without evaluation", code, body)
	}
	s.EvalOnce(t.Context(), clk.Now())
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d after an evaluation", code)
	}
	// /readyz: no probes, one evaluation done.
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d %q", code, body)
	}
	// /livez/agent is mounted and healthy by default.
	if code, _ := get("/livez/agent"); code != 200 {
		t.Fatalf("livez/agent %d", code)
	}
}

func TestPluginLifecycleEventsReachTheAuditLog(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse([]byte("listen: 127.0.0.1:0\nstateDir: " + dir + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer s.audit.Close()
	s.pluginEvent(plugins.Event{Type: plugins.PluginStarted, Plugin: "webhook"}) // logged only
	s.pluginEvent(plugins.Event{Type: plugins.PluginQuarantined, Plugin: "webhook", Crashes: 4, Message: "crashed 4 times in 10m"})
	b, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"type":"PluginQuarantined"`) || !strings.Contains(lines[0], `"plugin":"webhook"`) {
		t.Fatalf("audit:\n%s", b)
	}
}
