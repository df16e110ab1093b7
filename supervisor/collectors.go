package supervisor

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/version"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// storeCollector exports the store's own counters.
type storeCollector struct {
	st                                        *store.Store
	series, maxSeries, dropped, droppedSeries *prometheus.Desc
}

func newStoreCollector(st *store.Store) *storeCollector {
	return &storeCollector{
		st:            st,
		series:        prometheus.NewDesc("medic_store_series", "Series held in the in-memory store.", nil, nil),
		maxSeries:     prometheus.NewDesc("medic_store_max_series", "Hard cap on series in the store.", nil, nil),
		dropped:       prometheus.NewDesc("medic_store_dropped_samples_total", "Samples refused because the series cap was reached.", nil, nil),
		droppedSeries: prometheus.NewDesc("medic_store_dropped_series_total", "New series refused because the series cap was reached.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.series
	ch <- c.maxSeries
	ch <- c.dropped
	ch <- c.droppedSeries
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.st.Stats()
	ch <- prometheus.MustNewConstMetric(c.series, prometheus.GaugeValue, float64(s.Series))
	ch <- prometheus.MustNewConstMetric(c.maxSeries, prometheus.GaugeValue, float64(s.MaxSeries))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.DroppedSamples))
	ch <- prometheus.MustNewConstMetric(c.droppedSeries, prometheus.CounterValue, float64(s.DroppedSeries))
}

// probeSeriesCollector exports the latest value of every medic_* series
// that probes append. It is unchecked (describes nothing) because the set
// of series is only known at collection time.
type probeSeriesCollector struct{ st *store.Store }

func (probeSeriesCollector) Describe(chan<- *prometheus.Desc) {}

func (c probeSeriesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.st.Latest(func(n string) bool { return strings.HasPrefix(n, "medic_") }) {
		var names, values []string
		name := ""
		p.Labels.Range(func(l labels.Label) {
			if l.Name == labels.MetricName {
				name = l.Value
				return
			}
			names = append(names, l.Name)
			values = append(values, l.Value)
		})
		vt := prometheus.GaugeValue
		if strings.HasSuffix(name, "_total") {
			vt = prometheus.CounterValue
		}
		d := prometheus.NewDesc(name, "Observed by a probe (see docs/probes.md).", names, nil)
		m, err := prometheus.NewConstMetric(d, vt, p.V, values...)
		if err != nil {
			continue
		}
		ch <- m
	}
}

func newBuildInfo() prometheus.Collector {
	v := version.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "medic_build_info", Help: "A metric with a constant 1 labelled by medic's version, revision and Go version.",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion},
	})
	g.Set(1)
	return g
}
