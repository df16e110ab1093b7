// Package probetest runs a probe's real loop against the real store on a
// fake clock, one interval at a time, for the probe packages' tests.
package probetest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// T0 is the fake clock's start.
var T0 = time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)

// Harness drives one probe.
type Harness struct {
	t        testing.TB
	Clock    *clock.Fake
	Store    *store.Store
	Logs     *Logs
	interval time.Duration
	errs     *errorRecorder
}

// Start runs build's probe until the test ends and returns after its
// first check has been committed. build receives the probe.Env to use.
func Start(t testing.TB, name string, interval time.Duration, build func(env probe.Env) probe.Probe) *Harness {
	t.Helper()
	h := &Harness{t: t, Clock: clock.NewFake(T0), Store: store.New(store.Options{}), Logs: &Logs{}, interval: interval}
	p := build(probe.Env{Name: name, Clock: h.Clock, Logger: slog.New(h.Logs)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h.errs = &errorRecorder{Appender: h.Store.Appender(name)}
	go func() { done <- p.Run(ctx, h.errs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("probe Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("probe Run did not return 10s after cancel")
		}
	})
	h.wait()
	return h
}

func (h *Harness) wait() {
	h.t.Helper()
	if !h.Clock.BlockUntil(1, 20*time.Second) {
		h.t.Fatal("probe did not finish its check within 20s")
	}
}

// Tick advances the clock by one interval and waits for that check.
func (h *Harness) Tick() {
	h.t.Helper()
	h.Clock.Advance(h.interval)
	h.wait()
}

// Value is the latest value of the one series named metric whose labels
// include the given pairs; ok is false when there is none.
func (h *Harness) Value(metric string, pairs ...string) (float64, bool) {
	h.t.Helper()
	var found []store.Point
	for _, p := range h.Series(metric) {
		match := true
		for i := 0; i+1 < len(pairs); i += 2 {
			if p.Labels.Get(pairs[i]) != pairs[i+1] {
				match = false
			}
		}
		if match {
			found = append(found, p)
		}
	}
	if len(found) > 1 {
		h.t.Fatalf("%s%v: %d series match", metric, pairs, len(found))
	}
	if len(found) == 0 {
		return 0, false
	}
	return found[0].V, true
}

// LastError is what the probe last reported through probe.ReportError
// ("" for success); ok is false when it never reported.
func (h *Harness) LastError() (reason string, ok bool) {
	h.errs.mu.Lock()
	defer h.errs.mu.Unlock()
	if h.errs.last == nil {
		return "", false
	}
	return *h.errs.last, true
}

// errorRecorder keeps the probe's reports beside the real store appender.
type errorRecorder struct {
	probe.Appender
	mu   sync.Mutex
	last *string
}

func (e *errorRecorder) RecordError(reason string) {
	e.mu.Lock()
	e.last = &reason
	e.mu.Unlock()
}

// AddCounterRaw keeps the store's counter zero-start reachable.
func (e *errorRecorder) AddCounterRaw(key []byte, mk func() labels.Labels, v float64) {
	e.Appender.(probe.CounterAppender).AddCounterRaw(key, mk, v)
}

// Series lists the live series named metric.
func (h *Harness) Series(metric string) []store.Point {
	return h.Store.Latest(func(n string) bool { return n == metric })
}

// Logs is a slog.Handler that keeps every record's message and attributes.
type Logs struct {
	mu    sync.Mutex
	lines []string
}

// Enabled accepts every level.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps "LEVEL msg k=v ...".
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
	return nil
}

// WithAttrs keeps it simple: attributes given to With are dropped.
func (l *Logs) WithAttrs([]slog.Attr) slog.Handler { return l }

// WithGroup ignores groups.
func (l *Logs) WithGroup(string) slog.Handler { return l }

// Lines returns a copy of what was logged.
func (l *Logs) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
