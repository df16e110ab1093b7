package store_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/medic-sidecar/medic/supervisor/store"
)

// The store holds samples in compressed chunks. These tests hold it to
// what a plain list of samples does (the store before the encoding):
// every value bit-exact (stale markers, NaN, ±Inf, -0), an older sample
// ignored, one at the newest timestamp replacing it, samples past the
// retention gone, series without a sample in a range not returned.

type refSample struct {
	t int64
	v float64
}

// refSeries is the plain list the store must behave like.
type refSeries struct {
	retention int64
	samples   []refSample
}

func (r *refSeries) append(t int64, v float64) {
	if n := len(r.samples); n > 0 && r.samples[n-1].t >= t {
		if r.samples[n-1].t == t {
			r.samples[n-1].v = v
		}
		return
	}
	r.samples = append(r.samples, refSample{t, v})
	r.trim(t - r.retention)
}

func (r *refSeries) trim(mint int64) {
	i := 0
	for i < len(r.samples) && r.samples[i].t < mint {
		i++
	}
	r.samples = r.samples[i:]
}

func (r *refSeries) between(mint, maxt int64) []refSample {
	var out []refSample
	for _, s := range r.samples {
		if s.t >= mint && s.t <= maxt {
			out = append(out, s)
		}
	}
	return out
}

// selectAll reads every sample of the series named name in [mint, maxt]
// through the storage.Querier the PromQL engine uses; nil when the store
// returns no series.
func selectAll(t *testing.T, st *store.Store, name string, mint, maxt int64) []refSample {
	t.Helper()
	q, err := st.Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, &storage.SelectHints{Start: mint, End: maxt},
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
	var out []refSample
	n := 0
	for ss.Next() {
		n++
		it := ss.At().Iterator(nil)
		got := []refSample{}
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			got = append(got, refSample{ts, v})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out = got
	}
	if n > 1 {
		t.Fatalf("%d series named %s", n, name)
	}
	return out
}

func sameSamples(a, b []refSample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].t != b[i].t || math.Float64bits(a[i].v) != math.Float64bits(b[i].v) {
			return false
		}
	}
	return true
}

var staleNaN = math.Float64frombits(value.StaleNaN)

// Random appends (in order, out of order, repeated timestamps, gaps) with
// awkward values, read back over random windows, before and after GC.
func TestEncodedSamplesMatchAPlainList(t *testing.T) {
	const retention = time.Minute
	st := store.New(store.Options{Retention: retention})
	ref := &refSeries{retention: retention.Milliseconds()}
	rng := rand.New(rand.NewPCG(7, 13))
	lset := labels.FromStrings("__name__", "x")
	values := []float64{staleNaN, math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0, 1, math.MaxFloat64, math.SmallestNonzeroFloat64, -1e-300}
	base := t0.UnixMilli()
	last := base
	check := func(when string) {
		t.Helper()
		for range 200 { // windows around what is retained, some reaching past it
			mint := last - rng.Int64N(2*retention.Milliseconds()) + 1000
			maxt := mint + rng.Int64N(retention.Milliseconds())
			want := ref.between(mint, maxt)
			got := selectAll(t, st, "x", mint, maxt)
			if len(want) == 0 && got != nil {
				t.Fatalf("%s: [%d, %d]: a series with no sample in range was returned (%d samples)", when, mint-base, maxt-base, len(got))
			}
			if !sameSamples(got, want) {
				t.Fatalf("%s: [%d, %d]: got %d samples %v, want %d %v", when, mint-base, maxt-base, len(got), got, len(want), want)
			}
		}
		if got, want := st.Stats().Samples, len(ref.samples); got != want {
			t.Fatalf("%s: Stats().Samples = %d, want %d", when, got, want)
		}
	}
	for i := range 3000 {
		var ts int64
		switch r := rng.IntN(20); {
		case r == 0: // out of order
			ts = last - rng.Int64N(5000) - 1
		case r == 1: // same timestamp again
			ts = last
		case r == 2: // a gap longer than the retention
			ts = last + 2*retention.Milliseconds()
		default: // the usual step, sometimes late
			ts = last + 1000 + rng.Int64N(3)*rng.Int64N(2000)
		}
		var v float64
		if rng.IntN(3) == 0 {
			v = values[rng.IntN(len(values))]
		} else {
			v = float64(i) + rng.Float64()*float64(rng.IntN(2))
		}
		st.Append(lset, time.UnixMilli(ts), v)
		ref.append(ts, v)
		last = max(last, ts)
		if i%100 == 99 {
			check("appending")
			now := last + rng.Int64N(30_000)
			st.GC(time.UnixMilli(now))
			ref.trim(now - retention.Milliseconds())
			if len(ref.samples) > 0 {
				check("after GC")
			}
		}
	}
}

// A stale marker survives the encoding wherever it lands: as the newest
// sample and deep inside a chunk; PromQL sees the series end there.
func TestStaleMarkersSurviveEncoding(t *testing.T) {
	st := store.New(store.Options{})
	app := st.Appender("p")
	a := labels.FromStrings("__name__", "x")
	for i := range 400 { // present on even cycles only: a stale marker every other sample
		if i%2 == 0 {
			app.Add(a, float64(i))
		}
		app.Commit(t0.Add(time.Duration(i) * time.Second))
	}
	got := selectAll(t, st, "x", t0.UnixMilli(), t0.Add(400*time.Second).UnixMilli())
	stale := 0
	for _, s := range got {
		if value.IsStaleNaN(s.v) {
			stale++
		}
	}
	// 10 min retention: all 400 samples are kept, half of them stale markers.
	if len(got) != 400 || stale != 200 {
		t.Fatalf("%d samples, %d stale; want 400 and 200", len(got), stale)
	}
	for _, at := range []int{101, 251, 399} { // odd seconds: right after a stale marker
		if v := query(t, st, `x`, t0.Add(time.Duration(at)*time.Second)); len(v) != 0 {
			t.Fatalf("at %ds: %v, want nothing (stale)", at, v)
		}
	}
	if v := query(t, st, `x`, t0.Add(398*time.Second)); v[`{__name__="x", probe="p"}`] != 398 {
		t.Fatalf("at 398s: %v", v)
	}
}

// A new counter series gets a 0 at the previous commit, where the series
// that vanished there has a stale marker: the 0 replaces the marker, also
// after the marker's chunk has been written.
func TestZeroReplacesStaleMarkerAtTheSameTimestamp(t *testing.T) {
	st := store.New(store.Options{})
	app := st.Appender("p")
	c := labels.FromStrings("__name__", "c")
	add := func(v float64) { app.AddCounterRaw([]byte("c"), func() labels.Labels { return c }, v) }
	for i := range 300 {
		add(float64(i))
		app.Commit(t0.Add(time.Duration(i) * time.Second))
	}
	app.Commit(t0.Add(300 * time.Second)) // c vanishes: stale at 300
	add(1)                                // and comes back: 0 at 300, 1 at 301
	app.Commit(t0.Add(301 * time.Second))
	got := selectAll(t, st, "c", t0.Add(299*time.Second).UnixMilli(), t0.Add(301*time.Second).UnixMilli())
	want := []refSample{{t0.Add(299 * time.Second).UnixMilli(), 299}, {t0.Add(300 * time.Second).UnixMilli(), 0}, {t0.Add(301 * time.Second).UnixMilli(), 1}}
	if !sameSamples(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// Retention is exact for queries although whole chunks are dropped: a
// range longer than the retention sees only the retained samples, and
// so does one after GC re-encoded the oldest chunk.
func TestRetentionIsExactForQueries(t *testing.T) {
	st := store.New(store.Options{Retention: time.Minute})
	app := st.Appender("p")
	l := labels.FromStrings("__name__", "x")
	for i := range 1000 {
		app.Add(l, float64(i))
		app.Commit(t0.Add(time.Duration(i) * time.Second))
	}
	end := t0.Add(999 * time.Second)
	count := func() float64 {
		return query(t, st, `count_over_time(x[1h])`, end)[`{probe="p"}`]
	}
	if n := count(); n != 61 { // 939 s ... 999 s
		t.Fatalf("count_over_time over 1h = %v, want 61 (1 min retained)", n)
	}
	if got := query(t, st, `min_over_time(x[1h])`, end)[`{probe="p"}`]; got != 939 {
		t.Fatalf("oldest retained value %v, want 939", got)
	}
	st.GC(end.Add(10 * time.Second))
	if n := count(); n != 51 {
		t.Fatalf("after GC 10 s later: count_over_time = %v, want 51", n)
	}
	if s := st.Stats(); s.Samples != 51 {
		t.Fatalf("stats %+v, want 51 samples", s)
	}
}

// Queries run while probes append: reads never see a half-written
// chunk (go test -race).
func TestQueriesWhileAppending(t *testing.T) {
	st := store.New(store.Options{Retention: time.Minute})
	app := st.Appender("p")
	l := labels.FromStrings("__name__", "x")
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 3000 {
			app.Add(l, float64(i))
			app.Commit(t0.Add(time.Duration(i) * time.Second))
		}
		close(done)
	}()
	for {
		select {
		case <-done:
			wg.Wait()
			got := selectAll(t, st, "x", t0.UnixMilli(), t0.Add(3000*time.Second).UnixMilli())
			if len(got) != 61 || got[60].v != 2999 {
				t.Fatalf("%d samples, last %v", len(got), got[len(got)-1])
			}
			return
		default:
		}
		got := selectAll(t, st, "x", t0.UnixMilli(), t0.Add(3000*time.Second).UnixMilli())
		for i := 1; i < len(got); i++ {
			if got[i].t != got[i-1].t+1000 || got[i].v != got[i-1].v+1 {
				t.Fatalf("torn read at %d: %v then %v", i, got[i-1], got[i])
			}
		}
	}
}
