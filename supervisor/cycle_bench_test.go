package supervisor_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/scrape"
	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// bigPage is a 10,000-series Prometheus text page: 100 metric families of
// 100 series each, SPIRE-style names and labels, counters moving each cycle.
func bigPage(cycle int) string {
	var b strings.Builder
	for m := range 100 {
		name := fmt.Sprintf("spire_agent_bench_metric_%02d", m)
		fmt.Fprintf(&b, "# HELP %s bench\n# TYPE %s counter\n", name, name)
		for s := range 100 {
			status := "OK"
			if s%10 == 0 {
				status = "Unavailable"
			}
			fmt.Fprintf(&b, "%s{host=\"node-1\",status=%q,shard=\"%d\"} %d\n", name, status, s, cycle*(s+1))
		}
	}
	return b.String()
}

// benchRules are 20 rules of the kinds medic runs: rates over 5m, sums,
// comparisons, absence and ratio checks.
func benchRules() []string {
	var out []string
	for i := range 20 {
		name := fmt.Sprintf("spire_agent_bench_metric_%02d", i*5)
		switch i % 4 {
		case 0:
			out = append(out, fmt.Sprintf(`rate(%s{status!="OK"}[5m]) > 0`, name))
		case 1:
			out = append(out, fmt.Sprintf(`sum by (status) (increase(%s[1m])) > 1e9`, name))
		case 2:
			out = append(out, fmt.Sprintf(`rate(%s{status="OK"}[5m]) / ignoring(status) group_left rate(%s{status="OK"}[5m]) != 1`, name, name))
		case 3:
			out = append(out, fmt.Sprintf(`absent(%s{status="Unknown"}) == 0 or max_over_time(%s[2m]) < 0`, name, name))
		}
	}
	return out
}

// BenchmarkCycle measures one full medic cycle on a 10,000-series page:
// HTTP scrape over loopback + parse + ingest into the store + evaluation
// of 20 rules with the PromQL engine, with 5 minutes of history in the store.
func BenchmarkCycle(b *testing.B) {
	// Pages are rendered before the timer starts: the peer's cost is not medic's.
	const warm = 60
	pages := make([][]byte, warm+b.N+1)
	for i := range pages {
		pages[i] = []byte(bigPage(i))
	}
	cycle := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(pages[cycle])
	}))
	defer srv.Close()
	logger := slog.New(slog.DiscardHandler)
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	st := store.New(store.Options{Retention: 11 * time.Minute})
	c := scrape.NewConfig()
	c.URL = srv.URL
	c.Interval = cfg.Duration(5 * time.Second)
	p, err := scrape.New(*c, probe.Env{Name: "spire", Logger: logger, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	app := st.Appender("spire")
	var rs []*rules.Rule
	for i, e := range benchRules() {
		r, err := rules.NewRule(fmt.Sprintf("Bench%02d", i), e, 30*time.Second, 0, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, r)
	}
	mgr := rules.NewManager(rules.NewEngine(st, 0, logger), rs, logger)
	ctx := context.Background()
	step := func() {
		cycle++
		clk.Advance(5 * time.Second)
		p.ScrapeOnce(ctx, app, clk.Now())
		mgr.Eval(ctx, clk.Now())
	}
	for range warm { // five minutes of history
		step()
	}
	if s := st.Stats(); s.Series < 10_000 {
		b.Fatalf("only %d series ingested", s.Series)
	}
	firing := 0
	for _, r := range mgr.Status() {
		if r.Error != "" {
			b.Fatalf("rule %s: %s", r.Alert, r.Error)
		}
		firing += len(r.Active)
	}
	if firing == 0 {
		b.Fatal("no rule produced an alert; the benchmark would not exercise the state machine")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.StopTimer()
	b.ReportMetric(float64(st.Stats().Series), "series")
}
