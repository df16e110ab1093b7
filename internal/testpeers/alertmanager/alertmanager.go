// Package alertmanager runs the real Alertmanager (Debian's
// prometheus-alertmanager, or the binary named by MEDIC_ALERTMANAGER) as a
// child process on loopback for tests, with a webhook receiver: a real
// HTTP server in the test process that records every notification
// Alertmanager delivers.
//
// Tests skip when the binary is missing, unless CI=true or
// MEDIC_REQUIRE_ALERTMANAGER=1, when they fail.
package alertmanager

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Binary returns the Alertmanager executable, skipping (or, in CI,
// failing) the test when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MEDIC_ALERTMANAGER"); p != "" {
		return p
	}
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_ALERTMANAGER") == "1" {
		t.Fatal("alertmanager not found (apt install prometheus-alertmanager, or set MEDIC_ALERTMANAGER)")
	}
	t.Skip("alertmanager not found (apt install prometheus-alertmanager); CI=true makes this a failure")
	return ""
}

// Route is the webhook route's timing.
type Route struct {
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// GroupBy defaults to [alertname].
	GroupBy []string
	// Addr is the listen address (default a free loopback port).
	Addr string
}

// WebhookAlert is one alert in a webhook notification.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

// Notification is one webhook delivery, stamped with when it arrived.
type Notification struct {
	Received time.Time      `json:"-"`
	Status   string         `json:"status"`
	Alerts   []WebhookAlert `json:"alerts"`
}

// Server is a running Alertmanager and its webhook receiver.
type Server struct {
	// URL is Alertmanager's base URL (what medic's alerting.alertmanagers[].url takes).
	URL string

	log *bytes.Buffer // the child's output, under mu

	mu     sync.Mutex
	got    []Notification
	notify chan struct{}
}

// Start runs Alertmanager with one route to the webhook receiver and
// waits until it is ready. It is stopped when the test ends.
func Start(t testing.TB, r Route) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{log: &bytes.Buffer{}, notify: make(chan struct{}, 1)}
	hook := httptest.NewServer(http.HandlerFunc(s.receive))
	t.Cleanup(hook.Close)

	if len(r.GroupBy) == 0 {
		r.GroupBy = []string{"alertname"}
	}
	if r.RepeatInterval == 0 {
		r.RepeatInterval = time.Hour
	}
	groupBy, _ := json.Marshal(r.GroupBy)
	dir := t.TempDir()
	conf := fmt.Sprintf(`route:
  receiver: hook
  group_by: %s
  group_wait: %s
  group_interval: %s
  repeat_interval: %s
receivers:
  - name: hook
    webhook_configs:
      - url: %s/hook
        send_resolved: true
`, groupBy, dur(r.GroupWait), dur(r.GroupInterval), dur(r.RepeatInterval), hook.URL)
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := r.Addr
	if addr == "" {
		addr = freeAddr(t)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--cluster.listen-address=", "--log.level=debug")
	lw := &lockedWriter{mu: &s.mu, w: s.log}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("alertmanager log:\n%s", s.logText())
		}
	})
	s.URL = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("alertmanager exited: %s", s.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready within 30s: %v\n%s", err, s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	b, _ := io.ReadAll(r.Body)
	var n Notification
	if err := json.Unmarshal(b, &n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.Received = now
	s.mu.Lock()
	s.got = append(s.got, n)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Notifications returns every notification received so far.
func (s *Server) Notifications() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.got...)
}

// WaitFor returns the first notification (received so far or within the
// bound) that has an alert matching match, and that alert.
func (s *Server) WaitFor(t testing.TB, what string, within time.Duration, match func(Notification, WebhookAlert) bool) (Notification, WebhookAlert) {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, n := range s.Notifications() {
			for _, a := range n.Alerts {
				if match(n, a) {
					return n, a
				}
			}
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("no %s notification within %s; got %+v", what, within, s.Notifications())
			return Notification{}, WebhookAlert{}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// lockedWriter serialises the child's stdout and stderr into one buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func dur(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
