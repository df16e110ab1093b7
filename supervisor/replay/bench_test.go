package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// agentSource is a recorded SPIRE agent computed on demand (no week of
// samples in memory): 200 series at 5 s, of which the rules read a few;
// the agent's server is unreachable for 20 minutes at 03:00 every day.
type agentSource struct {
	series []labels.Labels
	step   time.Duration
}

func newAgentSource() *agentSource {
	s := &agentSource{step: 5 * time.Second}
	for _, st := range []string{"OK", "Unavailable"} {
		s.series = append(s.series, labels.FromStrings("__name__", "spire_agent_manager_sync_fetch_entries_updates", "host", "node1", "probe", "spire", "status", st))
	}
	for _, p := range []string{"spire", "spire-server", "spire-live", "workload-api", "svid"} {
		s.series = append(s.series, labels.FromStrings("__name__", "medic_probe_up", "probe", p))
	}
	s.series = append(s.series,
		labels.FromStrings("__name__", "medic_cert_rotation_overdue_seconds", "probe", "svid"),
		labels.FromStrings("__name__", "medic_cert_not_after_timestamp_seconds", "probe", "svid", "role", "leaf"))
	for i := len(s.series); i < 200; i++ {
		s.series = append(s.series, labels.FromStrings("__name__", fmt.Sprintf("go_other_%d", i), "probe", "spire"))
	}
	return s
}

func outageAt(t time.Time) bool {
	d := t.UTC().Sub(t.UTC().Truncate(24 * time.Hour))
	return d >= 3*time.Hour && d < 3*time.Hour+20*time.Minute
}

func (s *agentSource) value(l labels.Labels, t time.Time) float64 {
	n := float64(t.Unix() / 5)
	switch l.Get("__name__") {
	case "spire_agent_manager_sync_fetch_entries_updates":
		days := float64(t.Unix()/86400) * 240 // syncs missed per day so far
		if l.Get("status") == "OK" {
			if outageAt(t) {
				d := t.UTC().Sub(t.UTC().Truncate(24*time.Hour)) - 3*time.Hour
				return n - days - float64(d/s.step)
			}
			return n - days - 240*b2f(t.UTC().Hour() >= 3)
		}
		return days + 240*b2f(t.UTC().Hour() >= 3)
	case "medic_probe_up":
		if l.Get("probe") == "spire-server" && outageAt(t) {
			return 0
		}
		return 1
	case "medic_cert_not_after_timestamp_seconds":
		return float64(t.Unix() + 86400)
	}
	return 0
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *agentSource) Fetch(_ context.Context, sel []*labels.Matcher, start, end time.Time) ([]Series, error) {
	var out []Series
	for _, l := range s.series {
		ok := true
		for _, m := range sel {
			if !m.Matches(l.Get(m.Name)) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		sr := Series{Labels: l}
		for t := start.Truncate(s.step).Add(s.step); !t.After(end); t = t.Add(s.step) {
			if !t.After(start) {
				continue
			}
			sr.T = append(sr.T, t.UnixMilli())
			sr.V = append(sr.V, s.value(l, t))
		}
		out = append(out, sr)
	}
	return out, nil
}

func replayDays(tb testing.TB, days int) *Report {
	c, err := config.LoadFile("../../examples/spire-agent.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rep, err := Run(context.Background(), Options{Config: c, Source: newAgentSource(), From: from, To: from.Add(time.Duration(days) * 24 * time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	return rep
}

// TestReplayDailyOutages checks the computed week against what the ladder
// must do: one incident per outage, each reconnecting, then holding the
// restart until the server is back; the restart budget (3/h) is never exceeded.
func TestReplayDailyOutages(t *testing.T) {
	rep := replayDays(t, 2)
	t.Logf("wakes %d, elapsed %s", rep.Wakes, rep.Elapsed)
	if rep.Evaluations != 2*17280+1 {
		t.Errorf("evaluations %d", rep.Evaluations)
	}
	n := 0
	for _, inc := range rep.Incidents {
		if inc.Alert != "SPIREAgentNotSyncing" {
			t.Errorf("unexpected incident %s %v", inc.Alert, inc.Labels)
			continue
		}
		n++
		held := false
		for _, a := range inc.Attempts {
			if a.Action == "restart-agent" && a.Result == remedy.ResultSuppressed && a.Reason == remedy.ReasonPrecondition {
				held = true
			}
			if a.Action == "restart-agent" && a.Result != remedy.ResultSuppressed && outageAt(a.StartedAt) {
				t.Errorf("restart at %s while the server was unreachable", a.StartedAt)
			}
		}
		if !held || inc.Attempts[0].Action != "reconnect-server" {
			t.Errorf("incident %s: attempts %+v", inc.ID, inc.Attempts)
		}
	}
	if n != 2 {
		t.Errorf("%d incidents, want one per daily outage (2)", n)
	}
}

// BenchmarkReplay7Days replays a week of a 5 s agent (200 series, daily
// outages) through examples/spire-agent.yaml.
func BenchmarkReplay7Days(b *testing.B) {
	for b.Loop() {
		rep := replayDays(b, 7)
		b.ReportMetric(float64(rep.Evaluations), "evaluations")
		b.ReportMetric(float64(rep.Samples), "samples")
		b.ReportMetric(float64(rep.Wakes), "wakes")
		b.ReportMetric(float64(len(rep.Incidents)), "incidents")
	}
}

// Answering the rules from range queries ahead of the ticks gives the
// alert state machine exactly what per-tick instant queries give it.
func TestAheadEqualsPerTick(t *testing.T) {
	c, err := config.LoadFile("../../examples/spire-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A recording rule feeding an alert exercises the ahead path's store writes.
	c.FileGroups = nil
	from := time.Date(2026, 11, 1, 2, 40, 0, 0, time.UTC)
	var reps [2]*Report
	for i, perTick := range []bool{false, true} {
		reps[i], err = Run(context.Background(), Options{Config: c, Source: newAgentSource(), From: from, To: from.Add(80 * time.Minute),
			Chunk: 17 * time.Minute, PerTick: perTick})
		if err != nil {
			t.Fatal(err)
		}
	}
	a, b := reps[0], reps[1]
	if len(a.Alerts) == 0 || len(a.Alerts) != len(b.Alerts) {
		t.Fatalf("alerts: ahead %d, per tick %d", len(a.Alerts), len(b.Alerts))
	}
	for i := range a.Alerts {
		if fmt.Sprint(a.Alerts[i].Alert, a.Alerts[i].Labels, a.Alerts[i].Spans) != fmt.Sprint(b.Alerts[i].Alert, b.Alerts[i].Labels, b.Alerts[i].Spans) {
			t.Errorf("timeline %d differs:\nahead:    %+v\nper tick: %+v", i, *a.Alerts[i], *b.Alerts[i])
		}
	}
	if len(a.Incidents) != 1 || len(b.Incidents) != 1 {
		t.Fatalf("incidents: %d vs %d", len(a.Incidents), len(b.Incidents))
	}
	seq := func(r *Report) string {
		var s []string
		for _, at := range r.Incidents[0].Attempts {
			s = append(s, at.Action+"/"+at.Result+"/"+at.Reason)
		}
		return fmt.Sprint(s)
	}
	if seq(a) != seq(b) {
		t.Errorf("attempts differ:\nahead:    %s\nper tick: %s", seq(a), seq(b))
	}
	t.Logf("rule evaluation: ahead %s, per tick %s (%d ticks)", a.EvalElapsed, b.EvalElapsed, a.Evaluations)
}
