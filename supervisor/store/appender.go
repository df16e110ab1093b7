package store

import (
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/medic-sidecar/medic/supervisor/probe"
)

var staleNaN = math.Float64frombits(value.StaleNaN)

// ProbeLabel is the label every probe sample carries.
const ProbeLabel = "probe"

// Appender returns the batch appender for one probe. It is used by one
// goroutine at a time (the probe's own loop).
func (st *Store) Appender(probeName string) probe.Appender {
	return &appender{st: st, probe: probeName, cache: map[string]*cacheEntry{}}
}

type cacheEntry struct {
	s   *memSeries // nil: refused by the series cap
	gen uint64
}

type pending struct {
	s *memSeries
	v float64
}

type appender struct {
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
}

// withProbe adds probe="<name>"; a scraped probe label is kept as exported_probe.
func (a *appender) withProbe(lset labels.Labels) labels.Labels {
	b := labels.NewBuilder(lset)
	if v := lset.Get(ProbeLabel); v != "" {
		b.Set("exported_"+ProbeLabel, v)
	}
	b.Set(ProbeLabel, a.probe)
	return b.Labels()
}

func (a *appender) Add(lset labels.Labels, v float64) {
	a.keybuf = append(a.keybuf[:0], lset.String()...)
	a.AddRaw(a.keybuf, func() labels.Labels { return lset }, v)
}

func (a *appender) AddRaw(key []byte, mk func() labels.Labels, v float64) {
	e, ok := a.cache[string(key)]
	if ok && e.s != nil && e.s.removed.Load() {
		ok = false // collected by GC while the probe was silent
	}
	if !ok {
		lset := a.withProbe(mk())
		a.st.mu.Lock()
		s := a.st.getOrCreate(lset)
		a.st.mu.Unlock()
		e = &cacheEntry{s: s}
		a.cache[string(key)] = e
	}
	e.gen = a.gen + 1
	if e.s == nil {
		a.refused++
		return
	}
	a.batch = append(a.batch, pending{e.s, v})
}

// AddCounterRaw is AddRaw for counters: a series new to this probe after
// its first commit also gets a 0 at the previous commit (see probe.CounterAppender).
func (a *appender) AddCounterRaw(key []byte, mk func() labels.Labels, v float64) {
	e, known := a.cache[string(key)]
	known = known && !(e.s != nil && e.s.removed.Load())
	a.AddRaw(key, mk, v)
	if known || a.lastCommit == 0 {
		return
	}
	if e := a.cache[string(key)]; e.s != nil {
		a.zeros = append(a.zeros, e.s)
	}
}

func (a *appender) Commit(now time.Time) (int, error) {
	t := now.UnixMilli()
	a.gen++
	a.st.mu.Lock()
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
			continue
		}
		if e.s != nil {
			a.st.appendLocked(e.s, t, staleNaN)
		}
		delete(a.cache, k)
	}
	a.st.mu.Unlock()
	n := len(a.batch)
	a.batch = a.batch[:0]
	a.refused = 0
	return n, nil
}
