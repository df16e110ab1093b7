//go:build fleetsim

// The fleet simulation, run by scripts/fleet-sim.sh (go test -tags
// fleetsim): it needs the real kube-apiserver (internal/kubetest) and the
// real Prometheus, and runs for minutes, so it is not part of go test ./....
package fleetsim

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/kubetest"
	promserver "github.com/medic-sidecar/medic/internal/testpeers/prometheus"
)

var (
	sidecars = flag.Int("sidecars", 50, "number of medic sidecars (nodes)")
	scenario = flag.String("scenario", SharedOutage, "shared-outage | local-fault | recovery")
	fleetMax = flag.Int("fleet-max", 5, "restart-agent's fleet.max")
	scale    = flag.Float64("scale", 0, "time scale (0: 1 up to 200 sidecars, then sidecars/200)")
	out      = flag.String("out", "", "file to write the JSON line to (default stdout)")
	noGuard  = flag.Bool("no-guard", false, "control run: without the fleet-outage requirement")
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func TestFleetSim(t *testing.T) {
	env := kubetest.Start(t)
	if _, err := promserver.Binary(); err != nil {
		t.Fatal(err) // the simulation is nothing without it
	}
	s := *scale
	if s <= 0 {
		s = max(1, float64(*sidecars)/200)
	}
	tm := NewTimings(s)
	ctx := context.Background()
	prom, err := promserver.Start(ctx, promserver.Options{Dir: t.TempDir(), ScrapeInterval: tm.Eval})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Run(ctx, Options{Sidecars: *sidecars, Scenario: *scenario, FleetMax: *fleetMax, Timings: tm,
		Dir: t.TempDir(), Prometheus: prom, Kube: env.Medic, Admin: env.Admin, Namespace: env.Namespace, Progress: os.Stderr, NoGuard: *noGuard})
	if err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	res.Facts["scale"] = s
	res.Facts["heap_mb_after"] = after.HeapAlloc >> 20
	b, _ := json.Marshal(res)
	if *out != "" {
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		fmt.Println(string(b))
	}
	facts, _ := json.Marshal(res.Facts)
	fmt.Fprintf(os.Stderr, "fleet-sim %s N=%d facts: %s (%s)\n", *scenario, *sidecars, facts, time.Now().UTC().Format(time.RFC3339))
	for _, v := range res.Violations {
		t.Errorf("required outcome violated: %s", v)
	}
}
