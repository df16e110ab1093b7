package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

var t0 = time.Unix(1_800_000_000, 0)

func query(t *testing.T, st *store.Store, q string, at time.Time) map[string]float64 {
	t.Helper()
	v, err := rules.NewEngine(st, 5*time.Minute, slog.New(slog.DiscardHandler)).Query(context.Background(), q, at)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, s := range v {
		out[s.Metric.String()] = s.F
	}
	return out
}

func TestRateOverScrapedCounterWithReset(t *testing.T) {
	st := store.New(store.Options{})
	app := st.Appender("spire")
	lset := labels.FromStrings("__name__", "spire_agent_manager_sync_fetch_entries_updates", "status", "Unavailable")
	// +1 every 5 s, then the agent restarts (counter reset) and keeps counting.
	vals := []float64{1, 2, 3, 4, 0, 1, 2, 3}
	for i, v := range vals {
		app.Add(lset, v)
		if _, err := app.Commit(t0.Add(time.Duration(i) * 5 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got := query(t, st, `increase(spire_agent_manager_sync_fetch_entries_updates{probe="spire",status!="OK"}[1m])`, t0.Add(35*time.Second))
	if len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	for _, v := range got {
		// 3 increments, reset (counts as +0 from 0), 3 increments = 6 over 35 s, extrapolated.
		if v < 6 || v > 9 {
			t.Fatalf("increase = %v, want about 6-9 (reset handled)", v)
		}
	}
}

func TestVanishedSeriesGoStaleAtOnce(t *testing.T) {
	st := store.New(store.Options{})
	app := st.Appender("p")
	a := labels.FromStrings("__name__", "x", "k", "a")
	b := labels.FromStrings("__name__", "x", "k", "b")
	app.Add(a, 1)
	app.Add(b, 1)
	app.Commit(t0)
	app.Add(a, 2)
	app.Commit(t0.Add(5 * time.Second))
	got := query(t, st, `x`, t0.Add(6*time.Second))
	if len(got) != 1 || got[`{__name__="x", k="a", probe="p"}`] != 2 {
		t.Fatalf("want only a (b stale), got %v", got)
	}
	// A failed cycle that commits nothing makes every series stale.
	app.Commit(t0.Add(10 * time.Second))
	if got := query(t, st, `x`, t0.Add(11*time.Second)); len(got) != 0 {
		t.Fatalf("want nothing after an empty batch, got %v", got)
	}
	// b comes back.
	app.Add(b, 7)
	app.Commit(t0.Add(15 * time.Second))
	if got := query(t, st, `x`, t0.Add(16*time.Second)); got[`{__name__="x", k="b", probe="p"}`] != 7 {
		t.Fatalf("b did not come back: %v", got)
	}
}

func TestScrapedProbeLabelIsKeptAsExported(t *testing.T) {
	st := store.New(store.Options{})
	app := st.Appender("mine")
	app.Add(labels.FromStrings("__name__", "x", "probe", "theirs"), 1)
	app.Commit(t0)
	got := query(t, st, `x`, t0)
	if _, ok := got[`{__name__="x", exported_probe="theirs", probe="mine"}`]; !ok {
		t.Fatalf("got %v", got)
	}
}

func TestSeriesCapDropsAndCounts(t *testing.T) {
	st := store.New(store.Options{MaxSeries: 10})
	app := st.Appender("p")
	for i := range 25 {
		app.Add(labels.FromStrings("__name__", "x", "i", fmt.Sprint(i)), 1)
	}
	app.Commit(t0)
	s := st.Stats()
	if s.Series != 10 || s.DroppedSeries != 15 || s.DroppedSamples != 15 {
		t.Fatalf("stats %+v", s)
	}
	// Still refused on the next cycle, and counted again.
	for i := range 25 {
		app.Add(labels.FromStrings("__name__", "x", "i", fmt.Sprint(i)), 2)
	}
	app.Commit(t0.Add(time.Second))
	if s := st.Stats(); s.Series != 10 || s.DroppedSamples != 30 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRetentionBoundsSamplesAndGCRemovesDeadSeries(t *testing.T) {
	st := store.New(store.Options{Retention: time.Minute})
	app := st.Appender("p")
	live := labels.FromStrings("__name__", "live")
	dead := labels.FromStrings("__name__", "dead")
	app.Add(dead, 1)
	app.Add(live, 1)
	app.Commit(t0)
	for i := 1; i <= 1000; i++ {
		app.Add(live, float64(i))
		app.Commit(t0.Add(time.Duration(i) * time.Second))
	}
	if s := st.Stats(); s.Samples > 64+2 {
		t.Fatalf("retention not applied: %+v", s)
	}
	if n := st.GC(t0.Add(1000 * time.Second)); n != 1 {
		t.Fatalf("GC removed %d series, want 1 (dead)", n)
	}
	if s := st.Stats(); s.Series != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The appender notices a collected series and recreates it.
	app.Add(dead, 5)
	app.Commit(t0.Add(1001 * time.Second))
	if got := query(t, st, `dead`, t0.Add(1001*time.Second)); len(got) != 1 {
		t.Fatalf("dead series not recreated: %v", got)
	}
}

func TestOutOfOrderSamplesIgnored(t *testing.T) {
	st := store.New(store.Options{})
	l := labels.FromStrings("__name__", "x")
	st.Append(l, t0.Add(10*time.Second), 2)
	st.Append(l, t0, 1)
	if got := query(t, st, `x`, t0.Add(10*time.Second)); got[`{__name__="x"}`] != 2 {
		t.Fatalf("got %v", got)
	}
	if s := st.Stats(); s.Samples != 1 {
		t.Fatalf("out-of-order sample stored: %+v", s)
	}
}

func BenchmarkIngest10kSeries(b *testing.B) {
	st := store.New(store.Options{})
	app := st.Appender("p")
	keys := make([][]byte, 10_000)
	lsets := make([]labels.Labels, 10_000)
	for i := range keys {
		lsets[i] = labels.FromStrings("__name__", "m", "i", fmt.Sprint(i))
		keys[i] = []byte(lsets[i].String())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range keys {
			app.AddRaw(keys[i], func() labels.Labels { return lsets[i] }, float64(n))
		}
		app.Commit(t0.Add(time.Duration(n) * 5 * time.Second))
	}
}

func TestNewCounterSeriesStartsAtZero(t *testing.T) {
	st := store.New(store.Options{})
	app := st.Appender("spire")
	ok := labels.FromStrings("__name__", "sync", "status", "OK")
	bad := labels.FromStrings("__name__", "sync", "status", "Unavailable")
	add := func(l labels.Labels, v float64) {
		app.AddCounterRaw([]byte(l.String()), func() labels.Labels { return l }, v)
	}
	// First batch: series already counting when medic starts are not zero-started.
	add(ok, 40)
	app.Commit(t0)
	add(ok, 41)
	app.Commit(t0.Add(5 * time.Second))
	// The first failure creates the Unavailable series at 1.
	add(ok, 41)
	add(bad, 1)
	app.Commit(t0.Add(10 * time.Second))
	got := query(t, st, `increase(sync{status="Unavailable"}[1m])`, t0.Add(10*time.Second))
	if len(got) != 1 {
		t.Fatalf("first increment invisible: %v", got)
	}
	for _, v := range got {
		if v < 1 {
			t.Fatalf("increase = %v, want >= 1", v)
		}
	}
	// The OK series was not given a zero (it existed from the first batch).
	if got := query(t, st, `min_over_time(sync{status="OK"}[1m])`, t0.Add(10*time.Second)); got[`{probe="spire", status="OK"}`] != 40 {
		t.Fatalf("OK series altered: %v", got)
	}
}

// A page filling the series cap cannot crowd out medic's own series, and a
// page series named medic_* gets no share of their reserve.
func TestOwnSeriesAreReservedBeyondTheCap(t *testing.T) {
	st := store.New(store.Options{MaxSeries: 10})
	app := st.Appender("big")
	page := func(name string, i int) {
		l := labels.FromStrings("__name__", name, "i", fmt.Sprint(i))
		app.AddPageRaw([]byte(l.String()), func() labels.Labels { return l }, 1, false)
	}
	for i := range 25 {
		page("big_gauge", i)
	}
	page("medic_probe_up", 99) // from the page: competes like any page series
	up := labels.FromStrings("__name__", "medic_probe_up")
	app.AddRaw([]byte("\xffup"), func() labels.Labels { return up }, 1)
	if n, err := app.Commit(t0); err != nil || n != 11 {
		t.Fatalf("committed %d (%v), want 10 page samples + medic_probe_up", n, err)
	}
	got := query(t, st, `medic_probe_up{probe="big"}`, t0)
	if len(got) != 1 || got[`{__name__="medic_probe_up", probe="big"}`] != 1 {
		t.Fatalf("medic_probe_up: %v", got)
	}
	if got := query(t, st, `medic_probe_series_dropped`, t0); got[`{__name__="medic_probe_series_dropped", probe="big"}`] != 16 {
		t.Fatalf("medic_probe_series_dropped: %v", got)
	}
	if got := query(t, st, `medic_probe_samples_dropped_total`, t0); got[`{__name__="medic_probe_samples_dropped_total", probe="big"}`] != 16 {
		t.Fatalf("medic_probe_samples_dropped_total: %v", got)
	}
	s := st.Stats()
	if s.Series-s.OwnSeries != 10 || s.OwnSeries != 3 {
		t.Fatalf("stats %+v: want 10 page series and 3 own", s)
	}
}

// The reserve is itself bounded.
func TestOwnSeriesReserveIsBounded(t *testing.T) {
	st := store.New(store.Options{MaxSeries: 10, ReservedSeries: 5})
	app := st.Appender("p")
	for i := range 8 {
		app.Add(labels.FromStrings("__name__", "medic_x", "i", fmt.Sprint(i)), 1)
	}
	app.Commit(t0)
	if s := st.Stats(); s.OwnSeries != 5 || s.DroppedSeries != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// Series refused by the cap are stored once there is room again.
func TestRefusedSeriesAreRetriedWhenRoomFrees(t *testing.T) {
	st := store.New(store.Options{MaxSeries: 3, Retention: time.Minute})
	a, b := st.Appender("a"), st.Appender("b")
	for i := range 3 {
		a.Add(labels.FromStrings("__name__", "x", "i", fmt.Sprint(i)), 1)
	}
	a.Commit(t0)
	b.Add(labels.FromStrings("__name__", "y"), 1)
	b.Commit(t0)
	if got := query(t, st, `y`, t0); len(got) != 0 {
		t.Fatalf("y stored over the cap: %v", got)
	}
	a.Commit(t0.Add(time.Second))  // a's series vanish (stale) ...
	st.GC(t0.Add(2 * time.Minute)) // ... and are collected
	now := t0.Add(2*time.Minute + time.Second)
	b.Add(labels.FromStrings("__name__", "y"), 2)
	b.Commit(now)
	b.Add(labels.FromStrings("__name__", "y"), 3)
	b.Commit(now.Add(time.Second))
	if got := query(t, st, `y`, now.Add(time.Second)); got[`{__name__="y", probe="b"}`] != 3 {
		t.Fatalf("y not stored once room freed: %v", got)
	}
}
