// Package rules evaluates alerting rules locally with the real PromQL
// engine and keeps the alert state machine (inactive → pending → firing →
// resolved, with for and keep_firing_for), modelled on Prometheus's
// rules/alerting.go. Eval takes the evaluation time and the query function
// as arguments, so the state machine is tested at chosen timestamps.
package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/template"

	"github.com/medic-sidecar/medic/internal/jsonfloat"
)

// AlertState is where one alert instance is in its life.
type AlertState int

// States. Resolved is reported once, as a transition, then the alert is forgotten.
const (
	StateInactive AlertState = iota
	StatePending
	StateFiring
)

func (s AlertState) String() string {
	switch s {
	case StateInactive:
		return "inactive"
	case StatePending:
		return "pending"
	case StateFiring:
		return "firing"
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText makes states readable in JSON.
func (s AlertState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *AlertState) UnmarshalText(b []byte) error {
	for _, st := range []AlertState{StateInactive, StatePending, StateFiring} {
		if string(b) == st.String() {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("unknown alert state %q", b)
}

// Alert is one instance of a rule (one label set of its result).
type Alert struct {
	Rule        string            `json:"alert"`
	Labels      labels.Labels     `json:"-"`
	Annotations map[string]string `json:"annotations,omitempty"`
	State       AlertState        `json:"state"`
	Value       float64           `json:"value"`
	ActiveAt    time.Time         `json:"activeAt"`
	FiredAt     time.Time         `json:"firedAt,omitzero"`
	ResolvedAt  time.Time         `json:"resolvedAt,omitzero"`
	// KeepFiringSince is when the condition stopped while keep_firing_for held the alert.
	KeepFiringSince time.Time `json:"keepFiringSince,omitzero"`
	// Incident is the ID of the incident remediating this alert (set by
	// the supervisor for /status; empty when none is open).
	Incident string `json:"incident,omitempty"`
}

// Transition is a change of an alert's state at an evaluation.
type Transition struct {
	Alert Alert
	From  AlertState
	To    AlertState // StateInactive with From=Firing means resolved
	At    time.Time
}

// Resolved reports whether the transition ends a firing alert.
func (t Transition) Resolved() bool { return t.From == StateFiring && t.To == StateInactive }

// QueryFunc evaluates an instant PromQL query at t.
type QueryFunc func(ctx context.Context, q string, t time.Time) (promql.Vector, error)

// Rule is one alerting rule and its active alerts.
type Rule struct {
	Name          string
	Expr          string
	For           time.Duration
	KeepFiringFor time.Duration
	Labels        map[string]string
	Annotations   map[string]string

	active map[uint64]*Alert
	// ExternalLabels and ExternalURL are what templates see as
	// $externalLabels and $externalURL (rule unit tests set them).
	ExternalLabels map[string]string
	ExternalURL    string
	// LastError is the last evaluation error (nil when healthy).
	LastError error
	// LastEval is the time of the last evaluation.
	LastEval time.Time
	// LastEvalDuration is how long the last evaluation took.
	LastEvalDuration time.Duration
}

// NewRule checks a rule's templates. Templates are Prometheus's (the same
// functions: humanize, query, ...; $labels, $value, $externalLabels).
func NewRule(name, expr string, forD, keepFiring time.Duration, lbls, anns map[string]string) (*Rule, error) {
	r := &Rule{Name: name, Expr: expr, For: forD, KeepFiringFor: keepFiring,
		Labels: lbls, Annotations: anns, active: map[uint64]*Alert{}}
	for where, m := range map[string]map[string]string{"labels": lbls, "annotations": anns} {
		for k, v := range m {
			if err := r.expander(context.Background(), v, nil, 0, time.Now(), nil).ParseTest(); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", where, k, err)
			}
		}
	}
	return r, nil
}

// tmplDefs give templates Prometheus's variables.
const tmplDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

func (r *Rule) expander(ctx context.Context, text string, lbls map[string]string, v float64, ts time.Time, query QueryFunc) *template.Expander {
	data := template.AlertTemplateData(lbls, r.ExternalLabels, r.ExternalURL, promql.Sample{F: v})
	return template.NewTemplateExpander(ctx, tmplDefs+text, "__alert_"+r.Name, data, model.Time(ts.UnixMilli()),
		template.QueryFunc(query), nil, nil)
}

func (r *Rule) expand(ctx context.Context, text string, lbls map[string]string, v float64, ts time.Time, query QueryFunc) string {
	if !strings.Contains(text, "{{") {
		return text
	}
	out, err := r.expander(ctx, text, lbls, v, ts, query).Expand()
	if err != nil {
		return fmt.Sprintf("<error expanding template: %v>", err)
	}
	return out
}

// Eval runs the rule at ts and advances the state machine. It returns the
// transitions that happened.
func (r *Rule) Eval(ctx context.Context, ts time.Time, query QueryFunc) ([]Transition, error) {
	r.LastEval = ts
	vec, err := query(ctx, r.Expr, ts)
	if err != nil {
		// Like Prometheus, an erroring rule keeps its alerts as they are.
		r.LastError = err
		return nil, err
	}
	r.LastError = nil
	var out []Transition
	seen := make(map[uint64]struct{}, len(vec))
	for _, s := range vec {
		b := labels.NewBuilder(s.Metric)
		b.Del(labels.MetricName)
		// As in Prometheus, label and annotation templates see the
		// sample's own labels as $labels.
		lm := s.Metric.Map()
		for k, v := range r.Labels {
			b.Set(k, r.expand(ctx, v, lm, s.F, ts, query))
		}
		b.Set(labels.AlertName, r.Name)
		lset := b.Labels()
		anns := make(map[string]string, len(r.Annotations))
		for k, v := range r.Annotations {
			anns[k] = r.expand(ctx, v, lm, s.F, ts, query)
		}
		h := lset.Hash()
		if _, dup := seen[h]; dup {
			r.LastError = fmt.Errorf("vector contains metrics with the same labelset after applying alert labels")
			return out, r.LastError
		}
		seen[h] = struct{}{}
		if a, ok := r.active[h]; ok && a.State != StateInactive {
			a.Value = s.F
			a.Annotations = anns
			a.KeepFiringSince = time.Time{}
			continue
		}
		a := &Alert{Rule: r.Name, Labels: lset, Annotations: anns, State: StatePending, Value: s.F, ActiveAt: ts}
		r.active[h] = a
		out = append(out, Transition{Alert: *a, From: StateInactive, To: StatePending, At: ts})
	}

	for h, a := range r.active {
		if _, ok := seen[h]; ok {
			if a.State == StatePending && ts.Sub(a.ActiveAt) >= r.For {
				a.State = StateFiring
				a.FiredAt = ts
				out = append(out, Transition{Alert: *a, From: StatePending, To: StateFiring, At: ts})
			}
			continue
		}
		// The condition no longer holds.
		if a.State == StateFiring && r.KeepFiringFor > 0 {
			if a.KeepFiringSince.IsZero() {
				a.KeepFiringSince = ts
			}
			if ts.Sub(a.KeepFiringSince) < r.KeepFiringFor {
				continue
			}
		}
		from := a.State
		a.State = StateInactive
		a.ResolvedAt = ts
		delete(r.active, h)
		out = append(out, Transition{Alert: *a, From: from, To: StateInactive, At: ts})
	}
	sort.SliceStable(out, func(i, j int) bool { return labels.Compare(out[i].Alert.Labels, out[j].Alert.Labels) < 0 })
	return out, nil
}

// Active returns copies of the rule's pending and firing alerts, sorted by labels.
func (r *Rule) Active() []Alert {
	out := make([]Alert, 0, len(r.active))
	for _, a := range r.active {
		c := *a
		c.Annotations = maps.Clone(a.Annotations)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels, out[j].Labels) < 0 })
	return out
}

// MarshalJSON includes the labels as a map; a non-finite value is written
// as "NaN", "+Inf" or "-Inf" (encoding/json refuses it).
func (a Alert) MarshalJSON() ([]byte, error) {
	type plain Alert
	return json.Marshal(struct {
		plain
		Labels map[string]string `json:"labels"`
		Value  jsonfloat.Float   `json:"value"`
	}{plain(a), a.Labels.Map(), jsonfloat.Float(a.Value)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *Alert) UnmarshalJSON(b []byte) error {
	type plain Alert
	var v struct {
		*plain
		Labels map[string]string `json:"labels"`
		Value  jsonfloat.Float   `json:"value"`
	}
	v.plain = (*plain)(a)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	a.Labels, a.Value = labels.FromMap(v.Labels), float64(v.Value)
	return nil
}
