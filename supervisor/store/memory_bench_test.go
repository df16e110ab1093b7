package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// benchPage is a page of 10,000 series scraped every 2 s, shaped like the pages medic scrapes:
// half gauges that rarely change (build info, limits, states), 40% counters
// that grow by small irregular steps, 10% gauges that move every scrape
// (durations, memory).
type benchPage struct {
	keys  [][]byte
	lsets []labels.Labels
	vals  []float64
	rng   *rand.Rand
	app   interface {
		AddRaw(key []byte, mk func() labels.Labels, v float64)
		Commit(time.Time) (int, error)
	}
	cycle int
}

const (
	benchSeries   = 10_000
	benchInterval = 2 * time.Second
)

func newBenchPage() *benchPage {
	p := &benchPage{rng: rand.New(rand.NewPCG(1, 2))}
	for i := range benchSeries {
		var l labels.Labels
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			l = labels.FromStrings("__name__", "bench_gauge", "i", fmt.Sprint(i))
		case 9:
			l = labels.FromStrings("__name__", "bench_busy", "i", fmt.Sprint(i))
		default:
			l = labels.FromStrings("__name__", "bench_counter_total", "i", fmt.Sprint(i))
		}
		p.lsets = append(p.lsets, l)
		p.keys = append(p.keys, []byte(l.String()))
		p.vals = append(p.vals, float64(i%7))
	}
	return p
}

// scrape adds the page to st n times and returns the last commit time.
// With jitter, commit times are up to 2 ms late, as probe.Ticker's are
// when it cannot stamp the scheduled time (a loaded machine); without,
// they are the scheduled times.
func (p *benchPage) scrape(st *store.Store, n int, jitter bool) time.Time {
	if p.app == nil {
		p.app = st.Appender("p")
	}
	var now time.Time
	for range n {
		for i := range p.keys {
			switch i % 10 {
			case 0, 1, 2, 3, 4:
				if p.rng.IntN(200) == 0 {
					p.vals[i]++
				}
			case 9:
				p.vals[i] = float64(p.rng.IntN(1_000_000)) / 1e6
			default:
				p.vals[i] += float64(p.rng.IntN(4))
			}
			p.app.AddRaw(p.keys[i], func() labels.Labels { return p.lsets[i] }, p.vals[i])
		}
		now = t0.Add(time.Duration(p.cycle) * benchInterval)
		if jitter {
			now = now.Add(time.Duration(p.rng.IntN(2000)) * time.Microsecond)
		}
		p.app.Commit(now)
		p.cycle++
		if p.cycle%30 == 0 { // every minute, as the supervisor does
			st.GC(now)
		}
	}
	return now
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// fillMeasured fills a new store to its retention (10 min, 300 scrapes)
// and on for another half retention, and reports the heap it holds per
// sample (series, labels and samples: everything the store keeps alive),
// averaged over four points of that second half: the store drops old
// samples in steps, so what it holds varies with the phase.
func fillMeasured(b *testing.B, jitter bool) (*store.Store, time.Time) {
	b.Helper()
	p := newBenchPage()
	before := heapInUse()
	st := store.New(store.Options{MaxSeries: 2 * benchSeries})
	retention := int(st.Retention() / benchInterval)
	end := p.scrape(st, retention, jitter)
	var bytes, samples float64
	for range 4 {
		end = p.scrape(st, retention/8, jitter)
		bytes += float64(heapInUse() - before)
		samples += float64(st.Stats().Samples)
	}
	b.ReportMetric(bytes/samples, "B/sample")
	b.ReportMetric(samples/4, "samples")
	runtime.KeepAlive(p)
	return st, end
}

// BenchmarkStoreMemory reports the heap the store holds per sample once
// the retention is full: with commits at their scheduled times and with
// commits up to 2 ms late.
func BenchmarkStoreMemory(b *testing.B) {
	for _, jitter := range []bool{false, true} {
		b.Run(map[bool]string{false: "scheduled", true: "late"}[jitter], func(b *testing.B) {
			for b.Loop() {
				fillMeasured(b, jitter)
			}
		})
	}
}

// BenchmarkStoreQuery reports the cost of the queries rules run against a
// full store: a rate over every counter (4,000 series, 5 min of samples
// each), an instant selector over every gauge, and a range query.
func BenchmarkStoreQuery(b *testing.B) {
	st, end := fillMeasured(b, true)
	eng := rules.NewEngine(st, 5*time.Minute, slog.New(slog.DiscardHandler))
	for _, q := range []string{
		`sum(rate(bench_counter_total[5m]))`,
		`count(bench_gauge > 3)`,
		`max_over_time(bench_busy[10m])`,
	} {
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := eng.Query(context.Background(), q, end); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
