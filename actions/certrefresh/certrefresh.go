// Package certrefresh is the built-in "certRefresh" action: fetch a fresh
// X509-SVID and trust bundle (and optionally the JWT bundles) from the
// SPIFFE Workload API, write them for a consumer that reads files, and
// tell the consumer to reload. For setups without SPIFFE, a command can
// do the refresh instead.
//
//	actions:
//	  refresh-nginx-cert:
//	    certRefresh:
//	      socket: unix:///run/spire/sockets/agent.sock
//	      certFile: /certs/svid.pem        # leaf + intermediates, 0644
//	      keyFile: /certs/svid_key.pem     # PKCS#8, 0600
//	      bundleFile: /certs/bundle.pem    # trust bundle, 0644
//	      notify: {signal: SIGHUP, pidFile: /run/nginx.pid}
//
// Files are written atomically (temporary file in the same directory,
// fsync, rename, fsync of the directory) and only when their content
// changes; the consumer is notified when any file changed (or always,
// with notify.always). The SVID is verified against its bundle at the
// action's clock time before anything is written, so a bad answer never
// replaces a good file.
package certrefresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/actions/exec"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/proc"
)

// Kind is the YAML key.
const Kind = "certRefresh"

// Defaults.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultCertFileMode = "0644"
	DefaultKeyFileMode  = "0600"
	DefaultNotifySignal = "SIGHUP"
)

// Config is actions.<name>.certRefresh. Exactly one of Socket and Command.
type Config struct {
	// Socket is the Workload API address, "unix:///path/agent.sock".
	Socket string `yaml:"socket" json:"socket,omitempty"`
	// Timeout bounds the fetch (or the command).
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
	// SPIFFEID picks the SVID to write when the workload has several;
	// default: the first (the default identity).
	SPIFFEID string `yaml:"spiffeID" json:"spiffeID,omitempty"`

	CertFile      string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile       string `yaml:"keyFile" json:"keyFile,omitempty"`
	BundleFile    string `yaml:"bundleFile" json:"bundleFile,omitempty"`
	JWTBundleFile string `yaml:"jwtBundleFile" json:"jwtBundleFile,omitempty"`
	// IncludeFederatedBundles appends federated trust domains' CAs to bundleFile.
	IncludeFederatedBundles bool `yaml:"includeFederatedBundles" json:"includeFederatedBundles,omitempty"`
	// CertFileMode applies to certFile, bundleFile and jwtBundleFile; KeyFileMode to keyFile (octal).
	CertFileMode string `yaml:"certFileMode" json:"certFileMode"`
	KeyFileMode  string `yaml:"keyFileMode" json:"keyFileMode"`

	// Command refreshes by other means (no SPIFFE): argv, run like exec
	// with the incident in MEDIC_* variables.
	Command []string `yaml:"command" json:"command,omitempty"`

	// Notify tells the consumer to reload.
	Notify *Notify `yaml:"notify" json:"notify,omitempty"`
}

// Notify is a signal to a process or a command. Exactly one of
// process/cmdline/pidFile (with signal) or exec.
type Notify struct {
	// Signal defaults to SIGHUP; ProcRoot to /proc (medic's PID namespace).
	Signal   string `yaml:"signal" json:"signal,omitempty"`
	Process  string `yaml:"process" json:"process,omitempty"`
	Cmdline  string `yaml:"cmdline" json:"cmdline,omitempty"`
	PidFile  string `yaml:"pidFile" json:"pidFile,omitempty"`
	All      bool   `yaml:"all" json:"all,omitempty"`
	ProcRoot string `yaml:"procRoot" json:"procRoot,omitempty"`
	// Scope limits the processes a signal may reach, as restart's signal
	// mode: "pod" (only medic's own pod, by cgroup), "any", or unset (pod
	// when medic is in a pod, else any). With hostPID a same-named process
	// of another pod is never signalled.
	Scope string   `yaml:"scope" json:"scope,omitempty"`
	Exec  []string `yaml:"exec" json:"exec,omitempty"`
	// Timeout bounds exec (default 30s).
	Timeout cfg.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Always notifies even when no file changed.
	Always bool `yaml:"always" json:"always,omitempty"`
}

func parseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode like 0644", s)
	}
	return fs.FileMode(v), nil
}

// Validate reports every problem.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Socket == "" && len(c.Command) == 0:
		errs = append(errs, cfg.Errorf("", "set socket (SPIFFE Workload API) or command"))
	case c.Socket != "" && len(c.Command) > 0:
		errs = append(errs, cfg.Errorf("", "set socket or command, not both"))
	}
	if c.Socket != "" {
		errs = append(errs, c.validateSocket()...)
	}
	if len(c.Command) > 0 {
		errs = append(errs, c.validateCommand()...)
	}
	errs = append(errs, c.validateWrite()...)
	if c.Notify != nil {
		errs = append(errs, cfg.Prefix("notify", c.Notify.validate()))
	}
	return errors.Join(errs...)
}

// validateSocket checks the keys of the Workload API way: an address and
// the files to write, no two the same.
func (c *Config) validateSocket() []error {
	var errs []error
	if err := workloadapi.ValidateAddress(c.Socket); err != nil {
		errs = append(errs, cfg.Errorf("socket", "%v", err))
	}
	if c.CertFile == "" {
		errs = append(errs, cfg.Errorf("certFile", "is required with socket"))
	}
	if c.KeyFile == "" {
		errs = append(errs, cfg.Errorf("keyFile", "is required with socket"))
	}
	seen := map[string]string{}
	for _, f := range []struct{ key, path string }{{"certFile", c.CertFile}, {"keyFile", c.KeyFile}, {"bundleFile", c.BundleFile}, {"jwtBundleFile", c.JWTBundleFile}} {
		if f.path == "" {
			continue
		}
		if other, dup := seen[f.path]; dup {
			errs = append(errs, cfg.Errorf(f.key, "is the same file as %s", other))
		}
		seen[f.path] = f.key
	}
	return errs
}

// validateCommand checks the command way: a program, and none of the
// socket way's keys.
func (c *Config) validateCommand() []error {
	var errs []error
	if c.Command[0] == "" {
		errs = append(errs, cfg.Errorf("command", "must name a program"))
	}
	for _, k := range []struct{ key, v string }{{"certFile", c.CertFile}, {"keyFile", c.KeyFile}, {"bundleFile", c.BundleFile}, {"jwtBundleFile", c.JWTBundleFile}, {"spiffeID", c.SPIFFEID}} {
		if k.v != "" {
			errs = append(errs, cfg.Errorf(k.key, "is only used with socket (the command writes its own files)"))
		}
	}
	return errs
}

// validateWrite checks the timeout and the file modes; the key must not
// be readable by other users.
func (c *Config) validateWrite() []error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, cfg.Errorf("timeout", "must be greater than 0"))
	}
	if _, err := parseMode(c.CertFileMode); err != nil {
		errs = append(errs, cfg.Errorf("certFileMode", "%v", err))
	}
	if m, err := parseMode(c.KeyFileMode); err != nil {
		errs = append(errs, cfg.Errorf("keyFileMode", "%v", err))
	} else if m&0o007 != 0 {
		errs = append(errs, cfg.Errorf("keyFileMode", "%s gives other users access to the private key", c.KeyFileMode))
	}
	return errs
}

// validate checks notify: exactly one way to tell the consumer (a
// process to signal, or exec), with paths relative to notify.
func (n *Notify) validate() error {
	var errs []error
	add := func(path, f string, a ...any) { errs = append(errs, cfg.Errorf(path, f, a...)) }
	sel := 0
	for _, s := range []string{n.Process, n.Cmdline, n.PidFile} {
		if s != "" {
			sel++
		}
	}
	switch {
	case sel == 0 && len(n.Exec) == 0:
		add("", "set one of process, cmdline or pidFile (with signal), or exec")
	case sel > 0 && len(n.Exec) > 0:
		add("", "set a process to signal or exec, not both")
	case sel > 1:
		add("", "set exactly one of process, cmdline or pidFile (%d set)", sel)
	}
	if strings.Contains(n.Process, "/") {
		add("process", "is the executable's base name, not a path: %q", n.Process)
	}
	if n.Cmdline != "" {
		if _, err := regexp.Compile(n.Cmdline); err != nil {
			add("cmdline", "invalid regular expression: %v", err)
		}
	}
	if len(n.Exec) > 0 && n.Exec[0] == "" {
		add("exec", "must name a program")
	}
	if sel > 0 && n.Signal != "" {
		if _, err := proc.ParseSignal(n.Signal); err != nil {
			add("signal", "%v", err)
		}
	}
	if !proc.ValidScope(n.Scope) {
		add("scope", "must be %s or %s (or unset: %s when medic is in a pod), not %q", proc.ScopePod, proc.ScopeAny, proc.ScopePod, n.Scope)
	} else if n.Scope != "" && len(n.Exec) > 0 {
		add("scope", "applies to a signal, not to exec")
	}
	return errors.Join(errs...)
}

// UnmarshalYAML fills notify's defaults before its keys are applied.
func (n *Notify) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Notify
	p := plain{Signal: DefaultNotifySignal, ProcRoot: proc.DefaultRoot, Timeout: cfg.Duration(exec.DefaultTimeout)}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*n = Notify(p)
	return nil
}

func defaults() *Config {
	return &Config{Timeout: cfg.Duration(DefaultTimeout), CertFileMode: DefaultCertFileMode, KeyFileMode: DefaultKeyFileMode}
}

func init() {
	actions.Register(actions.Kind{
		Name:      Kind,
		NewConfig: func() any { return defaults() },
		New:       func(c any, env actions.Env) (actions.Action, error) { return New(*c.(*Config), env) },
	})
}

// Action is one configured certRefresh.
type Action struct {
	c         Config
	certMode  fs.FileMode
	keyMode   fs.FileMode
	clk       clock.Clock
	log       *slog.Logger
	notifySel proc.Selector
	// self and podUID (POD_UID) place medic's pod for notify.scope.
	self, podUID string

	mu sync.Mutex
	// pending is set when files changed but the consumer could not be
	// notified: the next attempt notifies even if nothing changes then.
	pending bool
}

var _ actions.Action = (*Action)(nil)

// New builds the action from a validated config.
func New(c Config, env actions.Env) (*Action, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	a := &Action{c: c, clk: env.ClockOrReal(), log: env.Log(Kind), self: "self", podUID: os.Getenv(proc.EnvPodUID)}
	a.certMode, _ = parseMode(c.CertFileMode)
	a.keyMode, _ = parseMode(c.KeyFileMode)
	if c.Notify != nil {
		n := *c.Notify
		if n.Signal == "" {
			n.Signal = DefaultNotifySignal
		}
		if n.ProcRoot == "" {
			n.ProcRoot = proc.DefaultRoot
		}
		if n.Timeout <= 0 {
			n.Timeout = cfg.Duration(exec.DefaultTimeout)
		}
		a.c.Notify = &n
		a.notifySel = proc.Selector{Process: n.Process, PidFile: n.PidFile}
		if n.Cmdline != "" {
			a.notifySel.Cmdline = regexp.MustCompile(n.Cmdline)
		}
	}
	return a, nil
}

// Run performs one refresh.
func (a *Action) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	if len(a.c.Command) > 0 {
		return a.runCommand(ctx, inc)
	}
	res := actions.Result{Details: map[string]any{}}
	m, err := a.fetch(ctx)
	if err != nil {
		res.Message = err.Error()
		return res, err
	}
	res.Details["spiffeID"] = m.id
	res.Details["serial"] = m.serial
	res.Details["notAfter"] = m.notAfter.UTC().Format(time.RFC3339)

	// Bundle first (so the new chain is trusted before it is served),
	// then key and certificate, then JWT bundles.
	changed := []string{}
	for _, f := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{a.c.BundleFile, m.bundle, a.certMode},
		{a.c.KeyFile, m.key, a.keyMode},
		{a.c.CertFile, m.cert, a.certMode},
		{a.c.JWTBundleFile, m.jwt, a.certMode},
	} {
		if f.path == "" {
			continue
		}
		wrote, err := WriteAtomic(f.path, f.data, f.mode)
		if wrote {
			changed = append(changed, f.path)
		}
		if err != nil {
			res.Details["changed"] = changed
			res.Message = err.Error()
			if errors.Is(err, ErrNotRegular) {
				return res, actions.Permanent(err)
			}
			return res, err
		}
	}
	res.Details["changed"] = changed

	a.mu.Lock()
	pending := a.pending || len(changed) > 0
	a.mu.Unlock()
	if a.c.Notify == nil || (!pending && !a.c.Notify.Always) {
		if len(changed) == 0 {
			res.Message = fmt.Sprintf("files already hold SVID %s (serial %s, not after %s)", m.id, m.serial, res.Details["notAfter"])
		} else {
			res.Message = fmt.Sprintf("wrote %s (serial %s, not after %s)", strings.Join(changed, ", "), m.serial, res.Details["notAfter"])
		}
		return res, nil
	}
	who, out, err := a.notify(ctx, inc)
	res.Details["notified"] = who
	res.Output = out
	a.mu.Lock()
	a.pending = err != nil && pending
	a.mu.Unlock()
	if err != nil {
		res.Message = fmt.Sprintf("changed %d file(s); notify failed: %v", len(changed), err)
		return res, fmt.Errorf("notify consumer: %w", err)
	}
	res.Message = fmt.Sprintf("changed %d file(s) (serial %s, not after %s); notified %s", len(changed), m.serial, res.Details["notAfter"], who)
	return res, nil
}

// material is what gets written.
type material struct {
	id, serial  string
	notAfter    time.Time
	cert, key   []byte
	bundle, jwt []byte
}

func (a *Action) fetch(ctx context.Context) (*material, error) {
	ctx, cancel := context.WithTimeout(ctx, a.c.Timeout.D())
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(a.c.Socket))
	if err != nil {
		return nil, fmt.Errorf("workload API %s: %w", a.c.Socket, err)
	}
	defer client.Close()
	xc, err := client.FetchX509Context(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch X509-SVID from %s: %s", a.c.Socket, grpcMessage(err))
	}
	svid := xc.DefaultSVID()
	if a.c.SPIFFEID != "" {
		svid = nil
		for _, s := range xc.SVIDs {
			if s.ID.String() == a.c.SPIFFEID {
				svid = s
			}
		}
		if svid == nil {
			var ids []string
			for _, s := range xc.SVIDs {
				ids = append(ids, s.ID.String())
			}
			return nil, fmt.Errorf("workload API %s has no SVID for %s (it has %s)", a.c.Socket, a.c.SPIFFEID, strings.Join(ids, ", "))
		}
	}
	// Never write what a consumer would reject.
	now := a.clk.Now()
	if _, _, err := x509svid.Verify(svid.Certificates, xc.Bundles, x509svid.WithTime(now)); err != nil {
		return nil, fmt.Errorf("refusing to write SVID %s: it does not verify against its bundle at %s: %w", svid.ID, now.UTC().Format(time.RFC3339), err)
	}
	cert, key, err := svid.Marshal()
	if err != nil {
		return nil, actions.Permanent(fmt.Errorf("encode SVID: %w", err))
	}
	leaf := svid.Certificates[0]
	m := &material{id: svid.ID.String(), serial: fmt.Sprintf("%x", leaf.SerialNumber), notAfter: leaf.NotAfter, cert: cert, key: key}

	td := svid.ID.TrustDomain()
	own, err := xc.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("workload API %s sent no bundle for %s: %w", a.c.Socket, td, err)
	}
	if m.bundle, err = own.Marshal(); err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	if a.c.IncludeFederatedBundles {
		for _, b := range xc.Bundles.Bundles() { // sorted by trust domain
			if b.TrustDomain() == td {
				continue
			}
			pem, err := b.Marshal()
			if err != nil {
				return nil, fmt.Errorf("encode bundle of %s: %w", b.TrustDomain(), err)
			}
			m.bundle = append(m.bundle, pem...)
		}
	}
	if a.c.JWTBundleFile != "" {
		set, err := client.FetchJWTBundles(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetch JWT bundles from %s: %s", a.c.Socket, grpcMessage(err))
		}
		if m.jwt, err = MarshalJWTBundles(set); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func grpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return err.Error()
}

// MarshalJWTBundles writes JWT bundles as one JSON object keyed by trust
// domain name, each value a JWKS, with keys sorted by key ID so that the
// same bundles always give the same bytes.
func MarshalJWTBundles(set *jwtbundle.Set) ([]byte, error) {
	out := map[string]json.RawMessage{}
	for _, b := range set.Bundles() {
		raw, err := b.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode JWT bundle of %s: %w", b.TrustDomain(), err)
		}
		var jwks struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal(raw, &jwks); err != nil {
			return nil, fmt.Errorf("encode JWT bundle of %s: %w", b.TrustDomain(), err)
		}
		sort.Slice(jwks.Keys, func(i, j int) bool { return fmt.Sprint(jwks.Keys[i]["kid"]) < fmt.Sprint(jwks.Keys[j]["kid"]) })
		norm, err := json.Marshal(jwks)
		if err != nil {
			return nil, err
		}
		out[b.TrustDomain().Name()] = norm
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (a *Action) runCommand(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	res, err := exec.New(exec.Config{Command: a.c.Command, Timeout: a.c.Timeout}).Run(ctx, inc)
	if err != nil || a.c.Notify == nil {
		return res, err
	}
	who, out, nerr := a.notify(ctx, inc)
	res.Details["notified"] = who
	if out != "" {
		res.Output += "\n" + out
	}
	if nerr != nil {
		res.Message += "; notify failed: " + nerr.Error()
		return res, fmt.Errorf("notify consumer: %w", nerr)
	}
	res.Message += "; notified " + who
	return res, nil
}

// notify signals the consumer or runs the notify command; it returns who
// was notified and any command output.
func (a *Action) notify(ctx context.Context, inc actions.Incident) (string, string, error) {
	n := a.c.Notify
	if len(n.Exec) > 0 {
		res, err := exec.New(exec.Config{Command: n.Exec, Timeout: n.Timeout}).Run(ctx, inc)
		who := fmt.Sprintf("exec %s (%s)", n.Exec[0], res.Message)
		return who, res.Output, err
	}
	sig, _ := proc.ParseSignal(n.Signal)
	sel, err := proc.InScope(n.ProcRoot, a.self, a.podUID, n.Scope, a.notifySel)
	if err != nil {
		return "", "", actions.Permanent(fmt.Errorf("find consumer: %w", err))
	}
	targets, err := proc.Find(n.ProcRoot, sel)
	switch {
	case errors.Is(err, proc.ErrNoMatch):
		return "", "", fmt.Errorf("consumer not running: %w", err)
	case err != nil:
		return "", "", actions.Permanent(err)
	case len(targets) > 1 && !n.All:
		var ps []string
		for _, p := range targets {
			ps = append(ps, p.String())
		}
		return "", "", actions.Permanent(fmt.Errorf("%d processes match %s: %s; narrow the selector or set notify.all: true",
			len(targets), sel, strings.Join(ps, ", ")))
	}
	var who []string
	for _, p := range targets {
		if err := proc.Signal(n.ProcRoot, p, sig); err != nil {
			if errors.Is(err, proc.ErrProtected) {
				err = actions.Permanent(err)
			}
			return strings.Join(who, ", "), "", err
		}
		who = append(who, fmt.Sprintf("%s %s", proc.SignalName(sig), p))
	}
	a.log.Info("notified consumer", "notified", who, "incident", inc.ID)
	return strings.Join(who, ", "), "", nil
}
