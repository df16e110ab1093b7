package store

import (
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

var staleNaN = math.Float64frombits(value.StaleNaN)

// ProbeLabel is the label every probe sample carries.
const ProbeLabel = "probe"

// Series every appender that has relayed page series adds at each commit
// (with probe="<name>"), so a probe limited by the series cap is visible
// to rules, on /metrics and on /status.
const (
	// MetricSeriesDropped is how many of the probe's page series the
	// series cap refused in its last batch (0 when none).
	MetricSeriesDropped = "medic_probe_series_dropped"
	// MetricSamplesDropped counts the probe's page samples refused by the
	// series cap since medic started.
	MetricSamplesDropped = "medic_probe_samples_dropped_total"
)

var (
	seriesDroppedLabels  = labels.FromStrings(labels.MetricName, MetricSeriesDropped)
	samplesDroppedLabels = labels.FromStrings(labels.MetricName, MetricSamplesDropped)
	seriesDroppedKey     = []byte("\xff" + seriesDroppedLabels.String())
	samplesDroppedKey    = []byte("\xff" + samplesDroppedLabels.String())
)

// Appender returns the batch appender for one probe. It is used by one
// goroutine at a time (the probe's own loop).
func (st *Store) Appender(probeName string) *Appender {
	return &Appender{st: st, probe: probeName, cache: map[string]*cacheEntry{},
		log: st.log.With(ProbeLabel, probeName)}
}

type cacheEntry struct {
	s   *memSeries // nil: refused by the series cap
	gen uint64
}

type pending struct {
	s *memSeries
	v float64
}

// Appender adds one probe's samples to the store in batches: the samples
// added since the last Commit are stored at the commit's time, and a series
// the probe had before but not in the batch gets a stale marker. It has
// the methods of probe.Appender, probe.CounterAppender and the scrape
// probe's page appender.
type Appender struct {
	st    *Store
	probe string
	cache map[string]*cacheEntry
	gen   uint64
	batch []pending
	// refused counts samples refused by the cap in the open batch.
	refused int
	keybuf  []byte
	// zeros are new counter series to start at 0 at lastCommit.
	zeros      []*memSeries
	lastCommit int64 // ms; 0 before the first commit

	log *slog.Logger
	// pages is set once the probe has relayed a page series: from then on
	// each commit reports the refusals below.
	pages bool
	// pageRefused counts page samples refused in the open batch;
	// droppedTotal all of them so far; limited is the last batch's state.
	pageRefused  int
	droppedTotal float64
	limited      bool
}

// withProbe adds probe="<name>"; a scraped probe label is kept as exported_probe.
func (a *Appender) withProbe(lset labels.Labels) labels.Labels {
	b := labels.NewBuilder(lset)
	if v := lset.Get(ProbeLabel); v != "" {
		b.Set("exported_"+ProbeLabel, v)
	}
	b.Set(ProbeLabel, a.probe)
	return b.Labels()
}

func (a *Appender) Add(lset labels.Labels, v float64) {
	a.keybuf = append(a.keybuf[:0], lset.String()...)
	a.AddRaw(a.keybuf, func() labels.Labels { return lset }, v)
}

// AddRaw appends one of the probe's own samples: a medic_* series is held
// in the reserve for medic's own series.
func (a *Appender) AddRaw(key []byte, mk func() labels.Labels, v float64) {
	a.add(key, mk, v, false)
}

// AddPageRaw appends a sample the probe read from a page (scrape): it
// counts against MaxSeries whatever its name, and a refusal is reported
// per probe. counter marks a sample of a counter family (see
// AddCounterRaw).
func (a *Appender) AddPageRaw(key []byte, mk func() labels.Labels, v float64, counter bool) {
	a.pages = true
	if counter {
		a.addCounter(key, mk, v, true)
		return
	}
	a.add(key, mk, v, true)
}

func (a *Appender) add(key []byte, mk func() labels.Labels, v float64, page bool) {
	e, ok := a.cache[string(key)]
	if ok && e.s != nil && e.s.removed.Load() {
		ok = false // collected by GC while the probe was silent
	}
	if !ok {
		lset := a.withProbe(mk())
		a.st.mu.Lock()
		s := a.st.getOrCreate(lset, !page)
		a.st.mu.Unlock()
		e = &cacheEntry{s: s}
		a.cache[string(key)] = e
	}
	e.gen = a.gen + 1
	if e.s == nil {
		a.refused++
		if page {
			a.pageRefused++
		}
		return
	}
	a.batch = append(a.batch, pending{e.s, v})
}

// AddCounterRaw is AddRaw for counters: a series new to this probe after
// its first commit also gets a 0 at the previous commit (see probe.CounterAppender).
func (a *Appender) AddCounterRaw(key []byte, mk func() labels.Labels, v float64) {
	a.addCounter(key, mk, v, false)
}

func (a *Appender) addCounter(key []byte, mk func() labels.Labels, v float64, page bool) {
	e, known := a.cache[string(key)]
	known = known && !(e.s != nil && e.s.removed.Load())
	a.add(key, mk, v, page)
	if known || a.lastCommit == 0 {
		return
	}
	if e := a.cache[string(key)]; e.s != nil {
		a.zeros = append(a.zeros, e.s)
	}
}

// reportLimit appends the probe's series-cap samples to the open batch and
// logs when the probe becomes limited or stops being limited. It returns
// how many samples it added to the batch.
func (a *Appender) reportLimit() int {
	if !a.pages {
		return 0
	}
	before := len(a.batch)
	n := a.pageRefused
	a.droppedTotal += float64(n)
	a.add(seriesDroppedKey, func() labels.Labels { return seriesDroppedLabels }, float64(n), false)
	a.add(samplesDroppedKey, func() labels.Labels { return samplesDroppedLabels }, a.droppedTotal, false)
	switch limited := n > 0; {
	case limited && !a.limited:
		a.log.Warn("series cap reached: page series beyond store.maxSeries are dropped (medic's own series are kept)",
			"droppedSeries", n, "maxSeries", a.st.maxSeries)
	case !limited && a.limited:
		a.log.Info("series cap no longer limits this probe", "droppedSamplesTotal", a.droppedTotal)
	}
	a.limited = n > 0
	return len(a.batch) - before
}

func (a *Appender) Commit(now time.Time) (int, error) {
	own := a.reportLimit()
	t := now.UnixMilli()
	a.gen++
	a.st.mu.Lock()
	// Refused series are asked again once there is room.
	retry := a.refused > 0 && a.st.roomLocked()
	for _, s := range a.zeros {
		if a.lastCommit < t {
			a.st.appendLocked(s, a.lastCommit, 0)
		}
	}
	a.zeros = a.zeros[:0]
	a.lastCommit = t
	a.st.dropped += uint64(a.refused)
	for _, p := range a.batch {
		a.st.appendLocked(p.s, t, p.v)
	}
	// Series seen before but not in this batch have vanished: mark them
	// stale and forget them, so a reappearance is looked up afresh.
	for k, e := range a.cache {
		if e.gen == a.gen {
			if e.s == nil && retry {
				delete(a.cache, k)
			}
			continue
		}
		if e.s != nil {
			a.st.appendLocked(e.s, t, staleNaN)
		}
		delete(a.cache, k)
	}
	a.st.mu.Unlock()
	n := len(a.batch) - own // the probe's samples only
	a.batch = a.batch[:0]
	a.refused, a.pageRefused = 0, 0
	return n, nil
}
