package scrape

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/medic-sidecar/medic/supervisor/store"
)

// bigPage returns a Prometheus text page with n series in families of 10,
// shaped like an agent's: a host label, a status or quantile label, HELP
// and TYPE lines.
func bigPage(n int) []byte {
	var b bytes.Buffer
	statuses := []string{"OK", "Unavailable", "DeadlineExceeded", "PermissionDenied", "Internal"}
	for i := 0; i < n; i += 10 {
		name := fmt.Sprintf("spire_agent_subsystem_%d_operation_updates", i/10)
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, name, name)
		for j := 0; j < 10 && i+j < n; j++ {
			fmt.Fprintf(&b, "%s{host=\"node-1\",status=%q,shard=\"%d\"} %d\n", name, statuses[j%len(statuses)], j, (i+j)*7)
		}
	}
	return b.Bytes()
}

// BenchmarkScrapeIngest measures one scrape cycle of a 10,000-series page
// over a real loopback HTTP server: fetch, parse twice (validate, ingest),
// append to the store and commit. Run with -benchmem for allocs/op.
func BenchmarkScrapeIngest(b *testing.B) {
	body := bigPage(10_000)
	for _, bc := range []struct {
		name string
		gz   bool
	}{{"text", false}, {"gzip", true}} {
		b.Run(bc.name, func(b *testing.B) {
			h := page(promText, body)
			if bc.gz {
				h = gzipped(promText, body)
			}
			srv := newSwitchServer(b, h)
			r := newRigStore(b, Config{URL: srv.URL}, "bench", store.New(store.Options{}))
			r.cycle() // first scrape creates the series
			if v := r.value(`medic_probe_samples`); v != 10_000 {
				b.Fatalf("samples = %v", v)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.cycle()
			}
			b.StopTimer()
			if v := r.value(`medic_probe_up`); v != 1 {
				b.Fatalf("up = %v", v)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_000, "ns/series")
		})
	}
}
