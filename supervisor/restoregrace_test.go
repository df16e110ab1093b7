package supervisor

import (
	"testing"
	"time"

	"github.com/medic-sidecar/medic/supervisor/config"
)

// TestRestoreGraceCoversTheSlowestProbe: after a restart the store is
// empty, so a restored incident's alert cannot fire again before the
// probe feeding it has scraped twice. A grace of only `for` plus three
// evaluation intervals ran out before that with a probe slower than the
// evaluation (a 1 s grace against 250 ms scrapes on a loaded machine in
// TestE2EExhaustedIncidentSurvivesAMedicRestart); the restored incident
// was then closed and the ladder walked again.
func TestRestoreGraceCoversTheSlowestProbe(t *testing.T) {
	c, err := config.Parse([]byte(`
stateDir: /tmp/unused
evaluationInterval: 1s
probes:
  - name: fast
    scrape: {url: "http://127.0.0.1:1/metrics", interval: 2s}
  - name: slow
    scrape: {url: "http://127.0.0.1:2/metrics", interval: 30s}
rules:
  - alert: Down
    expr: up == 0
    for: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := restoreGrace(c), time.Minute+3*time.Second+3*30*time.Second; got != want {
		t.Fatalf("restore grace = %v, want %v (for 1m + 3 × 1s evaluation + 3 × the 30 s probe interval)", got, want)
	}
}
