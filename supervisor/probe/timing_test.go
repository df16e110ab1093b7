package probe_test

import (
	"errors"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

func TestCheckTiming(t *testing.T) {
	d := func(s string) cfg.Duration { v, _ := time.ParseDuration(s); return cfg.Duration(v) }
	for _, c := range []struct {
		interval, timeout string
		want              string
	}{
		{"5s", "2s", ""},
		{"5s", "5s", ""},
		{"5s", "6s", "timeout: must not exceed interval (5s)"},
		{"0s", "2s", "interval: must be greater than 0"},
		{"5s", "0s", "timeout: must be greater than 0"},
		{"-1s", "-1s", "interval: must be greater than 0\ntimeout: must be greater than 0"},
	} {
		got := ""
		if err := errors.Join(probe.CheckTiming(d(c.interval), d(c.timeout))...); err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckTiming(%s, %s) = %q, want %q", c.interval, c.timeout, got, c.want)
		}
	}
}
