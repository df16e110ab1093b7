package kube

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Dropped reads medic_kube_events_dropped_total{cause}.
func Dropped(s *EventSink, cause string) float64 {
	return testutil.ToFloat64(s.dropped.WithLabelValues(cause))
}

// Aggregated reads medic_kube_events_aggregated_total.
func Aggregated(s *EventSink) float64 { return testutil.ToFloat64(s.aggregated) }

// Pending reads medic_kube_events_pending.
func Pending(s *EventSink) float64 { return testutil.ToFloat64(s.pendingG) }

// Writes sums medic_kube_events_writes_total over reasons for result.
func Writes(s *EventSink, result string) float64 {
	n := 0.0
	for _, r := range []string{"IncidentOpened", "RemediationStarted", "RemediationSucceeded", "RemediationFailed",
		"RemediationSuppressed", "IncidentResolved", "IncidentExhausted"} {
		n += testutil.ToFloat64(s.writes.WithLabelValues(r, result))
	}
	return n
}

// WaitIdle waits (real time, bounded) until the writer has an empty queue
// and sits in the same blocking select for 50ms.
func WaitIdle(t *testing.T, s *EventSink) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a := s.waiting.Load()
		if a > 0 && len(s.queue) == 0 {
			time.Sleep(50 * time.Millisecond)
			if s.waiting.Load() == a && len(s.queue) == 0 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("event writer not idle after 20s")
}
