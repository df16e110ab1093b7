// Package probe defines how medic observes: a Probe runs until its context
// ends and reports what it sees through an Appender into the store. A probe
// never decides anything; rules do.
//
// Each probe kind lives in a subpackage and registers a Kind keyed by its
// YAML key under probes[].
package probe

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/registry"
)

// Probe observes one thing until ctx is done. Run returns nil on a clean
// shutdown; a returned error means the probe cannot continue at all (its
// transient failures are reported as samples, not errors).
type Probe interface {
	Run(ctx context.Context, app Appender) error
}

// Appender receives one probe's samples. The probe's name is added as the
// label probe="<name>" to every series.
//
// A probe reports its complete current view as a batch: Add … Add, then
// Commit. A series reported in the previous batch but not in this one gets
// a staleness marker, exactly as Prometheus does for a vanished target
// series, so a rule stops seeing it at once instead of 5 minutes later.
type Appender interface {
	// Add appends a sample for lset (without the probe label) to the open batch.
	Add(lset labels.Labels, v float64)
	// AddRaw is Add for hot paths: key uniquely identifies the series within
	// the probe (e.g. the raw series text of a scrape), and mk builds the
	// labels only the first time key is seen.
	AddRaw(key []byte, mk func() labels.Labels, v float64)
	// Commit closes the batch at time t.
	Commit(t time.Time) (appended int, err error)
}

// CounterAppender is implemented by appenders that can start a new
// counter series at zero. A counter that first appears after the probe's
// first batch (SPIRE creates its status="Unavailable" series on the first
// failure; nothing is pre-created at zero) was zero at the previous batch,
// so the appender records a 0 there. Without it rate() and increase()
// cannot see the first increment at all: they need two samples. This is
// Prometheus's created-timestamp zero ingestion, inferred from the page.
type CounterAppender interface {
	AddCounterRaw(key []byte, mk func() labels.Labels, v float64)
}

// ErrorRecorder is implemented by appenders that keep a probe's last
// failure for /status (the supervisor's does), so an operator sees why a
// probe is down without reading the log.
type ErrorRecorder interface {
	// RecordError is why this batch's check failed; "" means it succeeded.
	RecordError(reason string)
}

// ReportError tells app why the check of the open batch failed (nil: it
// succeeded). Call it before Commit; appenders that keep no status ignore it.
func ReportError(app Appender, err error) {
	if r, ok := app.(ErrorRecorder); ok {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		r.RecordError(msg)
	}
}

// Env is what the supervisor hands a probe kind when it builds one.
type Env struct {
	Name   string // the probe's name in config
	Logger *slog.Logger
	Clock  clock.Clock
}

// ClockOrReal is Clock, or the wall clock when none is set.
func (e Env) ClockOrReal() clock.Clock {
	if e.Clock == nil {
		return clock.Real{}
	}
	return e.Clock
}

// LoggerOrDiscard is Logger, or a logger that drops everything.
func (e Env) LoggerOrDiscard() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Kind is one probe type, keyed by its YAML key under probes[].
type Kind struct {
	// Name is the YAML key, e.g. "scrape".
	Name string
	// NewConfig returns a pointer to a config struct filled with defaults;
	// if it implements cfg.Validator, Validate is called after decoding.
	NewConfig func() any
	// New builds the probe from a decoded, validated config.
	New func(config any, env Env) (Probe, error)
}

var kinds = registry.New[Kind]("probe")

// Register adds a kind; a duplicate name panics (a programming error).
func Register(k Kind) { kinds.Register(k.Name, k) }

// Lookup returns the kind registered under name.
func Lookup(name string) (Kind, bool) { return kinds.Lookup(name) }

// Kinds lists registered kind names, sorted.
func Kinds() []string { return kinds.Names() }

// TimestampTolerance is how late a run may start and still be stamped
// with its scheduled time (see Ticker). It is the default of Prometheus's
// scrape loop (--scrape.timestamp-tolerance).
const TimestampTolerance = 2 * time.Millisecond

// Ticker runs f every interval on clk until ctx ends, starting at once.
// Runs are scheduled interval apart; f gets the scheduled time when the
// run starts within TimestampTolerance of it (a timer's usual latency),
// as Prometheus aligns scrape timestamps: samples committed at exactly
// regular times cost the store one bit of timestamp instead of two bytes.
// A run that starts later gets the real time, and the schedule restarts
// from it.
func Ticker(ctx context.Context, clk clock.Clock, interval time.Duration, f func(now time.Time)) {
	next := clk.Now()
	for {
		now := clk.Now()
		if late := now.Sub(next); late >= 0 && late <= TimestampTolerance {
			now = next
		}
		f(now)
		next = now.Add(interval)
		wait := next.Sub(clk.Now())
		if wait < 0 {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-clk.After(wait):
		}
	}
}

// CheckTiming is the timing check every polling probe's Validate makes:
// interval and timeout greater than 0, and a timeout that fits in the
// interval (a check must end before the next one is due).
func CheckTiming(interval, timeout cfg.Duration) []error {
	var errs []error
	if interval <= 0 {
		errs = append(errs, cfg.Errorf("interval", "must be greater than 0"))
	}
	if timeout <= 0 {
		errs = append(errs, cfg.Errorf("timeout", "must be greater than 0"))
	} else if interval > 0 && timeout > interval {
		errs = append(errs, cfg.Errorf("timeout", "must not exceed interval (%s)", interval))
	}
	return errs
}
