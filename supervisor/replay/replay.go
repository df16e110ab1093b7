package replay

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// Series is one series' raw samples, labelled as medic's store holds it.
type Series struct {
	Labels labels.Labels
	T      []int64 // ms, ascending
	V      []float64
}

// Source yields recorded raw samples.
type Source interface {
	// Fetch returns the raw samples in (start, end] of every series a
	// selector of medic's rules (matchers as the rule wrote them) needs.
	Fetch(ctx context.Context, sel []*labels.Matcher, start, end time.Time) ([]Series, error)
}

// Options configures Run.
type Options struct {
	Config   *config.Config
	Source   Source
	From, To time.Time
	// Chunk is how much data is fetched and replayed at a time (default 1h).
	Chunk  time.Duration
	Pauses []Window
	Logger *slog.Logger
	// PerTick evaluates every rule with an instant query at every tick, as
	// live medic does, instead of answering from range queries per chunk
	// (the default; same results, a fraction of the cost).
	PerTick bool
}

// Span is a period an alert instance spent in one state.
type Span struct {
	State rules.AlertState `json:"state"` // pending | firing
	From  time.Time        `json:"from"`
	To    time.Time        `json:"to,omitzero"` // zero: still so at the end
}

// AlertTimeline is one alert instance's states over the replay.
type AlertTimeline struct {
	Alert  string            `json:"alert"`
	Labels map[string]string `json:"labels"`
	Spans  []Span            `json:"spans"`
	key    string
}

// Report is what medic would have done.
type Report struct {
	From        time.Time             `json:"from"`
	To          time.Time             `json:"to"`
	Step        time.Duration         `json:"stepNanos"`
	Selectors   []string              `json:"selectors"`
	Series      int                   `json:"series"`
	Samples     int                   `json:"samples"`
	Evaluations int                   `json:"evaluations"`
	Alerts      []*AlertTimeline      `json:"alerts"`
	Incidents   []remedy.IncidentView `json:"incidents"`
	Events      []remedy.Event        `json:"events"`
	// Elapsed is the wall time of the replay; FetchElapsed the part spent fetching.
	Elapsed      time.Duration `json:"elapsedNanos"`
	FetchElapsed time.Duration `json:"fetchElapsedNanos"`
	// EvalElapsed is the part spent evaluating rules.
	EvalElapsed time.Duration `json:"evalElapsedNanos"`
	// Wakes counts the engine's decisions between evaluations (a backoff,
	// verification window or guard re-check ending).
	Wakes int `json:"wakes"`
}

// Selectors returns the distinct selectors the config's rules and
// preconditions read, minus the series its recording rules produce.
func Selectors(c *config.Config) ([][]*labels.Matcher, []string) {
	recorded := map[string]bool{}
	for _, g := range c.RuleGroups() {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	seen := map[string]bool{}
	var out [][]*labels.Matcher
	var names []string
	p := parser.NewParser(parser.Options{})
	for _, e := range c.AllExprs() {
		expr, err := p.ParseExpr(e)
		if err != nil {
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			ms := vs.LabelMatchers
			for _, m := range ms {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual && recorded[m.Value] {
					return nil
				}
			}
			// The same selector with another offset or range reads the same series.
			s := (&parser.VectorSelector{LabelMatchers: ms}).String()
			if !seen[s] {
				seen[s] = true
				out = append(out, ms)
				names = append(names, s)
			}
			return nil
		})
	}
	return out, names
}

// Run replays [From, To]: samples are fetched chunk by chunk into a store,
// the config's rules are evaluated at every evaluationInterval and the
// remedy engine runs in simulated time.
func Run(ctx context.Context, o Options) (*Report, error) {
	began := time.Now()
	c := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Chunk <= 0 {
		o.Chunk = time.Hour
	}
	if !o.To.After(o.From) {
		return nil, fmt.Errorf("--to %s is not after --from %s", o.To.Format(time.RFC3339), o.From.Format(time.RFC3339))
	}
	step := c.EvaluationInterval.D()
	sels, names := Selectors(c)
	warmup := rules.LongestRange(config.ExprParser, c.AllExprs()...) + rules.DefaultLookback + 2*step
	// A chunk is appended before it is evaluated: keep it all, plus the warm-up.
	st := store.New(store.Options{MaxSeries: c.Store.MaxSeries, Retention: max(warmup+o.Chunk+time.Minute, c.Store.Retention.D())})
	eng := rules.NewEngine(st, rules.DefaultLookback, o.Logger)
	groups, err := rules.NewGroups(c.RuleGroups())
	if err != nil {
		return nil, err
	}
	mgr := rules.NewGroupManager(eng, groups, st, o.Logger)
	sim, err := NewSim(SimOptions{Config: c, Query: eng.Query, Start: o.From, Pauses: o.Pauses, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	defer sim.Close()

	rep := &Report{From: o.From, To: o.To, Step: step, Selectors: names}
	seriesSeen := map[uint64]bool{}
	timelines := map[string]*AlertTimeline{}
	fetchStart := o.From.Add(-warmup)
	ts := o.From
	ah := newAhead()
	query := ah.query(eng.Query)
	if o.PerTick {
		query = eng.Query
	}
	for chunkEnd := o.From; chunkEnd.Before(o.To); {
		chunkEnd = chunkEnd.Add(o.Chunk)
		if chunkEnd.After(o.To) {
			chunkEnd = o.To
		}
		f0 := time.Now()
		for _, sel := range sels {
			ss, err := o.Source.Fetch(ctx, sel, fetchStart, chunkEnd)
			if err != nil {
				return nil, err
			}
			for _, s := range ss {
				seriesSeen[s.Labels.Hash()] = true
				for i := range s.T {
					st.Append(s.Labels, time.UnixMilli(s.T[i]), s.V[i])
				}
				rep.Samples += len(s.T)
			}
		}
		rep.FetchElapsed += time.Since(f0)
		fetchStart = chunkEnd
		last := ts.Add(chunkEnd.Sub(ts) / step * step)
		e0 := time.Now()
		if !o.PerTick {
			ah.compute(ctx, eng, st, mgr.Groups(), ts, last, step)
		}
		rep.EvalElapsed += time.Since(e0)
		for ; !ts.After(chunkEnd); ts = ts.Add(step) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			e1 := time.Now()
			trs := mgr.EvalWith(ctx, ts, query)
			rep.EvalElapsed += time.Since(e1)
			for _, tr := range trs {
				track(timelines, tr)
			}
			sim.Step(ts, mgr.Firing())
			rep.Evaluations++
			if rep.Evaluations%720 == 0 {
				st.GC(ts)
			}
		}
	}
	sim.AdvanceTo(o.To)
	rep.Series = len(seriesSeen)
	for _, tl := range timelines {
		rep.Alerts = append(rep.Alerts, tl)
	}
	sort.Slice(rep.Alerts, func(i, j int) bool {
		if !rep.Alerts[i].Spans[0].From.Equal(rep.Alerts[j].Spans[0].From) {
			return rep.Alerts[i].Spans[0].From.Before(rep.Alerts[j].Spans[0].From)
		}
		return rep.Alerts[i].key < rep.Alerts[j].key
	})
	rep.Incidents = sim.Incidents()
	rep.Events = sim.Events()
	rep.Wakes = sim.Wakes
	rep.Elapsed = time.Since(began)
	runtime.KeepAlive(st)
	return rep, nil
}

func track(tl map[string]*AlertTimeline, tr rules.Transition) {
	key := tr.Alert.Rule + tr.Alert.Labels.String()
	t := tl[key]
	if t == nil {
		t = &AlertTimeline{Alert: tr.Alert.Rule, Labels: tr.Alert.Labels.Map(), key: key}
		tl[key] = t
	}
	if n := len(t.Spans); n > 0 && t.Spans[n-1].To.IsZero() {
		t.Spans[n-1].To = tr.At
	}
	if tr.To != rules.StateInactive {
		t.Spans = append(t.Spans, Span{State: tr.To, From: tr.At})
	}
}

// String renders a selector list for messages.
func joinSelectors(s []string) string { return strings.Join(s, ", ") }
