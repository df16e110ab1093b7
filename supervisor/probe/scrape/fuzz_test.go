package scrape

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// FuzzScrapeParse feeds arbitrary bytes, as either text format, through
// the parsing pass and the replay into a fresh real store (so every series
// is a store miss and its labels are rebuilt by the lazy parser). It must
// never panic; a page the parse accepts is appended in full and every
// series' labels are rebuilt; a page it rejects puts nothing in the batch.
func FuzzScrapeParse(f *testing.F) {
	f.Add(readFile(f, "testdata/metrics-healthy.txt"), uint8(0))
	f.Add(readFile(f, "testdata/openmetrics.txt"), uint8(1))
	for _, s := range []string{
		"", "foo 1\n", "foo 1", "foo{a=\"b\"} 1 123\n", "foo{a=\"1\",a=\"2\"} 1\n", "a 1\na 2\n",
		"foo abc\n", "{\"my.metric\",a=\"b\"} 1\n", "{a=\"b\"} 1\n", "# TYPE x histogram\nx_bucket{le=\"1\"} 1\n",
		"x_total 1 # {t=\"1\"} 1\n# EOF\n", "\xff\xfe\x00junk", "foo{a=\"\\xff\"} 1\n", "foo NaN\nbar +Inf\nbaz -Inf\n",
		"foo{a=\"" + strings.Repeat("v", 5000) + "\"} 1\n", "foo{" + strings.Repeat("a", 300) + "=\"1\"} 1\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	c := NewConfig() // the shipped limits, label limits included
	c.URL = "http://127.0.0.1:1/metrics"
	p, err := New(*c, probe.Env{Name: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		ct := [...]string{promText, openMetrics}[sel%2]
		st := store.New(store.Options{})
		app := st.Appender("fuzz")
		if _, err := p.check(body, ct); err != nil {
			if err.Reason != ReasonParse && err.Reason != ReasonLabelLimit {
				t.Fatalf("check: reason %v for a parse problem: %v", err.Reason, err)
			}
			if got, _ := app.Commit(t0); got != 0 {
				t.Fatalf("a rejected page left %d samples in the batch", got)
			}
			return
		}
		n := p.ingest(app, body, ct)
		if got, err := app.Commit(t0); err != nil || got != n {
			t.Fatalf("replayed %d samples, committed %d (%v)", n, got, err)
		}
		if bad := st.Latest(func(name string) bool { return name == mismatch.Get(labels.MetricName) }); len(bad) > 0 {
			t.Fatalf("labels of %d series could not be rebuilt", len(bad))
		}
	})
}
