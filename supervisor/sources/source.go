package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Failure reasons (medic_source_query_failures_total{reason}).
const (
	FailTimeout     = "timeout"     // the query took longer than the source's timeout
	FailUnreachable = "unreachable" // no connection (refused, DNS, TLS)
	FailHTTP        = "http"        // a non-2xx answer that was not a query error
	FailInvalid     = "invalid"     // an answer that is not the query API's JSON
	FailQuery       = "query"       // the server rejected or failed the query
)

var failReasons = []string{FailTimeout, FailUnreachable, FailHTTP, FailInvalid, FailQuery}

// Metrics are the sources' Prometheus metrics.
type Metrics struct {
	queries  *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates the metrics (not registered).
func NewMetrics() *Metrics {
	return &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_source_queries_total",
			Help: "Instant queries sent to a remote PromQL source (answers served from the one-interval cache are not counted).",
		}, []string{"source"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_source_query_failures_total",
			Help: "Queries to a remote PromQL source that failed, by reason (timeout, unreachable, http, invalid, query).",
		}, []string{"source", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "medic_source_query_duration_seconds", Help: "Time a remote PromQL source took to answer a query.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"source"}),
	}
}

// Collectors returns the metrics for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.queries, m.failures, m.duration}
}

func (m *Metrics) init(source string) {
	m.queries.WithLabelValues(source)
	m.duration.WithLabelValues(source)
	for _, r := range failReasons {
		m.failures.WithLabelValues(source, r)
	}
}

// Status is one source on /status.
type Status struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	URL         string    `json:"url,omitempty"`
	Enabled     bool      `json:"enabled"`
	Queries     uint64    `json:"queries"`
	Failures    uint64    `json:"failures"`
	LastSuccess time.Time `json:"lastSuccessAt,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Source is one remote PromQL source.
type Source struct {
	name    string
	conf    *Config
	api     v1.API // nil when disabled
	timeout time.Duration
	ttl     time.Duration
	m       *Metrics
	log     *slog.Logger

	qmu       sync.Mutex // one query at a time per source (concurrent askers share the answer)
	mu        sync.Mutex
	cache     map[string]entry
	explained map[string]explanation // by expr, kept explainEvery TTLs
	st        Status
}

// explainEvery: an unmet requirement's detail (its parts' values, a few
// more queries) is recomputed at most every explainEvery TTLs; whether
// it is met is asked every TTL.
const explainEvery = 10

type explanation struct {
	at   time.Time
	text string
}

type entry struct {
	at  time.Time
	val model.Value
	err error
}

// Set is every configured source, by name.
type Set struct {
	byName map[string]*Source
	m      *Metrics
}

// Options configures a Set.
type Options struct {
	// TTL is how long an answer (or an error) is reused: one evaluation
	// interval, so every incident waiting on the same requirement in one
	// evaluation shares one query.
	TTL     time.Duration
	Logger  *slog.Logger
	Metrics *Metrics
}

// New builds the sources; nothing is asked until a requirement needs it.
func New(confs map[string]*Config, o Options) (*Set, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	set := &Set{byName: map[string]*Source{}, m: o.Metrics}
	for name, c := range confs {
		s := &Source{name: name, conf: c, ttl: o.TTL, m: o.Metrics, cache: map[string]entry{}, explained: map[string]explanation{},
			log: o.Logger.With("source", name), st: Status{Name: name, Kind: "prometheus", Enabled: c.Enabled()}}
		if c.Enabled() {
			p := c.Prometheus
			hc, err := commoncfg.NewClientFromConfig(p.HTTPClientConfig(), "medic-source-"+name)
			if err != nil {
				return nil, fmt.Errorf("sources.%s.prometheus: %w", name, err)
			}
			ac, err := api.NewClient(api.Config{Address: p.URL, Client: hc})
			if err != nil {
				return nil, fmt.Errorf("sources.%s.prometheus.url: %w", name, err)
			}
			s.api, s.timeout, s.st.URL = v1.NewAPI(ac), p.EffectiveTimeout(), p.URL
		}
		o.Metrics.init(name)
		set.byName[name] = s
	}
	return set, nil
}

// Metrics returns the set's metrics.
func (set *Set) Metrics() *Metrics { return set.m }

// Get returns the source called name.
func (set *Set) Get(name string) (*Source, bool) {
	if set == nil {
		return nil, false
	}
	s, ok := set.byName[name]
	return s, ok
}

// Status lists every source, by name.
func (set *Set) Status() []Status {
	if set == nil {
		return nil
	}
	out := make([]Status, 0, len(set.byName))
	for _, s := range set.byName {
		s.mu.Lock()
		out = append(out, s.st)
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Check evaluates expr on the named source at now: ok when it returns a
// non-empty vector (or a non-zero scalar). When it is not met, detail
// says what the expression's parts returned (e.g. "31 of 50 = 0.62,
// needs < 0.3"). A disabled source (no url) is not asked: ok, with a
// detail saying so.
func (set *Set) Check(ctx context.Context, source, expr string, now time.Time) (ok bool, detail string, err error) {
	s, found := set.Get(source)
	if !found {
		return false, "", fmt.Errorf("no source named %q", source)
	}
	if s.api == nil {
		return true, "source " + source + " is disabled (no url)", nil
	}
	v, err := s.Query(ctx, expr, now)
	if err != nil {
		return false, "", err
	}
	if met(v) {
		return true, "", nil
	}
	return false, s.explainCached(ctx, expr, now), nil
}

func (s *Source) explainCached(ctx context.Context, expr string, now time.Time) string {
	s.mu.Lock()
	e, ok := s.explained[expr]
	s.mu.Unlock()
	if ok && now.Sub(e.at) >= 0 && now.Sub(e.at) < explainEvery*s.ttl {
		return e.text
	}
	text := s.explain(ctx, expr, now)
	s.mu.Lock()
	s.explained[expr] = explanation{at: now, text: text}
	s.mu.Unlock()
	return text
}

func met(v model.Value) bool {
	switch v := v.(type) {
	case model.Vector:
		return len(v) > 0
	case *model.Scalar:
		return v.Value != 0 && !math.IsNaN(float64(v.Value))
	}
	return false
}

// Query runs an instant query (at the source's own "now", so clock skew
// between medic and the source does not matter), or returns the answer
// (or error) cached within the last TTL.
func (s *Source) Query(ctx context.Context, expr string, now time.Time) (model.Value, error) {
	if s.api == nil {
		return nil, fmt.Errorf("source %s is disabled (no url)", s.name)
	}
	if e, ok := s.cached(expr, now); ok {
		return e.val, e.err
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if e, ok := s.cached(expr, now); ok { // asked while we waited
		return e.val, e.err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	val, warnings, _, err := s.api.Query(qctx, expr, time.Time{}, v1.WithTimeout(s.timeout))
	s.m.duration.WithLabelValues(s.name).Observe(time.Since(start).Seconds())
	s.m.queries.WithLabelValues(s.name).Inc()
	if err == nil {
		switch val.(type) {
		case model.Vector, *model.Scalar:
		default:
			err = fmt.Errorf("query returned a %s, want an instant vector or scalar", val.Type())
		}
	}
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err() // medic is stopping: not the source's failure
	}
	s.mu.Lock()
	s.st.Queries++
	if err != nil {
		reason := classify(qctx, err)
		err = fmt.Errorf("source %s: %s: %w", s.name, reason, err)
		s.m.failures.WithLabelValues(s.name, reason).Inc()
		if s.st.LastError != err.Error() {
			s.log.Warn("remote PromQL source query failed", "expr", expr, "reason", reason, "err", err)
		}
		s.st.Failures++
		s.st.LastError, s.st.LastErrorAt = err.Error(), now
	} else {
		if s.st.LastError != "" && s.st.LastErrorAt.After(s.st.LastSuccess) {
			s.log.Info("remote PromQL source answers again", "expr", expr)
		}
		s.st.LastSuccess = now
		if len(warnings) > 0 {
			s.log.Debug("remote PromQL source warnings", "expr", expr, "warnings", warnings)
		}
	}
	s.cache[expr] = entry{at: now, val: val, err: err}
	// Forget answers older than a TTL (expressions no longer asked).
	for k, e := range s.cache {
		if now.Sub(e.at) >= s.ttl && k != expr {
			delete(s.cache, k)
		}
	}
	s.mu.Unlock()
	return val, err
}

func (s *Source) cached(expr string, now time.Time) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cache[expr]
	if !ok || s.ttl <= 0 {
		return entry{}, false
	}
	if age := now.Sub(e.at); age < 0 || age >= s.ttl {
		return entry{}, false
	}
	return e, true
}

// classify names why a query failed, for the failure metric.
func classify(qctx context.Context, err error) string {
	var ae *v1.Error
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || qctx.Err() != nil:
		return FailTimeout
	case errors.As(err, &ae):
		switch ae.Type {
		case v1.ErrTimeout:
			return FailTimeout
		case v1.ErrBadData, v1.ErrExec, v1.ErrCanceled:
			return FailQuery
		case v1.ErrServer, v1.ErrClient:
			return FailHTTP
		case v1.ErrBadResponse:
			return FailInvalid
		}
	case errors.As(err, &ne):
		if ne.Timeout() {
			return FailTimeout
		}
		return FailUnreachable
	}
	if strings.Contains(err.Error(), "want an instant vector") {
		return FailInvalid
	}
	return FailUnreachable
}

var exprParser = parser.NewParser(parser.Options{})

// explain describes why expr is not met: for each comparison with a
// number (X > 0.3) in it (through or/and/unless and parentheses), what X
// returned — for a ratio A / B, "A of B = ratio". The parts are queried
// like any requirement (cached for the TTL); failures leave them out.
func (s *Source) explain(ctx context.Context, expr string, now time.Time) string {
	e, err := exprParser.ParseExpr(expr)
	if err != nil {
		return ""
	}
	var parts []string
	var walk func(e parser.Expr)
	walk = func(e parser.Expr) {
		switch e := e.(type) {
		case *parser.ParenExpr:
			walk(e.Expr)
		case *parser.BinaryExpr:
			if e.Op == parser.LOR || e.Op == parser.LAND || e.Op == parser.LUNLESS {
				walk(e.LHS)
				walk(e.RHS)
				return
			}
			if !e.Op.IsComparisonOperator() || e.ReturnBool {
				return
			}
			if n, ok := unparen(e.RHS).(*parser.NumberLiteral); ok {
				parts = append(parts, fmt.Sprintf("%s, needs %s %s", s.describe(ctx, e.LHS, now), e.Op, num(n.Val)))
			} else if n, ok := unparen(e.LHS).(*parser.NumberLiteral); ok {
				parts = append(parts, fmt.Sprintf("%s, needs %s %s", s.describe(ctx, e.RHS, now), flip(e.Op), num(n.Val)))
			}
		}
	}
	walk(e)
	if len(parts) == 0 {
		return "the query returned no result"
	}
	return strings.Join(parts, "; ")
}

// describe returns what e evaluates to: "31 of 50 = 0.62" for a ratio,
// "0.62" otherwise, "no data" when empty.
func (s *Source) describe(ctx context.Context, e parser.Expr, now time.Time) string {
	e = unparen(e)
	value := func(e parser.Expr) (float64, string) {
		v, err := s.Query(ctx, e.String(), now)
		if err != nil {
			return 0, "?"
		}
		switch v := v.(type) {
		case *model.Scalar:
			return float64(v.Value), ""
		case model.Vector:
			switch len(v) {
			case 0:
				return 0, "no data"
			case 1:
				return float64(v[0].Value), ""
			}
			return 0, fmt.Sprintf("%d series", len(v))
		}
		return 0, "?"
	}
	if b, ok := e.(*parser.BinaryExpr); ok && b.Op == parser.DIV {
		a, whyA := value(b.LHS)
		c, whyC := value(b.RHS)
		switch {
		case whyA == "" && whyC == "":
			return fmt.Sprintf("%s of %s = %s", num(a), num(c), num(a/c))
		case whyA == "":
			return fmt.Sprintf("%s of %s", num(a), whyC)
		case whyC == "":
			return fmt.Sprintf("%s of %s", whyA, num(c))
		}
		return fmt.Sprintf("%s of %s", whyA, whyC)
	}
	v, why := value(e)
	if why != "" {
		return why
	}
	return num(v)
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func flip(op parser.ItemType) parser.ItemType {
	switch op {
	case parser.LSS:
		return parser.GTR
	case parser.GTR:
		return parser.LSS
	case parser.LTE:
		return parser.GTE
	case parser.GTE:
		return parser.LTE
	}
	return op
}

func num(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}
