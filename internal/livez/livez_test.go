package livez

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clock"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSwitchFlipsForHoldAndBack(t *testing.T) {
	clk := clock.NewFake(t0)
	sw := New(clk)
	srv := httptest.NewServer(sw)
	defer srv.Close()

	if code, body := get(t, srv.URL); code != 200 || body != "ok\n" {
		t.Fatalf("healthy: got %d %q", code, body)
	}
	until := sw.FailForReason(40*time.Second, "incident 7")
	if !until.Equal(t0.Add(40 * time.Second)) {
		t.Fatalf("until = %v", until)
	}
	code, body := get(t, srv.URL)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("during hold: got %d %q", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("503 body %q: %v", body, err)
	}
	if !st.FailingUntil.Equal(until) || st.Reason != "incident 7" {
		t.Fatalf("503 body = %+v", st)
	}
	if !strings.Contains(body, `"failingUntil":"2025-03-01T12:00:40Z"`) {
		t.Fatalf("503 body field names: %s", body)
	}

	clk.Advance(39 * time.Second)
	if code, _ := get(t, srv.URL); code != 503 {
		t.Fatalf("1s before the end: %d", code)
	}
	if sw.Healthy(clk.Now()) {
		t.Fatal("Healthy during hold")
	}
	clk.Advance(time.Second)
	if code, body := get(t, srv.URL); code != 200 || body != "ok\n" {
		t.Fatalf("after hold: got %d %q", code, body)
	}
	if !sw.Healthy(clk.Now()) {
		t.Fatal("not Healthy after hold")
	}
}

func TestFailForNeverShortens(t *testing.T) {
	clk := clock.NewFake(t0)
	sw := New(clk)
	long := sw.FailFor(time.Minute)
	if got := sw.FailFor(time.Second); !got.Equal(long) {
		t.Fatalf("short hold replaced long one: %v, want %v", got, long)
	}
	st, failing := sw.State(clk.Now())
	if !failing || st.Reason != DefaultReason {
		t.Fatalf("state = %+v %v", st, failing)
	}
	clk.Advance(30 * time.Second)
	if got := sw.FailFor(time.Minute); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("extension: %v", got)
	}
}

func TestHeadHasNoBody(t *testing.T) {
	sw := New(clock.NewFake(t0))
	sw.FailFor(time.Minute)
	rec := httptest.NewRecorder()
	sw.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/livez/agent", nil))
	if rec.Code != 503 || rec.Body.Len() != 0 {
		t.Fatalf("HEAD: %d %q", rec.Code, rec.Body.String())
	}
}
