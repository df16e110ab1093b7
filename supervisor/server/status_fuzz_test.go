package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
)

// FuzzStatusRendering puts arbitrary label names and values on a series a
// rule fires on, through the real store, rule engine and supervisor, and
// reads /status as JSON and as HTML from the real server: both answer 200,
// the JSON carries the value exactly, and the HTML never carries markup
// from a label unescaped.
func FuzzStatusRendering(f *testing.F) {
	for _, s := range [][2]string{
		{"k", "v"}, {"k", ""}, {"k", "<script>alert(1)</script>"}, {"k", `"quoted" & 'single'`},
		{"k", "\xff\xfe invalid utf-8"}, {"k", "line\nbreak\ttab\x00nul"}, {"k", "{{.}} {{template}}"},
		{"k", strings.Repeat("x", 5000)}, {"weird.name-1", "NaN"}, {"ünï", "+Inf"}, {"k", "javascript:alert(1)"},
	} {
		f.Add(s[0], s[1])
	}
	c, err := config.Parse(fmt.Appendf(nil, `
listen: 127.0.0.1:0
stateDir: %s
evaluationInterval: 1h
rules:
  - alert: Fuzz
    expr: fuzz_metric > 0
    annotations: {summary: "value {{ $labels.k }}"}
`, f.TempDir()))
	if err != nil {
		f.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	s, err := supervisor.New(supervisor.Options{Config: c, Clock: clk, Listener: ln})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(t *testing.T, q string) string {
		resp, err := client.Get("http://" + s.Addr() + "/status?format=" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("/status?format=%s: %d %s", q, resp.StatusCode, b)
		}
		return string(b)
	}
	// Wait for Run's own first evaluation (at the fake clock's start), so
	// it cannot land after, and undo, an iteration's.
	for i := 0; ; i++ {
		resp, err := client.Get("http://" + s.Addr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 1000 {
			f.Fatal("medic never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	app := s.Store().Appender("fuzz")
	now := clk.Now()
	f.Fuzz(func(t *testing.T, name, value string) {
		if name == "" || strings.HasPrefix(name, "__") || name == "probe" || name == "alertname" || name == "k" && value == "" {
			return
		}
		now = now.Add(time.Hour) // earlier alerts are resolved and long gone
		lset := labels.FromStrings(labels.MetricName, "fuzz_metric", name, value, "k", "fixed")
		if name == "k" {
			lset = labels.FromStrings(labels.MetricName, "fuzz_metric", "k", value)
		}
		app.Add(lset, 1)
		app.Commit(now)
		s.EvalOnce(ctx, now)
		defer func() {
			app.Commit(now.Add(time.Second)) // the series goes stale
			s.EvalOnce(ctx, now.Add(time.Second))
			s.Store().GC(now.Add(2 * time.Second))
		}()

		var doc struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal([]byte(get(t, "json")), &doc); err != nil {
			t.Fatalf("/status JSON: %v", err)
		}
		// What JSON can carry of the value: invalid UTF-8 bytes become U+FFFD.
		var want string
		b, _ := json.Marshal(value)
		json.Unmarshal(b, &want)
		var wantName string // JSON's view of the name, likewise
		b, _ = json.Marshal(name)
		json.Unmarshal(b, &wantName)
		found := false
		for _, a := range doc.Alerts {
			v, ok := a.Labels[wantName]
			if value == "" {
				// An empty value is no label at all (Prometheus's semantics).
				if !ok && a.Labels["k"] == "fixed" {
					found = true
				}
				continue
			}
			if ok && v == want {
				found = true
			}
		}
		if !found {
			t.Fatalf("alert with %s=%q not on /status: %+v", name, value, doc.Alerts)
		}
		page := get(t, "html")
		for _, raw := range []string{name, value} {
			// A short text such as ">" or "<td>" is in any page's own markup;
			// from 8 bytes on, a raw "<" in the page can only come from the label.
			if len(raw) >= 8 && strings.Contains(raw, "<") && strings.Contains(page, raw) {
				t.Fatalf("label text %q appears unescaped in the HTML page", raw)
			}
		}
	})
}
