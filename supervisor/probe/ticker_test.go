package probe_test

import (
	"context"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

// A run that starts within TimestampTolerance of its schedule is stamped
// with the scheduled time; a later one with the real time, and the
// schedule restarts from it.
func TestTickerStampsScheduledTimeWithinTolerance(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(t0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		probe.Ticker(ctx, clk, 2*time.Second, func(now time.Time) { got <- now })
	}()
	step := func(late time.Duration, want time.Time) {
		t.Helper()
		if !clk.BlockUntil(1, 10*time.Second) {
			t.Fatal("Ticker is not waiting")
		}
		clk.Advance(2*time.Second + late)
		if now := <-got; !now.Equal(want) {
			t.Fatalf("%v late: stamped %v, want %v", late, now.Sub(t0), want.Sub(t0))
		}
	}
	if now := <-got; !now.Equal(t0) {
		t.Fatalf("first run stamped %v, want the start", now.Sub(t0))
	}
	step(0, t0.Add(2*time.Second))
	step(time.Millisecond, t0.Add(4*time.Second))                          // clock at 4.001: scheduled 4
	step(probe.TimestampTolerance-time.Millisecond, t0.Add(6*time.Second)) // clock at 6.002: scheduled 6
	// Beyond the tolerance: real time, and the schedule follows it.
	step(5*time.Millisecond, t0.Add(8*time.Second+7*time.Millisecond))
	step(time.Millisecond, t0.Add(10*time.Second+7*time.Millisecond))
	cancel()
	clk.Advance(time.Hour)
	<-done
}
