package backoff_test

import (
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
)

func delays(t *testing.T, c backoff.Config, clk *clock.Fake, advance bool) []time.Duration {
	t.Helper()
	b := backoff.New(c, clk)
	var out []time.Duration
	for range 10000 {
		d, stop := b.Next()
		if stop {
			return out
		}
		out = append(out, d)
		if advance {
			clk.Advance(d)
		}
	}
	t.Fatal("backoff never stopped")
	return nil
}

func TestBackoffPolicies(t *testing.T) {
	s := time.Second
	cases := []struct {
		name string
		c    backoff.Config
		want []time.Duration
	}{
		{"exponential doubles up to max", backoff.Config{Policy: "exponential", Initial: cfg.Duration(s), Max: cfg.Duration(5 * s), Attempts: 6},
			[]time.Duration{s, 2 * s, 4 * s, 5 * s, 5 * s}},
		{"fibonacci", backoff.Config{Policy: "fibonacci", Initial: cfg.Duration(s), Attempts: 6},
			[]time.Duration{s, 2 * s, 3 * s, 5 * s, 8 * s}},
		{"constant", backoff.Config{Policy: "constant", Initial: cfg.Duration(3 * s), Attempts: 3},
			[]time.Duration{3 * s, 3 * s}},
		{"one attempt means no retry", backoff.Config{Policy: "constant", Initial: cfg.Duration(s), Attempts: 1},
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := delays(t, tc.c, clock.NewFake(time.Unix(0, 0)), false)
			if len(got) != len(tc.want) {
				t.Fatalf("delays %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("delays %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestBackoffJitterStaysWithinBoundsAndUnderMax(t *testing.T) {
	c := backoff.Config{Policy: "constant", Initial: cfg.Duration(10 * time.Second), Max: cfg.Duration(11 * time.Second), Jitter: 20, Attempts: 1000}
	got := delays(t, c, clock.NewFake(time.Unix(0, 0)), false)
	if len(got) != 999 {
		t.Fatalf("%d delays, want 999", len(got))
	}
	distinct := map[time.Duration]bool{}
	for _, d := range got {
		if d < 8*time.Second || d > 11*time.Second {
			t.Fatalf("delay %s outside [8s, 11s] (±20%% of 10s, capped at max)", d)
		}
		distinct[d] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("jitter produced only %d distinct delays", len(distinct))
	}
}

func TestBackoffMaxDurationOnInjectedClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	c := backoff.Config{Policy: "constant", Initial: cfg.Duration(4 * time.Second), Attempts: 100, MaxDuration: cfg.Duration(10 * time.Second)}
	got := delays(t, c, clk, true)
	// 4s, 4s, then only 2s of the 10s budget remain; then stop.
	want := []time.Duration{4 * time.Second, 4 * time.Second, 2 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}

func TestBackoffValidate(t *testing.T) {
	bad := backoff.Config{Policy: "linear", Initial: 0, Max: cfg.Duration(time.Second), Attempts: 0}
	err := bad.Validate()
	for _, want := range []string{"policy", "initial", "attempts"} {
		found := false
		for _, e := range cfg.Flatten(err) {
			if fe, ok := e.(*cfg.FieldError); ok && fe.Path == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no error for %s in %v", want, err)
		}
	}
	if err := backoff.Default().Validate(); err != nil {
		t.Fatalf("default invalid: %v", err)
	}
}

func ExampleNew() {
	b := backoff.New(backoff.Config{Policy: "exponential", Initial: cfg.Duration(time.Second), Max: cfg.Duration(4 * time.Second), Attempts: 5}, clock.Real{})
	for {
		d, stop := b.Next()
		if stop {
			break
		}
		println(d.String())
	}
}
