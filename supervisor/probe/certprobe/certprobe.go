// Package certprobe is the "cert" probe: X.509 validity and rotation of
// the certificates a workload holds, read from PEM files or fetched from
// the SPIFFE Workload API. The SPIRE agent exports no SVID-expiry metric,
// so this is where certificate expiry and missed rotation are seen
// (a real SPIRE agent whose own SVID expires while it cannot rotate exits,
// and restart does not cure it; docs/probes.md).
//
//	probes:
//	  - name: svid
//	    cert: {workloadAPI: {socket: unix:///run/spire/sockets/agent.sock}, interval: 30s}
//	  - name: nginx-cert
//	    cert: {files: [/certs/svid.pem, /certs/bundle.pem]}
//
// Samples (each with probe="<name>"):
//
//	medic_cert_not_before_timestamp_seconds{spiffe_id|subject, serial, role, source}
//	medic_cert_not_after_timestamp_seconds{spiffe_id|subject, serial, role, source}
//	medic_cert_rotation_overdue_seconds{spiffe_id|subject, source}
//	    max(0, now − (notBefore + overdueAt × lifetime)) of the current leaf:
//	    how long past its expected rotation (default 60% of its lifetime)
//	    the certificate in use still has not been replaced
//	medic_probe_up   1 when every file was read / the fetch succeeded
//
// role is leaf, intermediate, root, or bundle (a Workload API trust
// anchor). In files mode the current leaf is the first certificate of the
// first file; with the Workload API it is each X509-SVID's leaf.
//
// When a Workload API fetch fails, the last certificates fetched keep
// being reported (they are still what the workload holds), with
// medic_probe_up 0 and the overdue value computed at the current time.
package certprobe

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probeutil"
)

// Kind is the YAML key.
const Kind = "cert"

// Defaults.
const (
	DefaultInterval  = 30 * time.Second
	DefaultTimeout   = 5 * time.Second
	DefaultOverdueAt = 60
)

// SourceWorkloadAPI is the source label of Workload API certificates.
const SourceWorkloadAPI = "workloadapi"

// Config is probes[].cert. Exactly one of Files and WorkloadAPI.
type Config struct {
	// Files are PEM files; each may hold a chain (leaf first).
	Files []string `yaml:"files" json:"files,omitempty"`
	// WorkloadAPI fetches the X509-SVIDs and bundles over the Workload API.
	WorkloadAPI *WorkloadAPIConfig `yaml:"workloadAPI" json:"workloadAPI,omitempty"`
	Interval    cfg.Duration       `yaml:"interval" json:"interval"`
	Timeout     cfg.Duration       `yaml:"timeout" json:"timeout"`
	// OverdueAt is the share of a certificate's lifetime after which it
	// counts as overdue for rotation (SPIRE rotates at about 50%).
	OverdueAt cfg.Percent `yaml:"overdueAt" json:"overdueAt"`
}

// WorkloadAPIConfig is the Workload API endpoint.
type WorkloadAPIConfig struct {
	// Socket is "unix:///path/to/agent.sock" (or "tcp://ip:port").
	Socket string `yaml:"socket" json:"socket"`
}

// Validate reports every problem.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case len(c.Files) == 0 && c.WorkloadAPI == nil:
		errs = append(errs, cfg.Errorf("", "set files or workloadAPI"))
	case len(c.Files) > 0 && c.WorkloadAPI != nil:
		errs = append(errs, cfg.Errorf("", "set files or workloadAPI, not both"))
	}
	for i, f := range c.Files {
		if strings.TrimSpace(f) == "" {
			errs = append(errs, cfg.Errorf(fmt.Sprintf("files[%d]", i), "must not be empty"))
		}
	}
	if c.WorkloadAPI != nil {
		if c.WorkloadAPI.Socket == "" {
			errs = append(errs, cfg.Errorf("workloadAPI.socket", "is required (e.g. unix:///run/spire/sockets/agent.sock)"))
		} else if err := workloadapi.ValidateAddress(c.WorkloadAPI.Socket); err != nil {
			errs = append(errs, cfg.Errorf("workloadAPI.socket", "%v", err))
		}
	}
	if c.Interval <= 0 {
		errs = append(errs, cfg.Errorf("interval", "must be greater than 0"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, cfg.Errorf("timeout", "must be greater than 0"))
	}
	if c.OverdueAt == 0 {
		errs = append(errs, cfg.Errorf("overdueAt", "must be greater than 0%%"))
	}
	return errors.Join(errs...)
}

func init() {
	probe.Register(probe.Kind{
		Name: Kind,
		NewConfig: func() any {
			return &Config{Interval: cfg.Duration(DefaultInterval), Timeout: cfg.Duration(DefaultTimeout), OverdueAt: DefaultOverdueAt}
		},
		New: func(c any, env probe.Env) (probe.Probe, error) { return New(*c.(*Config), env), nil },
	})
}

// Probe reads certificates every interval.
type Probe struct {
	c     Config
	clk   clock.Clock
	state probeutil.StateLog
	// last is the last successful Workload API observation.
	last []Chain
}

var _ probe.Probe = (*Probe)(nil)

// New returns a cert probe.
func New(c Config, env probe.Env) *Probe {
	clk := env.ClockOrReal()
	log := env.LoggerOrDiscard()
	return &Probe{c: c, clk: clk, state: probeutil.StateLog{Log: log}} // env.Logger already carries probe=<name>
}

// Run reads certificates every interval until ctx ends.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	probe.Ticker(ctx, p.clk, p.c.Interval.D(), func(now time.Time) {
		var chains []Chain
		var err error
		if p.c.WorkloadAPI != nil {
			chains, err = p.fetch(ctx)
		} else {
			chains, err = ReadFiles(p.c.Files)
		}
		if ctx.Err() != nil {
			return
		}
		p.record(app, now, chains, err)
	})
	return nil
}

// fetch dials the Workload API afresh on every check, like the tcp and
// http probes: a connection kept across checks would sit in gRPC's
// reconnect backoff (up to two minutes) after an agent restart and report
// a recovered agent as down.
func (p *Probe) fetch(ctx context.Context) ([]Chain, error) {
	ctx, cancel := context.WithTimeout(ctx, p.c.Timeout.D())
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(p.c.WorkloadAPI.Socket))
	if err != nil {
		return p.last, fmt.Errorf("workload API %s: %w", p.c.WorkloadAPI.Socket, err)
	}
	defer client.Close()
	xc, err := client.FetchX509Context(ctx)
	if err != nil {
		if s, ok := status.FromError(err); ok {
			return p.last, fmt.Errorf("workload API %s: %s: %s", p.c.WorkloadAPI.Socket, s.Code(), s.Message())
		}
		return p.last, fmt.Errorf("workload API %s: %w", p.c.WorkloadAPI.Socket, err)
	}
	var chains []Chain
	for _, svid := range xc.SVIDs {
		ch := Chain{Source: SourceWorkloadAPI, Certs: svid.Certificates, Current: true}
		if b, err := xc.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain()); err == nil {
			ch.Bundle = b.X509Authorities()
		}
		chains = append(chains, ch)
	}
	p.last = chains
	return chains, nil
}

func (p *Probe) record(app probe.Appender, now time.Time, chains []Chain, err error) {
	for _, s := range Observe(chains, now, float64(p.c.OverdueAt)/100) {
		app.Add(s.Labels, s.Value)
	}
	up := 1.0
	if err != nil {
		up = 0
		p.state.Down(err.Error())
	} else {
		p.state.Up("certificates", countCerts(chains))
	}
	app.Add(probeutil.Series(probeutil.MetricUp), up)
	probe.ReportError(app, err)
	_, _ = app.Commit(now)
}

func countCerts(chains []Chain) int {
	n := 0
	for _, c := range chains {
		n += len(c.Certs) + len(c.Bundle)
	}
	return n
}

// ReadFiles reads each PEM file as one chain; the first file's chain is
// the current one. Files that cannot be read or hold no certificate are
// reported in the error (joined) and skipped.
func ReadFiles(files []string) ([]Chain, error) {
	var chains []Chain
	var errs []error
	for i, f := range files {
		certs, err := ReadPEM(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chains = append(chains, Chain{Source: f, Certs: certs, Current: i == 0})
	}
	return chains, errors.Join(errs...)
}

// ReadPEM parses every CERTIFICATE block of a PEM file, in order. Other
// blocks (a private key in a combined file) are skipped.
func ReadPEM(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []*x509.Certificate
	for i := 0; ; i++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", path, i+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}
