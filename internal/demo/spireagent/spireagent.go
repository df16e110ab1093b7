// Package spireagent is a test peer that behaves like a SPIRE agent as
// medic sees it: the real agent's /metrics page (embedded from a real
// scrape) with live sync counters, and the /live and /ready endpoints.
//
// It reproduces what the public spiffe/spire source (v1.15/1.16-dev) does and
// what a real spire-server + spire-agent pair showed on loopback through a
// server outage and recovery (the SPIRE Go modules are not available to this
// module, so the real agent cannot be linked into tests):
//
//   - spire_agent_manager_sync_fetch_entries_updates{host,status} is a
//     counter (no _total suffix) that gains 1 per sync attempt, status being
//     the gRPC code name, with its companion summary
//     spire_agent_manager_sync_fetch_entries_updates_elapsed_time (ms).
//   - A sync is attempted at start, then every Interval (5 s) ±10%. After
//     the k-th consecutive failure the wait is Interval×1.5^k, capped at
//     min(8 min, 48×Interval); a success brings it back to Interval. A
//     recovered upstream is noticed only at the next scheduled attempt.
//   - No series is created at zero: status="Unavailable" appears with the
//     first failure. Series never expire. Every counter restarts at 0 when
//     the agent restarts.
//   - /live and /ready answer 200 with a JSON body through an upstream
//     outage. An agent started while the upstream fails is not ready (/ready
//     500) and exits after StartupTimeout without a successful sync (43 s
//     by default), as the real one does.
//
// Modes: Healthy, Failing(code) (the upstream answers with that gRPC code),
// Frozen (a hung agent: the page is served but nothing moves) and Down (the
// process is gone: its port refuses connections). The rest of the page
// (go_*, process_*, other spire_agent_* series) is served as scraped.
//
// The control endpoints (POST /control/mode?mode=failing&code=Unavailable,
// POST /control/restart, GET /control/syncs) are for tests and demos only —
// a real agent has nothing like them — and listen on their own port
// (ControlURL), which keeps answering while the agent is down.
package spireagent

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/medic-sidecar/medic/internal/clock"
)

// Defaults, as in SPIRE.
const (
	DefaultInterval = 5 * time.Second
	// Jitter is the ± fraction applied to every wait.
	Jitter = 0.1
	// BackoffFactor multiplies the wait after each consecutive failure.
	BackoffFactor = 1.5
	// MaxBackoff caps the wait (with MaxBackoffIntervals×Interval).
	MaxBackoff          = 8 * time.Minute
	MaxBackoffIntervals = 48
)

// MaxWait is the longest wait between sync attempts for interval:
// min(8 min, 48×interval).
func MaxWait(interval time.Duration) time.Duration {
	return min(MaxBackoff, MaxBackoffIntervals*interval)
}

// BackoffWait is the wait (before jitter) after failures consecutive
// failed syncs; 0 failures is the plain interval.
func BackoffWait(interval time.Duration, failures int) time.Duration {
	w := float64(interval) * math.Pow(BackoffFactor, float64(failures))
	if limit := MaxWait(interval); w >= float64(limit) {
		return limit
	}
	return time.Duration(w)
}

// Options configures a Peer.
type Options struct {
	// Interval is the sync interval (default 5s; tests use e.g. 200ms).
	Interval time.Duration
	// Clock drives the sync loop (default the real clock).
	Clock clock.Clock
	// Host is the host label (default the hostname; dots become '_').
	Host string
	// Addr is the agent's listen address (default 127.0.0.1:0).
	Addr string
	// ControlAddr is the control endpoints' listen address (default
	// 127.0.0.1:0); the node E2E tests reach it on the pod's IP.
	ControlAddr string
	// NoJitter makes every wait exact.
	NoJitter bool
	// Seed seeds the jitter (default: random).
	Seed uint64
	// StartupTimeout is how long an agent that has not yet synced keeps
	// running before it exits; 0 means 43 s scaled by Interval/5s (what
	// was observed), negative means never.
	StartupTimeout time.Duration
	// Logger receives the agent's sync errors (default: discarded).
	Logger *slog.Logger
}

// ModeKind is the agent's condition.
type ModeKind int

// Mode kinds.
const (
	KindHealthy ModeKind = iota // the upstream answers OK
	KindFailing                 // the upstream answers with Mode.Code
	KindFrozen                  // the agent hangs: page served, nothing moves
	KindDown                    // the agent process is gone
)

var kindNames = [...]string{"healthy", "failing", "frozen", "down"}

// String returns the kind's name as used by /control/mode.
func (k ModeKind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// Mode is what SetMode switches to.
type Mode struct {
	Kind ModeKind
	// Code is the gRPC code name a failing upstream answers with.
	Code string
}

// Healthy is an agent whose upstream answers every sync.
func Healthy() Mode { return Mode{Kind: KindHealthy} }

// Failing is an agent whose upstream answers with the gRPC code name code
// (Unavailable, DeadlineExceeded, PermissionDenied, …).
func Failing(code string) Mode { return Mode{Kind: KindFailing, Code: code} }

// Frozen is a hung agent.
func Frozen() Mode { return Mode{Kind: KindFrozen} }

// Down is a dead agent: its port refuses connections.
func Down() Mode { return Mode{Kind: KindDown} }

// String formats the mode as "failing:Unavailable", "healthy", ….
func (m Mode) String() string {
	if m.Kind == KindFailing {
		return m.Kind.String() + ":" + m.Code
	}
	return m.Kind.String()
}

// ParseMode parses the /control/mode parameters.
func ParseMode(mode, code string) (Mode, error) {
	for k, n := range kindNames {
		if strings.EqualFold(mode, n) {
			m := Mode{Kind: ModeKind(k)}
			if m.Kind == KindFailing {
				m.Code = code
			}
			return m, m.validate()
		}
	}
	return Mode{}, fmt.Errorf("unknown mode %q (one of %s)", mode, strings.Join(kindNames[:], ", "))
}

// CodeNames lists the gRPC code names a failing upstream may answer with.
func CodeNames() []string {
	var out []string
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		out = append(out, c.String())
	}
	return out
}

func (m Mode) validate() error {
	if m.Kind == KindFailing && !slices.Contains(CodeNames(), m.Code) {
		return fmt.Errorf("failing needs a gRPC code name other than OK, got %q (one of %s)", m.Code, strings.Join(CodeNames(), ", "))
	}
	if m.Kind < KindHealthy || m.Kind > KindDown {
		return fmt.Errorf("unknown mode kind %d", m.Kind)
	}
	return nil
}

// elapsedMs is the recorded duration of a sync by outcome.
func elapsedMs(code string) float64 {
	switch code {
	case "OK":
		return 2.5
	case "DeadlineExceeded":
		return 30000
	}
	return 1.3
}

type statusStats struct {
	count  int
	sumMs  float64
	last   time.Time
	lastMs float64
}

// Syncs is a snapshot of the agent's sync state since it last started.
type Syncs struct {
	// ByStatus is the page's counter by status.
	ByStatus map[string]int `json:"byStatus"`
	// Attempts is the sum of ByStatus.
	Attempts int `json:"attempts"`
	// ConsecutiveFailures drives the backoff.
	ConsecutiveFailures int `json:"consecutiveFailures"`
	// LastAttempt and NextAttempt are zero when unknown (NextAttempt: the
	// agent is frozen or down).
	LastAttempt time.Time `json:"lastAttempt"`
	NextAttempt time.Time `json:"nextAttempt"`
	// Starts counts agent starts: Start, Restart, and leaving Down.
	Starts int `json:"starts"`
	// Ready is /ready's answer: a sync succeeded since the agent started.
	Ready bool `json:"ready"`
	// Mode is the current mode.
	Mode string `json:"mode"`
	// Crashed is set when the agent exited on its own (no sync within
	// StartupTimeout of its start).
	Crashed bool `json:"crashed"`
}

// Peer is a SPIRE-agent-like server. Its methods are safe for concurrent use.
type Peer struct {
	o       Options
	host    string
	tmpl    template
	startup time.Duration
	log     *slog.Logger

	life sync.Mutex // serialises Start, SetMode, Restart, Close

	mu         sync.Mutex // guards everything below; the loop and handlers take it
	rng        *rand.Rand
	addr       string
	ln         net.Listener
	srv        *http.Server
	ctlSrv     *http.Server
	ctlURL     string
	upstream   string // "OK" or the failing code
	frozen     bool
	frozenAt   time.Time
	thaw       chan struct{}
	down       bool
	crashed    bool
	started    time.Time
	starts     int
	stats      map[string]*statusStats
	failures   int
	ready      bool
	last, next time.Time
	cancel     context.CancelFunc
	done       chan struct{}
	closed     bool
}

// New returns a stopped peer; Start opens its ports.
func New(o Options) *Peer {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	host := o.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	host = strings.ReplaceAll(host, ".", "_")
	startup := o.StartupTimeout
	if startup == 0 {
		startup = time.Duration(float64(43*time.Second) * float64(o.Interval) / float64(DefaultInterval))
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Peer{
		o: o, host: host, tmpl: splitTemplate(realPage, host), startup: startup, log: log,
		rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), addr: o.Addr, upstream: "OK", down: true,
	}
}

// Start opens the control port and starts the agent (its first sync
// happens before Start returns). It returns the agent's base URL; the
// page is at URL()+"/metrics".
func (p *Peer) Start() (string, error) {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", errors.New("spireagent: closed")
	}
	startCtl := p.ctlSrv == nil
	p.mu.Unlock()
	if startCtl {
		addr := p.o.ControlAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("spireagent: control listener: %w", err)
		}
		srv := &http.Server{Handler: p.controlMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		p.mu.Lock()
		p.ctlSrv, p.ctlURL = srv, "http://"+ln.Addr().String()
		p.mu.Unlock()
	}
	if err := p.startAgent(); err != nil {
		return "", err
	}
	return p.URL(), nil
}

// URL is the agent's base URL (valid after Start, also while it is down).
func (p *Peer) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.addr
}

// MetricsURL is the agent's /metrics URL.
func (p *Peer) MetricsURL() string { return p.URL() + "/metrics" }

// ControlURL is the base URL of the test-only control endpoints; it keeps
// answering while the agent is down.
func (p *Peer) ControlURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctlURL
}

// SetMode switches the agent's condition. Healthy and Failing set what the
// upstream answers from the next scheduled sync on (the agent does not
// notice sooner) and revive a frozen agent; on a down agent they start it
// afresh (counters at zero). Frozen hangs a running agent; Down kills it.
func (p *Peer) SetMode(m Mode) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("spireagent: %w", err)
	}
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	switch m.Kind {
	case KindHealthy, KindFailing:
		p.upstream = "OK"
		if m.Kind == KindFailing {
			p.upstream = m.Code
		}
		if p.frozen {
			p.frozen = false
			close(p.thaw)
		}
		down := p.down
		p.mu.Unlock()
		if down {
			return p.startAgent()
		}
		return nil
	case KindFrozen:
		defer p.mu.Unlock()
		if p.down {
			return errors.New("spireagent: cannot freeze an agent that is down")
		}
		if !p.frozen {
			p.frozen, p.frozenAt, p.thaw = true, p.o.Clock.Now(), make(chan struct{})
		}
		return nil
	default: // KindDown
		p.mu.Unlock()
		p.stopAgent()
		return nil
	}
}

// Mode returns the current mode.
func (p *Peer) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.modeLocked()
}

func (p *Peer) modeLocked() Mode {
	switch {
	case p.down:
		return Down()
	case p.frozen:
		return Frozen()
	case p.upstream != "OK":
		return Failing(p.upstream)
	}
	return Healthy()
}

// Restart stops and starts the agent: counters restart at zero, the first
// sync happens at once, and its port is reopened at the same address.
// The mode's upstream condition persists; a hang does not.
func (p *Peer) Restart() error {
	p.life.Lock()
	defer p.life.Unlock()
	p.stopAgent()
	return p.startAgent()
}

// Syncs returns the sync counters and schedule.
func (p *Peer) Syncs() Syncs {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Syncs{ByStatus: map[string]int{}, ConsecutiveFailures: p.failures, LastAttempt: p.last,
		Starts: p.starts, Ready: p.ready, Mode: p.modeLocked().String(), Crashed: p.crashed}
	for k, st := range p.stats {
		s.ByStatus[k] = st.count
		s.Attempts += st.count
	}
	if !p.down && !p.frozen {
		s.NextAttempt = p.next
	}
	return s
}

// Close stops the agent and the control port.
func (p *Peer) Close() error {
	p.life.Lock()
	defer p.life.Unlock()
	p.stopAgent()
	p.mu.Lock()
	p.closed = true
	ctl := p.ctlSrv
	p.ctlSrv = nil
	p.mu.Unlock()
	if ctl != nil {
		return ctl.Close()
	}
	return nil
}

// startAgent opens the agent's port, resets its state, syncs once and
// starts the loop. Caller holds p.life.
func (p *Peer) startAgent() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("spireagent: closed")
	}
	if !p.down {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("spireagent: listen %s: %w", p.addr, err)
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.srv = &http.Server{Handler: p.agentMux(), ReadHeaderTimeout: 10 * time.Second}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(p.srv)

	now := p.o.Clock.Now()
	p.down, p.crashed, p.frozen = false, false, false
	p.started, p.starts = now, p.starts+1
	p.stats, p.failures, p.ready, p.last = map[string]*statusStats{}, 0, false, time.Time{}
	p.attemptLocked(now)

	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.loop(ctx, p.done)
	return nil
}

// stopAgent ends the loop and closes the agent's port. Caller holds p.life.
func (p *Peer) stopAgent() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked()
}

// killLocked closes the agent's port and marks it down.
func (p *Peer) killLocked() {
	if p.srv != nil {
		// Close the listener too: Serve may not have started tracking it yet.
		_ = p.ln.Close()
		_ = p.srv.Close()
		p.srv, p.ln = nil, nil
	}
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
	p.down = true
}

// loop runs sync attempts on the clock until ctx ends or the agent exits.
func (p *Peer) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		p.mu.Lock()
		for p.frozen {
			thaw := p.thaw
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-thaw:
			}
			p.mu.Lock()
		}
		now := p.o.Clock.Now()
		if p.exitDueLocked(now) {
			p.log.Error("Agent crashed", "error", "no successful sync since start", "after", now.Sub(p.started))
			p.crashed = true
			p.killLocked()
			p.mu.Unlock()
			return
		}
		if !now.Before(p.next) {
			p.attemptLocked(now)
		}
		wake := p.next
		if !p.ready && p.startup > 0 {
			wake = minTime(wake, p.started.Add(p.startup))
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-p.o.Clock.After(wake.Sub(now)):
		}
	}
}

func (p *Peer) exitDueLocked(now time.Time) bool {
	return !p.ready && p.startup > 0 && !now.Before(p.started.Add(p.startup))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// attemptLocked is one sync attempt at now: count it by outcome and
// schedule the next.
func (p *Peer) attemptLocked(now time.Time) {
	code := p.upstream
	st := p.stats[code]
	if st == nil {
		st = &statusStats{}
		p.stats[code] = st
	}
	ms := elapsedMs(code)
	st.count++
	st.sumMs += ms
	st.last, st.lastMs = now, ms
	p.last = now
	if code == "OK" {
		p.failures, p.ready = 0, true
	} else {
		p.failures++
		p.log.Error("Failed to fetch authorized entries", "error", "rpc error: code = "+code)
		p.log.Error("Synchronize failed", "error", "rpc error: code = "+code)
	}
	p.next = now.Add(p.jitter(BackoffWait(p.o.Interval, p.failures)))
}

func (p *Peer) jitter(d time.Duration) time.Duration {
	if p.o.NoJitter {
		return d
	}
	return time.Duration(float64(d) * (1 + Jitter*(2*p.rng.Float64()-1)))
}

// quantileWindow is how long a summary keeps an observation for its
// quantiles (NaN after), as the agent's metrics library does.
func (p *Peer) quantileWindow() time.Duration { return 12 * p.o.Interval }

// render writes the page as of now (as of the hang for a frozen agent).
func (p *Peer) render(w io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.Clock.Now()
	if p.frozen {
		now = p.frozenAt
	}
	var b strings.Builder
	b.Grow(len(realPage) + 2048)
	b.WriteString(p.tmpl.beforeSync)
	if len(p.stats) > 0 {
		statuses := slices.Sorted(maps.Keys(p.stats))
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", syncMetric, syncMetric, syncMetric)
		for _, s := range statuses {
			fmt.Fprintf(&b, "%s{host=%q,status=%q} %d\n", syncMetric, p.host, s, p.stats[s].count)
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s summary\n", elapsedMetric, elapsedMetric, elapsedMetric)
		for _, s := range statuses {
			st := p.stats[s]
			q := math.NaN()
			if now.Sub(st.last) < p.quantileWindow() {
				q = st.lastMs
			}
			for _, quant := range []string{"0.5", "0.9", "0.99"} {
				fmt.Fprintf(&b, "%s{host=%q,status=%q,quantile=%q} %s\n", elapsedMetric, p.host, s, quant, num(q))
			}
			fmt.Fprintf(&b, "%s_sum{host=%q,status=%q} %s\n", elapsedMetric, p.host, s, num(st.sumMs))
			fmt.Fprintf(&b, "%s_count{host=%q,status=%q} %d\n", elapsedMetric, p.host, s, st.count)
		}
	}
	b.WriteString(p.tmpl.beforeUptime)
	fmt.Fprintf(&b, "%s{host=%q} %d\n", uptimeMetric, p.host, now.Sub(p.started).Milliseconds())
	b.WriteString(p.tmpl.rest)
	_, _ = io.WriteString(w, b.String())
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func (p *Peer) agentMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			p.render(zw)
			return
		}
		p.render(w)
	})
	// The real checks call the agent's own Workload API; they do not see
	// the upstream, so they stay 200 through an outage. An agent that has
	// not synced since it started never serves the Workload API.
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"agent": map[string]any{}})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		ready := p.ready
		p.mu.Unlock()
		if !ready {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"agent": map[string]any{
				"err": "workload API not serving: agent has not synchronized with the server since it started"}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"agent": map[string]any{}})
	})
	return mux
}

// controlMux serves the test-only control endpoints.
func (p *Peer) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /control/mode", func(w http.ResponseWriter, r *http.Request) {
		m, err := ParseMode(r.URL.Query().Get("mode"), r.URL.Query().Get("code"))
		if err == nil {
			err = p.SetMode(m)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, p.Syncs())
	})
	mux.HandleFunc("POST /control/restart", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Restart(); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, p.Syncs())
	})
	mux.HandleFunc("GET /control/syncs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Syncs())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
