package remedy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
)

// FuzzLoadBudgets: any budgets.json is loaded or refused; it never panics,
// and a loaded one answers Allow with a sane count.
func FuzzLoadBudgets(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"version":1,"runs":{"restart":["2026-11-22T03:00:00Z"]}}`,
		`{"version":1,"runs":{"restart":["2999-01-01T00:00:00Z","0001-01-01T00:00:00Z"]}}`,
		`{"version":7,"runs":{}}`, `{"version":1,"runs":{"a":null,"":[]}}`, `{"runs":{"a":["not a time"]}}`,
		`{"version":1,"runs":{"a":[` + "\"2026-11-22T03:00:00Z\"," + `"2026-11-22T03:00:01Z"]}`, "\xff\xfe", `{"version":1e400}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "budgets.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := LoadBudgets(path)
		if err != nil {
			return
		}
		for _, a := range []string{"restart", "a", ""} {
			ok, n := b.Allow(a, 2, time.Hour, now)
			if n < 0 || ok != (n < 2) {
				t.Fatalf("Allow(%q) = %v, %d", a, ok, n)
			}
			_ = b.Used(a)
		}
	})
}

// FuzzLoadIncidents: any incidents.json is restored or set aside; the
// engine starts, reports its incidents and observes without panicking.
func FuzzLoadIncidents(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `{"version":1,"incidents":[]}`, `{"version":2,"incidents":[]}`,
		`{"version":1,"incidents":[{"key":"A{}","id":"i1","alert":"A","ladder":["x"],"startedAt":"2026-11-22T03:00:00Z","state":"running","step":0}]}`,
		`{"version":1,"incidents":[{"key":"A{}","alert":"A","ladder":[],"state":"exhausted","step":99,"round":-1,"attempts":[{"step":7}]}]}`,
		`{"version":1,"incidents":[{"key":"","alert":""},{"key":"k","state":"???","labels":{"a":"\u0000"}}]}`,
		`{"version":1,"incidents":[null]}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "incidents.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		clk := clock.NewFake(time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC))
		e := New(Options{Clock: clk, StatePath: path, RestoreGrace: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e.Start(ctx)
		_ = e.Incidents()
		e.Observe(clk.Now(), nil)
		clk.Advance(time.Hour)
		e.Observe(clk.Now(), nil)
		_ = e.Incidents()
		cancel()
		e.Wait()
	})
}
