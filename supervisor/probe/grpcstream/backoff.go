package grpcstream

import (
	"time"

	"github.com/sethvargo/go-retry"

	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/clock"
)

// reconnectBackoff is the probe's reconnect delay sequence, built with
// backoff.New from the configured policy.
//
// A probe retries forever, while go-retry's exponential sequence is
// base << attempt: after some 30 doublings the shift overflows, and what
// it yields then depends on the bits of base (the cap hides it for round
// bases, not for every base). So once the configured sequence has
// certainly reached max, the probe switches to a constant sequence at max
// with the same jitter and never calls the growing one again.
type reconnectBackoff struct {
	grow retry.Backoff
	left int // Next calls served by grow before switching to hold
	hold retry.Backoff
}

func newReconnectBackoff(c backoff.Config, clk clock.Clock) *reconnectBackoff {
	grow := c
	grow.Attempts = unlimited
	hold := c
	hold.Policy = backoff.PolicyConstant
	hold.Initial = c.Max
	hold.Attempts = unlimited
	return &reconnectBackoff{
		grow: backoff.New(grow, clk),
		left: stepsBelow(c),
		hold: backoff.New(hold, clk),
	}
}

// Next returns the delay before the next attempt.
func (b *reconnectBackoff) Next() time.Duration {
	if b.left > 0 {
		b.left--
		if d, stop := b.grow.Next(); !stop {
			return d
		}
	}
	d, _ := b.hold.Next()
	return d
}

// AtCap returns a delay at the cap (with jitter): the retry delay after a
// permanent error.
func (b *reconnectBackoff) AtCap() time.Duration {
	d, _ := b.hold.Next()
	return d
}

// stepsBelow counts the base sequence's values below max (jitter aside).
func stepsBelow(c backoff.Config) int {
	initial, limit := c.Initial.D(), c.Max.D()
	if initial <= 0 {
		initial = time.Second
	}
	n := 0
	switch c.Policy {
	case backoff.PolicyConstant:
		return 1 << 30
	case backoff.PolicyFibonacci:
		a, b := time.Duration(0), initial
		for v := a + b; v < limit && v > 0; v = a + b {
			n++
			a, b = b, v
		}
	default:
		for v := initial; v < limit && v > 0; v *= 2 {
			n++
		}
	}
	return n
}
