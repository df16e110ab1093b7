package replay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	_ "github.com/medic-sidecar/medic/supervisor/builtin"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// need returns the path of a Debian prometheus binary; missing, the test
// skips locally and fails in CI.
func need(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_PROMETHEUS") != "" {
			t.Fatalf("%s not installed (apt-get install prometheus)", bin)
		}
		t.Skipf("%s not installed", bin)
	}
	return p
}

// omWriter collects samples per sample name and writes them as an
// OpenMetrics file promtool can turn into TSDB blocks (every family
// contiguous, `unknown` type so names stay as scraped, seconds timestamps).
type omWriter struct {
	fams map[string]map[string][]string // name → label string → "value ts" lines
}

func (w *omWriter) add(name, lbls string, v float64, t time.Time) {
	if w.fams == nil {
		w.fams = map[string]map[string][]string{}
	}
	m := w.fams[name]
	if m == nil {
		m = map[string][]string{}
		w.fams[name] = m
	}
	m[lbls] = append(m[lbls], fmt.Sprintf("%g %d.%03d", v, t.Unix(), t.Nanosecond()/1e6))
}

func lbl(pairs map[string]string) string {
	var keys []string
	for k := range pairs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, pairs[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// addPage adds one scraped text page at t, with the labels Prometheus adds.
func (w *omWriter) addPage(t *testing.T, page []byte, at time.Time, extra map[string]string) int {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, f := range fams {
		for _, m := range f.Metric {
			base := map[string]string{}
			for k, v := range extra {
				base[k] = v
			}
			for _, lp := range m.Label {
				base[lp.GetName()] = lp.GetValue()
			}
			with := func(k, v string) string {
				c := map[string]string{k: v}
				for a, b := range base {
					c[a] = b
				}
				return lbl(c)
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				w.add(name, lbl(base), m.Counter.GetValue(), at)
			case dto.MetricType_GAUGE:
				w.add(name, lbl(base), m.Gauge.GetValue(), at)
			case dto.MetricType_UNTYPED:
				w.add(name, lbl(base), m.Untyped.GetValue(), at)
			case dto.MetricType_SUMMARY:
				for _, q := range m.Summary.Quantile {
					w.add(name, with("quantile", fmt.Sprint(q.GetQuantile())), q.GetValue(), at)
				}
				w.add(name+"_sum", lbl(base), m.Summary.GetSampleSum(), at)
				w.add(name+"_count", lbl(base), float64(m.Summary.GetSampleCount()), at)
			case dto.MetricType_HISTOGRAM:
				for _, b := range m.Histogram.Bucket {
					w.add(name+"_bucket", with("le", fmt.Sprint(b.GetUpperBound())), float64(b.GetCumulativeCount()), at)
				}
				w.add(name+"_sum", lbl(base), m.Histogram.GetSampleSum(), at)
				w.add(name+"_count", lbl(base), float64(m.Histogram.GetSampleCount()), at)
			}
			n++
		}
	}
	return n
}

func (w *omWriter) write(out io.Writer) (series int) {
	bw := bufio.NewWriter(out)
	var names []string
	for n := range w.fams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(bw, "# TYPE %s unknown\n", n)
		var ls []string
		for l := range w.fams[n] {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		for _, l := range ls {
			series++
			for _, vt := range w.fams[n][l] {
				fmt.Fprintf(bw, "%s%s %s\n", n, l, vt)
			}
		}
	}
	fmt.Fprintln(bw, "# EOF")
	bw.Flush()
	return series
}

// outage records a SPIRE agent (the SPIRE-like peer, its real page) and
// medic's probe series at 5 s: healthy for 20 min, its server unreachable
// for 20 min, then reachable again for 20 min.
func outage(t *testing.T, base time.Time) (file string, serverBack time.Time) {
	clk := clock.NewFake(base)
	peer := spireagent.New(spireagent.Options{Clock: clk, Host: "node1", NoJitter: true})
	if _, err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var w omWriter
	step := 5 * time.Second
	down, back := base.Add(20*time.Minute), base.Add(40*time.Minute)
	for at := base; !at.After(base.Add(60 * time.Minute)); at = at.Add(step) {
		switch {
		case at.Equal(down):
			peer.SetMode(spireagent.Failing("Unavailable"))
		case at.Equal(back):
			peer.SetMode(spireagent.Healthy())
		}
		if at.After(base) {
			clk.Set(at)
		}
		clk.BlockUntil(1, 5*time.Second)
		resp, err := http.Get(peer.MetricsURL())
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.addPage(t, page, at, map[string]string{"job": "spire-agent", "instance": "node1:9988"})
		server := 1.0
		if !at.Before(down) && at.Before(back) {
			server = 0
		}
		medic := map[string]string{"job": "medic", "instance": "node1:9555"}
		for probe, v := range map[string]float64{"spire": 1, "spire-server": server, "spire-live": 1, "workload-api": 1} {
			m := map[string]string{"probe": probe}
			for k, v := range medic {
				m[k] = v
			}
			w.add("medic_probe_up", lbl(m), v, at)
		}
	}
	file = filepath.Join(t.TempDir(), "outage.om")
	if d := os.Getenv("MEDIC_REPLAY_KEEP"); d != "" {
		file = filepath.Join(d, "outage.om")
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	n := w.write(f)
	f.Close()
	t.Logf("recorded %d series over 60 min at 5 s", n)
	return file, back
}

// startPrometheus serves dataDir from the real Prometheus on loopback.
func startPrometheus(t *testing.T, dataDir string) string {
	bin := need(t, "prometheus")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	os.WriteFile(cfg, []byte("global: {}\n"), 0o600)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+dataDir, "--web.listen-address="+addr,
		"--storage.tsdb.retention.time=100y")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60 s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReplaySPIREOutageFromPrometheus replays a recorded SPIRE server
// outage from the real Prometheus (Debian's 2.42) through
// examples/spire-agent.yaml: medic reconnects, holds the restart while the
// server is unreachable (precondition), and restarts only once it is back.
func TestReplaySPIREOutageFromPrometheus(t *testing.T) {
	promtool := need(t, "promtool")
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	om, back := outage(t, base)
	data := t.TempDir()
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", om, data).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	url := startPrometheus(t, data)

	c, err := config.LoadFile("../../examples/spire-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewPromSource(url)
	if err != nil {
		t.Fatal(err)
	}
	src.ScrapeProbe = "spire"
	from, to := base.Add(10*time.Minute), base.Add(60*time.Minute)
	rep, err := Run(context.Background(), Options{Config: c, Source: src, From: from, To: to, Chunk: 20 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("replay:\n%s", text.String())

	if rep.Evaluations != 601 || rep.Series < 5 {
		t.Errorf("evaluations %d (want 601), series %d", rep.Evaluations, rep.Series)
	}
	var inc *remedy.IncidentView
	for i := range rep.Incidents {
		if rep.Incidents[i].Alert == "SPIREAgentNotSyncing" {
			inc = &rep.Incidents[i]
		}
	}
	if inc == nil || inc.Labels["host"] != "node1" || inc.Labels["probe"] != "spire" || inc.Labels["job"] != "" {
		t.Fatalf("no SPIREAgentNotSyncing incident for host node1 with medic's labels: %+v", rep.Incidents)
	}
	if inc.Started.Before(base.Add(20*time.Minute)) || inc.Started.After(base.Add(25*time.Minute)) {
		t.Errorf("incident opened %s, want within 5 min of the outage's start", inc.Started)
	}
	var held, restartsBeforeBack, restarts int
	for i, a := range inc.Attempts {
		if i == 0 && a.Action != "reconnect-server" {
			t.Errorf("first attempt %s, want reconnect-server", a.Action)
		}
		if a.Action != "restart-agent" {
			continue
		}
		switch {
		case a.Result == remedy.ResultSuppressed && a.Reason == remedy.ReasonPrecondition:
			held++
		case a.Result != remedy.ResultSuppressed:
			restarts++
			if a.StartedAt.Before(back) {
				restartsBeforeBack++
			}
		}
	}
	if held == 0 || restartsBeforeBack != 0 || restarts == 0 {
		t.Errorf("restart-agent: held %d times (want > 0), ran %d times before the server was back (want 0), %d after (want > 0)",
			held, restartsBeforeBack, restarts)
	}
	// SPIREAgentSyncFailures has no ladder: on the timeline, not an incident.
	found := false
	for _, a := range rep.Alerts {
		if a.Alert == "SPIREAgentSyncFailures" && a.Labels["status"] == "Unavailable" {
			found = len(a.Spans) >= 2 && a.Spans[0].State == rules.StatePending && a.Spans[1].State == rules.StateFiring
		}
	}
	if !found || !strings.Contains(text.String(), "alerts without a remediation ladder") {
		t.Errorf("SPIREAgentSyncFailures pending→firing missing from the timeline: %+v", rep.Alerts)
	}

	// The HTML report: the timeline as inline SVG, nothing fetched from elsewhere.
	var html bytes.Buffer
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	if !strings.Contains(h, `<svg id="timeline"`) || !strings.Contains(h, `class="firing"`) ||
		!strings.Contains(h, `<circle class="suppressed"`) || strings.Contains(h, "<script") || strings.Contains(h, "https://") {
		t.Errorf("HTML report lacks the SVG timeline or is not self-contained:\n%.2000s", h)
	}
}
