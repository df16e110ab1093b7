package replay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// PromSource reads raw samples from a Prometheus server's HTTP API with
// range-vector instant queries (`sel[window]` at the window's end), which
// return the samples exactly as stored — no resampling at a step, unlike
// query_range — through the same /api/v1/query every Prometheus-compatible
// server (Thanos, Mimir, VictoriaMetrics) offers.
//
// Series are mapped onto what medic's store would hold: the labels a
// Prometheus server adds (job, instance, and DropLabels) are dropped;
// metrics other than medic_* (scraped from the agent directly) get
// probe=ScrapeProbe, and a selector's probe matcher is not sent for them.
type PromSource struct {
	API v1.API
	// Match are extra matchers added to every query, to pick one agent
	// (e.g. instance=~"node1.*" or pod="spire-agent-x").
	Match []*labels.Matcher
	// ScrapeProbe is the name of medic's scrape probe whose samples the
	// agent's own metrics stand for.
	ScrapeProbe string
	DropLabels  []string
	// Queries counts requests (tests, the report).
	Queries int
}

// NewPromSource returns a source for the server at url.
func NewPromSource(url string) (*PromSource, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, err
	}
	return &PromSource{API: v1.NewAPI(c), DropLabels: []string{"job", "instance"}}, nil
}

// maxWindow bounds one query (Prometheus's query.max-samples is per query).
const maxWindow = 6 * time.Hour

// Fetch implements Source.
func (p *PromSource) Fetch(ctx context.Context, sel []*labels.Matcher, start, end time.Time) ([]Series, error) {
	agent := true
	var ms []string
	for _, m := range sel {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && strings.HasPrefix(m.Value, "medic_") {
			agent = false
		}
	}
	for _, m := range sel {
		if agent && m.Name == "probe" {
			continue // the agent's series in Prometheus have no probe label
		}
		ms = append(ms, m.String())
	}
	for _, m := range p.Match {
		ms = append(ms, m.String())
	}
	byKey := map[string]*Series{}
	origin := map[string]string{}
	var order []string
	for from := start; from.Before(end); {
		to := from.Add(maxWindow)
		if to.After(end) {
			to = end
		}
		w := to.Sub(from)
		q := fmt.Sprintf("{%s}[%dms]", strings.Join(ms, ","), w.Milliseconds())
		p.Queries++
		v, _, _, err := p.API.Query(ctx, q, to)
		if err != nil {
			return nil, fmt.Errorf("prometheus query %s at %s: %w", q, to.UTC().Format(time.RFC3339), err)
		}
		mat, ok := v.(model.Matrix)
		if !ok {
			return nil, fmt.Errorf("prometheus query %s: got %s, want a matrix", q, v.Type())
		}
		for _, ss := range mat {
			b := labels.NewBuilder(labels.EmptyLabels())
			for k, v := range ss.Metric {
				b.Set(string(k), string(v))
			}
			for _, d := range p.DropLabels {
				b.Del(d)
			}
			if agent && p.ScrapeProbe != "" {
				b.Set("probe", p.ScrapeProbe)
			}
			lset := b.Labels()
			key := lset.String()
			if o, ok := origin[key]; ok && o != ss.Metric.String() {
				return nil, fmt.Errorf("series %s and %s are both %s for medic: pick one agent with --match (e.g. instance=\"...\")", o, ss.Metric, key)
			}
			origin[key] = ss.Metric.String()
			s := byKey[key]
			if s == nil {
				s = &Series{Labels: lset}
				byKey[key] = s
				order = append(order, key)
			}
			for _, sp := range ss.Values {
				t := int64(sp.Timestamp)
				// Windows share their boundary (Prometheus 2.x ranges are closed),
				// and two scraped series may collapse onto one: keep time order.
				if n := len(s.T); (n > 0 && t <= s.T[n-1]) || t <= start.UnixMilli() {
					continue
				}
				s.T = append(s.T, t)
				s.V = append(s.V, float64(sp.Value))
			}
		}
		from = to
	}
	out := make([]Series, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, nil
}
