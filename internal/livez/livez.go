// Package livez is the agent-liveness switch: an HTTP endpoint that the
// agent container's livenessProbe points at (medic serves it at
// /livez/agent). It answers 200 "ok" until the restart action's probe
// mode asks it to fail for a hold period; the kubelet then sees the probe
// fail failureThreshold times and restarts the agent container. No
// privileges are involved: medic only changes what it answers.
package livez

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
)

// DefaultReason is the reason reported when FailFor is called without one.
const DefaultReason = "agent restart requested by medic"

// Switch is safe for concurrent use. The zero value is not usable: use New.
type Switch struct {
	clk clock.Clock

	mu     sync.Mutex
	until  time.Time
	reason string
}

var _ http.Handler = (*Switch)(nil)

// New returns a healthy switch reading time from clk.
func New(clk clock.Clock) *Switch {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Switch{clk: clk}
}

// FailFor makes the endpoint answer 503 for d from now and returns when it
// recovers. It never shortens a hold already in force.
func (s *Switch) FailFor(d time.Duration) time.Time {
	return s.FailForReason(d, DefaultReason)
}

// FailForReason is FailFor with the reason shown in the 503 body.
func (s *Switch) FailForReason(d time.Duration, reason string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := s.clk.Now().Add(d)
	if until.After(s.until) {
		s.until = until
		s.reason = reason
	}
	return s.until
}

// Healthy reports whether the endpoint answers 200 at now.
func (s *Switch) Healthy(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !now.Before(s.until)
}

// Status is the 503 body.
type Status struct {
	FailingUntil time.Time `json:"failingUntil"`
	Reason       string    `json:"reason"`
}

// State returns the hold in force at now, if any.
func (s *Switch) State(now time.Time) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.until) {
		return Status{}, false
	}
	return Status{FailingUntil: s.until.UTC(), Reason: s.reason}, true
}

// ServeHTTP answers 200 "ok" or, during a hold, 503 with a JSON Status.
func (s *Switch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	st, failing := s.State(s.clk.Now())
	if !failing {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte("ok\n"))
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(st)
	}
}
