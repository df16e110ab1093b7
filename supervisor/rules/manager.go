package rules

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// DefaultLookback is how far back an instant selector looks for a sample,
// as in Prometheus.
const DefaultLookback = 5 * time.Minute

// Engine evaluates PromQL against a Queryable. One engine serves rules,
// preconditions and the status view.
type Engine struct {
	eng *promql.Engine
	q   storage.Queryable
}

// NewEngine returns a PromQL engine over q.
func NewEngine(q storage.Queryable, lookback time.Duration, logger *slog.Logger) *Engine {
	if lookback <= 0 {
		lookback = DefaultLookback
	}
	return &Engine{
		q: q,
		eng: promql.NewEngine(promql.EngineOpts{
			Logger:               logger,
			MaxSamples:           50_000_000,
			Timeout:              30 * time.Second,
			LookbackDelta:        lookback,
			EnableAtModifier:     true,
			EnableNegativeOffset: true,
			NoStepSubqueryIntervalFn: func(int64) int64 {
				return (15 * time.Second).Milliseconds()
			},
		}),
	}
}

// PromQL returns the engine and the storage it queries, for medic's
// Prometheus-compatible HTTP API (supervisor/api).
func (e *Engine) PromQL() (*promql.Engine, storage.Queryable) { return e.eng, e.q }

// Query runs an instant query and returns its result as a vector (a
// scalar becomes a one-element vector without labels).
func (e *Engine) Query(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
	q, err := e.eng.NewInstantQuery(ctx, e.q, nil, qs, t)
	return result(ctx, q, err, func(v parser.Value) (promql.Vector, error) {
		switch v := v.(type) {
		case promql.Vector: // built for the result: not the engine's to reuse
			return v, nil
		case promql.Scalar:
			return promql.Vector{promql.Sample{T: v.T, F: v.V}}, nil
		default:
			return nil, fmt.Errorf("rule result is a %s, want a vector or scalar", v.Type())
		}
	})
}

// QueryRange runs a range query: the instant query's result at every
// step from start to end, in one evaluation.
func (e *Engine) QueryRange(ctx context.Context, qs string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	q, err := e.eng.NewRangeQuery(ctx, e.q, nil, qs, start, end, step)
	return result(ctx, q, err, func(v parser.Value) (promql.Matrix, error) {
		m, ok := v.(promql.Matrix)
		if !ok {
			return nil, fmt.Errorf("range query result is a %s, want a matrix", v.Type())
		}
		// The series' points are the engine's: copy them before Close.
		out := make(promql.Matrix, len(m))
		for i, s := range m {
			s.Floats, s.Histograms = slices.Clone(s.Floats), slices.Clone(s.Histograms)
			out[i] = s
		}
		return out, nil
	})
}

// result runs q (built with err) and converts its value with take before
// closing it: Close gives the value's point slices back to the engine's
// pool, where the next query refills them.
func result[T any](ctx context.Context, q promql.Query, err error, take func(parser.Value) (T, error)) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return zero, res.Err
	}
	return take(res.Value)
}

// LongestRange returns the longest range (matrix selector, subquery plus
// offsets) any of exprs reads, so the store can keep just enough history.
func LongestRange(p parser.Parser, exprs ...string) time.Duration {
	var longest time.Duration
	for _, s := range exprs {
		e, err := p.ParseExpr(s)
		if err != nil {
			continue
		}
		parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
			var d time.Duration
			switch n := n.(type) {
			case *parser.MatrixSelector:
				d = n.Range
				if vs, ok := n.VectorSelector.(*parser.VectorSelector); ok {
					d += vs.OriginalOffset
				}
			case *parser.SubqueryExpr:
				d = n.Range + n.OriginalOffset
			case *parser.VectorSelector:
				d = n.OriginalOffset
			}
			// Ranges nest inside subqueries: add the enclosing subquery ranges.
			for _, anc := range path {
				if sq, ok := anc.(*parser.SubqueryExpr); ok {
					d += sq.Range + sq.OriginalOffset
				}
			}
			if d > longest {
				longest = d
			}
			return nil
		})
	}
	return longest
}

// Manager evaluates rule groups at each tick and exports their state.
type Manager struct {
	eng    *Engine
	app    Appender
	logger *slog.Logger

	mu     sync.Mutex
	groups []*Group

	alerts      *prometheus.GaugeVec
	evalSeconds prometheus.Histogram
	evalErrors  *prometheus.CounterVec
}

// NewManager returns a Manager for alerting rules evaluated at every tick.
func NewManager(eng *Engine, rules []*Rule, logger *slog.Logger) *Manager {
	g := &Group{Name: "medic"}
	for _, r := range rules {
		g.Rules = append(g.Rules, GroupRule{Alert: r})
	}
	return NewGroupManager(eng, []*Group{g}, nil, logger)
}

// NewGroupManager returns a Manager for groups over eng; recording rules
// append their results to app (the store eng reads).
func NewGroupManager(eng *Engine, groups []*Group, app Appender, logger *slog.Logger) *Manager {
	m := &Manager{
		eng:    eng,
		app:    app,
		logger: logger,
		groups: groups,
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "medic_alerts", Help: "Alert instances by rule and state (pending, firing).",
		}, []string{"alert", "state"}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "medic_rule_evaluation_duration_seconds", Help: "Time to evaluate all rules once.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		evalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_rule_evaluation_failures_total", Help: "Rule evaluations that failed (alert: the alert or recorded metric name).",
		}, []string{"alert"}),
	}
	for _, g := range groups {
		for _, gr := range g.Rules {
			if gr.Alert != nil {
				for _, s := range []string{"pending", "firing"} {
					m.alerts.WithLabelValues(gr.Alert.Name, s)
				}
			}
			m.evalErrors.WithLabelValues(gr.Name())
		}
	}
	return m
}

// Groups returns the manager's groups (read-only use).
func (m *Manager) Groups() []*Group { return m.groups }

// Collectors returns the manager's metrics.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.alerts, m.evalSeconds, m.evalErrors}
}

// Eval evaluates every group due at ts, rule by rule in order, and returns
// all alert transitions. Errors are logged once per change and counted;
// other rules still run.
func (m *Manager) Eval(ctx context.Context, ts time.Time) []Transition {
	return m.EvalWith(ctx, ts, m.eng.Query)
}

// EvalWith is Eval with the rules' queries answered by query (replay
// answers them from range queries evaluated ahead; see supervisor/replay).
func (m *Manager) EvalWith(ctx context.Context, ts time.Time, query QueryFunc) []Transition {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	var out []Transition
	counts := map[string]*[2]float64{}
	for _, g := range m.groups {
		if !g.due(ts) {
			continue
		}
		g.lastEval = ts
		query := g.offsetQuery(query)
		for _, gr := range g.Rules {
			var err, prev error
			if r := gr.Record; r != nil {
				prev = r.LastError
				if m.app == nil {
					err = fmt.Errorf("recording rule %s: no store to record into", r.Record)
					r.LastError = err
				} else {
					began := time.Now()
					_, err = r.Eval(ctx, ts, query, m.app)
					r.LastEvalDuration = time.Since(began)
				}
			} else {
				r := gr.Alert
				prev = r.LastError
				var tr []Transition
				began := time.Now()
				tr, err = r.Eval(ctx, ts, query)
				r.LastEvalDuration = time.Since(began)
				out = append(out, tr...)
				c := counts[r.Name]
				if c == nil {
					c = &[2]float64{}
					counts[r.Name] = c
				}
				for _, a := range r.active {
					switch a.State {
					case StatePending:
						c[0]++
					case StateFiring:
						c[1]++
					}
				}
			}
			if err != nil {
				m.evalErrors.WithLabelValues(gr.Name()).Inc()
				if prev == nil || prev.Error() != err.Error() {
					m.logger.Error("rule evaluation failed", "rule", gr.Name(), "group", g.Name, "err", err)
				}
			} else if prev != nil {
				m.logger.Info("rule evaluation recovered", "rule", gr.Name(), "group", g.Name)
			}
		}
	}
	for name, c := range counts {
		m.alerts.WithLabelValues(name, "pending").Set(c[0])
		m.alerts.WithLabelValues(name, "firing").Set(c[1])
	}
	m.evalSeconds.Observe(time.Since(start).Seconds())
	return out
}

// RuleStatus is one rule as shown on /status.
type RuleStatus struct {
	Alert string `json:"alert,omitempty"`
	// Record is set for a recording rule (Alert is then empty).
	Record string `json:"record,omitempty"`
	Group  string `json:"group,omitempty"`
	// File is the rule file of the group ("" for the config's rules[]).
	File string `json:"file,omitempty"`
	// GroupInterval is the group's own interval (0: every evaluation).
	GroupInterval time.Duration `json:"-"`
	Expr          string        `json:"expr"`
	For           string        `json:"for,omitempty"`
	Health        string        `json:"health"`
	Error         string        `json:"error,omitempty"`
	LastEval      time.Time     `json:"lastEvaluation,omitzero"`
	Active        []Alert       `json:"active"`
	// EvalSeconds is how long the last evaluation took.
	EvalSeconds   float64           `json:"evaluationSeconds"`
	KeepFiringFor string            `json:"keepFiringFor,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	// Ladder is the rule's remediation ladder (filled in by the supervisor).
	Ladder []string `json:"ladder,omitempty"`
}

// Status returns every rule with its active alerts.
func (m *Manager) Status() []RuleStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []RuleStatus
	for _, g := range m.groups {
		for _, gr := range g.Rules {
			var rs RuleStatus
			var lastErr error
			if r := gr.Alert; r != nil {
				rs = RuleStatus{Alert: r.Name, Expr: r.Expr, For: r.For.String(), LastEval: r.LastEval, Active: r.Active(),
					EvalSeconds: r.LastEvalDuration.Seconds(), Labels: r.Labels, Annotations: r.Annotations}
				if r.KeepFiringFor > 0 {
					rs.KeepFiringFor = r.KeepFiringFor.String()
				}
				lastErr = r.LastError
			} else {
				r := gr.Record
				rs = RuleStatus{Record: r.Record, Expr: r.Expr, LastEval: r.LastEval, Active: []Alert{},
					EvalSeconds: r.LastEvalDuration.Seconds(), Labels: r.Labels}
				lastErr = r.LastError
			}
			rs.Group, rs.File, rs.GroupInterval, rs.Health = g.Name, g.File, g.Interval, "ok"
			if rs.LastEval.IsZero() {
				rs.Health = "unknown"
			}
			if lastErr != nil {
				rs.Health, rs.Error = "err", lastErr.Error()
			}
			out = append(out, rs)
		}
	}
	return out
}

// Firing returns every firing alert across rules.
func (m *Manager) Firing() []Alert {
	return m.alertsIn(StateFiring)
}

// Active returns every pending and firing alert across rules.
func (m *Manager) Active() []Alert {
	return m.alertsIn(StatePending, StateFiring)
}

func (m *Manager) alertsIn(states ...AlertState) []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Alert
	for _, g := range m.groups {
		for _, gr := range g.Rules {
			if gr.Alert == nil {
				continue
			}
			for _, a := range gr.Alert.Active() {
				if slices.Contains(states, a.State) {
					out = append(out, a)
				}
			}
		}
	}
	return out
}
