package supervisor

import (
	"sync"
	"time"
)

// probeHealth is what /status says about a probe beyond its samples: its
// last failure and since when, and how often its Run had to be restarted.
// Probes report through probe.ReportError; the trackingAppender stamps the
// report with the batch's time at Commit.
type probeHealth struct {
	mu           sync.Mutex
	pending      *string // reported for the open batch; nil: nothing reported
	lastError    string
	lastErrorAt  time.Time
	failingSince time.Time // zero while the last check succeeded
	restarts     int
}

// report records why the open batch's check failed ("" = it succeeded).
func (h *probeHealth) report(reason string) {
	h.mu.Lock()
	h.pending = &reason
	h.mu.Unlock()
}

// commit applies the open batch's report at now.
func (h *probeHealth) commit(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending == nil {
		return
	}
	if reason := *h.pending; reason == "" {
		h.failingSince = time.Time{}
	} else {
		h.fail(now, reason)
	}
	h.pending = nil
}

// restarted records that the probe's Run stopped with err.
func (h *probeHealth) restarted(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.restarts++
	h.fail(now, "probe stopped: "+err.Error())
}

func (h *probeHealth) fail(now time.Time, reason string) {
	if h.failingSince.IsZero() {
		h.failingSince = now
	}
	h.lastError, h.lastErrorAt = reason, now
}

// fill copies the health into a /status entry.
func (h *probeHealth) fill(ps *ProbeStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ps.LastError, ps.LastErrorAt, ps.FailingSince, ps.Restarts = h.lastError, h.lastErrorAt, h.failingSince, h.restarts
}
