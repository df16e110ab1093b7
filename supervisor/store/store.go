// Package store is medic's bounded in-memory time-series store. Probes
// append through per-probe Appenders; the PromQL engine reads it as a
// storage.Queryable. Memory is bounded twice: samples older than the
// retention are trimmed, and the number of series has a hard cap beyond
// which new series are dropped and counted.
//
// medic's own series (metric names beginning with medic_, appended by a
// probe itself rather than read from a page) never compete with the
// series a probe relays from a page: they have their own reserve of
// ReservedSeries on top of MaxSeries, so a page with more series than the
// cap cannot hide medic_probe_up and the rest from the rules.
package store

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// Options configures a Store.
type Options struct {
	// MaxSeries is the hard cap on series held at once, medic's own aside.
	MaxSeries int
	// ReservedSeries caps medic's own series (default DefaultReservedSeries),
	// held in addition to MaxSeries.
	ReservedSeries int
	// Retention is how long samples are kept.
	Retention time.Duration
	// Logger receives one line each time a probe starts or stops being
	// limited by the series cap.
	Logger *slog.Logger
}

// DefaultReservedSeries is the default reserve for medic's own series.
const DefaultReservedSeries = 10_000

// OwnPrefix starts the name of every series medic itself produces.
const OwnPrefix = "medic_"

// Store holds series in memory. It is safe for concurrent use.
type Store struct {
	mu        sync.RWMutex
	series    map[uint64][]*memSeries // by labels hash
	byName    map[string]map[*memSeries]struct{}
	count     int // all series
	own       int // of which medic's own
	maxSeries int
	reserved  int
	retention int64 // ms
	chunkSpan int64 // ms: a chunk is cut once it spans this long
	log       *slog.Logger

	dropped    uint64 // samples for series refused by the cap
	droppedSer uint64 // distinct refusals (cache misses)
	created    uint64
	removed    uint64
}

// New returns an empty store.
func New(o Options) *Store {
	if o.MaxSeries <= 0 {
		o.MaxSeries = 100_000
	}
	if o.ReservedSeries <= 0 {
		o.ReservedSeries = DefaultReservedSeries
	}
	if o.Retention <= 0 {
		o.Retention = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		series:    map[uint64][]*memSeries{},
		byName:    map[string]map[*memSeries]struct{}{},
		maxSeries: o.MaxSeries,
		reserved:  o.ReservedSeries,
		retention: o.Retention.Milliseconds(),
		chunkSpan: max(o.Retention.Milliseconds()/2, 1),
		log:       o.Logger,
	}
}

// Retention returns the configured retention.
func (st *Store) Retention() time.Duration { return time.Duration(st.retention) * time.Millisecond }

// Stats is a snapshot of the store's counters.
type Stats struct {
	Series         int    `json:"series"`
	OwnSeries      int    `json:"ownSeries"` // medic's own, part of Series
	MaxSeries      int    `json:"maxSeries"`
	ReservedSeries int    `json:"reservedSeries"`
	Samples        int    `json:"samples"`
	DroppedSamples uint64 `json:"droppedSamples"`
	DroppedSeries  uint64 `json:"droppedSeries"`
	CreatedSeries  uint64 `json:"createdSeries"`
	RemovedSeries  uint64 `json:"removedSeries"`
}

// Stats returns current counts.
func (st *Store) Stats() Stats {
	st.mu.RLock()
	defer st.mu.RUnlock()
	n := 0
	for _, l := range st.series {
		for _, s := range l {
			n += s.numSamples()
		}
	}
	return Stats{Series: st.count, OwnSeries: st.own, MaxSeries: st.maxSeries, ReservedSeries: st.reserved, Samples: n, DroppedSamples: st.dropped,
		DroppedSeries: st.droppedSer, CreatedSeries: st.created, RemovedSeries: st.removed}
}

// getOrCreate finds the series for lset or creates it; nil when the cap
// refuses it. A new series is medic's own (reserved) when mayOwn and its
// name has OwnPrefix. Caller holds st.mu for writing.
func (st *Store) getOrCreate(lset labels.Labels, mayOwn bool) *memSeries {
	h := lset.Hash()
	for _, s := range st.series[h] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	name := lset.Get(labels.MetricName)
	own := mayOwn && strings.HasPrefix(name, OwnPrefix)
	if own && st.own >= st.reserved || !own && !st.roomLocked() {
		st.droppedSer++
		return nil
	}
	s := newMemSeries(lset, name, own)
	if own {
		st.own++
	}
	st.series[h] = append(st.series[h], s)
	m := st.byName[s.name]
	if m == nil {
		m = map[*memSeries]struct{}{}
		st.byName[s.name] = m
	}
	m[s] = struct{}{}
	st.count++
	st.created++
	return s
}

// roomLocked reports whether a series that is not medic's own fits under
// MaxSeries. Caller holds st.mu.
func (st *Store) roomLocked() bool { return st.count-st.own < st.maxSeries }

// appendLocked appends (t, v) to s (an older sample is ignored, one at
// the same timestamp replaces the newest) and trims samples past
// retention. Caller holds st.mu for writing.
func (st *Store) appendLocked(s *memSeries, t int64, v float64) {
	if s.append(t, v, st.chunkSpan) {
		s.trim(t - st.retention)
	}
}

// Append adds one sample outside any probe batch (tests, medic's own series).
func (st *Store) Append(lset labels.Labels, t time.Time, v float64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.getOrCreate(lset, true)
	if s == nil {
		st.dropped++
		return false
	}
	st.appendLocked(s, t.UnixMilli(), v)
	return true
}

// GC trims every series to the retention window ending at now and removes
// series with no sample left. It returns the number of series removed.
func (st *Store) GC(now time.Time) int {
	mint := now.UnixMilli() - st.retention
	st.mu.Lock()
	defer st.mu.Unlock()
	removed, own := 0, 0
	for h, l := range st.series {
		keep := l[:0]
		for _, s := range l {
			s.trim(mint)
			s.dropExpired()
			if s.lastT() < mint {
				s.removed.Store(true)
				delete(st.byName[s.name], s)
				if len(st.byName[s.name]) == 0 {
					delete(st.byName, s.name)
				}
				removed++
				if s.own {
					own++
				}
				continue
			}
			keep = append(keep, s)
		}
		if len(keep) == 0 {
			delete(st.series, h)
		} else {
			st.series[h] = keep
		}
	}
	st.count -= removed
	st.own -= own
	st.removed += uint64(removed)
	return removed
}

// Point is one series' latest value.
type Point struct {
	Labels labels.Labels
	T      time.Time
	V      float64
}

// Latest returns the newest non-stale sample of every series whose metric
// name satisfies match, sorted by labels.
func (st *Store) Latest(match func(name string) bool) []Point {
	st.mu.RLock()
	defer st.mu.RUnlock()
	var out []Point
	for name, m := range st.byName {
		if !match(name) {
			continue
		}
		for s := range m {
			if !s.hasLast {
				continue
			}
			last := s.last
			if value.IsStaleNaN(last.v) {
				continue
			}
			out = append(out, Point{Labels: s.lset, T: time.UnixMilli(last.t), V: last.v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels, out[j].Labels) < 0 })
	return out
}

// Querier implements storage.Queryable.
func (st *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{st: st, mint: mint, maxt: maxt}, nil
}

var _ storage.Queryable = (*Store)(nil)

type querier struct {
	st         *Store
	mint, maxt int64
}

func (q *querier) candidates(ms []*labels.Matcher) []*memSeries {
	var out []*memSeries
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			for s := range q.st.byName[m.Value] {
				out = append(out, s)
			}
			return out
		}
	}
	for _, l := range q.st.series {
		out = append(out, l...)
	}
	return out
}

func matches(lset labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

// Select returns the matching series' samples within the querier's range:
// sealed chunks are shared, the open chunk is copied.
func (q *querier) Select(_ context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	q.st.mu.RLock()
	var out []storage.Series
	for _, s := range q.candidates(ms) {
		if !matches(s.lset, ms) {
			continue
		}
		if d, ok := s.snapshot(mint, maxt); ok {
			out = append(out, &series{lset: s.lset, d: d})
		}
	}
	q.st.mu.RUnlock()
	if sortSeries {
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	}
	return &seriesSet{list: out, i: -1}
}

func (q *querier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q.st.mu.RLock()
	defer q.st.mu.RUnlock()
	set := map[string]struct{}{}
	for _, s := range q.candidates(ms) {
		if matches(s.lset, ms) {
			if v := s.lset.Get(name); v != "" {
				set[v] = struct{}{}
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), nil, nil
}

func (q *querier) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	q.st.mu.RLock()
	defer q.st.mu.RUnlock()
	set := map[string]struct{}{}
	for _, s := range q.candidates(ms) {
		if matches(s.lset, ms) {
			s.lset.Range(func(l labels.Label) { set[l.Name] = struct{}{} })
		}
	}
	return slices.Sorted(maps.Keys(set)), nil, nil
}

func (q *querier) Close() error { return nil }

type seriesSet struct {
	list []storage.Series
	i    int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.list) }
func (s *seriesSet) At() storage.Series                { return s.list[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

type series struct {
	lset labels.Labels
	d    *seriesData
}

func (s *series) Labels() labels.Labels { return s.lset }

func (s *series) Iterator(chunkenc.Iterator) chunkenc.Iterator { return s.d.newIterator() }
