package replay

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// BenchmarkSimStep measures one evaluation cycle of the decision engine
// with N open incidents: simulated time moves one evaluation interval
// (5 s), every incident's guard re-check comes due (all are held by a
// pause window, so each cycle re-evaluates every one), and the engine is
// handed the N firing alerts. No rule evaluation: this is remedy's cost.
func BenchmarkSimStep(b *testing.B) {
	c, err := config.LoadFile("../../examples/spire-agent.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("incidents=%d", n), func(b *testing.B) {
			start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
			sim, err := NewSim(SimOptions{Config: c, Start: start, Recheck: 5 * time.Second,
				Pauses: []Window{{From: start, To: start.Add(1000 * 24 * time.Hour), Why: "bench"}}})
			if err != nil {
				b.Fatal(err)
			}
			defer sim.Close()
			firing := make([]rules.Alert, n)
			for i := range firing {
				firing[i] = rules.Alert{Rule: "SPIREAgentNotSyncing", Labels: labels.FromStrings("alertname", "SPIREAgentNotSyncing", "host", fmt.Sprintf("node-%d", i)), Value: 1}
			}
			ts := start
			sim.Step(ts, firing)
			b.ResetTimer()
			for b.Loop() {
				ts = ts.Add(5 * time.Second)
				sim.Step(ts, firing)
			}
		})
	}
}
