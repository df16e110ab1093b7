// Package socketcleanup is the built-in "socketCleanup" action: remove
// stale Unix socket files, and optionally abort TCP sockets to a peer that
// are stuck half-closed.
//
// A Unix socket file is removed only when it is provably stale: it is a
// socket (not a symlink, file or directory), its real location is inside
// one of allowedDirs, it is older than minAge, and connect() to it is
// refused (ECONNREFUSED: nothing is bound to that inode any more). Anything
// else is left alone and reported. Deleting the socket of a running agent
// would break it until restart (the SPIRE agent never re-creates its
// Workload API socket), so every doubt leaves the file in place.
package socketcleanup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/sockdiag"
)

// Kind is the YAML key.
const Kind = "socketCleanup"

// Defaults.
var (
	// DefaultTCPStates are the half-closed states cleaned toward a peer.
	DefaultTCPStates = []string{"CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2"}
	// DefaultMinAge protects a socket an agent has just bound but not yet
	// listened on (connect is refused in that instant too).
	DefaultMinAge = 5 * time.Second
)

// Config is actions.<name>.socketCleanup.
type Config struct {
	// Paths are absolute socket paths or globs ("/run/spire/sockets/*.sock").
	Paths []string `yaml:"paths" json:"paths,omitempty"`
	// AllowedDirs bound where anything may be removed (required with
	// paths). A path counts as inside when its parent directory, with every
	// symlink resolved, is one of these (resolved too) or below one.
	AllowedDirs []string `yaml:"allowedDirs" json:"allowedDirs,omitempty"`
	// MinAge skips socket files changed more recently than this.
	MinAge cfg.Duration `yaml:"minAge" json:"minAge"`
	// Peer (host:port), when set, also destroys TCP sockets to it that are
	// stuck in TCPStates (needs CAP_NET_ADMIN).
	Peer string `yaml:"peer" json:"peer,omitempty"`
	// TCPStates are the states destroyed toward Peer.
	TCPStates []string `yaml:"tcpStates" json:"tcpStates,omitempty"`
	// ExcludeOwn leaves medic's own TCP sockets alone (default true).
	ExcludeOwn bool `yaml:"excludeOwn" json:"excludeOwn"`
}

func defaults() *Config {
	return &Config{
		MinAge:     cfg.Duration(DefaultMinAge),
		TCPStates:  append([]string(nil), DefaultTCPStates...),
		ExcludeOwn: true,
	}
}

// Validate reports every problem, with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, f string, args ...any) { errs = append(errs, cfg.Errorf(path, f, args...)) }
	if len(c.Paths) == 0 && c.Peer == "" {
		add("", "nothing to clean: give paths (Unix sockets) and/or peer (TCP)")
	}
	if len(c.Paths) > 0 && len(c.AllowedDirs) == 0 {
		add("allowedDirs", "is required with paths: list the directories sockets may be removed from")
	}
	var dirs []string
	for i, d := range c.AllowedDirs {
		p := fmt.Sprintf("allowedDirs[%d]", i)
		switch {
		case !filepath.IsAbs(d):
			add(p, "%q must be an absolute path", d)
		case filepath.Clean(d) == "/":
			add(p, "the root directory cannot be an allowed dir")
		case hasMeta(d):
			add(p, "%q: no glob patterns in allowed dirs", d)
		default:
			dirs = append(dirs, filepath.Clean(d))
		}
	}
	for i, pat := range c.Paths {
		p := fmt.Sprintf("paths[%d]", i)
		if !filepath.IsAbs(pat) {
			add(p, "%q must be an absolute path", pat)
			continue
		}
		if _, err := filepath.Match(pat, ""); err != nil {
			add(p, "%q: bad glob pattern: %v", pat, err)
			continue
		}
		if len(dirs) > 0 && !lexicallyInside(filepath.Dir(filepath.Clean(pat)), dirs) {
			add(p, "%q is not inside allowedDirs (%s)", pat, strings.Join(dirs, ", "))
		}
	}
	if c.MinAge < 0 {
		add("minAge", "must not be negative")
	}
	if c.Peer != "" {
		if _, err := sockdiag.ParseTarget(c.Peer, false); err != nil {
			add("peer", "%v", err)
		}
		if len(c.TCPStates) == 0 {
			add("tcpStates", "must list at least one state (e.g. [CLOSE_WAIT])")
		}
		for i, n := range c.TCPStates {
			p := fmt.Sprintf("tcpStates[%d]", i)
			s, err := sockdiag.ParseState(n)
			switch {
			case err != nil:
				add(p, "%v", err)
			case s == sockdiag.Established || s == sockdiag.SynSent:
				add(p, "%s connections are live, not stale: use the reconnect action for them", s)
			case !s.Destroyable():
				add(p, "%s sockets are never destroyed (allowed: CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING)", s)
			}
		}
	}
	return errors.Join(errs...)
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// lexicallyInside reports whether dir is one of dirs or below one. A glob
// pattern's directory part is compared as written; the run-time check on
// resolved paths is what protects.
func lexicallyInside(dir string, dirs []string) bool {
	for _, d := range dirs {
		if within(dir, d) {
			return true
		}
	}
	return false
}

// within reports whether p is base or below it (both clean).
func within(p, base string) bool {
	return p == base || strings.HasPrefix(p, strings.TrimSuffix(base, "/")+"/")
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

// Action is one configured socketCleanup.
type Action struct {
	c      Config
	env    actions.Env
	clk    clock.Clock
	log    *slog.Logger
	target sockdiag.Target
	states sockdiag.States
	// resolver resolves the peer; nil is net.DefaultResolver.
	resolver *net.Resolver
	// beforeRemove, when set (tests), runs between the last check and the unlink.
	beforeRemove func(path string)
}

var _ actions.Action = (*Action)(nil)

// New builds the action from a validated config.
func New(c Config, env actions.Env) (*Action, error) {
	a := &Action{c: c, env: env, clk: env.ClockOrReal(), log: env.Log(Kind)}
	if c.Peer != "" {
		var err error
		if a.target, a.states, err = sockdiag.ParsePeer(c.Peer, c.TCPStates, "tcpStates"); err != nil {
			return nil, fmt.Errorf("socketCleanup: %w", err)
		}
	}
	return a, nil
}

// Run removes the stale sockets and destroys the stuck TCP sockets. It
// fails permanently when there was nothing to clean, so the ladder moves on.
func (a *Action) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	res := actions.Result{Details: map[string]any{}}
	var errs []error
	var removed, skipped, failed []string
	denied := false
	if len(a.c.Paths) > 0 {
		rep := a.cleanUnix(inc.DryRun)
		denied = rep.denied
		removed, skipped, failed = rep.removed, rep.skipped, rep.failed
		res.Details["removed"] = append([]string{}, removed...)
		res.Details["skipped"] = append([]string{}, skipped...)
		if len(failed) > 0 {
			res.Details["failed"] = failed
			errs = append(errs, fmt.Errorf("could not remove %d stale socket(s): %s", len(failed), strings.Join(failed, "; ")))
		}
		for _, p := range removed {
			a.log.Info("removed stale socket", "path", p, "incident", inc.ID, "dryRun", inc.DryRun)
		}
	}
	var tcp sockdiag.Outcome
	var tcpErr error
	if a.c.Peer != "" {
		tcp, tcpErr = sockdiag.DestroyTo(ctx, sockdiag.Selection{
			Target: a.target, States: a.states, ExcludeOwn: a.c.ExcludeOwn, DryRun: inc.DryRun, Resolver: a.resolver,
		})
		res.Details["peer"] = a.c.Peer
		res.Details["addresses"] = sockdiag.AddrStrings(tcp.Addresses)
		res.Details["tcpStates"] = a.states.Describe()
		res.Details["destroyed"] = sockdiag.Strings(tcp.Destroyed)
		if len(tcp.Skipped) > 0 {
			res.Details["tcpSkipped"] = sockdiag.SkippedStrings(tcp.Skipped)
		}
		for _, s := range tcp.Destroyed {
			a.log.Info("destroyed stuck TCP socket", "socket", s.String(), "incident", inc.ID, "dryRun", inc.DryRun)
		}
		if tcpErr != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", a.c.Peer, tcpErr))
		}
	}
	if inc.DryRun {
		res.Details["dryRun"] = true
	}
	res.Message = a.summary(inc.DryRun, len(removed), len(tcp.Destroyed), len(skipped)+len(tcp.Skipped))
	err := errors.Join(errs...)
	switch {
	case err != nil:
		err = fmt.Errorf("socketCleanup: %w", err)
		res.Message += "; " + err.Error()
		if denied || errors.Is(tcpErr, sockdiag.ErrPermission) || errors.Is(tcpErr, sockdiag.ErrNotSupported) {
			return res, actions.Permanent(err)
		}
		return res, err
	case len(removed)+len(tcp.Destroyed) == 0:
		return res, actions.Permanent(errors.New(res.Message))
	}
	return res, nil
}

func (a *Action) summary(dryRun bool, removed, destroyed, left int) string {
	if removed+destroyed == 0 {
		var what []string
		if len(a.c.Paths) > 0 {
			what = append(what, "no stale Unix socket")
		}
		if a.c.Peer != "" {
			what = append(what, fmt.Sprintf("no %s connection to %s", a.states.Describe(), a.c.Peer))
		}
		msg := "nothing to clean: " + strings.Join(what, ", ")
		if left > 0 {
			msg += fmt.Sprintf(" (%d left alone: see skipped)", left)
		}
		return msg
	}
	var parts []string
	if len(a.c.Paths) > 0 {
		parts = append(parts, fmt.Sprintf("removed %d stale socket%s", removed, plural(removed)))
	}
	if a.c.Peer != "" {
		parts = append(parts, fmt.Sprintf("destroyed %d %s connection%s to %s", destroyed, a.states.Describe(), plural(destroyed), a.c.Peer))
	}
	msg := strings.Join(parts, ", ")
	if left > 0 {
		msg += fmt.Sprintf("; left %d alone", left)
	}
	if dryRun {
		msg = "dry run: " + strings.ReplaceAll(strings.ReplaceAll(msg, "removed", "would remove"), "destroyed", "would destroy")
	}
	return msg
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// report is what the Unix socket pass found and did.
type report struct {
	removed []string // paths
	skipped []string // "path: reason"
	failed  []string // "path: error"
	// denied: an unlink failed for lack of permission or a read-only
	// file system, which no retry changes.
	denied bool
}

func (r *report) skip(path, reason string) { r.skipped = append(r.skipped, path+": "+reason) }
