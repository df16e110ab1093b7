package fleetsim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// fleetLog collects what every node's fleet semaphore logs: warnings
// (renewals that failed, slots lost, releases that failed) are counted
// and printed with the node's name (errors all, warnings the first 20 of
// each); "fleet slot taken" records how stale
// the decision's time was when the slot was written (lag).
type fleetLog struct {
	// released is told when a node's fleet slot is given back by its
	// holder (before the release is written): the attempt has ended.
	released func(node string)

	mu       sync.Mutex
	out      io.Writer
	warnings map[string]int
	taken    int
	maxLag   time.Duration
	lags     []time.Duration
}

func newFleetLog(out io.Writer) *fleetLog { return &fleetLog{out: out, warnings: map[string]int{}} }

func (l *fleetLog) logger(node string) *slog.Logger {
	return slog.New(&fleetHandler{l: l, attrs: []slog.Attr{slog.String("node", node)}})
}

func (l *fleetLog) facts(into map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.warnings) > 0 {
		into["fleet_warnings"] = l.warnings
	}
	into["fleet_slots_taken"] = l.taken
	if len(l.lags) > 0 {
		s := append([]time.Duration(nil), l.lags...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		into["fleet_take_lag_s"] = map[string]float64{"p50": round(s[len(s)/2].Seconds()),
			"p99": round(s[len(s)*99/100].Seconds()), "max": round(s[len(s)-1].Seconds())}
	}
}

type fleetHandler struct {
	l     *fleetLog
	attrs []slog.Attr
}

func (h *fleetHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *fleetHandler) Handle(_ context.Context, r slog.Record) error {
	l := h.l
	if r.Message == "fleet slot released by its holder" {
		for _, a := range h.attrs {
			if a.Key == "node" && l.released != nil {
				l.released(a.Value.String())
			}
		}
		return nil
	}
	if r.Message == "fleet slot taken" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "lag" {
				l.mu.Lock()
				d := a.Value.Duration()
				l.taken++
				l.lags = append(l.lags, d)
				l.maxLag = max(l.maxLag, d)
				l.mu.Unlock()
			}
			return true
		})
		return nil
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fleet-sim: %s %s %q", r.Time.UTC().Format("15:04:05.000"), r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.warnings[r.Message]++
	if r.Level >= slog.LevelError || l.warnings[r.Message] <= 20 {
		fmt.Fprintln(l.out, b.String())
	}
	l.mu.Unlock()
	return nil
}

func (h *fleetHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &fleetHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *fleetHandler) WithGroup(string) slog.Handler { return h }
