package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sethvargo/go-retry"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
)

// State is where a plugin is in its life, as medic supervises it.
type State int

// States. A plugin goes stopped → starting → running; a crash (exit,
// hang, failed start) moves it to waiting, from which it restarts after
// its backoff, or to quarantined when it crashed too often.
const (
	Stopped     State = iota // no process; the next use starts one
	Starting                 // a process is being started
	Running                  // a process is up and answered its handshake
	Waiting                  // crashed; a restart is scheduled
	Quarantined              // crashed too often; not restarted
	Closed                   // the host was stopped
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Stopped:
		return "stopped"
	case Starting:
		return "starting"
	case Running:
		return "running"
	case Waiting:
		return "waiting"
	case Quarantined:
		return "quarantined"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Sentinel errors callers may branch on (all are wrapped with context).
var (
	// ErrQuarantined: the plugin crashed too often; calls fail as permanent.
	ErrQuarantined = errors.New("plugin is quarantined")
	// ErrRestarting: the plugin crashed and waits for its restart.
	ErrRestarting = errors.New("plugin is restarting")
	// ErrHostStopped: the host is shut down.
	ErrHostStopped = errors.New("plugin host is stopped")
)

// fileID identifies a binary on disk; a change lifts a quarantine.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, nil
}

// instance supervises one configured plugin: starts it, watches it,
// restarts it with backoff and quarantines it.
type instance struct {
	name string
	cfg  *Config
	h    *Host
	log  *slog.Logger

	mu        sync.Mutex
	st        State
	proc      *process
	startDone chan struct{} // closed when the start in flight ends
	wanted    bool          // used for remediation (or eager): keep it running
	crashes   []time.Time   // within the quarantine window
	backoff   retry.Backoff
	restartAt time.Time
	lastErr   error
	quarantID fileID // the binary's identity when quarantined
	restarts  int
}

// acquire returns the running process, starting it if needed. want marks
// the plugin as in use (a remediation), so it is kept running; started
// reports that this call started it.
func (i *instance) acquire(ctx context.Context, want bool) (p *process, started bool, err error) {
	waited := false // a start this call waited for has ended
	for {
		i.mu.Lock()
		if want {
			i.wanted = true
		}
		switch i.st {
		case Running:
			p := i.proc
			i.mu.Unlock()
			return p, started, nil
		case Closed:
			i.mu.Unlock()
			return nil, false, actions.Permanent(fmt.Errorf("plugin %q: %w", i.name, ErrHostStopped))
		case Quarantined:
			if id, err := statID(i.cfg.Path); err == nil && id != i.quarantID {
				i.release("the binary changed on disk")
				i.mu.Unlock()
				continue
			}
			err := fmt.Errorf("plugin %q: %w after %d crashes within %s (last: %v); it stays so until medic restarts or %s changes",
				i.name, ErrQuarantined, len(i.crashes), i.cfg.Quarantine.Window, i.lastErr, i.cfg.Path)
			i.mu.Unlock()
			return nil, false, actions.Permanent(err)
		case Waiting:
			err := fmt.Errorf("plugin %q: %w in %s (last failure: %v)", i.name, ErrRestarting,
				i.restartAt.Sub(i.h.clock.Now()).Round(time.Millisecond), i.lastErr)
			i.mu.Unlock()
			return nil, false, err
		case Stopped:
			if waited && i.lastErr != nil {
				// The start was refused (checksum): nothing to retry now.
				err := i.lastErr
				i.mu.Unlock()
				return nil, false, actions.Permanent(fmt.Errorf("plugin %q: %w", i.name, err))
			}
			i.beginStart()
			started = true
			i.h.wg.Add(1)
			go func() {
				defer i.h.wg.Done()
				i.runStart(false)
			}()
			fallthrough
		case Starting:
			ch := i.startDone
			i.mu.Unlock()
			select {
			case <-ch:
				waited = true
			case <-ctx.Done():
				return nil, false, fmt.Errorf("plugin %q: waiting for it to start: %w", i.name, ctx.Err())
			}
		}
	}
}

// beginStart moves to Starting (mu held).
func (i *instance) beginStart() {
	i.st = Starting
	i.startDone = make(chan struct{})
}

// runStart launches a process and records the outcome. restart reports
// whether this start follows a crash.
func (i *instance) runStart(restart bool) {
	p, err := launch(launchOptions{
		name:         i.name,
		path:         i.cfg.Path,
		args:         i.cfg.Args,
		env:          i.cfg.Env,
		checksum:     i.cfg.checksum(),
		startTimeout: i.cfg.StartTimeout.D(),
		logger:       newHCLogger(i.log),
		stdout:       outputLogger(i.log, "stdout"),
		stderr:       outputLogger(i.log, "stderr"),
	})
	i.mu.Lock()
	defer func() {
		close(i.startDone)
		i.mu.Unlock()
	}()
	if i.st == Closed {
		if p != nil {
			i.mu.Unlock()
			p.stop()
			i.mu.Lock()
		}
		i.lastErr = ErrHostStopped
		return
	}
	now := i.h.clock.Now()
	switch {
	case errors.Is(err, ErrChecksum):
		// Not a crash: nothing will change until the binary or the
		// config does. Every use fails permanently with the reason.
		i.st, i.lastErr = Stopped, err
		i.log.Error("refusing to start plugin", "err", err)
		return
	case err != nil:
		i.crashed(now, fmt.Errorf("start failed: %w", err))
		return
	}
	i.st, i.proc, i.lastErr = Running, p, nil
	i.h.metrics.up.WithLabelValues(i.name).Set(1)
	i.log.Info("plugin started", "pid", p.pid, "version", p.info.Version, "startup", time.Since(p.start).Round(time.Millisecond))
	typ := PluginStarted
	if restart {
		i.restarts++
		i.h.metrics.restarts.WithLabelValues(i.name).Inc()
		typ = PluginRestarted
	}
	i.h.emit(Event{Time: now, Type: typ, Plugin: i.name, PID: p.pid, Message: "plugin " + p.info.Name + " " + p.info.Version + " started"})
	i.h.wg.Add(1)
	go i.watch(p)
}

// exitPoll is how often a running plugin's process is looked at.
const exitPoll = 500 * time.Millisecond

// watch waits for the process to exit and handles the exit.
func (i *instance) watch(p *process) {
	defer i.h.wg.Done()
	// go-plugin reports the exit only once the plugin's stdout/stderr are
	// closed; a child of the plugin holding them open would hide a crash.
	// So also poll the process: once it is gone, kill its group.
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-p.exited:
			waiting = false
		case <-tick.C:
			if !alive(p.pid) {
				p.hardKill()
			}
		}
	}
	requested, reason := p.exitReason()
	if !requested {
		p.client.Kill() // releases go-plugin's goroutines (stop does it otherwise)
		p.hardKill()    // and anything left in the process group
		waitGroupGone(p.pid, groupGrace)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc != p {
		return
	}
	i.proc = nil
	i.h.metrics.up.WithLabelValues(i.name).Set(0)
	if i.st == Closed {
		return
	}
	if requested {
		i.st = Stopped
		return
	}
	if reason == "" {
		reason = "exited unexpectedly"
	}
	i.crashed(i.h.clock.Now(), errors.New(reason))
}

// crashed records a crash and schedules a restart or quarantines (mu held).
func (i *instance) crashed(now time.Time, why error) {
	window := i.cfg.Quarantine.Window.D()
	keep := i.crashes[:0]
	for _, t := range i.crashes {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	i.crashes = append(keep, now)
	i.lastErr = why
	n := len(i.crashes)
	i.log.Warn("plugin crashed", "err", why, "crashes", n, "window", i.cfg.Quarantine.Window.String())
	i.h.emit(Event{Time: now, Type: PluginCrashed, Plugin: i.name, Crashes: n, Message: why.Error()})
	if n > i.cfg.Quarantine.MaxCrashes {
		i.quarantine(now, why)
		return
	}
	if n == 1 || i.backoff == nil {
		i.backoff = backoff.New(backoff.Config{
			Policy:   backoff.PolicyExponential,
			Initial:  i.cfg.Restart.Initial,
			Max:      i.cfg.Restart.Max,
			Jitter:   10,
			Attempts: 1 << 30,
		}, i.h.clock)
	}
	d, stop := i.backoff.Next()
	if stop {
		d = i.cfg.Restart.Max.D()
	}
	i.st, i.restartAt = Waiting, now.Add(d)
	i.log.Info("restarting plugin after backoff", "in", d.Round(time.Millisecond))
	i.h.wg.Add(1)
	go i.restartAfter(d)
}

// restartAfter waits d on the host's clock, then restarts the plugin.
func (i *instance) restartAfter(d time.Duration) {
	defer i.h.wg.Done()
	select {
	case <-i.h.clock.After(d):
	case <-i.h.done:
		return
	}
	i.mu.Lock()
	if i.st != Waiting {
		i.mu.Unlock()
		return
	}
	if !i.wanted {
		// Only ever started to validate config: stay lazy.
		i.st = Stopped
		i.mu.Unlock()
		return
	}
	i.beginStart()
	i.mu.Unlock()
	i.runStart(true)
}

// quarantine stops restarting the plugin (mu held).
func (i *instance) quarantine(now time.Time, why error) {
	i.st = Quarantined
	i.quarantID, _ = statID(i.cfg.Path)
	i.h.metrics.quarantined.WithLabelValues(i.name).Set(1)
	msg := fmt.Sprintf("crashed %d times within %s (more than %d); quarantined until medic restarts or %s changes; last: %v",
		len(i.crashes), i.cfg.Quarantine.Window, i.cfg.Quarantine.MaxCrashes, i.cfg.Path, why)
	i.log.Error("plugin quarantined", "crashes", len(i.crashes), "window", i.cfg.Quarantine.Window.String(), "err", why)
	i.h.emit(Event{Time: now, Type: PluginQuarantined, Plugin: i.name, Crashes: len(i.crashes), Message: msg})
}

// release lifts a quarantine (mu held).
func (i *instance) release(why string) {
	i.st = Stopped
	i.crashes = nil
	i.backoff = nil
	i.h.metrics.quarantined.WithLabelValues(i.name).Set(0)
	i.log.Info("plugin released from quarantine", "reason", why)
	i.h.emit(Event{Time: i.h.clock.Now(), Type: PluginReleased, Plugin: i.name, Message: why})
}

// stopIfUnwanted stops a process that was started only to validate config
// (lazy plugins stay lazy).
func (i *instance) stopIfUnwanted(p *process) {
	i.mu.Lock()
	if i.wanted || i.proc != p || i.st != Running {
		i.mu.Unlock()
		return
	}
	i.st, i.proc = Stopped, nil
	i.h.metrics.up.WithLabelValues(i.name).Set(0)
	i.mu.Unlock()
	p.stop()
}

// close stops the plugin for good.
func (i *instance) close() {
	i.mu.Lock()
	i.st = Closed
	p := i.proc
	i.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// status is the /status view of the plugin.
func (i *instance) status() Status {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := Status{
		Name:     i.name,
		Path:     i.cfg.Path,
		State:    i.st.String(),
		Restarts: i.restarts,
		Crashes:  len(i.crashes),
	}
	if i.proc != nil {
		s.PID, s.Version = i.proc.pid, i.proc.info.Version
	}
	if i.lastErr != nil {
		s.LastError = i.lastErr.Error()
	}
	if i.st == Waiting {
		s.RestartAt = i.restartAt
	}
	return s
}

// configErrorf is a config error about this plugin's entry.
func (i *instance) configErrorf(field, format string, args ...any) error {
	return cfg.Errorf(cfg.Join("plugins."+i.name, field), format, args...)
}
