package rules

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
)

// RuleSpec is one rule as configured: an alerting rule (Alert set) or a
// recording rule (Record set).
type RuleSpec struct {
	Alert, Record string
	Expr          string
	For           time.Duration
	KeepFiringFor time.Duration
	Labels        map[string]string
	Annotations   map[string]string
	// Where is "file:line" (empty for rules in medic's config).
	Where string
}

// GroupSpec is one rule group as configured.
type GroupSpec struct {
	Name string
	File string
	// Interval is how often the group is evaluated; 0: every evaluation.
	Interval time.Duration
	// QueryOffset evaluates the group's queries this far in the past.
	QueryOffset time.Duration
	// Labels are added to every rule of the group (rule labels win).
	Labels map[string]string
	Rules  []RuleSpec
}

// Appender receives recording rules' samples (the store).
type Appender interface {
	Append(lset labels.Labels, t time.Time, v float64) bool
}

// RecordingRule evaluates an expression and stores its result as a new
// series named Record, as Prometheus's recording rules do.
type RecordingRule struct {
	Record string
	Expr   string
	Labels map[string]string

	prev      map[uint64]labels.Labels // series written at the last evaluation
	LastError error
	LastEval  time.Time
	// LastEvalDuration is how long the last evaluation took.
	LastEvalDuration time.Duration
}

// Eval runs the rule at ts and appends its result at ts. Series written
// last time and absent now get a staleness marker.
func (r *RecordingRule) Eval(ctx context.Context, ts time.Time, query QueryFunc, app Appender) (int, error) {
	r.LastEval = ts
	vec, err := query(ctx, r.Expr, ts)
	if err != nil {
		r.LastError = err
		return 0, err
	}
	cur := make(map[uint64]labels.Labels, len(vec))
	for _, s := range vec {
		b := labels.NewBuilder(s.Metric)
		b.Set(labels.MetricName, r.Record)
		for k, v := range r.Labels {
			b.Set(k, v)
		}
		lset := b.Labels()
		h := lset.Hash()
		if _, dup := cur[h]; dup {
			r.LastError = fmt.Errorf("vector contains metrics with the same labelset after applying rule labels")
			return 0, r.LastError
		}
		cur[h] = lset
		if s.H != nil {
			continue // medic's store holds floats only
		}
		app.Append(lset, ts, s.F)
	}
	stale := math.Float64frombits(value.StaleNaN)
	for h, lset := range r.prev {
		if _, ok := cur[h]; !ok {
			app.Append(lset, ts, stale)
		}
	}
	r.prev = cur
	r.LastError = nil
	return len(vec), nil
}

// Group is rules evaluated in order at the group's interval: a recording
// rule's result is visible to the rules after it at the same evaluation.
type Group struct {
	Name        string
	File        string
	Interval    time.Duration
	QueryOffset time.Duration
	// Rules hold exactly one of Alert or Record each, in file order.
	Rules []GroupRule

	lastEval time.Time
}

// GroupRule is one rule of a group.
type GroupRule struct {
	Alert  *Rule
	Record *RecordingRule
	Where  string
}

// Name is the alert or record name.
func (g GroupRule) Name() string {
	if g.Alert != nil {
		return g.Alert.Name
	}
	return g.Record.Record
}

// NewGroups compiles group specs.
func NewGroups(specs []GroupSpec) ([]*Group, error) {
	var out []*Group
	for _, gs := range specs {
		g := &Group{Name: gs.Name, File: gs.File, Interval: gs.Interval, QueryOffset: gs.QueryOffset}
		for _, rs := range gs.Rules {
			lbls := make(map[string]string, len(gs.Labels)+len(rs.Labels))
			for k, v := range gs.Labels {
				lbls[k] = v
			}
			for k, v := range rs.Labels {
				lbls[k] = v
			}
			gr := GroupRule{Where: rs.Where}
			if rs.Record != "" {
				gr.Record = &RecordingRule{Record: rs.Record, Expr: rs.Expr, Labels: lbls}
			} else {
				r, err := NewRule(rs.Alert, rs.Expr, rs.For, rs.KeepFiringFor, lbls, rs.Annotations)
				if err != nil {
					where := rs.Where
					if where == "" {
						where = "rule " + rs.Alert
					}
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				gr.Alert = r
			}
			g.Rules = append(g.Rules, gr)
		}
		out = append(out, g)
	}
	return out, nil
}

// due reports whether the group evaluates at ts.
func (g *Group) due(ts time.Time) bool {
	return g.lastEval.IsZero() || g.Interval <= 0 || ts.Sub(g.lastEval) >= g.Interval
}

// offsetQuery evaluates queries QueryOffset in the past.
func (g *Group) offsetQuery(q QueryFunc) QueryFunc {
	if g.QueryOffset <= 0 {
		return q
	}
	return func(ctx context.Context, s string, t time.Time) (promql.Vector, error) {
		return q(ctx, s, t.Add(-g.QueryOffset))
	}
}
