package scrape_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A real page with more series than store.maxSeries must not blind medic
// to itself: medic_probe_up and the probe's other own series are stored
// (rules on them fire), and the capped probe is visible: its own metric
// (a rule on it fires), /metrics, /status and one log line per change.
func TestPageLargerThanSeriesCapKeepsMedicsOwnSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time end-to-end run")
	}
	const maxSeries = 500
	var pageSeries atomic.Int64
	pageSeries.Store(2000)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		var b bytes.Buffer
		b.WriteString("# TYPE big_gauge gauge\n")
		for i := range pageSeries.Load() {
			fmt.Fprintf(&b, "big_gauge{i=\"%d\"} %d\n", i, i)
		}
		w.Write(b.Bytes())
	}))
	defer page.Close()

	c, err := config.Parse(fmt.Appendf(nil, `
listen: 127.0.0.1:0
stateDir: %s
evaluationInterval: 100ms
store: {maxSeries: %d}
probes:
  - name: big
    scrape: {url: %s/metrics, interval: 100ms}
rules:
  - alert: BigUp
    expr: medic_probe_up{probe="big"} == 1
  - alert: BigCapped
    expr: medic_probe_series_dropped{probe="big"} > 0
`, t.TempDir(), maxSeries, page.URL))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	transitions := make(chan rules.Transition, 100)
	s, err := supervisor.New(supervisor.Options{Config: c, Listener: ln, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		OnTransition: func(tr rules.Transition) { transitions <- tr }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	fired := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for !fired["BigUp"] || !fired["BigCapped"] {
		select {
		case tr := <-transitions:
			if tr.To == rules.StateFiring {
				fired[tr.Alert.Rule] = true
			}
		case <-deadline:
			t.Fatalf("alerts fired: %v; want BigUp (medic_probe_up stored) and BigCapped", fired)
		}
	}
	metrics := get(t, "http://"+s.Addr()+"/metrics")
	for _, want := range []string{`medic_probe_up{probe="big"} 1`, `medic_probe_series_dropped{probe="big"} 1500`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var st struct {
		Probes []struct {
			Name          string  `json:"name"`
			Up            float64 `json:"up"`
			SeriesDropped float64 `json:"seriesDropped"`
		} `json:"probes"`
		Store struct {
			Series, OwnSeries, MaxSeries int
		} `json:"store"`
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+s.Addr()+"/status?format=json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Probes) != 1 || st.Probes[0].Up != 1 || st.Probes[0].SeriesDropped != 1500 {
		t.Fatalf("/status probes %+v", st.Probes)
	}
	if st.Store.Series-st.Store.OwnSeries != maxSeries || st.Store.OwnSeries == 0 {
		t.Fatalf("/status store %+v", st.Store)
	}

	// The page shrinks under the cap: the probe recovers, said once.
	pageSeries.Store(100)
	waitFor(t, "the limit to lift", func() bool {
		return strings.Contains(get(t, "http://"+s.Addr()+"/metrics"), `medic_probe_series_dropped{probe="big"} 0`)
	})
	time.Sleep(500 * time.Millisecond) // a few more scrapes: still one line each
	if n := strings.Count(logs.String(), "series cap reached"); n != 1 {
		t.Errorf("%d 'series cap reached' lines, want 1 (once per change)", n)
	}
	if n := strings.Count(logs.String(), "series cap no longer limits"); n != 1 {
		t.Errorf("%d 'no longer limits' lines, want 1", n)
	}
}
