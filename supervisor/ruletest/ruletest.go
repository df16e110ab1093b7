// Package ruletest runs rule unit tests in promtool's format (`promtool
// test rules`): rule_files, evaluation_interval, group_eval_order, and
// tests with input_series (the expanding notation, parsed by Prometheus's
// own series-description parser), alert_rule_test and promql_expr_test.
// Rules are evaluated by medic's own rule engine (supervisor/rules) over
// medic's store, so a passing test says how medic evaluates them.
//
// medic's extension, remediation_test, lives in files with medic_config
// set (promtool rejects unknown fields): it runs the remediation ladder of
// the config's actions on the test's timeline; see docs/rules.md.
package ruletest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// File is one unit-test file.
type File struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	GroupEvalOrder     []string       `yaml:"group_eval_order"`
	Tests              []TestGroup    `yaml:"tests"`
	// MedicConfig (medic's extension) is a medic config file whose
	// actions and ladders remediation_test runs; its rules (rules[] and
	// ruleFiles) are the rules under test when rule_files is empty.
	MedicConfig string `yaml:"medic_config,omitempty"`
}

// TestGroup is one entry of tests.
type TestGroup struct {
	Interval        model.Duration    `yaml:"interval"`
	InputSeries     []Series          `yaml:"input_series"`
	AlertRuleTests  []AlertTest       `yaml:"alert_rule_test,omitempty"`
	PromqlExprTests []ExprTest        `yaml:"promql_expr_test,omitempty"`
	ExternalLabels  map[string]string `yaml:"external_labels,omitempty"`
	ExternalURL     string            `yaml:"external_url,omitempty"`
	TestGroupName   string            `yaml:"name,omitempty"`
	// RemediationTests is medic's extension (needs medic_config).
	RemediationTests []RemediationTest `yaml:"remediation_test,omitempty"`
}

// Series is one input series.
type Series struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// AlertTest is one alert_rule_test entry.
type AlertTest struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []ExpAlert     `yaml:"exp_alerts"`
}

// ExpAlert is one expected firing alert.
type ExpAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// ExprTest is one promql_expr_test entry.
type ExprTest struct {
	Expr       string         `yaml:"expr"`
	EvalTime   model.Duration `yaml:"eval_time"`
	ExpSamples []ExpSample    `yaml:"exp_samples"`
}

// ExpSample is one expected sample.
type ExpSample struct {
	Labels string  `yaml:"labels"`
	Value  float64 `yaml:"value"`
}

// RemediationTest (medic's extension) lists the attempts the ladder has
// made by EvalTime, in order.
type RemediationTest struct {
	EvalTime    model.Duration `yaml:"eval_time"`
	ExpAttempts []ExpAttempt   `yaml:"exp_attempts"`
}

// ExpAttempt is one expected attempt: action, result (succeeded, failed,
// suppressed) and reason (verify, budget, precondition, paused, ...).
type ExpAttempt struct {
	Action string `yaml:"action"`
	Result string `yaml:"result"`
	Reason string `yaml:"reason,omitempty"`
}

var exprParser = parser.NewParser(parser.Options{})

// Run runs every file, writing promtool-like output to out (progress) and
// errOut (failures). It returns the exit code: 0 all passed, 1 otherwise.
func Run(out, errOut io.Writer, files ...string) int {
	code := 0
	for _, f := range files {
		fmt.Fprintf(out, "Unit Testing:  %s\n", f)
		if errs := RunFile(f); len(errs) > 0 {
			fmt.Fprintln(errOut, "  FAILED:")
			for _, e := range errs {
				fmt.Fprintln(errOut, e.Error())
				fmt.Fprintln(errOut)
			}
			code = 1
		} else {
			fmt.Fprintln(out, "  SUCCESS")
		}
		fmt.Fprintln(out)
	}
	return code
}

// RunFile runs one test file and returns its failures.
func RunFile(path string) []error {
	b, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	dir := filepath.Dir(path)
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	order := map[string]int{}
	for i, g := range f.GroupEvalOrder {
		if _, dup := order[g]; dup {
			return []error{fmt.Errorf("group name repeated in evaluation order: %s", g)}
		}
		order[g] = i
	}
	var specs []rules.GroupSpec
	var rem *remediation
	if f.MedicConfig != "" {
		p := f.MedicConfig
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		rem, specs, err = loadMedicConfig(p)
		if err != nil {
			return []error{err}
		}
	}
	if len(f.RuleFiles) > 0 {
		files, err := rules.ExpandGlobs(f.RuleFiles, dir)
		if err != nil {
			return []error{err}
		}
		fgs, err := rules.LoadFiles(files)
		if err != nil {
			return []error{err}
		}
		specs = nil
		for _, fg := range fgs {
			specs = append(specs, specFromFile(fg))
		}
	}
	// Groups evaluate in group_eval_order; the others after, in file order
	// (promtool leaves their order unspecified).
	sort.SliceStable(specs, func(i, j int) bool { return rank(order, specs[i].Name) < rank(order, specs[j].Name) })
	var errs []error
	for i, tg := range f.Tests {
		if tg.Interval == 0 {
			tg.Interval = f.EvaluationInterval
		}
		if len(tg.RemediationTests) > 0 && rem == nil {
			errs = append(errs, fmt.Errorf("    %s: remediation_test needs medic_config (the actions and ladders to run)", testName(tg, i)))
			continue
		}
		errs = append(errs, tg.run(specs, time.Duration(f.EvaluationInterval), rem)...)
	}
	return errs
}

func testName(tg TestGroup, i int) string {
	if tg.TestGroupName != "" {
		return tg.TestGroupName
	}
	return "unnamed#" + strconv.Itoa(i)
}

func rank(order map[string]int, name string) int {
	if r, ok := order[name]; ok {
		return r
	}
	return len(order)
}

func specFromFile(fg rules.FileGroup) rules.GroupSpec {
	g := rules.GroupSpec{Name: fg.Name, File: fg.File, Labels: fg.Labels}
	if fg.QueryOffset != nil {
		g.QueryOffset = time.Duration(*fg.QueryOffset)
	}
	for _, r := range fg.FileRules() {
		g.Rules = append(g.Rules, rules.RuleSpec{Alert: r.Alert, Record: r.Record, Expr: r.Expr,
			For: time.Duration(r.For), KeepFiringFor: time.Duration(r.KeepFiringFor),
			Labels: r.Labels, Annotations: r.Annotations, Where: r.Where()})
	}
	return g
}

// epoch is where promtool's test timeline starts.
var epoch = time.Unix(0, 0).UTC()

// load appends the input series to st at the test's interval.
func (tg TestGroup) load(st *store.Store) error {
	for _, s := range tg.InputSeries {
		lset, vals, err := exprParser.ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			return fmt.Errorf("input_series %q %q: %w", s.Series, s.Values, err)
		}
		for i, v := range vals {
			if v.Omitted {
				continue
			}
			if v.Histogram != nil {
				return fmt.Errorf("input_series %q: native histograms are not supported by medic", s.Series)
			}
			f := v.Value
			if value.IsStaleNaN(f) {
				f = math.Float64frombits(value.StaleNaN)
			}
			st.Append(lset, epoch.Add(time.Duration(i)*time.Duration(tg.Interval)), f)
		}
	}
	return nil
}

func (tg TestGroup) maxEvalTime() time.Duration {
	var m model.Duration
	for _, a := range tg.AlertRuleTests {
		m = max(m, a.EvalTime)
	}
	for _, e := range tg.PromqlExprTests {
		m = max(m, e.EvalTime)
	}
	for _, r := range tg.RemediationTests {
		m = max(m, r.EvalTime)
	}
	return time.Duration(m)
}

func (tg TestGroup) run(specs []rules.GroupSpec, evalInterval time.Duration, rem *remediation) []error {
	logger := slog.New(slog.DiscardHandler)
	maxt := tg.maxEvalTime()
	// Keep every sample of the test (and the lookback) in the store.
	span := time.Duration(len(tg.InputSeries)+1)*time.Duration(tg.Interval) + maxt
	for _, s := range tg.InputSeries {
		_, vals, err := exprParser.ParseSeriesDesc(s.Series + " " + s.Values)
		if err == nil {
			span = max(span, time.Duration(len(vals))*time.Duration(tg.Interval)+maxt)
		}
	}
	st := store.New(store.Options{Retention: span + 24*time.Hour, MaxSeries: 1_000_000})
	if err := tg.load(st); err != nil {
		return []error{err}
	}
	// In a unit test every group is evaluated at every evaluation_interval, as promtool does.
	for i := range specs {
		specs[i].Interval = 0
	}
	groups, err := rules.NewGroups(specs)
	if err != nil {
		return []error{err}
	}
	for _, g := range groups {
		for _, gr := range g.Rules {
			if gr.Alert != nil {
				gr.Alert.ExternalLabels, gr.Alert.ExternalURL = tg.ExternalLabels, tg.ExternalURL
			}
		}
	}
	eng := rules.NewEngine(st, 0, logger)
	mgr := rules.NewGroupManager(eng, groups, st, logger)
	var sim *simulation
	if rem != nil && len(tg.RemediationTests) > 0 {
		sim, err = rem.start(eng, epoch)
		if err != nil {
			return []error{err}
		}
		defer sim.stop()
	}

	prefix := ""
	if tg.TestGroupName != "" {
		prefix = fmt.Sprintf("    name: %s,\n", tg.TestGroupName)
	}
	alertTimes := map[model.Duration][]AlertTest{}
	var times []model.Duration
	for _, a := range tg.AlertRuleTests {
		if a.Alertname == "" {
			return []error{fmt.Errorf("an item under alert_rule_test misses required attribute alertname at eval_time %v", a.EvalTime)}
		}
		if _, ok := alertTimes[a.EvalTime]; !ok {
			times = append(times, a.EvalTime)
		}
		alertTimes[a.EvalTime] = append(alertTimes[a.EvalTime], a)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	remTimes := append([]RemediationTest(nil), tg.RemediationTests...)
	sort.SliceStable(remTimes, func(i, j int) bool { return remTimes[i].EvalTime < remTimes[j].EvalTime })

	ctx := context.Background()
	var errs []error
	curr, rcurr := 0, 0
	for ts := epoch; !ts.After(epoch.Add(maxt)); ts = ts.Add(evalInterval) {
		mgr.Eval(ctx, ts)
		var evalErrs []error
		for _, rs := range mgr.Status() {
			if rs.Error != "" {
				evalErrs = append(evalErrs, fmt.Errorf("    rule: %s, time: %s, err: %s", rs.Alert+rs.Record, ts.Sub(epoch), rs.Error))
			}
		}
		if len(evalErrs) > 0 {
			return append(errs, evalErrs...)
		}
		if sim != nil {
			sim.observe(ts, mgr.Firing())
		}
		// An eval_time between two evaluations is checked against the earlier one.
		next := ts.Add(evalInterval).Sub(epoch)
		for curr < len(times) && ts.Sub(epoch) <= time.Duration(times[curr]) && time.Duration(times[curr]) < next {
			t := times[curr]
			for _, at := range alertTimes[t] {
				var got laSet
				for _, a := range mgr.Firing() {
					if a.Rule == at.Alertname {
						got = append(got, la{a.Labels, labels.FromMap(a.Annotations)})
					}
				}
				var exp laSet
				for _, e := range at.ExpAlerts {
					l := map[string]string{}
					for k, v := range e.ExpLabels {
						l[k] = v
					}
					l[labels.AlertName] = at.Alertname
					exp = append(exp, la{labels.FromMap(l), labels.FromMap(e.ExpAnnotations)})
				}
				sort.Sort(got)
				sort.Sort(exp)
				if !exp.equal(got) {
					errs = append(errs, fmt.Errorf("%s    alertname: %s, time: %s, \n        exp:%v, \n        got:%v",
						prefix, at.Alertname, t.String(), indentLines(exp.String(), "            "), indentLines(got.String(), "            ")))
				}
			}
			curr++
		}
		for sim != nil && rcurr < len(remTimes) && ts.Sub(epoch) <= time.Duration(remTimes[rcurr].EvalTime) && time.Duration(remTimes[rcurr].EvalTime) < next {
			rt := remTimes[rcurr]
			// The ladder runs between evaluations: step it to eval_time.
			got := sim.attemptsAt(epoch.Add(time.Duration(rt.EvalTime)))
			if !equalAttempts(rt.ExpAttempts, got) {
				errs = append(errs, fmt.Errorf("%s    remediation at time: %s, \n        exp:%s, \n        got:%s",
					prefix, rt.EvalTime.String(), attemptsString(rt.ExpAttempts), attemptsString(got)))
			}
			rcurr++
		}
	}

outer:
	for _, et := range tg.PromqlExprTests {
		got, err := eng.Query(ctx, et.Expr, epoch.Add(time.Duration(et.EvalTime)))
		if err != nil {
			errs = append(errs, fmt.Errorf("    expr: %q, time: %s, err: %s", et.Expr, et.EvalTime.String(), err.Error()))
			continue
		}
		var gotS, expS []sampleT
		for _, s := range got {
			gotS = append(gotS, sampleT{s.Metric, s.F})
		}
		for _, s := range et.ExpSamples {
			lb, err := exprParser.ParseMetric(s.Labels)
			if err != nil {
				errs = append(errs, fmt.Errorf("    expr: %q, time: %s, err: labels %q: %w", et.Expr, et.EvalTime.String(), s.Labels, err))
				continue outer
			}
			expS = append(expS, sampleT{lb, s.Value})
		}
		sort.Slice(expS, func(i, j int) bool { return labels.Compare(expS[i].l, expS[j].l) <= 0 })
		sort.Slice(gotS, func(i, j int) bool { return labels.Compare(gotS[i].l, gotS[j].l) <= 0 })
		if !equalSamples(expS, gotS) {
			errs = append(errs, fmt.Errorf("    expr: %q, time: %s,\n        exp: %v\n        got: %v", et.Expr,
				et.EvalTime.String(), samplesString(expS), samplesString(gotS)))
		}
	}
	return errs
}

type sampleT struct {
	l labels.Labels
	v float64
}

func equalSamples(a, b []sampleT) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !labels.Equal(a[i].l, b[i].l) || !(a[i].v == b[i].v || (math.IsNaN(a[i].v) && math.IsNaN(b[i].v))) {
			return false
		}
	}
	return true
}

func samplesString(s []sampleT) string {
	if len(s) == 0 {
		return "nil"
	}
	var parts []string
	for _, x := range s {
		parts = append(parts, x.l.String()+" "+strconv.FormatFloat(x.v, 'E', -1, 64))
	}
	return strings.Join(parts, ", ")
}

type la struct{ labels, annotations labels.Labels }

type laSet []la

func (s laSet) Len() int      { return len(s) }
func (s laSet) Swap(i, j int) { s[i], s[j] = s[j], s[i] }
func (s laSet) Less(i, j int) bool {
	if d := labels.Compare(s[i].labels, s[j].labels); d != 0 {
		return d < 0
	}
	return labels.Compare(s[i].annotations, s[j].annotations) < 0
}

func (s laSet) equal(o laSet) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if !labels.Equal(s[i].labels, o[i].labels) || !labels.Equal(s[i].annotations, o[i].annotations) {
			return false
		}
	}
	return true
}

func (s laSet) String() string {
	if len(s) == 0 {
		return "[]"
	}
	var b strings.Builder
	for i, x := range s {
		if i == 0 {
			b.WriteString("[\n")
		} else {
			b.WriteString(",\n")
		}
		b.WriteString(strconv.Itoa(i) + ":" + indentLines("\nLabels:"+x.labels.String()+"\nAnnotations:"+x.annotations.String(), "  "))
	}
	b.WriteString("\n]")
	return b.String()
}

func indentLines(lines, indent string) string {
	n := strings.Split(lines, "\n")
	return strings.Join(n, "\n"+indent)
}

func equalAttempts(exp, got []ExpAttempt) bool {
	if len(exp) != len(got) {
		return false
	}
	for i := range exp {
		if exp[i] != got[i] {
			return false
		}
	}
	return true
}

func attemptsString(a []ExpAttempt) string {
	if len(a) == 0 {
		return "[]"
	}
	var b strings.Builder
	b.WriteString("[")
	for i, x := range a {
		fmt.Fprintf(&b, "\n            %d: action=%s result=%s", i, x.Action, x.Result)
		if x.Reason != "" {
			fmt.Fprintf(&b, " reason=%s", x.Reason)
		}
	}
	b.WriteString("\n        ]")
	return b.String()
}
