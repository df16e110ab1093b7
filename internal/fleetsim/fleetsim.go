// Package fleetsim simulates a fleet of medic sidecars, each beside its
// own SPIRE-like agent (internal/demo/spireagent), to show what the fleet
// does when the agents' upstream fails for all of them at once, for one,
// and when it comes back (scripts/fleet-sim.sh; docs/fleet.md).
//
// Every node is a whole in-process medic (supervisor.New, the real
// config, rules, remedy engine, HTTP server on loopback) with its own
// identity (pod name node-<i>), scraped by a real Prometheus that the
// medics' fleet-outage guard queries (sources.fleet), and sharing a real
// kube-apiserver for the fleet limit's Leases and for Events. The only
// stand-in is the restart itself: action kind simrestart restarts the
// node's in-process agent instead of signalling a process.
//
// Timings are SPIRE's compressed by a scale (Timings): the agent syncs
// every 0.5 s × scale instead of 5 s, medic evaluates every 1 s × scale.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	"github.com/medic-sidecar/medic/internal/kubeclient"
	promserver "github.com/medic-sidecar/medic/internal/testpeers/prometheus"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/kube"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"

	_ "github.com/medic-sidecar/medic/supervisor/builtin" // the scrape probe
)

// Scenarios.
const (
	SharedOutage = "shared-outage" // the upstream fails for every agent
	LocalFault   = "local-fault"   // one agent hangs; the rest are healthy
	Recovery     = "recovery"      // a shared outage ends with agents in backoff and some hung
)

// Scenarios lists them.
var Scenarios = []string{SharedOutage, LocalFault, Recovery}

// Action and alert names (as in examples/spire-agent.yaml).
const (
	actionName = "restart-agent"
	alertName  = "SPIREAgentNotSyncing"
)

// Timings are the simulation's clock: SPIRE's and the example's, scaled.
type Timings struct {
	AgentInterval time.Duration // spire-agent sync interval (5 s in SPIRE)
	Eval          time.Duration // medic evaluationInterval, probe interval, Prometheus scrape interval
	Window        time.Duration // the rule's increase() range
	For           time.Duration // the rule's for
	Verify        time.Duration // restart-agent verify
	Recovered     time.Duration // the guard's "peers recovered lately" range
	Outage        time.Duration // how long a shared outage lasts
	QueryTimeout  time.Duration // sources.fleet timeout
}

// NewTimings returns the timings at scale (1: agents sync every 500 ms,
// medic evaluates every second).
func NewTimings(scale float64) Timings {
	d := func(s float64) time.Duration { return time.Duration(s * scale * float64(time.Second)) }
	return Timings{AgentInterval: d(0.5), Eval: d(1), Window: d(5), For: d(3), Verify: d(4),
		Recovered: d(20), Outage: d(20), QueryTimeout: d(2)}
}

// Bound is how soon a local fault must be remediated: the rule's window
// and for, plus a few evaluations and scrapes for the alert to fire, the
// guard's query and the Lease.
func (t Timings) Bound() time.Duration { return t.Window + t.For + 4*t.Eval + 2*time.Second }

// Options configure a run.
type Options struct {
	Sidecars int
	Scenario string
	// FleetMax is restart-agent's fleet limit (fleet.max).
	FleetMax int
	// MaxShare is the guard's threshold (0.3 in the example).
	MaxShare float64
	// StuckShare is the share of agents hung when the upstream returns
	// (recovery): only a restart fixes them.
	StuckShare float64
	Timings    Timings
	Dir        string
	Prometheus *promserver.Server
	// Kube is the medic user's config (deploy/base's Role), Namespace
	// where the Leases and Events go; Admin reads the API server's metrics.
	Kube, Admin *rest.Config
	Namespace   string
	// Progress receives one line per phase.
	Progress io.Writer
	// NoGuard leaves the fleet-outage requirement out (the control run:
	// shows what the guard prevents; the shared-outage outcome then fails).
	NoGuard bool
}

// Result is the run's JSON line (the fields scripts/fleet-sim.sh prints).
type Result struct {
	Sidecars              int            `json:"sidecars"`
	Scenario              string         `json:"scenario"`
	Restarts              int            `json:"restarts"`
	RestartsDuringOutage  int            `json:"restarts_during_outage"`
	MaxConcurrentRestarts int            `json:"max_concurrent_restarts"`
	SuppressedByReason    map[string]int `json:"suppressed_by_reason"`
	TimeToFirstDecision   float64        `json:"time_to_first_decision_s"`
	TimeToDrain           float64        `json:"time_to_drain_s"`
	APIServerWrites       int            `json:"apiserver_writes"`
	PrometheusQueries     int            `json:"prometheus_queries"`

	// Violations are the required outcomes that did not hold.
	Violations []string `json:"-"`
	// Facts are further measurements, for the log.
	Facts map[string]any `json:"-"`
}

// The action kind that restarts the node's in-process agent.
var peers sync.Map // node name -> *spireagent.Peer

type simRestartConfig struct {
	Peer string `yaml:"peer"`
}

type simRestart struct{ peer *spireagent.Peer }

func (a simRestart) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	if err := a.peer.Restart(); err != nil {
		return actions.Result{}, err
	}
	return actions.Result{Message: "agent restarted"}, nil
}

func init() {
	actions.Register(actions.Kind{Name: "simrestart", NewConfig: func() any { return &simRestartConfig{} },
		New: func(c any, env actions.Env) (actions.Action, error) {
			name := c.(*simRestartConfig).Peer
			p, ok := peers.Load(name)
			if !ok {
				return nil, fmt.Errorf("simrestart: no agent %q", name)
			}
			return simRestart{p.(*spireagent.Peer)}, nil
		}})
}

// Config is one node's medic.yaml: the SPIRE example's NotSyncing rule
// and restart-agent with its guards (the fleet-outage requirement on the
// fleet Prometheus, the Lease limit), at the simulation's timings.
func Config(node, agentURL, promURL, stateDir string, t Timings, fleetMax int, maxShare float64, guard bool) string {
	share := fmt.Sprintf(`(count(sum without (alert, state) (medic_alerts{alert="%[1]s", state=~"pending|firing"}) > 0) or vector(0))
          / count(medic_alerts{alert="%[1]s", state="firing"}) < %[2]g
          or sum(increase(medic_incidents_total{alert="%[1]s", outcome="resolved"}[%[3]s]))
          / count(medic_alerts{alert="%[1]s", state="firing"}) >= 0.1`, alertName, maxShare, promDur(t.Recovered))
	requires := fmt.Sprintf(`
    requires:
      - source: fleet
        reason: fleet-outage
        expr: >-
          %s`, share)
	if !guard {
		requires = ""
	}
	return fmt.Sprintf(`listen: 127.0.0.1:0
stateDir: %[1]s
evaluationInterval: %[2]s
probes:
  - name: spire
    scrape: {url: "%[3]s/metrics", interval: %[2]s, timeout: %[2]s}
sources:
  fleet:
    prometheus: {url: "%[4]s", timeout: %[5]s}
actions:
  %[6]s:
    simrestart: {peer: %[7]s}%[8]s
    backoff: {policy: constant, initial: %[2]s, attempts: 3}
    verify: %[9]s
    fleet: {max: %[10]d}
rules:
  - alert: %[11]s
    expr: increase(spire_agent_manager_sync_fetch_entries_updates{status="OK"}[%[12]s]) == 0
    for: %[13]s
    remediate: [%[6]s]
`, stateDir, promDur(t.Eval), agentURL, promURL, promDur(t.QueryTimeout), actionName, node, requires,
		promDur(t.Verify), fleetMax, alertName, promDur(t.Window), promDur(t.For))
}

func promDur(d time.Duration) string { return model.Duration(d.Round(time.Millisecond)).String() }

// recorder collects every node's remediation events and alert transitions.
type recorder struct {
	mu         sync.Mutex
	restarts   []restart // by start
	running    int
	maxRunning int
	firstDec   time.Time
	armed      bool      // after the fault: record first decisions
	outageFrom time.Time // restarts started in [outageFrom, outageTo) count as during the outage
	outageTo   time.Time
	active     map[string]bool // node -> alert pending or firing
	inRestart  map[string]int
	since      map[string]time.Time // node -> start of its running restart
	// ended: the node's attempt ended (its slot is being given back) but
	// its end event is not recorded yet; maxToEvent counts an attempt until
	// its end event (which comes after the slot's release is written, so
	// it overlaps the next holder's start when that write is slow).
	ended      map[string]bool
	toEvent    int
	maxToEvent int
	// limit and exceeded: called (under mu) when running first exceeds
	// limit and at each new maximum above it.
	limit    int
	exceeded func(running map[string]time.Time)
}

type restart struct {
	node string
	at   time.Time
}

type nodeSink struct {
	r    *recorder
	node string
}

func (s nodeSink) Record(ev remedy.Event) {
	if ev.Action != actionName {
		return
	}
	r, now := s.r, time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Type {
	case remedy.RemediationStarted:
		if ev.DryRun {
			return
		}
		r.restarts = append(r.restarts, restart{s.node, now})
		r.toEvent++
		r.maxToEvent = max(r.maxToEvent, r.toEvent)
		r.running++
		r.inRestart[s.node]++
		r.since[s.node] = now
		if r.running > r.maxRunning && r.running > r.limit && r.exceeded != nil {
			r.exceeded(maps.Clone(r.since))
		}
		r.maxRunning = max(r.maxRunning, r.running)
	case remedy.RemediationSucceeded, remedy.RemediationFailed:
		if r.inRestart[s.node] > 0 { // an attempt that ran (not a failure before running)
			r.inRestart[s.node]--
			r.toEvent--
			if r.ended[s.node] {
				delete(r.ended, s.node)
			} else {
				r.running--
				delete(r.since, s.node)
			}
		}
	}
	if r.armed && r.firstDec.IsZero() && (ev.Type == remedy.RemediationStarted || ev.Type == remedy.RemediationSuppressed) {
		r.firstDec = now
	}
}

// released: node's attempt ended and its fleet slot is being given back
// (before the release is written and before the end event).
func (r *recorder) released(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inRestart[node] > 0 && !r.ended[node] {
		r.ended[node] = true
		r.running--
		delete(r.since, node)
	}
}

func (r *recorder) transition(node string, t rules.Transition) {
	if t.Alert.Rule != alertName {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.To == rules.StatePending || t.To == rules.StateFiring {
		r.active[node] = true
	} else {
		delete(r.active, node)
	}
}

// quiet reports whether no node has the alert active and no restart runs.
func (r *recorder) quiet() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active) == 0 && r.toEvent == 0, len(r.active)
}

type node struct {
	name string
	peer *spireagent.Peer
	sup  *supervisor.Supervisor
	done chan error
}

// Run runs the scenario and returns its figures; Violations lists the
// required outcomes that failed.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.MaxShare == 0 {
		o.MaxShare = 0.3
	}
	if o.StuckShare == 0 {
		o.StuckShare = 0.3
	}
	t := o.Timings
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "fleet-sim %s N=%d: %s\n", o.Scenario, o.Sidecars, fmt.Sprintf(format, args...))
	}
	rec := &recorder{active: map[string]bool{}, inRestart: map[string]int{}, since: map[string]time.Time{}, ended: map[string]bool{}, limit: o.FleetMax}
	flog := newFleetLog(o.Progress)
	flog.released = rec.released
	rec.exceeded = func(running map[string]time.Time) {
		at := time.Now()
		var b strings.Builder
		for _, n := range slices.Sorted(maps.Keys(running)) {
			fmt.Fprintf(&b, " %s@-%.2fs", n, at.Sub(running[n]).Seconds())
		}
		say("%d restarts running (max %d):%s", len(running), o.FleetMax, b.String())
		go dumpLeases(ctx, o.Admin, o.Namespace, at, say)
	}
	res := &Result{Sidecars: o.Sidecars, Scenario: o.Scenario, SuppressedByReason: map[string]int{}, Facts: map[string]any{}}

	// Each node has its own client with medic's default client-side
	// limit (QPS 5, burst 10), as every medic pod does: one client for the
	// whole fleet would queue every node's Lease renewals behind all the
	// others' requests (they share one transport, as pods share the API
	// server).
	perNode := rest.CopyConfig(o.Kube)
	perNode.QPS, perNode.Burst = kube.DefaultQPS, kube.DefaultBurst
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	// Start the fleet.
	began := time.Now()
	nodes := make([]*node, o.Sidecars)
	defer func() {
		stop()
		for _, n := range nodes {
			if n == nil {
				continue
			}
			if n.done != nil {
				<-n.done
			}
			n.peer.Close()
			peers.Delete(n.name)
		}
	}()
	var targets []promserver.Target
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i)
		p := spireagent.New(spireagent.Options{Interval: t.AgentInterval, Host: name, StartupTimeout: -1, Seed: uint64(i + 1)})
		url, err := p.Start()
		if err != nil {
			return nil, err
		}
		n := &node{name: name, peer: p}
		nodes[i] = n
		peers.Store(name, p)
		dir := filepath.Join(o.Dir, name)
		c, err := config.Parse([]byte(Config(name, url, o.Prometheus.URL, dir, t, o.FleetMax, o.MaxShare, !o.NoGuard)))
		if err != nil {
			return nil, fmt.Errorf("%s: config: %w", name, err)
		}
		id := kube.Identity{Namespace: o.Namespace, Pod: name, Node: name}
		kc, err := kubeclient.NewForConfig(perNode)
		if err != nil {
			return nil, err
		}
		integ, err := integration(kc, perNode, id, flog.logger(name))
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		sup, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, Kube: integ, NoProcessMetrics: true,
			Logger: slog.New(slog.DiscardHandler), Sinks: []remedy.Sink{nodeSink{rec, name}},
			OnTransition: func(tr rules.Transition) { rec.transition(name, tr) }})
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		n.sup, n.done = sup, make(chan error, 1)
		go func() { n.done <- sup.Run(runCtx) }()
		targets = append(targets, promserver.Target{Addr: sup.Addr(), Labels: map[string]string{"pod": name, "namespace": o.Namespace}})
	}
	if err := o.Prometheus.SetTargets(targets); err != nil {
		return nil, err
	}
	say("%d medics and agents started in %s", o.Sidecars, time.Since(began).Round(time.Millisecond))

	// Healthy baseline: Prometheus sees every medic, nothing fires.
	seen := fmt.Sprintf(`count(medic_alerts{alert=%q, state="firing"})`, alertName)
	if err := waitFor(ctx, 120*time.Second+time.Duration(o.Sidecars)*200*time.Millisecond, func() bool {
		v, err := queryScalar(ctx, o.Prometheus.URL, seen)
		q, n := rec.quiet()
		_ = n
		return err == nil && int(v) == o.Sidecars && q
	}); err != nil {
		return nil, fmt.Errorf("baseline: Prometheus never saw all %d medics quiet: %w", o.Sidecars, err)
	}
	time.Sleep(t.Window + 2*t.Eval) // every medic has a full window of healthy syncs
	say("baseline healthy after %s", time.Since(began).Round(time.Millisecond))

	writes0, reads0, err := apiserverRequests(ctx, o.Admin)
	if err != nil {
		return nil, err
	}
	queries0 := sourceQueries(families(nodes, metricQueries))

	// The fault.
	rec.mu.Lock()
	rec.armed = true
	rec.mu.Unlock()
	faultAt := time.Now()
	var recoverAt time.Time
	var stuck []*node
	switch o.Scenario {
	case LocalFault:
		if err := nodes[0].peer.SetMode(spireagent.Frozen()); err != nil {
			return nil, err
		}
		say("node-0's agent hung")
		recoverAt = faultAt
	case SharedOutage, Recovery:
		for _, n := range nodes {
			if err := n.peer.SetMode(spireagent.Failing("Unavailable")); err != nil {
				return nil, err
			}
		}
		rec.mu.Lock()
		rec.outageFrom = faultAt
		rec.mu.Unlock()
		say("upstream failing for all %d agents for %s", o.Sidecars, t.Outage)
		sleepCtx(ctx, t.Outage)
		recoverAt = time.Now()
		rec.mu.Lock()
		rec.outageTo = recoverAt
		rec.mu.Unlock()
		if o.Scenario == Recovery {
			nStuck := int(math.Ceil(o.StuckShare * float64(o.Sidecars)))
			stuck = nodes[:nStuck]
			for _, n := range stuck { // hung before the upstream returns: they never see it
				if err := n.peer.SetMode(spireagent.Frozen()); err != nil {
					return nil, err
				}
			}
			res.Facts["stuck"] = nStuck
		}
		for _, n := range nodes[len(stuck):] {
			if err := n.peer.SetMode(spireagent.Healthy()); err != nil {
				return nil, err
			}
		}
		for _, n := range stuck {
			// The upstream is back for them too (Healthy also revives a hung
			// agent, so hang it again at once): only a restart lets them sync.
			if err := n.peer.SetMode(spireagent.Healthy()); err != nil {
				return nil, err
			}
			if err := n.peer.SetMode(spireagent.Frozen()); err != nil {
				return nil, err
			}
		}
		say("upstream back after %s (%d agents hung)", recoverAt.Sub(faultAt).Round(time.Millisecond), len(stuck))
	default:
		return nil, fmt.Errorf("unknown scenario %q (one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	}

	// Drain: every alert resolved, no restart running.
	drainLimit := 5*time.Minute + time.Duration(o.Sidecars)*600*time.Millisecond
	drainErr := waitFor(ctx, drainLimit, func() bool {
		if time.Since(recoverAt) < t.Window+t.For { // give the alerts time to fire first
			return false
		}
		if q, _ := rec.quiet(); !q {
			return false
		}
		for _, n := range nodes { // the ground truth: no agent still hung or failing
			if n.peer.Mode().Kind != spireagent.KindHealthy {
				return false
			}
		}
		return true
	})
	drainedAt := time.Now()
	res.TimeToDrain = round(drainedAt.Sub(recoverAt).Seconds())
	if drainErr != nil {
		_, active := rec.quiet()
		hung := 0
		for _, n := range nodes {
			if n.peer.Mode().Kind != spireagent.KindHealthy {
				hung++
			}
		}
		res.Violations = append(res.Violations, fmt.Sprintf("not drained within %s: %d nodes still alerting, %d agents not healthy", drainLimit, active, hung))
	}
	say("drained %s after the fault ended", drainedAt.Sub(recoverAt).Round(time.Millisecond))

	// Figures.
	writes1, reads1, err := apiserverRequests(ctx, o.Admin)
	if err != nil {
		return nil, err
	}
	res.APIServerWrites = writes1 - writes0
	res.Facts["apiserver_reads"] = reads1 - reads0
	mfs := families(nodes, metricQueries, metricSuppressed, metricQueryTime)
	if n, sum := histogram(mfs, metricQueryTime); n > 0 {
		res.Facts["source_query_mean_ms"] = round(1000 * sum / n)
	}
	res.PrometheusQueries = sourceQueries(mfs) - queries0
	for r, v := range suppressed(mfs) {
		res.SuppressedByReason[r] = v
	}
	rec.mu.Lock()
	res.Restarts = len(rec.restarts)
	byNode := map[string]int{}
	var firstRestart time.Time
	for _, r := range rec.restarts {
		byNode[r.node]++
		if !rec.outageFrom.IsZero() && !r.at.Before(rec.outageFrom) && r.at.Before(rec.outageTo) {
			res.RestartsDuringOutage++
		}
		if r.node == "node-0" && firstRestart.IsZero() {
			firstRestart = r.at
		}
	}
	if !rec.firstDec.IsZero() {
		res.TimeToFirstDecision = round(rec.firstDec.Sub(faultAt).Seconds())
	} else {
		res.TimeToFirstDecision = -1
	}
	rec.mu.Unlock()
	flog.facts(res.Facts)
	res.Facts["elapsed_s"] = round(time.Since(faultAt).Seconds())
	res.Facts["apiserver_writes_per_s"] = round(float64(res.APIServerWrites) / drainedAt.Sub(faultAt).Seconds())
	res.Facts["prometheus_queries_per_s"] = round(float64(res.PrometheusQueries) / drainedAt.Sub(faultAt).Seconds())
	if v, err := queryScalar(ctx, o.Prometheus.URL, `prometheus_tsdb_head_series`); err == nil {
		res.Facts["prometheus_head_series"] = v
	}
	if v, err := queryScalar(ctx, o.Prometheus.URL, `sum(scrape_samples_scraped)`); err == nil {
		res.Facts["samples_per_scrape_round"] = v
	}

	// An Event about a fleet-outage hold, as kubectl shows it.
	note, err := fleetOutageEvent(ctx, o.Admin, o.Namespace, faultAt, fmt.Sprintf(" of %d = ", o.Sidecars))
	if err != nil {
		return nil, err
	}
	if note != "" {
		res.Facts["fleet_outage_event"] = note
	}

	// The whole run's maximum (the fleet runs on while the figures are read).
	rec.mu.Lock()
	res.MaxConcurrentRestarts = rec.maxRunning
	res.Facts["max_concurrent_until_end_event"] = rec.maxToEvent
	rec.mu.Unlock()

	// Required outcomes.
	bad := func(format string, args ...any) {
		res.Violations = append(res.Violations, fmt.Sprintf(format, args...))
	}
	switch o.Scenario {
	case SharedOutage:
		if res.RestartsDuringOutage != 0 {
			bad("%d restarts during the shared outage, want 0", res.RestartsDuringOutage)
		}
		if !strings.Contains(note, fmt.Sprintf(" of %d = ", o.Sidecars)) {
			bad("no Event says how many of the %d peers see the same (fleet-outage Event note: %q)", o.Sidecars, note)
		}
		if min90 := int(math.Ceil(0.9 * float64(o.Sidecars))); res.SuppressedByReason[remedy.ReasonFleetOutage] < min90 {
			bad("only %d fleet-outage holds, want at least %d (90%% of the fleet reached the guard)", res.SuppressedByReason[remedy.ReasonFleetOutage], min90)
		}
	case LocalFault:
		switch {
		case firstRestart.IsZero():
			bad("node-0 was not restarted")
		case firstRestart.Sub(faultAt) > t.Bound():
			bad("node-0 restarted %s after its fault, want within %s", firstRestart.Sub(faultAt).Round(time.Millisecond), t.Bound())
		}
		res.Facts["time_to_restart_s"] = round(firstRestart.Sub(faultAt).Seconds())
		if others := res.Restarts - byNode["node-0"]; others != 0 {
			bad("%d restarts on healthy nodes, want 0", others)
		}
	case Recovery:
		if res.RestartsDuringOutage != 0 {
			bad("%d restarts during the shared outage, want 0", res.RestartsDuringOutage)
		}
		if res.MaxConcurrentRestarts > o.FleetMax {
			bad("%d restarts at once, fleet max is %d", res.MaxConcurrentRestarts, o.FleetMax)
		}
		for _, n := range stuck {
			if byNode[n.name] == 0 {
				bad("hung agent %s was never restarted", n.name)
				break
			}
		}
	}
	return res, nil
}

// integration is a node's Kubernetes integration: Events about its pod
// and the fleet Lease semaphore, as medic's pod identity (no pause watch:
// the simulated pods do not exist).
func integration(kc *kubeclient.Clientset, rc *rest.Config, id kube.Identity, log *slog.Logger) (*kube.Integration, error) {
	c := &kube.Client{Interface: kc, Config: rc, Identity: id, Source: "fleet-sim"}
	ev, err := kube.NewEventSink(kube.EventOptions{Client: kc, Regarding: kube.PodReference(id)})
	if err != nil {
		return nil, err
	}
	f, err := kube.NewFleet(kube.FleetOptions{Client: kc, Namespace: id.Namespace, Identity: id.Pod, Logger: log})
	if err != nil {
		return nil, err
	}
	return &kube.Integration{Client: c, Events: ev, FleetSem: f}, nil
}

// dumpLeases prints every fleet slot Lease as the API server has it:
// holder, renewTime and how long before or after at it expires.
func dumpLeases(ctx context.Context, admin *rest.Config, ns string, at time.Time, say func(string, ...any)) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return
	}
	ls, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=medic"})
	if err != nil {
		say("leases: %v", err)
		return
	}
	var b strings.Builder
	for _, l := range ls.Items {
		h, exp := "", time.Time{}
		if l.Spec.HolderIdentity != nil {
			h = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil {
			exp = l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
		}
		fmt.Fprintf(&b, " %s=%s(expires %+.1fs)", l.Name[strings.LastIndex(l.Name, "-")+1:], h, exp.Sub(at).Seconds())
	}
	say("leases %.2fs after:%s", time.Since(at).Seconds(), b.String())
}

// fleetOutageEvent returns the note of the latest Event about a
// fleet-outage hold written since since that contains want (else the
// latest such Event, else "").
func fleetOutageEvent(ctx context.Context, admin *rest.Config, ns string, since time.Time, want string) (string, error) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return "", err
	}
	evs, err := cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	note, at, found := "", time.Time{}, false
	for _, ev := range evs.Items {
		t, has := ev.EventTime.Time, strings.Contains(ev.Note, want)
		if !strings.Contains(ev.Note, "reason=fleet-outage") || t.Before(since.Add(-time.Second)) || found && !has {
			continue
		}
		if has && !found || t.After(at) {
			note, at, found = ev.Note, t, has
		}
	}
	return note, nil
}

// families gathers the named metric families from every node's registry,
// 64 nodes at a time (one registry after another took over 10 minutes for
// 1000 medics on a starved machine: each Gather waits for its collectors'
// goroutines to be scheduled).
func families(nodes []*node, names ...string) []*dto.MetricFamily {
	var mu sync.Mutex
	var out []*dto.MetricFamily
	work := make(chan *node)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for n := range work {
				mfs, err := n.sup.Registry().Gather()
				if err != nil {
					continue
				}
				mu.Lock()
				for _, mf := range mfs {
					if slices.Contains(names, mf.GetName()) {
						out = append(out, mf)
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, n := range nodes {
		work <- n
	}
	close(work)
	wg.Wait()
	return out
}

// sumBy sums a counter over mfs by one label.
func sumBy(mfs []*dto.MetricFamily, metric, label string) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[labelOf(m, label)] += m.GetCounter().GetValue()
		}
	}
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

const (
	metricQueries    = "medic_source_queries_total"
	metricSuppressed = "medic_remediations_suppressed_total"
	metricQueryTime  = "medic_source_query_duration_seconds"
)

func sourceQueries(mfs []*dto.MetricFamily) int {
	total := 0.0
	for _, v := range sumBy(mfs, metricQueries, "source") {
		total += v
	}
	return int(total)
}

func suppressed(mfs []*dto.MetricFamily) map[string]int {
	out := map[string]int{}
	for r, v := range sumBy(mfs, metricSuppressed, "reason") {
		if v > 0 {
			out[r] = int(v)
		}
	}
	return out
}

// histogram sums a histogram's count and sum over mfs.
func histogram(mfs []*dto.MetricFamily, metric string) (count, sum float64) {
	for _, mf := range mfs {
		if mf.GetName() == metric {
			for _, m := range mf.GetMetric() {
				count += float64(m.GetHistogram().GetSampleCount())
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, sum
}

// apiserverRequests reads the API server's own count of mutating
// requests, and of reads (GET, LIST, WATCH).
func apiserverRequests(ctx context.Context, admin *rest.Config) (writes, reads int, err error) {
	hc, err := rest.HTTPClientFor(admin)
	if err != nil {
		return 0, 0, err
	}
	req, _ := newRequest(ctx, strings.TrimSuffix(admin.Host, "/")+"/metrics")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("apiserver metrics: %w", err)
	}
	var w, r float64
	for _, m := range mfs["apiserver_request_total"].GetMetric() {
		switch labelOf(m, "verb") {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY":
			w += m.GetCounter().GetValue()
		case "GET", "LIST", "WATCH":
			r += m.GetCounter().GetValue()
		}
	}
	return int(w), int(r), nil
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func round(f float64) float64 { return math.Round(f*100) / 100 }

// SortedReasons is for printing.
func SortedReasons(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var errNoData = errors.New("no data")

// queryScalar runs an instant query on Prometheus and returns its single value.
func queryScalar(ctx context.Context, url, q string) (float64, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, _, _, err := v1.NewAPI(c).Query(qctx, q, time.Time{})
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case model.Vector:
		if len(v) == 1 {
			return float64(v[0].Value), nil
		}
	case *model.Scalar:
		return float64(v.Value), nil
	}
	return 0, errNoData
}

func newRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}
