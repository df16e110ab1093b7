package supervisor

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// /status lists each action's guards (which are inactive) and the remote
// sources; a requirement on a source that cannot be asked is an error for
// the remedy engine (which holds by default), on a disabled one it is met.
func TestStatusGuardsAndSources(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	s, _ := startForTest(t, `listen: 127.0.0.1:0
stateDir: `+dir+`
sources:
  off: {prometheus: {url: ""}}
  down: {prometheus: {url: "`+closed+`", timeout: 1s}}
actions:
  fix:
    exec: {command: ["true"], timeout: 5s}
    requires:
      - {expr: "vector(1)", source: off, reason: fleet-outage}
      - {expr: "vector(1)", source: down}
    fleet: {max: 2}
`)
	_, body := httpGet(t, "http://"+s.Addr()+"/status?format=json")
	var st struct {
		Guards []struct {
			Action string `json:"action"`
			Guards []struct {
				Guard  string `json:"guard"`
				Active bool   `json:"active"`
				Detail string `json:"detail"`
			} `json:"guards"`
		} `json:"guards"`
		Sources []struct {
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
			URL     string `json:"url"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var got []string
	for _, g := range st.Guards[0].Guards {
		got = append(got, g.Guard+"="+map[bool]string{true: "active", false: "inactive"}[g.Active])
	}
	// requires are listed in order: fleet-outage (off) then precondition (down).
	want := "paused=active fleet-outage=inactive precondition=active concurrency=active fleet=inactive"
	if strings.Join(got, " ") != want || st.Guards[0].Action != "fix" {
		t.Fatalf("guards %v, want %s", got, want)
	}
	if len(st.Sources) != 2 || st.Sources[0].Name != "down" || !st.Sources[0].Enabled || st.Sources[1].Enabled {
		t.Fatalf("sources %+v", st.Sources)
	}

	ctx := context.Background()
	ok, detail, err := s.precondition(ctx, remedy.Requirement{Expr: "vector(1)", Source: "off"}, time.Now())
	if !ok || err != nil || !strings.Contains(detail, "disabled") {
		t.Fatalf("disabled source: ok=%v detail=%q err=%v", ok, detail, err)
	}
	if ok, _, err := s.precondition(ctx, remedy.Requirement{Expr: "vector(1)", Source: "down"}, time.Now()); ok || err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("unreachable source: ok=%v err=%v", ok, err)
	}
	if ok, _, err := s.precondition(ctx, remedy.Requirement{Expr: "vector(1) > 2"}, time.Now()); ok || err != nil {
		t.Fatalf("local requirement: ok=%v err=%v", ok, err)
	}
}
