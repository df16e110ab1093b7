package replay

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"

	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// ahead answers the rules' instant queries of one chunk from range
// queries evaluated before the chunk's ticks: one PromQL evaluation per
// rule and chunk instead of one per rule and tick. A range query's value
// at a step is by definition the instant query's value at that time, so
// the alert state machine sees exactly what per-tick evaluation would
// give it. Recording rules are evaluated in group order and their results
// written to the store (with staleness markers) before the rules after
// them are evaluated. Groups with their own interval or a query_offset,
// and any query that fails as a range query, are evaluated per tick.
type ahead struct {
	at      map[string]map[int64]promql.Vector
	present map[string]map[uint64]labels.Labels // per record: series present at the last step
}

func newAhead() *ahead {
	return &ahead{present: map[string]map[uint64]labels.Labels{}}
}

func (a *ahead) compute(ctx context.Context, eng *rules.Engine, st *store.Store, groups []*rules.Group, start, end time.Time, step time.Duration) {
	a.at = map[string]map[int64]promql.Vector{}
	stale := math.Float64frombits(value.StaleNaN)
	for _, g := range groups {
		if (g.Interval != 0 && g.Interval != step) || g.QueryOffset != 0 {
			continue
		}
		for _, gr := range g.Rules {
			expr := ""
			if gr.Alert != nil {
				expr = gr.Alert.Expr
			} else {
				expr = gr.Record.Expr
			}
			if _, done := a.at[expr]; done && gr.Record == nil {
				continue
			}
			m, err := eng.QueryRange(ctx, expr, start, end, step)
			if err != nil {
				continue // evaluated per tick, where the error is reported as live
			}
			byT := map[int64]promql.Vector{}
			for _, s := range m {
				for _, p := range s.Floats {
					byT[p.T] = append(byT[p.T], promql.Sample{Metric: s.Metric, T: p.T, F: p.F})
				}
			}
			if gr.Record != nil {
				if !a.record(gr.Record, byT, st, start, end, step, stale) {
					continue // duplicate series: leave it to per-tick evaluation and its error
				}
			}
			a.at[expr] = byT
		}
	}
}

// record writes a recording rule's chunk into the store as per-tick
// evaluation would: the value at every step, a staleness marker at the
// first step a series is missing.
func (a *ahead) record(r *rules.RecordingRule, byT map[int64]promql.Vector, st *store.Store, start, end time.Time, step time.Duration, stale float64) bool {
	prev := a.present[r.Record]
	for t := start; !t.After(end); t = t.Add(step) {
		cur := map[uint64]labels.Labels{}
		for _, s := range byT[t.UnixMilli()] {
			b := labels.NewBuilder(s.Metric)
			b.Set(labels.MetricName, r.Record)
			for k, v := range r.Labels {
				b.Set(k, v)
			}
			l := b.Labels()
			if _, dup := cur[l.Hash()]; dup {
				return false
			}
			cur[l.Hash()] = l
			st.Append(l, t, s.F)
		}
		for h, l := range prev {
			if _, ok := cur[h]; !ok {
				st.Append(l, t, stale)
			}
		}
		prev = cur
	}
	a.present[r.Record] = prev
	return true
}

func (a *ahead) query(fallback rules.QueryFunc) rules.QueryFunc {
	return func(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
		if m, ok := a.at[q]; ok {
			return m[t.UnixMilli()], nil
		}
		return fallback(ctx, q, t)
	}
}
