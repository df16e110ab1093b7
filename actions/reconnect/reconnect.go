// Package reconnect is the built-in "reconnect" action: make a gRPC client
// reconnect now instead of waiting on a dead or half-open connection.
//
// Two targets, exactly one per action:
//
//   - probe: <name>  re-dial a stream medic owns (a grpcStream probe): the
//     probe drops its connection, resets its backoff and dials again.
//   - peer: host:port  destroy the agent's TCP sockets to that upstream in
//     the pod's shared network namespace (netlink SOCK_DESTROY, needs
//     CAP_NET_ADMIN). The agent's next read or write fails with
//     ECONNABORTED, the upstream gets a RST, and the agent's gRPC client
//     reconnects at once.
package reconnect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/sockdiag"
)

// Kind is the YAML key.
const Kind = "reconnect"

// DefaultStates are the socket states a peer reconnect destroys.
var DefaultStates = []string{"ESTABLISHED"}

// Config is actions.<name>.reconnect.
type Config struct {
	// Probe names a medic probe that owns a connection (grpcStream).
	Probe string `yaml:"probe" json:"probe,omitempty"`
	// Peer is the upstream host:port whose connections are destroyed. A
	// name is resolved at every attempt; every address it resolves to counts.
	Peer string `yaml:"peer" json:"peer,omitempty"`
	// States of the sockets to destroy (peer only); default [ESTABLISHED].
	States []string `yaml:"states" json:"states,omitempty"`
	// LocalPort restricts the peer match to one local port (peer only).
	LocalPort int `yaml:"localPort" json:"localPort,omitempty"`
	// ExcludeOwn leaves medic's own connections to the peer alone (peer
	// only; default true). medic shares the pod's network namespace, so
	// with false its own probes' connections to the same peer are hit too.
	ExcludeOwn bool `yaml:"excludeOwn" json:"excludeOwn"`
}

func defaults() *Config {
	return &Config{States: append([]string(nil), DefaultStates...), ExcludeOwn: true}
}

// Validate reports every problem, with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Probe == "" && c.Peer == "":
		errs = append(errs, cfg.Errorf("", "give a target: probe (a probe name) or peer (host:port)"))
	case c.Probe != "" && c.Peer != "":
		errs = append(errs, cfg.Errorf("probe", "give either probe or peer, not both"))
	}
	if c.Peer != "" {
		if _, err := sockdiag.ParseTarget(c.Peer, false); err != nil {
			errs = append(errs, cfg.Errorf("peer", "%v", err))
		}
	}
	if c.Probe != "" {
		// Defaults are set, so only values written in the file can differ.
		if !equal(c.States, DefaultStates) {
			errs = append(errs, cfg.Errorf("states", "applies only to peer"))
		}
		if c.LocalPort != 0 {
			errs = append(errs, cfg.Errorf("localPort", "applies only to peer"))
		}
	}
	errs = append(errs, validateStates(c.States, "states")...)
	if c.LocalPort < 0 || c.LocalPort > 65535 {
		errs = append(errs, cfg.Errorf("localPort", "must be a port from 1 to 65535 (0: any)"))
	}
	return errors.Join(errs...)
}

// ProbeRefs lists the probe names the action refers to, so config
// validation can check them against probes[] (the action itself checks
// again at run time).
func (c *Config) ProbeRefs() []string {
	if c.Probe == "" {
		return nil
	}
	return []string{c.Probe}
}

// validateStates checks a list of TCP state names that medic may destroy.
func validateStates(names []string, path string) []error {
	var errs []error
	if len(names) == 0 {
		return []error{cfg.Errorf(path, "must list at least one TCP state (e.g. [ESTABLISHED])")}
	}
	for i, n := range names {
		p := fmt.Sprintf("%s[%d]", path, i)
		s, err := sockdiag.ParseState(n)
		if err != nil {
			errs = append(errs, cfg.Errorf(p, "%v", err))
			continue
		}
		if !s.Destroyable() {
			errs = append(errs, cfg.Errorf(p, "%s sockets are never destroyed (allowed: ESTABLISHED, SYN_SENT, "+
				"FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING)", s))
		}
	}
	return errs
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

func init() {
	actions.Register(actions.Kind{
		Name:      Kind,
		NewConfig: func() any { return defaults() },
		New: func(c any, env actions.Env) (actions.Action, error) {
			return New(*c.(*Config), env)
		},
	})
}

// Action is one configured reconnect.
type Action struct {
	c      Config
	env    actions.Env
	log    *slog.Logger
	target sockdiag.Target
	states sockdiag.States
	// resolver resolves the peer; nil is net.DefaultResolver.
	resolver *net.Resolver
}

var _ actions.Action = (*Action)(nil)

// New builds the action from a validated config.
func New(c Config, env actions.Env) (*Action, error) {
	a := &Action{c: c, env: env, log: env.Log(Kind)}
	if c.Peer != "" {
		var err error
		if a.target, a.states, err = sockdiag.ParsePeer(c.Peer, c.States, "states"); err != nil {
			return nil, fmt.Errorf("reconnect: %w", err)
		}
	}
	return a, nil
}

// Run re-dials the probe or destroys the peer's sockets.
func (a *Action) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	if a.c.Probe != "" {
		return a.redial(inc)
	}
	return a.destroy(ctx, inc)
}

// Redialer is a probe that owns a connection medic can re-dial on demand
// (the grpcStream probe). Redial drops the current connection, resets the
// reconnect backoff and dials again now.
type Redialer interface {
	Redial(reason string)
}

func (a *Action) redial(inc actions.Incident) (actions.Result, error) {
	res := actions.Result{Details: map[string]any{"probe": a.c.Probe}}
	if a.env.Probes == nil {
		return res, actions.Permanent(fmt.Errorf("reconnect probe %q: no probes are running", a.c.Probe))
	}
	p, ok := a.env.Probes.Probe(a.c.Probe)
	if !ok {
		return res, actions.Permanent(fmt.Errorf("reconnect probe %q: no probe of that name (probe: must name an entry of probes[])", a.c.Probe))
	}
	r, ok := p.(Redialer)
	if !ok {
		return res, actions.Permanent(fmt.Errorf("reconnect probe %q: a %T owns no connection medic can re-dial "+
			"(use a grpcStream probe, or peer: to reset the agent's own connections)", a.c.Probe, p))
	}
	if inc.DryRun {
		res.Message = fmt.Sprintf("dry run: would ask probe %s to re-dial", a.c.Probe)
		return res, nil
	}
	reason := fmt.Sprintf("action %s for alert %s (incident %s, attempt %d)", a.env.Name, inc.Alert, inc.ID, inc.Attempt)
	r.Redial(reason)
	res.Message = fmt.Sprintf("probe %s re-dialing", a.c.Probe)
	a.log.Info("asked probe to re-dial", "probe", a.c.Probe, "incident", inc.ID)
	return res, nil
}

func (a *Action) destroy(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	out, err := sockdiag.DestroyTo(ctx, sockdiag.Selection{
		Target:     a.target,
		States:     a.states,
		LocalPort:  uint16(a.c.LocalPort),
		ExcludeOwn: a.c.ExcludeOwn,
		DryRun:     inc.DryRun,
		Resolver:   a.resolver,
	})
	res := actions.Result{Details: map[string]any{
		"peer":      a.c.Peer,
		"addresses": sockdiag.AddrStrings(out.Addresses),
		"states":    a.states.Describe(),
		"destroyed": sockdiag.Strings(out.Destroyed),
	}}
	if len(out.Skipped) > 0 {
		res.Details["skipped"] = sockdiag.SkippedStrings(out.Skipped)
	}
	verb := "destroyed"
	if inc.DryRun {
		verb = "dry run: would destroy"
		res.Details["dryRun"] = true
	}
	n := len(out.Destroyed)
	res.Message = fmt.Sprintf("%s %d %s connection%s to %s", verb, n, a.states.Describe(), plural(n), a.c.Peer)
	for _, s := range out.Destroyed {
		a.log.Info("destroyed socket", "socket", s.String(), "incident", inc.ID, "dryRun", inc.DryRun)
	}
	if err != nil {
		err = fmt.Errorf("reconnect peer %s: %w", a.c.Peer, err)
		res.Message += "; " + err.Error()
		if permanent(err) {
			return res, actions.Permanent(err)
		}
		return res, err
	}
	if n == 0 {
		msg := fmt.Sprintf("no %s connections to %s", a.states.Describe(), a.c.Peer)
		if len(out.Skipped) > 0 {
			msg += fmt.Sprintf(" (%d left alone: see skipped)", len(out.Skipped))
		}
		res.Message = msg
		return res, actions.Permanent(errors.New(msg))
	}
	return res, nil
}

// permanent reports errors that no retry can fix: a missing capability, a
// kernel without SOCK_DESTROY, a name that does not exist.
func permanent(err error) bool {
	if errors.Is(err, sockdiag.ErrPermission) || errors.Is(err, sockdiag.ErrNotSupported) {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns) && dns.IsNotFound
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
