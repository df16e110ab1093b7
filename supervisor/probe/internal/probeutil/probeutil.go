// Package probeutil holds what the reachability probes (tcp, socket, http,
// cert) share: logging a repeating failure once per state change, series
// labels, and classifying a dial error (IsTimeout, Reason).
package probeutil

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"

	"github.com/prometheus/prometheus/model/labels"
)

// Shared metric names.
const (
	// MetricUp is 1 when the last check succeeded, else 0.
	MetricUp = "medic_probe_up"
	// MetricDuration is how long the last check took, success or not.
	MetricDuration = "medic_probe_duration_seconds"
)

// Series returns the labels of metric name with extra label pairs.
func Series(name string, pairs ...string) labels.Labels {
	return labels.FromStrings(append([]string{labels.MetricName, name}, pairs...)...)
}

// StateLog logs a probe's state when it changes, not on every check: the
// first observation, up → down, down → up, and a change of failure reason.
// It is used by one goroutine (the probe's loop).
type StateLog struct {
	Log  *slog.Logger
	last string
}

// Up records a successful check; attrs are logged with the transition.
func (s *StateLog) Up(attrs ...any) {
	if s.last == "up" {
		return
	}
	s.last = "up"
	s.logger().Info("probe up", attrs...)
}

// Down records a failed check with a short, stable reason.
func (s *StateLog) Down(reason string, attrs ...any) {
	key := "down: " + reason
	if s.last == key {
		return
	}
	s.last = key
	s.logger().Warn("probe down", append([]any{"reason", reason}, attrs...)...)
}

func (s *StateLog) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// IsTimeout reports whether err is a net.Error timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Reason shortens a dial error to a stable phrase for logs: "connection
// refused", "timeout", "no such host", or the innermost error text.
func Reason(err error) string {
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), IsTimeout(err):
		return "timeout"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "no such host " + dnsErr.Name
		}
		return "dns: " + dnsErr.Err
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}
