// Package plugins runs medic's remediation plugins: separate binaries,
// written with plugins/sdk, that medic starts through hashicorp/go-plugin
// and uses as the "plugin" action kind.
//
// The Host owns every configured plugin (plugins.<name> in config). It
// verifies each binary's sha256 before running it, starts processes
// lazily or eagerly with AutoMTLS, forwards their logs into medic's slog
// with the plugin's name, bounds every call, and — since go-plugin never
// restarts a dead plugin — watches each process, restarts it with
// backoff after a crash or a hang, and quarantines one that crashes more
// than quarantine.maxCrashes times within quarantine.window. A plugin
// crash is a retryable error for the attempt in flight, never a medic
// crash. Stop leaves no plugin process (or child of one) behind.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/plugins/sdk"
)

// EventType names a step in a plugin's life.
type EventType string

// Event types.
const (
	PluginStarted     EventType = "PluginStarted"
	PluginCrashed     EventType = "PluginCrashed" // exited, hung (killed) or failed to start
	PluginRestarted   EventType = "PluginRestarted"
	PluginQuarantined EventType = "PluginQuarantined"
	PluginReleased    EventType = "PluginReleased" // quarantine lifted: the binary changed
)

// Event is one observable step of a plugin's life, for the lead's sinks
// (logs, Kubernetes Events, /status), in the spirit of remedy.Event.
type Event struct {
	Time    time.Time `json:"time"`
	Type    EventType `json:"type"`
	Plugin  string    `json:"plugin"`
	PID     int       `json:"pid,omitempty"`
	Crashes int       `json:"crashes,omitempty"` // crashes within the quarantine window
	Message string    `json:"message,omitempty"`
}

// Options configures a Host.
type Options struct {
	// Logger receives medic's and the plugins' log records (default slog.Default()).
	Logger *slog.Logger
	// Clock drives restart backoff and the quarantine window (default clock.Real).
	Clock clock.Clock
	// OnEvent, when set, is called for every Event. It is called with the
	// plugin's lock held: it must return quickly and must not call the Host.
	OnEvent func(Event)
}

// Status is one plugin's state for /status.
type Status struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	State     string    `json:"state"`
	PID       int       `json:"pid,omitempty"`
	Version   string    `json:"version,omitempty"`
	Restarts  int       `json:"restarts"`
	Crashes   int       `json:"crashes"` // within the quarantine window
	LastError string    `json:"lastError,omitempty"`
	RestartAt time.Time `json:"restartAt,omitzero"`
}

// Host runs the configured plugins. It implements actions.PluginHost.
type Host struct {
	log     *slog.Logger
	clock   clock.Clock
	onEvent func(Event)
	metrics *metrics
	plugins map[string]*instance

	done     chan struct{} // closed by Stop
	stopOnce sync.Once
	wg       sync.WaitGroup // starts, watchers, restart timers
}

var _ actions.PluginHost = (*Host)(nil)

// New checks the plugin entries (errors carry plugins.<name>.<field>
// paths) and returns a Host. No process is started.
func New(configs map[string]*Config, o Options) (*Host, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	h := &Host{
		log:     o.Logger,
		clock:   o.Clock,
		onEvent: o.OnEvent,
		metrics: newMetrics(),
		plugins: map[string]*instance{},
		done:    make(chan struct{}),
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(configs)) {
		c := configs[name]
		path := "plugins." + name
		if !nameRe.MatchString(name) {
			errs = append(errs, cfg.Errorf(path, "plugin name %q: use letters, digits, '_', '-', '.'", name))
			continue
		}
		if c == nil {
			c = DefaultConfig()
		}
		if err := c.Validate(); err != nil {
			errs = append(errs, cfg.Prefix(path, err))
			continue
		}
		h.plugins[name] = &instance{name: name, cfg: c, h: h, log: o.Logger.With("plugin", name)}
		h.metrics.init(name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return h, nil
}

// Names lists the configured plugins, sorted.
func (h *Host) Names() []string { return slices.Sorted(maps.Keys(h.plugins)) }

// Collectors returns the host's metrics (medic_plugin_up,
// medic_plugin_restarts_total, medic_plugin_calls_total,
// medic_plugin_quarantined) for medic's registry.
func (h *Host) Collectors() []prometheus.Collector { return h.metrics.collectors() }

// Check verifies every plugin binary without running it: it exists, is
// an executable regular file, and its sha256 matches the config. Errors
// carry plugins.<name>.<field> paths. `medic validate` and Start call it.
func (h *Host) Check() error {
	var errs []error
	for _, name := range h.Names() {
		i := h.plugins[name]
		fi, err := os.Stat(i.cfg.Path)
		switch {
		case err != nil:
			errs = append(errs, i.configErrorf("path", "%v", err))
			continue
		case !fi.Mode().IsRegular():
			errs = append(errs, i.configErrorf("path", "%s is not a regular file", i.cfg.Path))
			continue
		case fi.Mode().Perm()&0o111 == 0:
			errs = append(errs, i.configErrorf("path", "%s is not executable", i.cfg.Path))
			continue
		}
		sum, err := fileSHA256(i.cfg.Path)
		if err != nil {
			errs = append(errs, i.configErrorf("path", "%v", err))
			continue
		}
		if want := fmt.Sprintf("%x", i.cfg.checksum()); sum != want {
			errs = append(errs, i.configErrorf("sha256", "%s has sha256 %s but config says %s: refusing to run it "+
				"(if you trust this binary, run 'medic plugin info %s' and update the config)", i.cfg.Path, sum, want, i.cfg.Path))
		}
	}
	return errors.Join(errs...)
}

// Start checks every binary (a sha256 mismatch refuses start-up) and
// starts the eager plugins. On error nothing is left running.
func (h *Host) Start(ctx context.Context) error {
	if err := h.Check(); err != nil {
		return err
	}
	var errs []error
	for _, name := range h.Names() {
		i := h.plugins[name]
		if i.cfg.Start != StartEager {
			continue
		}
		if _, _, err := i.acquire(ctx, true); err != nil {
			errs = append(errs, fmt.Errorf("start eager plugin: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		h.Stop()
		return err
	}
	return nil
}

// Stop stops every plugin process (gracefully, then by SIGKILL to its
// process group) and waits for the host's goroutines. It is idempotent;
// the Host is unusable afterwards.
func (h *Host) Stop() {
	h.stopOnce.Do(func() {
		close(h.done)
		var wg sync.WaitGroup
		for _, i := range h.plugins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				i.close()
			}()
		}
		wg.Wait()
		h.wg.Wait()
	})
}

// Status reports every plugin's state, sorted by name.
func (h *Host) Status() []Status {
	out := make([]Status, 0, len(h.plugins))
	for _, name := range h.Names() {
		out = append(out, h.plugins[name].status())
	}
	return out
}

func (h *Host) emit(e Event) {
	if h.onEvent != nil {
		h.onEvent(e)
	}
}

func (h *Host) lookup(name string) (*instance, error) {
	i, ok := h.plugins[name]
	if !ok {
		return nil, actions.Permanent(fmt.Errorf("plugin %q is not configured (plugins: %v)", name, h.Names()))
	}
	return i, nil
}

// callBudget returns the deadline the plugin is given: the plugin's
// timeout, or ctx's deadline when earlier.
func callBudget(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// hangGrace is how long past its deadline a plugin may take to answer
// before it is declared hung and killed.
func hangGrace(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 500*time.Millisecond), 5*time.Second)
}

// crashWait bounds the wait for a plugin's exit after its connection broke.
const crashWait = 2 * time.Second

// Validate asks plugin name to check config (a JSON document). Problems
// the plugin reports are returned as cfg.FieldErrors with paths relative
// to config; other errors (the plugin cannot be started or called) are
// plain. A lazy plugin started only for this is stopped again.
func (h *Host) Validate(ctx context.Context, name string, config []byte) error {
	i, err := h.lookup(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, i.cfg.StartTimeout.D()+i.cfg.Timeout.D())
	defer cancel()
	p, started, err := i.acquire(ctx, false)
	if err != nil {
		return err
	}
	if started {
		defer i.stopIfUnwanted(p)
	}
	callCtx, cancelCall := context.WithTimeout(ctx, i.cfg.Timeout.D())
	defer cancelCall()
	problems, err := p.rpc.Validate(callCtx, config)
	if err != nil {
		return fmt.Errorf("plugin %q: Validate: %w", name, err)
	}
	var errs []error
	for _, pr := range problems {
		errs = append(errs, cfg.Errorf(pr.Path, "%s", pr.Msg))
	}
	return errors.Join(errs...)
}

// Remediate runs one attempt of plugin name with config (JSON). The
// plugin gets min(timeout, ctx's deadline); one that ignores it is
// killed (and restarted). Outcomes map to actions' errors: a retryable
// error, a plugin crash, a hang or a restart in progress are plain
// errors (retried with the action's backoff); a permanent error, a
// quarantined plugin or a refused binary are actions.Permanent.
func (h *Host) Remediate(ctx context.Context, name string, inc actions.Incident, config []byte) (actions.Result, error) {
	i, err := h.lookup(name)
	if err != nil {
		return actions.Result{}, err
	}
	count := func(result string) { h.metrics.calls.WithLabelValues(name, result).Inc() }
	p, _, err := i.acquire(ctx, true)
	if err != nil {
		if ctx.Err() != nil {
			count(ResultCanceled)
		} else {
			count(ResultUnavailable)
		}
		return actions.Result{Details: map[string]any{"plugin": name}}, err
	}
	timeout := i.cfg.Timeout.D()
	deadline := callBudget(ctx, timeout)
	grace := hangGrace(timeout)
	// The call outlives ctx's deadline by grace so that a plugin that
	// honours its deadline (sent in the request) can answer; explicit
	// cancellation is passed on at once.
	callCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(grace))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	defer stop()

	outcome, sres, err := p.rpc.Remediate(callCtx, toSDKIncident(inc), config, deadline)
	res := actions.Result{Message: sres.Message, Output: boundOutput(sres.Output), Details: sres.Details}
	if res.Details == nil {
		res.Details = map[string]any{}
	}
	setDefault(res.Details, "plugin", name)
	setDefault(res.Details, "pluginVersion", p.info.Version)
	if err != nil {
		return h.callFailed(ctx, i, p, inc, res, err, count)
	}
	switch outcome {
	case sdk.Succeeded:
		count(ResultSucceeded)
		return res, nil
	case sdk.PermanentError:
		count(ResultPermanent)
		return res, actions.Permanent(fmt.Errorf("plugin %q: %s", name, sres.Message))
	case sdk.RetryableError:
		count(ResultRetryable)
		return res, fmt.Errorf("plugin %q: %s", name, sres.Message)
	}
	count(ResultRetryable)
	return res, fmt.Errorf("plugin %q answered without an outcome (message %q)", name, sres.Message)
}

// callFailed classifies a failed call (transport, deadline, cancellation).
func (h *Host) callFailed(ctx context.Context, i *instance, p *process, inc actions.Incident, res actions.Result, err error, count func(string)) (actions.Result, error) {
	name := i.name
	code := status.Code(err)
	switch {
	case code == codes.Canceled && ctx.Err() != nil:
		count(ResultCanceled)
		return res, fmt.Errorf("plugin %q: %w", name, ctx.Err())
	case code == codes.DeadlineExceeded:
		count(ResultTimeout)
		reason := fmt.Sprintf("did not answer within its deadline (timeout %s, plus %s grace): killed", i.cfg.Timeout, hangGrace(i.cfg.Timeout.D()))
		i.log.Warn("plugin hung; killing it", "pid", p.pid, "incident", inc.ID)
		p.kill("hung: " + reason)
		return res, fmt.Errorf("plugin %q %s; it will be restarted", name, reason)
	case code == codes.Unimplemented:
		count(ResultPermanent)
		return res, actions.Permanent(fmt.Errorf("plugin %q does not implement Remediate: %w", name, err))
	}
	count(ResultCrashed)
	t := time.NewTimer(crashWait)
	defer t.Stop()
	select {
	case <-p.exited:
		return res, fmt.Errorf("plugin %q exited during the call (%v); it will be restarted", name, status.Convert(err).Message())
	case <-t.C:
	}
	p.kill(fmt.Sprintf("unreachable: %v", err))
	return res, fmt.Errorf("plugin %q became unreachable during the call (%v): killed; it will be restarted", name, status.Convert(err).Message())
}

func setDefault(m map[string]any, k string, v any) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// maxOutput is how much plugin output an audit record keeps.
const maxOutput = 8 << 10

// boundOutput keeps the head and tail of long output.
func boundOutput(s string) string {
	if len(s) <= maxOutput {
		return s
	}
	half := maxOutput / 2
	return fmt.Sprintf("%s\n…[%d bytes omitted]…\n%s", s[:half], len(s)-2*half, s[len(s)-half:])
}

func toSDKIncident(inc actions.Incident) sdk.Incident {
	// A conversion, not a field copy: the SDK's Incident is the plugins'
	// public copy of actions.Incident (plugins link the SDK, not actions), and
	// this line stops compiling the day the two differ in a field.
	return sdk.Incident(inc)
}
