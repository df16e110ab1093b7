package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// t0 is the fixture's last sample time (Unix 1800000000).
var t0 = time.Unix(1_800_000_000, 0).UTC()

// fixture is the API on a real store and medic's PromQL engine and rule
// manager: two probes' series over five minutes at 15 s, one rule firing
// and one pending, evaluated at t0.
func fixture(t *testing.T) *httptest.Server {
	t.Helper()
	st := store.New(store.Options{Retention: time.Hour})
	for i := 20; i >= 0; i-- {
		ts := t0.Add(-time.Duration(i) * 15 * time.Second)
		st.Append(labels.FromStrings("__name__", "medic_probe_up", "probe", "spire-server"), ts, 0)
		st.Append(labels.FromStrings("__name__", "medic_probe_up", "probe", "spire-agent"), ts, 1)
		st.Append(labels.FromStrings("__name__", "spire_agent_manager_sync_fetch_entries_updates", "probe", "spire-agent",
			"host", "node-1", "status", "OK"), ts, float64(20-i))
	}
	eng := rules.NewEngine(st, rules.DefaultLookback, slog.New(slog.DiscardHandler))
	down, err := rules.NewRule("SPIREServerUnreachable", `medic_probe_up{probe="spire-server"} == 0`, 0, 0,
		map[string]string{"severity": "page"}, map[string]string{"summary": "{{ $labels.probe }} is down"})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := rules.NewRule("AgentUp", `medic_probe_up{probe="spire-agent"} == 1`, time.Hour, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr := rules.NewManager(eng, []*rules.Rule{down, slow}, slog.New(slog.DiscardHandler))
	mgr.Eval(context.Background(), t0)
	pe, q := eng.PromQL()
	srv := httptest.NewServer(New(Options{Engine: pe, Queryable: q, Rules: mgr.Status, EvaluationInterval: 15 * time.Second,
		Now: func() time.Time { return t0 }, Version: "v1.2.3", GoVersion: "go1.x"}))
	t.Cleanup(srv.Close)
	return srv
}

type envelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func get(t *testing.T, srv *httptest.Server, path string, params url.Values) (int, envelope) {
	t.Helper()
	resp, err := http.Get(srv.URL + path + "?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func post(t *testing.T, srv *httptest.Server, path string, params url.Values) (int, envelope) {
	t.Helper()
	resp, err := http.PostForm(srv.URL+path, params)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, envelope) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return resp.StatusCode, e
}

func mustData(t *testing.T, code int, e envelope, into any) {
	t.Helper()
	if code != 200 || e.Status != "success" || e.ErrorType != "" {
		t.Fatalf("HTTP %d %+v", code, e)
	}
	if err := json.Unmarshal(e.Data, into); err != nil {
		t.Fatalf("data %s: %v", e.Data, err)
	}
}

// point is [unix seconds, "value"].
type point [2]any

func (p point) check(t *testing.T, wantT float64, wantV string) {
	t.Helper()
	if ts, ok := p[0].(float64); !ok || ts != wantT {
		t.Errorf("timestamp %#v, want %v", p[0], wantT)
	}
	if v, ok := p[1].(string); !ok || v != wantV {
		t.Errorf("value %#v, want the string %q", p[1], wantV)
	}
}

func TestQueryShapes(t *testing.T) {
	srv := fixture(t)
	now := float64(t0.Unix())

	t.Run("vector", func(t *testing.T) {
		var d struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  point             `json:"value"`
			} `json:"result"`
		}
		code, e := get(t, srv, "/api/v1/query", url.Values{"query": {"medic_probe_up"}})
		mustData(t, code, e, &d)
		sort.Slice(d.Result, func(i, j int) bool { return d.Result[i].Metric["probe"] < d.Result[j].Metric["probe"] })
		if d.ResultType != "vector" || len(d.Result) != 2 || d.Result[0].Metric["probe"] != "spire-agent" || d.Result[0].Metric["__name__"] != "medic_probe_up" {
			t.Fatalf("%s", e.Data)
		}
		d.Result[0].Value.check(t, now, "1")
		d.Result[1].Value.check(t, now, "0")
	})
	t.Run("POST form, explicit time, scalar", func(t *testing.T) {
		var d struct {
			ResultType string `json:"resultType"`
			Result     point  `json:"result"`
		}
		code, e := post(t, srv, "/api/v1/query", url.Values{"query": {"1 + 1"}, "time": {"1800000000.5"}})
		mustData(t, code, e, &d)
		if d.ResultType != "scalar" {
			t.Fatalf("%s", e.Data)
		}
		d.Result.check(t, now+0.5, "2")
	})
	t.Run("non-finite values are strings", func(t *testing.T) {
		var d struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  point             `json:"value"`
			} `json:"result"`
		}
		code, e := get(t, srv, "/api/v1/query", url.Values{"query": {`medic_probe_up / 0`}, "time": {t0.Format(time.RFC3339)}})
		mustData(t, code, e, &d)
		sort.Slice(d.Result, func(i, j int) bool { return d.Result[i].Metric["probe"] < d.Result[j].Metric["probe"] })
		if len(d.Result) != 2 {
			t.Fatalf("%s", e.Data)
		}
		d.Result[0].Value.check(t, now, "+Inf")
		d.Result[1].Value.check(t, now, "NaN")
	})
	t.Run("string", func(t *testing.T) {
		var d struct {
			ResultType string `json:"resultType"`
			Result     point  `json:"result"`
		}
		code, e := get(t, srv, "/api/v1/query", url.Values{"query": {`"hello"`}})
		mustData(t, code, e, &d)
		if d.ResultType != "string" {
			t.Fatalf("%s", e.Data)
		}
		d.Result.check(t, now, "hello")
	})
	t.Run("matrix from a range selector; empty vector is []", func(t *testing.T) {
		var d struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values []point           `json:"values"`
			} `json:"result"`
		}
		code, e := get(t, srv, "/api/v1/query", url.Values{"query": {`spire_agent_manager_sync_fetch_entries_updates[1m]`}})
		mustData(t, code, e, &d)
		if d.ResultType != "matrix" || len(d.Result) != 1 || len(d.Result[0].Values) != 4 {
			t.Fatalf("%s", e.Data)
		}
		d.Result[0].Values[3].check(t, now, "20")
		code, e = get(t, srv, "/api/v1/query", url.Values{"query": {`nothing_here`}})
		if code != 200 || string(e.Data) != `{"resultType":"vector","result":[]}` {
			t.Fatalf("empty result: %d %s", code, e.Data)
		}
	})
	t.Run("warnings", func(t *testing.T) {
		code, e := get(t, srv, "/api/v1/query", url.Values{"query": {`quantile(2, medic_probe_up)`}})
		if code != 200 || len(e.Warnings) == 0 || !strings.Contains(e.Warnings[0], "quantile") {
			t.Fatalf("HTTP %d %+v", code, e)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			path   string
			params url.Values
			code   int
			typ    string
			msg    string
		}{
			{"/api/v1/query", url.Values{"query": {"medic_probe_up{"}}, 400, "bad_data", "invalid parameter \"query\""},
			{"/api/v1/query", url.Values{"query": {"up"}, "time": {"yesterday"}}, 400, "bad_data", "invalid parameter \"time\""},
			{"/api/v1/query", url.Values{"query": {`{__name__=~".+"} + on() group_left {__name__=~".+"}`}}, 422, "execution", "many-to-many"},
			{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"100"}, "end": {"200"}}, 400, "bad_data", "invalid parameter \"step\""},
			{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"200"}, "end": {"100"}, "step": {"1"}}, 400, "bad_data", "end timestamp must not be before start time"},
			{"/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}, 400, "bad_data", "11000 points"},
			{"/api/v1/series", url.Values{}, 400, "bad_data", "no match[] parameter provided"},
			{"/api/v1/series", url.Values{"match[]": {"up{"}}, 400, "bad_data", "invalid parameter \"match[]\""},
			{"/api/v1/targets", url.Values{}, 404, "not_found", "not served by medic"},
		} {
			code, e := get(t, srv, c.path, c.params)
			if code != c.code || e.Status != "error" || e.ErrorType != c.typ || !strings.Contains(e.Error, c.msg) || e.Data != nil {
				t.Errorf("%s %s: HTTP %d %+v; want %d %s %q", c.path, c.params.Encode(), code, e, c.code, c.typ, c.msg)
			}
		}
		req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/v1/query", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if code, e := decode(t, resp); code != 405 || e.ErrorType != "method_not_allowed" {
			t.Errorf("DELETE: %d %+v", code, e)
		}
	})
}

func TestQueryRangeShape(t *testing.T) {
	srv := fixture(t)
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values []point           `json:"values"`
		} `json:"result"`
	}
	start := t0.Add(-time.Minute)
	code, e := post(t, srv, "/api/v1/query_range", url.Values{"query": {`sum by (probe) (medic_probe_up)`},
		"start": {start.Format(time.RFC3339Nano)}, "end": {strconv.FormatInt(t0.Unix(), 10)}, "step": {"30s"}})
	mustData(t, code, e, &d)
	if d.ResultType != "matrix" || len(d.Result) != 2 || len(d.Result[0].Values) != 3 {
		t.Fatalf("%s", e.Data)
	}
	if m := d.Result[0].Metric; len(m) != 1 || m["probe"] != "spire-agent" {
		t.Fatalf("metric %v", m)
	}
	for i, p := range d.Result[0].Values {
		p.check(t, float64(start.Unix())+30*float64(i), "1")
	}
}

func TestSeriesAndLabelsShapes(t *testing.T) {
	srv := fixture(t)
	var series []map[string]string
	code, e := get(t, srv, "/api/v1/series", url.Values{"match[]": {`medic_probe_up`, `{host="node-1"}`}})
	mustData(t, code, e, &series)
	if len(series) != 3 || series[0]["probe"] != "spire-agent" || series[2]["host"] != "node-1" {
		t.Fatalf("%s", e.Data)
	}
	// A window before every sample has no series.
	code, e = get(t, srv, "/api/v1/series", url.Values{"match[]": {`medic_probe_up`}, "start": {"0"}, "end": {"1000"}})
	mustData(t, code, e, &series)
	if len(series) != 0 || string(e.Data) != "[]" {
		t.Fatalf("old window: %s", e.Data)
	}

	var names []string
	code, e = get(t, srv, "/api/v1/labels", nil)
	mustData(t, code, e, &names)
	if strings.Join(names, ",") != "__name__,host,probe,status" {
		t.Fatalf("labels %v", names)
	}
	code, e = post(t, srv, "/api/v1/labels", url.Values{"match[]": {`medic_probe_up`}})
	mustData(t, code, e, &names)
	if strings.Join(names, ",") != "__name__,probe" {
		t.Fatalf("labels of medic_probe_up %v", names)
	}

	var values []string
	code, e = get(t, srv, "/api/v1/label/probe/values", nil)
	mustData(t, code, e, &values)
	if strings.Join(values, ",") != "spire-agent,spire-server" {
		t.Fatalf("values %v", values)
	}
	code, e = get(t, srv, "/api/v1/label/__name__/values", url.Values{"match[]": {`{probe="spire-agent"}`}})
	mustData(t, code, e, &values)
	if strings.Join(values, ",") != "medic_probe_up,spire_agent_manager_sync_fetch_entries_updates" {
		t.Fatalf("names %v", values)
	}
	code, e = get(t, srv, "/api/v1/label/probe/values", url.Values{"limit": {"1"}})
	mustData(t, code, e, &values)
	if len(values) != 1 || len(e.Warnings) != 1 {
		t.Fatalf("limit 1: %v %v", values, e.Warnings)
	}
}

func TestRulesAndAlertsShapes(t *testing.T) {
	srv := fixture(t)
	var rd struct {
		Groups []struct {
			Name     string  `json:"name"`
			File     string  `json:"file"`
			Interval float64 `json:"interval"`
			Rules    []struct {
				State          string            `json:"state"`
				Name           string            `json:"name"`
				Query          string            `json:"query"`
				Duration       float64           `json:"duration"`
				Labels         map[string]string `json:"labels"`
				Annotations    map[string]string `json:"annotations"`
				Alerts         []json.RawMessage `json:"alerts"`
				Health         string            `json:"health"`
				Type           string            `json:"type"`
				LastEvaluation time.Time         `json:"lastEvaluation"`
				EvaluationTime *float64          `json:"evaluationTime"`
			} `json:"rules"`
		} `json:"groups"`
	}
	code, e := get(t, srv, "/api/v1/rules", nil)
	mustData(t, code, e, &rd)
	if len(rd.Groups) != 1 || rd.Groups[0].Interval != 15 || len(rd.Groups[0].Rules) != 2 {
		t.Fatalf("%s", e.Data)
	}
	r := rd.Groups[0].Rules[0]
	if r.Name != "SPIREServerUnreachable" || r.State != "firing" || r.Type != "alerting" || r.Health != "ok" ||
		r.Query != `medic_probe_up{probe="spire-server"} == 0` || r.Labels["severity"] != "page" ||
		r.Annotations["summary"] != "{{ $labels.probe }} is down" || len(r.Alerts) != 1 || !r.LastEvaluation.Equal(t0) || r.EvaluationTime == nil {
		t.Fatalf("rule %+v\n%s", r, e.Data)
	}
	if r := rd.Groups[0].Rules[1]; r.State != "pending" || r.Duration != 3600 {
		t.Fatalf("pending rule %+v", r)
	}
	code, e = get(t, srv, "/api/v1/rules", url.Values{"type": {"record"}})
	mustData(t, code, e, &rd)
	if len(rd.Groups) != 0 {
		t.Fatalf("recording rules: %s", e.Data)
	}

	var ad struct {
		Alerts []struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
			State       string            `json:"state"`
			ActiveAt    time.Time         `json:"activeAt"`
			Value       string            `json:"value"`
		} `json:"alerts"`
	}
	code, e = get(t, srv, "/api/v1/alerts", nil)
	mustData(t, code, e, &ad)
	if len(ad.Alerts) != 2 {
		t.Fatalf("%s", e.Data)
	}
	a := ad.Alerts[0]
	if a.Labels["alertname"] != "SPIREServerUnreachable" || a.Labels["probe"] != "spire-server" || a.State != "firing" ||
		a.Annotations["summary"] != "spire-server is down" || a.Value != "0e+00" || !a.ActiveAt.Equal(t0) {
		t.Fatalf("alert %+v", a)
	}
	if ad.Alerts[1].State != "pending" || ad.Alerts[1].Value != "1e+00" {
		t.Fatalf("pending alert %+v", ad.Alerts[1])
	}

	var bi map[string]string
	code, e = get(t, srv, "/api/v1/status/buildinfo", nil)
	mustData(t, code, e, &bi)
	if bi["version"] != "v1.2.3" || bi["goVersion"] != "go1.x" {
		t.Fatalf("buildinfo %v", bi)
	}
}

// TestPromtool queries the API with Debian's promtool, a real Prometheus
// API client (client_golang's), as an operator would.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not found, and CI=true or MEDIC_REQUIRE_PROMTOOL is set (apt install prometheus)")
		}
		t.Skip("promtool not found")
	}
	srv := fixture(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ts := strconv.FormatInt(t0.Unix(), 10)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"query", "instant", "--time=" + ts, srv.URL, "medic_probe_up"},
			[]string{`medic_probe_up{probe="spire-agent"} => 1 @[1800000000]`, `medic_probe_up{probe="spire-server"} => 0 @[1800000000]`}},
		{[]string{"query", "instant", "--time=" + ts, srv.URL, `increase(spire_agent_manager_sync_fetch_entries_updates[1m])`},
			[]string{`{host="node-1", probe="spire-agent", status="OK"} => 4 @[1800000000]`}},
		{[]string{"query", "range", "--start=" + strconv.FormatInt(t0.Unix()-60, 10), "--end=" + ts, "--step=30s", srv.URL, `medic_probe_up{probe="spire-server"}`},
			[]string{`medic_probe_up{probe="spire-server"} =>`, "0 @[1799999940]", "0 @[1799999970]", "0 @[1800000000]"}},
		{[]string{"query", "series", "--match=medic_probe_up", srv.URL},
			[]string{`{__name__="medic_probe_up", probe="spire-agent"}`, `{__name__="medic_probe_up", probe="spire-server"}`}},
		{[]string{"query", "labels", srv.URL, "probe"}, []string{"spire-agent\nspire-server"}},
		{[]string{"query", "instant", "-o", "json", "--time=" + ts, srv.URL, "0/0"}, []string{`"NaN"`}},
	} {
		out := run(c.args...)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("promtool %s:\n%s\nlacks %q", strings.Join(c.args, " "), out, w)
			}
		}
	}
	// A bad query is reported as Prometheus reports it.
	out, err := exec.Command(promtool, "query", "instant", srv.URL, "medic_probe_up{").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad_data") {
		t.Errorf("bad query: %v\n%s", err, out)
	}
}

// TestRulesListsRuleFileGroupsAndRecordingRules: /api/v1/rules shows the
// rule files' groups (file, interval) with their recording rules, as
// Prometheus does; type=record and rule_name[] select them.
func TestRulesListsRuleFileGroupsAndRecordingRules(t *testing.T) {
	st := store.New(store.Options{Retention: time.Hour})
	for i := 20; i >= 0; i-- {
		st.Append(labels.FromStrings("__name__", "medic_probe_up", "probe", "spire-server"), t0.Add(-time.Duration(i)*15*time.Second), 0)
	}
	eng := rules.NewEngine(st, rules.DefaultLookback, slog.New(slog.DiscardHandler))
	groups, err := rules.NewGroups([]rules.GroupSpec{
		{Name: "medic", Rules: []rules.RuleSpec{{Alert: "Inline", Expr: `medic_probe_up == 0`}}},
		{Name: "spire", File: "rules/spire.yml", Interval: 30 * time.Second, Rules: []rules.RuleSpec{
			{Record: "spire:server_up:min", Expr: `min(medic_probe_up{probe="spire-server"})`, Labels: map[string]string{"team": "id"}},
			{Alert: "ServerDown", Expr: `spire:server_up:min == 0`}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr := rules.NewGroupManager(eng, groups, st, slog.New(slog.DiscardHandler))
	mgr.Eval(context.Background(), t0)
	pe, q := eng.PromQL()
	srv := httptest.NewServer(New(Options{Engine: pe, Queryable: q, Rules: mgr.Status, EvaluationInterval: 15 * time.Second,
		Now: func() time.Time { return t0 }}))
	t.Cleanup(srv.Close)

	type shape struct {
		Groups []struct {
			Name     string  `json:"name"`
			File     string  `json:"file"`
			Interval float64 `json:"interval"`
			Rules    []struct {
				Name   string            `json:"name"`
				Query  string            `json:"query"`
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
				Type   string            `json:"type"`
				State  *string           `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	list := func(v url.Values) string {
		var rd shape
		code, e := get(t, srv, "/api/v1/rules", v)
		mustData(t, code, e, &rd)
		var out []string
		for _, g := range rd.Groups {
			s := fmt.Sprintf("%s(%s,%gs):", g.Name, g.File, g.Interval)
			for _, r := range g.Rules {
				s += fmt.Sprintf(" %s/%s/%s/%v", r.Type, r.Name, r.Health, r.State != nil)
				if r.Type == "recording" && (r.Query != `min(medic_probe_up{probe="spire-server"})` || r.Labels["team"] != "id") {
					t.Errorf("recording rule %+v", r)
				}
			}
			out = append(out, s)
		}
		return strings.Join(out, " | ")
	}
	if got := list(nil); got != "medic(medic.yaml,15s): alerting/Inline/ok/true | spire(rules/spire.yml,30s): recording/spire:server_up:min/ok/false alerting/ServerDown/ok/true" {
		t.Errorf("all rules: %s", got)
	}
	if got := list(url.Values{"type": {"record"}}); got != "spire(rules/spire.yml,30s): recording/spire:server_up:min/ok/false" {
		t.Errorf("type=record: %s", got)
	}
	if got := list(url.Values{"type": {"alert"}, "rule_name[]": {"ServerDown"}}); got != "spire(rules/spire.yml,30s): alerting/ServerDown/ok/true" {
		t.Errorf("type=alert, rule_name[]=ServerDown: %s", got)
	}
}

// A range query's points live in slices the PromQL engine takes back into
// its pool when the query is closed: the response must be encoded before
// that, or a concurrent query refills the slices and a client gets another
// query's values (and -race reports the read and the write).
func TestConcurrentRangeQueriesKeepTheirOwnPoints(t *testing.T) {
	srv := fixture(t)
	start := t0.Add(-5 * time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				want := strconv.Itoa(w*100 + i)
				resp, err := http.PostForm(srv.URL+"/api/v1/query_range", url.Values{
					"query": {`medic_probe_up{probe="spire-agent"} * ` + want},
					"start": {start.Format(time.RFC3339Nano)}, "end": {t0.Format(time.RFC3339Nano)}, "step": {"1s"}})
				if err != nil {
					errs <- err
					return
				}
				var d struct {
					Data struct {
						Result []struct {
							Values [][2]any `json:"values"`
						} `json:"result"`
					} `json:"data"`
				}
				err = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
				if err != nil || len(d.Data.Result) != 1 || len(d.Data.Result[0].Values) != 301 {
					errs <- fmt.Errorf("%s: %v, %d series", want, err, len(d.Data.Result))
					return
				}
				for _, p := range d.Data.Result[0].Values {
					if p[1] != want {
						errs <- fmt.Errorf("query for %s answered a point %v", want, p[1])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
