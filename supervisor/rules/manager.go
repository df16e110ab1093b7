package rules

import (
	"context"
	"fmt"
	"log/slog"
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
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v, nil
	case promql.Scalar:
		return promql.Vector{promql.Sample{T: v.T, F: v.V}}, nil
	default:
		return nil, fmt.Errorf("rule result is a %s, want a vector or scalar", res.Value.Type())
	}
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

// Manager evaluates a set of rules at each tick and exports their state.
type Manager struct {
	eng    *Engine
	logger *slog.Logger

	mu    sync.Mutex
	rules []*Rule

	alerts      *prometheus.GaugeVec
	evalSeconds prometheus.Histogram
	evalErrors  *prometheus.CounterVec
}

// NewManager returns a Manager for rules over eng.
func NewManager(eng *Engine, rules []*Rule, logger *slog.Logger) *Manager {
	m := &Manager{
		eng:    eng,
		logger: logger,
		rules:  rules,
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "medic_alerts", Help: "Alert instances by rule and state (pending, firing).",
		}, []string{"alert", "state"}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "medic_rule_evaluation_duration_seconds", Help: "Time to evaluate all rules once.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		evalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_rule_evaluation_failures_total", Help: "Rule evaluations that failed.",
		}, []string{"alert"}),
	}
	for _, r := range rules {
		for _, s := range []string{"pending", "firing"} {
			m.alerts.WithLabelValues(r.Name, s)
		}
		m.evalErrors.WithLabelValues(r.Name)
	}
	return m
}

// Collectors returns the manager's metrics.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.alerts, m.evalSeconds, m.evalErrors}
}

// Eval evaluates every rule at ts and returns all transitions. Errors are
// logged once per change and counted; other rules still run.
func (m *Manager) Eval(ctx context.Context, ts time.Time) []Transition {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	var out []Transition
	for _, r := range m.rules {
		prev := r.LastError
		began := time.Now()
		tr, err := r.Eval(ctx, ts, m.eng.Query)
		r.LastEvalDuration = time.Since(began)
		if err != nil {
			m.evalErrors.WithLabelValues(r.Name).Inc()
			if prev == nil || prev.Error() != err.Error() {
				m.logger.Error("rule evaluation failed", "alert", r.Name, "err", err)
			}
		} else if prev != nil {
			m.logger.Info("rule evaluation recovered", "alert", r.Name)
		}
		out = append(out, tr...)
		var pending, firing float64
		for _, a := range r.active {
			switch a.State {
			case StatePending:
				pending++
			case StateFiring:
				firing++
			}
		}
		m.alerts.WithLabelValues(r.Name, "pending").Set(pending)
		m.alerts.WithLabelValues(r.Name, "firing").Set(firing)
	}
	m.evalSeconds.Observe(time.Since(start).Seconds())
	return out
}

// RuleStatus is one rule as shown on /status.
type RuleStatus struct {
	Alert    string    `json:"alert"`
	Expr     string    `json:"expr"`
	For      string    `json:"for"`
	Health   string    `json:"health"`
	Error    string    `json:"error,omitempty"`
	LastEval time.Time `json:"lastEvaluation,omitzero"`
	Active   []Alert   `json:"active"`
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
	out := make([]RuleStatus, 0, len(m.rules))
	for _, r := range m.rules {
		rs := RuleStatus{Alert: r.Name, Expr: r.Expr, For: r.For.String(), Health: "ok", LastEval: r.LastEval, Active: r.Active(),
			EvalSeconds: r.LastEvalDuration.Seconds(), Labels: r.Labels, Annotations: r.Annotations}
		if r.KeepFiringFor > 0 {
			rs.KeepFiringFor = r.KeepFiringFor.String()
		}
		if r.LastEval.IsZero() {
			rs.Health = "unknown"
		}
		if r.LastError != nil {
			rs.Health, rs.Error = "err", r.LastError.Error()
		}
		out = append(out, rs)
	}
	return out
}

// Firing returns every firing alert across rules.
func (m *Manager) Firing() []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Alert
	for _, r := range m.rules {
		for _, a := range r.Active() {
			if a.State == StateFiring {
				out = append(out, a)
			}
		}
	}
	return out
}
