package rules

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// scripted returns a QueryFunc that yields the vector scripted for each
// evaluation step (nil = empty result).
func scripted(base time.Time, step time.Duration, values map[int]float64) QueryFunc {
	return func(_ context.Context, _ string, t time.Time) (promql.Vector, error) {
		i := int(t.Sub(base) / step)
		v, ok := values[i]
		if !ok {
			return nil, nil
		}
		return promql.Vector{{Metric: labels.FromStrings("__name__", "x", "status", "Unavailable"), F: v, T: t.UnixMilli()}}, nil
	}
}

func states(r *Rule) string {
	a := r.Active()
	if len(a) == 0 {
		return "inactive"
	}
	return a[0].State.String()
}

func TestAlertStateMachineAtChosenTimestamps(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	step := 5 * time.Second
	cases := []struct {
		name       string
		forD, keep time.Duration
		values     map[int]float64
		want       []string // state after each eval
		resolvedAt int      // eval index of the resolved transition, -1 none
	}{
		{
			name:   "no for: fires at once, resolves when condition stops",
			values: map[int]float64{1: 1, 2: 1},
			want:   []string{"inactive", "firing", "firing", "inactive"}, resolvedAt: 3,
		},
		{
			name: "for 10s: pending for two steps then firing",
			forD: 10 * time.Second, values: map[int]float64{0: 1, 1: 1, 2: 1, 3: 1},
			want: []string{"pending", "pending", "firing", "firing", "inactive"}, resolvedAt: 4,
		},
		{
			name: "flapping while pending never fires and never resolves",
			forD: 10 * time.Second, values: map[int]float64{0: 1, 1: 1, 3: 1, 4: 1, 6: 1},
			want:       []string{"pending", "pending", "inactive", "pending", "pending", "inactive", "pending"},
			resolvedAt: -1,
		},
		{
			name: "keep_firing_for holds a firing alert through a gap",
			keep: 10 * time.Second, values: map[int]float64{0: 1, 3: 1},
			want:       []string{"firing", "firing", "firing", "firing", "firing", "firing", "inactive"},
			resolvedAt: 6,
		},
		{
			name: "keep_firing_for does not hold a pending alert",
			forD: 20 * time.Second, keep: time.Minute, values: map[int]float64{0: 1},
			want: []string{"pending", "inactive"}, resolvedAt: -1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRule("SyncFailing", "x", tc.forD, tc.keep, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			q := scripted(base, step, tc.values)
			resolved := -1
			for i, want := range tc.want {
				tr, err := r.Eval(context.Background(), base.Add(time.Duration(i)*step), q)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range tr {
					if x.Resolved() {
						resolved = i
					}
				}
				if got := states(r); got != want {
					t.Fatalf("eval %d: state %s, want %s", i, got, want)
				}
			}
			if resolved != tc.resolvedAt {
				t.Fatalf("resolved at eval %d, want %d", resolved, tc.resolvedAt)
			}
		})
	}
}

func TestAlertTemplatesAndLabels(t *testing.T) {
	r, err := NewRule("SyncFailing", "x", 0, 0,
		map[string]string{"severity": "page", "code": "{{ $labels.status }}"},
		map[string]string{"summary": "sync failing with {{ $labels.status }} at {{ $value }}/s"})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_800_000_000, 0)
	if _, err := r.Eval(context.Background(), base, scripted(base, time.Second, map[int]float64{0: 0.2})); err != nil {
		t.Fatal(err)
	}
	a := r.Active()[0]
	if got := a.Labels.Get("alertname"); got != "SyncFailing" {
		t.Errorf("alertname = %q", got)
	}
	if a.Labels.Has("__name__") {
		t.Errorf("metric name kept: %s", a.Labels)
	}
	if got := a.Labels.Get("code"); got != "Unavailable" {
		t.Errorf("templated label = %q", got)
	}
	if got := a.Annotations["summary"]; got != "sync failing with Unavailable at 0.2/s" {
		t.Errorf("annotation = %q", got)
	}
}

func TestBadTemplateIsAnError(t *testing.T) {
	if _, err := NewRule("A", "x", 0, 0, nil, map[string]string{"s": "{{ $labels.x "}); err == nil {
		t.Fatal("want error for unterminated template")
	}
}
