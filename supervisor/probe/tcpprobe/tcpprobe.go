// Package tcpprobe is the "tcp" probe: can medic open a TCP connection to
// host:port? It is how medic knows whether an upstream (the SPIRE server)
// is reachable, e.g. to gate an agent restart on it.
//
//	probes:
//	  - name: spire-server
//	    tcp: {address: spire-server.spire:8081, interval: 5s, timeout: 2s}
//
// Samples (each with probe="<name>"):
//
//	medic_probe_up                 1 when the connection was established, else 0
//	medic_probe_duration_seconds   time the check took, success or failure
//	medic_tcp_connect_seconds      time to establish the connection (only when up)
package tcpprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probeutil"
)

// Kind is the YAML key.
const Kind = "tcp"

// MetricConnect is the connect-time metric.
const MetricConnect = "medic_tcp_connect_seconds"

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
)

// Config is probes[].tcp.
type Config struct {
	// Address is host:port; host may be a DNS name (resolved on every check).
	Address  string       `yaml:"address" json:"address"`
	Interval cfg.Duration `yaml:"interval" json:"interval"`
	Timeout  cfg.Duration `yaml:"timeout" json:"timeout"`
}

// Validate reports every problem.
func (c *Config) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, cfg.Errorf("address", "is required (host:port)"))
	} else if host, port, err := net.SplitHostPort(c.Address); err != nil || host == "" || port == "" {
		errs = append(errs, cfg.Errorf("address", "must be host:port, not %q", c.Address))
	}
	errs = append(errs, probe.CheckTiming(c.Interval, c.Timeout)...)
	return errors.Join(errs...)
}

func init() {
	probe.Register(probe.Kind{
		Name: Kind,
		NewConfig: func() any {
			return &Config{Interval: cfg.Duration(DefaultInterval), Timeout: cfg.Duration(DefaultTimeout)}
		},
		New: func(c any, env probe.Env) (probe.Probe, error) { return New(*c.(*Config), env), nil },
	})
}

// Probe dials Address every Interval.
type Probe struct {
	c      Config
	clk    clock.Clock
	state  probeutil.StateLog
	dialer net.Dialer
}

var _ probe.Probe = (*Probe)(nil)

// New returns a tcp probe.
func New(c Config, env probe.Env) *Probe {
	clk := env.ClockOrReal()
	log := env.LoggerOrDiscard()
	return &Probe{c: c, clk: clk, state: probeutil.StateLog{Log: log.With("address", c.Address)}}
}

// Result is one check.
type Result struct {
	Up       bool
	Duration time.Duration
	Err      error
}

// Check dials once and closes the connection.
func (p *Probe) Check(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, p.c.Timeout.D())
	defer cancel()
	start := time.Now()
	conn, err := p.dialer.DialContext(ctx, "tcp", p.c.Address)
	d := time.Since(start)
	if err != nil {
		return Result{Duration: d, Err: err}
	}
	_ = conn.Close()
	return Result{Up: true, Duration: d}
}

// Run checks every interval until ctx ends.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	probe.Ticker(ctx, p.clk, p.c.Interval.D(), func(now time.Time) {
		r := p.Check(ctx)
		if ctx.Err() != nil {
			return // shutting down: not an observation
		}
		p.record(app, now, r)
	})
	return nil
}

func (p *Probe) record(app probe.Appender, now time.Time, r Result) {
	up := 0.0
	if r.Up {
		up = 1
		app.Add(probeutil.Series(MetricConnect), r.Duration.Seconds())
		p.state.Up("connect_seconds", r.Duration.Seconds())
	} else {
		p.state.Down(probeutil.Reason(r.Err))
	}
	app.Add(probeutil.Series(probeutil.MetricUp), up)
	app.Add(probeutil.Series(probeutil.MetricDuration), r.Duration.Seconds())
	probe.ReportError(app, r.Err)
	_, _ = app.Commit(now)
}

// String describes the probe.
func (p *Probe) String() string { return fmt.Sprintf("tcp %s every %s", p.c.Address, p.c.Interval) }
