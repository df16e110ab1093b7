// Package api serves a Prometheus-compatible HTTP API (/api/v1/...) on
// medic's own store, so Grafana can use a medic as a Prometheus data source
// and promtool can query it while a rule is being debugged.
//
// It speaks Prometheus's format (https://prometheus.io/docs/prometheus/latest/querying/api/):
// {"status":"success","data":...,"warnings":[...]} or
// {"status":"error","errorType":"bad_data","error":"..."}, sample values as
// strings, GET with query parameters or POST with a form. Queries run on
// the PromQL engine medic's rules use. Prometheus's own web/api/v1 is not
// imported: it depends on its rules, config, scrape and tsdb packages.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/medic-sidecar/medic/supervisor/rules"
)

// Options configures the API.
type Options struct {
	// Engine and Queryable are the PromQL engine and store medic evaluates rules on.
	Engine    *promql.Engine
	Queryable storage.Queryable
	// Parser parses series selectors (match[]); nil: PromQL's default parser.
	Parser parser.Parser
	// Rules returns the alerting rules and their active alerts.
	Rules func() []rules.RuleStatus
	// EvaluationInterval is reported as the rule group's interval.
	EvaluationInterval time.Duration
	// Now is the default evaluation time of queries.
	Now func() time.Time
	// Version, Revision and GoVersion answer /api/v1/status/buildinfo.
	Version, Revision, GoVersion string
	Logger                       *slog.Logger
}

// Prefix is where the API is mounted.
const Prefix = "/api/v1/"

// maxPoints is Prometheus's limit on points per series of a range query.
const maxPoints = 11000

// New returns the API's handler; mount it at Prefix.
func New(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Parser == nil {
		o.Parser = parser.NewParser(parser.Options{})
	}
	a := &api{o: o}
	mux := http.NewServeMux()
	for path, h := range map[string]func(*http.Request) result{
		"query":               a.query,
		"query_range":         a.queryRange,
		"series":              a.series,
		"labels":              a.labelNames,
		"label/{name}/values": a.labelValues,
		"rules":               a.rules,
		"alerts":              a.alerts,
		"status/buildinfo":    a.buildInfo,
		"format_query":        a.formatQuery,
		// medic keeps neither metric metadata nor exemplars: empty, as a
		// Prometheus without them answers (Grafana asks for both).
		"metadata":        func(*http.Request) result { return result{data: map[string]any{}} },
		"query_exemplars": func(*http.Request) result { return result{data: []any{}} },
	} {
		mux.Handle(Prefix+path, a.handler(h))
	}
	mux.Handle(Prefix, a.handler(notFound))
	return mux
}

type api struct{ o Options }

// Error types, as Prometheus names them.
const (
	errBadData   = "bad_data"
	errExec      = "execution"
	errCanceled  = "canceled"
	errTimeout   = "timeout"
	errInternal  = "internal"
	errNotFound  = "not_found"
	errNotMethod = "method_not_allowed"
)

type result struct {
	data     any
	errType  string
	err      error
	warnings annotations.Annotations
	query    string // for the warnings' positions
	// done, when set, runs once the response is encoded: a query result's
	// points live in slices the PromQL engine takes back into its pool on
	// Close, so the query is closed only then (as Prometheus's API does).
	done func()
}

func fail(typ string, format string, args ...any) result {
	return result{errType: typ, err: fmt.Errorf(format, args...)}
}

func notFound(r *http.Request) result {
	return fail(errNotFound, "%s is not served by medic", r.URL.Path)
}

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

func (a *api) handler(h func(*http.Request) result) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var res result
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodPost:
			res = fail(errNotMethod, "method %s not allowed; use GET or POST", r.Method)
		default:
			if err := r.ParseForm(); err != nil {
				res = fail(errBadData, "error parsing form values: %v", err)
			} else {
				res = h(r)
			}
		}
		resp := response{Status: "success", Data: res.data}
		code := http.StatusOK
		if res.err != nil {
			resp = response{Status: "error", ErrorType: res.errType, Error: res.err.Error()}
			code = httpStatus(res.errType)
		}
		resp.Warnings, resp.Infos = res.warnings.AsStrings(res.query, 10, 10)
		b, err := json.Marshal(resp)
		if res.done != nil {
			res.done()
		}
		if err != nil {
			a.o.Logger.Error("encoding API response", "path", r.URL.Path, "err", err)
			code = http.StatusInternalServerError
			b, _ = json.Marshal(response{Status: "error", ErrorType: errInternal, Error: "encoding the response: " + err.Error()})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write(b)
	})
}

func httpStatus(errType string) int {
	switch errType {
	case errBadData:
		return http.StatusBadRequest
	case errExec:
		return http.StatusUnprocessableEntity
	case errCanceled:
		return 499 // as Prometheus: client closed request
	case errTimeout:
		return http.StatusServiceUnavailable
	case errNotFound:
		return http.StatusNotFound
	case errNotMethod:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// queryData is the data of /query and /query_range.
type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     parser.Value     `json:"result"`
}

func (a *api) query(r *http.Request) result {
	qs := r.FormValue("query")
	ts := a.o.Now()
	if s := r.FormValue("time"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return fail(errBadData, "invalid parameter \"time\": %v", err)
		}
		ts = t
	}
	ctx, cancel, res := a.timeout(r)
	if res.err != nil {
		return res
	}
	defer cancel()
	q, err := a.o.Engine.NewInstantQuery(ctx, a.o.Queryable, nil, qs, ts)
	if err != nil {
		return fail(errBadData, "invalid parameter \"query\": %v", err)
	}
	return a.exec(ctx, q, qs)
}

func (a *api) queryRange(r *http.Request) result {
	qs := r.FormValue("query")
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return fail(errBadData, "invalid parameter \"start\": %v", err)
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return fail(errBadData, "invalid parameter \"end\": %v", err)
	}
	if end.Before(start) {
		return fail(errBadData, "invalid parameter \"end\": end timestamp must not be before start time")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return fail(errBadData, "invalid parameter \"step\": %v", err)
	}
	if step <= 0 {
		return fail(errBadData, "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")
	}
	if end.Sub(start)/step > maxPoints {
		return fail(errBadData, "exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", maxPoints)
	}
	ctx, cancel, res := a.timeout(r)
	if res.err != nil {
		return res
	}
	defer cancel()
	q, err := a.o.Engine.NewRangeQuery(ctx, a.o.Queryable, nil, qs, start, end, step)
	if err != nil {
		return fail(errBadData, "invalid parameter \"query\": %v", err)
	}
	return a.exec(ctx, q, qs)
}

// timeout applies the request's timeout parameter to its context.
func (a *api) timeout(r *http.Request) (context.Context, context.CancelFunc, result) {
	ctx := r.Context()
	if s := r.FormValue("timeout"); s != "" {
		d, err := parseDuration(s)
		if err != nil {
			return ctx, func() {}, fail(errBadData, "invalid parameter \"timeout\": %v", err)
		}
		c, cancel := context.WithTimeout(ctx, d)
		return c, cancel, result{}
	}
	c, cancel := context.WithCancel(ctx)
	return c, cancel, result{}
}

func (a *api) exec(ctx context.Context, q promql.Query, qs string) result {
	res := q.Exec(ctx)
	if res.Err != nil {
		q.Close()
		return result{errType: queryErrorType(res.Err), err: res.Err, warnings: res.Warnings, query: qs}
	}
	v := res.Value
	// Empty results are [] in Prometheus, never null.
	switch x := v.(type) {
	case promql.Vector:
		if x == nil {
			v = promql.Vector{}
		}
	case promql.Matrix:
		if x == nil {
			v = promql.Matrix{}
		}
	}
	return result{data: queryData{ResultType: v.Type(), Result: v}, warnings: res.Warnings, query: qs, done: q.Close}
}

func queryErrorType(err error) string {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		stor     promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return errCanceled
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return errTimeout
	case errors.As(err, &stor):
		return errInternal
	}
	return errExec
}

// selection reads match[], start and end for the metadata endpoints.
func (a *api) selection(r *http.Request, required bool) (sets [][]*labels.Matcher, hints *storage.SelectHints, res result) {
	matches := r.Form["match[]"]
	if required && len(matches) == 0 {
		return nil, nil, fail(errBadData, "no match[] parameter provided")
	}
	for _, m := range matches {
		ms, err := a.o.Parser.ParseMetricSelector(m)
		if err != nil {
			return nil, nil, fail(errBadData, "invalid parameter \"match[]\": %v", err)
		}
		sets = append(sets, ms)
	}
	hints = &storage.SelectHints{Start: math.MinInt64, End: math.MaxInt64, Func: "series"}
	if s := r.FormValue("start"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return nil, nil, fail(errBadData, "invalid parameter \"start\": %v", err)
		}
		hints.Start = t.UnixMilli()
	}
	if s := r.FormValue("end"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return nil, nil, fail(errBadData, "invalid parameter \"end\": %v", err)
		}
		hints.End = t.UnixMilli()
	}
	return sets, hints, result{}
}

// limit applies the optional limit parameter.
func limit(r *http.Request) (int, result) {
	s := r.FormValue("limit")
	if s == "" {
		return 0, result{}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fail(errBadData, "invalid parameter \"limit\": %q is not a non-negative integer", s)
	}
	return n, result{}
}

func (a *api) series(r *http.Request) result {
	sets, hints, res := a.selection(r, true)
	if res.err != nil {
		return res
	}
	lim, res := limit(r)
	if res.err != nil {
		return res
	}
	q, err := a.o.Queryable.Querier(hints.Start, hints.End)
	if err != nil {
		return fail(errExec, "%v", err)
	}
	defer q.Close()
	seen := map[uint64]bool{}
	out := []labels.Labels{}
	var warns annotations.Annotations
	for _, ms := range sets {
		ss := q.Select(r.Context(), true, hints, ms...)
		for ss.Next() {
			l := ss.At().Labels()
			if h := l.Hash(); !seen[h] {
				seen[h] = true
				out = append(out, l)
			}
		}
		if err := ss.Err(); err != nil {
			return fail(errExec, "%v", err)
		}
		warns.Merge(ss.Warnings())
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i], out[j]) < 0 })
	if lim > 0 && len(out) > lim {
		out = out[:lim]
		warns.Add(errors.New("results truncated due to limit"))
	}
	return result{data: out, warnings: warns}
}

func (a *api) labelNames(r *http.Request) result {
	return a.labelQuery(r, func(ctx context.Context, q storage.Querier, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(ctx, nil, ms...)
	})
}

func (a *api) labelValues(r *http.Request) result {
	name := r.PathValue("name")
	if name == "" || !utf8.ValidString(name) {
		return fail(errBadData, "invalid label name: %q", name)
	}
	return a.labelQuery(r, func(ctx context.Context, q storage.Querier, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(ctx, name, nil, ms...)
	})
}

// labelQuery runs f once per match[] set (or once without matchers) and
// returns the sorted union.
func (a *api) labelQuery(r *http.Request, f func(context.Context, storage.Querier, []*labels.Matcher) ([]string, annotations.Annotations, error)) result {
	sets, hints, res := a.selection(r, false)
	if res.err != nil {
		return res
	}
	lim, res := limit(r)
	if res.err != nil {
		return res
	}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	q, err := a.o.Queryable.Querier(hints.Start, hints.End)
	if err != nil {
		return fail(errExec, "%v", err)
	}
	defer q.Close()
	set := map[string]bool{}
	var warns annotations.Annotations
	for _, ms := range sets {
		names, w, err := f(r.Context(), q, ms)
		if err != nil {
			return fail(errExec, "%v", err)
		}
		warns.Merge(w)
		for _, n := range names {
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	if lim > 0 && len(out) > lim {
		out = out[:lim]
		warns.Add(errors.New("results truncated due to limit"))
	}
	return result{data: out, warnings: warns}
}

// alert is an alert as Prometheus's API shows it.
type alert struct {
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations"`
	State           string            `json:"state"`
	ActiveAt        *time.Time        `json:"activeAt,omitempty"`
	KeepFiringSince *time.Time        `json:"keepFiringSince,omitempty"`
	Value           string            `json:"value"`
}

func toAlert(a rules.Alert) alert {
	out := alert{Labels: a.Labels.Map(), Annotations: a.Annotations, State: a.State.String(),
		Value: strconv.FormatFloat(a.Value, 'e', -1, 64)}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if !a.ActiveAt.IsZero() {
		t := a.ActiveAt
		out.ActiveAt = &t
	}
	if !a.KeepFiringSince.IsZero() {
		t := a.KeepFiringSince
		out.KeepFiringSince = &t
	}
	return out
}

func (a *api) alerts(*http.Request) result {
	out := []alert{}
	for _, r := range a.o.Rules() {
		for _, al := range r.Active {
			out = append(out, toAlert(al))
		}
	}
	return result{data: map[string]any{"alerts": out}}
}

// rule is an alerting rule as Prometheus's API shows it.
type rule struct {
	State          string            `json:"state"`
	Name           string            `json:"name"`
	Query          string            `json:"query"`
	Duration       float64           `json:"duration"`
	KeepFiringFor  float64           `json:"keepFiringFor"`
	Labels         map[string]string `json:"labels"`
	Annotations    map[string]string `json:"annotations"`
	Alerts         []alert           `json:"alerts"`
	Health         string            `json:"health"`
	LastError      string            `json:"lastError,omitempty"`
	EvaluationTime float64           `json:"evaluationTime"`
	LastEvaluation time.Time         `json:"lastEvaluation"`
	Type           string            `json:"type"`
}

// recordingRule is a recording rule as Prometheus's API shows it.
type recordingRule struct {
	Name           string            `json:"name"`
	Query          string            `json:"query"`
	Labels         map[string]string `json:"labels"`
	Health         string            `json:"health"`
	LastError      string            `json:"lastError,omitempty"`
	EvaluationTime float64           `json:"evaluationTime"`
	LastEvaluation time.Time         `json:"lastEvaluation"`
	Type           string            `json:"type"`
}

type ruleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	Rules          []any     `json:"rules"` // rule | recordingRule
	Interval       float64   `json:"interval"`
	Limit          int       `json:"limit"`
	EvaluationTime float64   `json:"evaluationTime"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

// rules lists the rule groups in evaluation order: the config's rules[]
// (group "medic", file "medic.yaml") then each rule file's groups, with
// their alerting and recording rules; type= and rule_name[] filter, and
// a group left without rules by a filter is left out.
func (a *api) rules(r *http.Request) result {
	typ := r.FormValue("type")
	if typ != "" && typ != "alert" && typ != "record" {
		return fail(errBadData, "invalid parameter \"type\": not supported value %q", typ)
	}
	names := r.Form["rule_name[]"]
	groups := []*ruleGroup{}
	var g *ruleGroup
	for _, rs := range a.o.Rules() {
		name, file := rs.Group, rs.File
		if name == "" {
			name = "medic"
		}
		if file == "" {
			file = "medic.yaml"
		}
		if g == nil || g.Name != name || g.File != file {
			interval := a.o.EvaluationInterval
			if rs.GroupInterval > 0 {
				interval = rs.GroupInterval
			}
			g = &ruleGroup{Name: name, File: file, Rules: []any{}, Interval: interval.Seconds()}
			groups = append(groups, g)
		}
		ruleName := rs.Alert
		if rs.Record != "" {
			ruleName = rs.Record
		}
		if (typ == "alert" && rs.Record != "") || (typ == "record" && rs.Record == "") ||
			(len(names) > 0 && !slices.Contains(names, ruleName)) {
			continue
		}
		g.Rules = append(g.Rules, toRule(rs))
		g.EvaluationTime += rs.EvalSeconds
		if rs.LastEval.After(g.LastEvaluation) {
			g.LastEvaluation = rs.LastEval
		}
	}
	out := []ruleGroup{}
	for _, g := range groups {
		if len(g.Rules) > 0 || (typ == "" && len(names) == 0) {
			out = append(out, *g)
		}
	}
	return result{data: map[string]any{"groups": out}}
}

func toRule(rs rules.RuleStatus) any {
	lbls := rs.Labels
	if lbls == nil {
		lbls = map[string]string{}
	}
	if rs.Record != "" {
		return recordingRule{Name: rs.Record, Query: rs.Expr, Labels: lbls, Health: rs.Health, LastError: rs.Error,
			EvaluationTime: rs.EvalSeconds, LastEvaluation: rs.LastEval, Type: "recording"}
	}
	forD, _ := time.ParseDuration(rs.For)
	keep, _ := time.ParseDuration(rs.KeepFiringFor)
	ru := rule{State: rules.StateInactive.String(), Name: rs.Alert, Query: rs.Expr, Duration: forD.Seconds(), KeepFiringFor: keep.Seconds(),
		Labels: lbls, Annotations: rs.Annotations, Alerts: []alert{}, Health: rs.Health, LastError: rs.Error,
		EvaluationTime: rs.EvalSeconds, LastEvaluation: rs.LastEval, Type: "alerting"}
	if ru.Annotations == nil {
		ru.Annotations = map[string]string{}
	}
	for _, al := range rs.Active {
		ru.Alerts = append(ru.Alerts, toAlert(al))
		if al.State == rules.StateFiring || al.State == rules.StatePending && ru.State == rules.StateInactive.String() {
			ru.State = al.State.String()
		}
	}
	return ru
}

func (a *api) buildInfo(*http.Request) result {
	return result{data: map[string]string{"version": a.o.Version, "revision": a.o.Revision, "branch": "",
		"buildUser": "", "buildDate": "", "goVersion": a.o.GoVersion}}
}

func (a *api) formatQuery(r *http.Request) result {
	e, err := a.o.Parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return fail(errBadData, "invalid parameter \"query\": %v", err)
	}
	return result{data: e.Pretty(0)}
}

// parseTime reads a Unix timestamp in seconds (with fraction) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing timestamp")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration reads seconds (with fraction) or a Prometheus duration ("1m30s").
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d := f * float64(time.Second)
		if d >= float64(math.MaxInt64) || d <= float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(d), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}
