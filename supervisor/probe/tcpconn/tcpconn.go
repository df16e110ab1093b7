// Package tcpconn is the "tcpconn" probe: the kernel's view (netlink
// sock_diag, in the pod's shared network namespace) of the agent's TCP
// connections to each upstream peer — how many in which state, their RTT,
// retransmissions and acknowledged bytes, and a quality score.
//
//	probes:
//	  - name: upstream
//	    tcpconn: {peers: ["spire-server.spire:8081", ":32767"], interval: 5s}
//
// Samples (each with probe="<name>", every interval):
//
//	medic_probe_up                               1 when the netlink dump worked, else 0 (and nothing else)
//	medic_upstream_connections{peer,state}       connections by state (zeros included)
//	medic_upstream_rtt_seconds{peer}             mean smoothed RTT of the established connections
//	medic_upstream_rtt_variance_seconds{peer}    mean RTT deviation of the established connections
//	medic_upstream_retransmits_total{peer}       retransmitted segments (counter, see below)
//	medic_upstream_bytes_acked_total{peer}       bytes the peer acknowledged (counter)
//	medic_connection_quality_score{peer}         0..1, see Score
//
// The RTT series are absent while there is no established connection. The
// two counters add up every connection to the peer seen since medic
// started, closed ones included, so they only grow while medic runs.
package tcpconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/sockdiag"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

// Kind is the YAML key.
const Kind = "tcpconn"

// Metric names.
const (
	MetricUp          = "medic_probe_up"
	MetricConnections = "medic_upstream_connections"
	MetricRTT         = "medic_upstream_rtt_seconds"
	MetricRTTVar      = "medic_upstream_rtt_variance_seconds"
	MetricRetrans     = "medic_upstream_retransmits_total"
	MetricBytesAcked  = "medic_upstream_bytes_acked_total"
	MetricScore       = "medic_connection_quality_score"
)

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
)

// ReportedStates are the states medic_upstream_connections always has a
// series for (zero when none). LISTEN and request sockets are never an
// upstream connection.
var ReportedStates = []sockdiag.State{
	sockdiag.Established, sockdiag.SynSent, sockdiag.SynRecv, sockdiag.FinWait1, sockdiag.FinWait2,
	sockdiag.TimeWait, sockdiag.Close, sockdiag.CloseWait, sockdiag.LastAck, sockdiag.Closing,
}

var dumpStates = sockdiag.StatesOf(ReportedStates...)

// troubled are the states that lower the quality score (see Quality).
var troubled = sockdiag.StatesOf(sockdiag.SynSent, sockdiag.CloseWait, sockdiag.FinWait1, sockdiag.LastAck, sockdiag.Closing)

// Config is probes[].tcpconn.
type Config struct {
	// Peers are the upstreams: "host:port" (a name is resolved every
	// interval; all its addresses count) or ":port" / "port" for any
	// address on that port.
	Peers []string `yaml:"peers" json:"peers"`
	// Interval between observations.
	Interval cfg.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds name resolution and the netlink dump.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
	// ExcludeOwn leaves medic's own connections out (default true): medic
	// shares the pod's network namespace, and its own probes' connections
	// to a peer are not the agent's.
	ExcludeOwn bool `yaml:"excludeOwn" json:"excludeOwn"`
}

// Validate reports every problem, with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Peers) == 0 {
		errs = append(errs, cfg.Errorf("peers", "list at least one upstream (host:port, or :port for any address)"))
	}
	seen := map[string]int{}
	for i, p := range c.Peers {
		path := fmt.Sprintf("peers[%d]", i)
		t, err := sockdiag.ParseTarget(p, true)
		if err != nil {
			errs = append(errs, cfg.Errorf(path, "%v", err))
			continue
		}
		if j, dup := seen[t.String()]; dup {
			errs = append(errs, cfg.Errorf(path, "%s is already listed as peers[%d]", t, j))
		}
		seen[t.String()] = i
	}
	errs = append(errs, probe.CheckTiming(c.Interval, c.Timeout)...)
	return errors.Join(errs...)
}

func init() {
	probe.Register(probe.Kind{
		Name: Kind,
		NewConfig: func() any {
			return &Config{Interval: cfg.Duration(DefaultInterval), Timeout: cfg.Duration(DefaultTimeout), ExcludeOwn: true}
		},
		New: func(c any, env probe.Env) (probe.Probe, error) { return New(*c.(*Config), env) },
	})
}

// Probe observes the connections to every peer each interval.
type Probe struct {
	c     Config
	clk   clock.Clock
	log   *slog.Logger
	peers []*peer
	up    *bool // last reported state, for logging changes only
	// resolver resolves peer names; nil is net.DefaultResolver.
	resolver *net.Resolver
}

var _ probe.Probe = (*Probe)(nil)

// peer is one upstream and what the probe remembers of it between intervals.
type peer struct {
	target     sockdiag.Target
	label      string
	addrs      []netip.Addr // last good resolution
	resolved   bool
	resolveErr string
	// conns holds each live connection's last counters, by socket cookie.
	conns map[uint64]counters
	// closed sums the final counters of connections that went away.
	closed counters
}

type counters struct {
	retrans, segsOut, bytesAcked uint64
}

// New builds a tcpconn probe from a validated config.
func New(c Config, env probe.Env) (*Probe, error) {
	p := &Probe{c: c, clk: env.ClockOrReal(), log: env.LoggerOrDiscard()}
	p.log = p.log.With("kind", Kind)
	for _, s := range c.Peers {
		t, err := sockdiag.ParseTarget(s, true)
		if err != nil {
			return nil, fmt.Errorf("tcpconn: peer %q: %w", s, err)
		}
		p.peers = append(p.peers, &peer{target: t, label: t.String(), conns: map[uint64]counters{}})
	}
	return p, nil
}

// Run observes every interval until ctx ends.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	probe.Ticker(ctx, p.clk, p.c.Interval.D(), func(now time.Time) {
		p.observe(ctx, app, now)
	})
	return nil
}

// observe takes one look and commits one batch at now.
func (p *Probe) observe(ctx context.Context, app probe.Appender, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, p.c.Timeout.D())
	defer cancel()
	for _, pr := range p.peers {
		p.resolve(ctx, pr)
	}
	socks, err := sockdiag.Dump(ctx, dumpStates, true)
	var own map[uint32]bool
	if err == nil && p.c.ExcludeOwn {
		own, err = sockdiag.OwnInodes()
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // shutting down: not an observation
		}
		p.setUp(false, err)
		app.Add(labels.FromStrings(labels.MetricName, MetricUp), 0)
		probe.ReportError(app, err)
		_, _ = app.Commit(now)
		return
	}
	p.setUp(true, nil)
	app.Add(labels.FromStrings(labels.MetricName, MetricUp), 1)
	probe.ReportError(app, nil)
	for _, pr := range p.peers {
		pr.observe(app, socks, own)
	}
	_, _ = app.Commit(now)
}

// resolve refreshes the peer's addresses; on failure the last good ones stay.
func (p *Probe) resolve(ctx context.Context, pr *peer) {
	addrs, err := pr.target.Resolve(ctx, p.resolver)
	if err != nil {
		if msg := err.Error(); msg != pr.resolveErr {
			pr.resolveErr = msg
			p.log.Warn("cannot resolve peer; using its last known addresses", "peer", pr.label, "addresses", pr.addrs, "err", err)
		}
		return
	}
	if pr.resolveErr != "" {
		p.log.Info("peer resolves again", "peer", pr.label, "addresses", addrs)
		pr.resolveErr = ""
	}
	pr.addrs, pr.resolved = addrs, true
}

func (p *Probe) setUp(up bool, err error) {
	if p.up != nil && *p.up == up {
		return
	}
	p.up = &up
	if up {
		p.log.Info("sock_diag dump works")
	} else {
		p.log.Warn("sock_diag dump failed", "err", err)
	}
}

// observe counts this peer's connections and appends its series.
func (pr *peer) observe(app probe.Appender, socks []sockdiag.Socket, own map[uint32]bool) {
	byState := map[sockdiag.State]int{}
	var q Quality
	var rtt, rttVar time.Duration
	var withRTT int
	var total counters
	live := make(map[uint64]counters, len(pr.conns))
	if pr.resolved || pr.target.Host == "" {
		m := sockdiag.NewMatcher(pr.target, pr.addrs)
		for _, s := range socks {
			if !m.Match(s) || (s.Inode != 0 && own[s.Inode]) {
				continue
			}
			byState[s.State]++
			switch {
			case s.State == sockdiag.Established:
				q.Established++
			case troubled.Has(s.State):
				q.Troubled++
			}
			if s.Info == nil {
				continue
			}
			if s.State == sockdiag.Established {
				rtt += s.Info.RTT
				rttVar += s.Info.RTTVar
				withRTT++
			}
			cur := counters{uint64(s.Info.TotalRetrans), uint64(s.Info.SegsOut), s.Info.BytesAcked}
			prev := pr.conns[s.Cookie] // zero for a new connection: all of it is new
			q.RetransSegs += sub(cur.retrans, prev.retrans)
			q.SentSegs += sub(cur.segsOut, prev.segsOut)
			live[s.Cookie] = cur
			total.retrans += cur.retrans
			total.bytesAcked += cur.bytesAcked
		}
	}
	for cookie, last := range pr.conns {
		if _, ok := live[cookie]; !ok {
			pr.closed.retrans += last.retrans
			pr.closed.bytesAcked += last.bytesAcked
		}
	}
	pr.conns = live
	if withRTT > 0 {
		q.RTT = rtt / time.Duration(withRTT)
		q.RTTVar = rttVar / time.Duration(withRTT)
	}

	for _, st := range ReportedStates {
		app.Add(labels.FromStrings(labels.MetricName, MetricConnections, "peer", pr.label, "state", st.Label()), float64(byState[st]))
	}
	if withRTT > 0 {
		app.Add(labels.FromStrings(labels.MetricName, MetricRTT, "peer", pr.label), q.RTT.Seconds())
		app.Add(labels.FromStrings(labels.MetricName, MetricRTTVar, "peer", pr.label), q.RTTVar.Seconds())
	}
	app.Add(labels.FromStrings(labels.MetricName, MetricRetrans, "peer", pr.label), float64(pr.closed.retrans+total.retrans))
	app.Add(labels.FromStrings(labels.MetricName, MetricBytesAcked, "peer", pr.label), float64(pr.closed.bytesAcked+total.bytesAcked))
	app.Add(labels.FromStrings(labels.MetricName, MetricScore, "peer", pr.label), Score(q))
}

// sub is a-b, or a when the counter went backwards (cannot happen for one
// socket, but a reused cookie must not make a huge unsigned number).
func sub(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return a - b
}

// String describes the probe.
func (p *Probe) String() string {
	var names []string
	for _, pr := range p.peers {
		names = append(names, pr.label)
	}
	return fmt.Sprintf("tcpconn %v every %s", names, p.c.Interval)
}
