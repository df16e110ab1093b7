package plugins

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/actions/exec"
	"github.com/medic-sidecar/medic/internal/cfg"
)

// Benchmarks: the cost of one remediation attempt through a plugin
// (gRPC over AutoMTLS on a Unix socket, JSON config, structpb details)
// against built-in actions, and the plugin's start-up time. Each reports
// p50/p99 in ms besides ns/op:
//
//	go test -run '^$' -bench . -benchtime 2000x ./plugins/

var benchIncident = actions.Incident{ID: "inc-1", Alert: "AgentDown", Labels: map[string]string{"probe": "agent", "job": "spire"},
	Value: 1, Step: 1, Action: "fix", Attempt: 1, MaxAttempts: 3, Started: time.Now()}

// noop is the cheapest possible built-in action.
type noop struct{}

func (noop) Run(context.Context, actions.Incident) (actions.Result, error) {
	return actions.Result{Message: "ok", Details: map[string]any{"pid": 1}}, nil
}

func benchAction(b *testing.B, a actions.Action) {
	b.Helper()
	ctx := context.Background()
	if _, err := a.Run(ctx, benchIncident); err != nil { // warm up (starts a lazy plugin)
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := a.Run(ctx, benchIncident); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

func benchHost(b *testing.B) *Host {
	b.Helper()
	c := DefaultConfig()
	c.Path, c.SHA256 = testPluginPath, testPluginSum
	h, err := New(map[string]*Config{"tp": c}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Stop)
	return h
}

func BenchmarkActionBuiltinNoop(b *testing.B) { benchAction(b, noop{}) }

func BenchmarkActionBuiltinExecTrue(b *testing.B) {
	benchAction(b, exec.New(exec.Config{Command: []string{"/bin/true"}, Timeout: cfg.Duration(10 * time.Second)}))
}

func BenchmarkActionPlugin(b *testing.B) {
	h := benchHost(b)
	a, err := NewAction(context.Background(), ActionConfig{Name: "tp", Config: map[string]any{"mode": "succeed"}}, actions.Env{Name: "fix", Plugins: h})
	if err != nil {
		b.Fatal(err)
	}
	benchAction(b, a)
}

// BenchmarkPluginStart measures a plugin's start: sha256 check, exec,
// handshake, AutoMTLS and the Info call (the stop is not timed).
func BenchmarkPluginStart(b *testing.B) {
	h := benchHost(b)
	i := h.plugins["tp"]
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		p, _, err := i.acquire(context.Background(), false)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		i.stopIfUnwanted(p)
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}
