package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// floodEnv makes the test binary a flooder: it opens N connections to the
// address (every other one sends a keep-alive request first and then stays
// idle), prints "ready N" and holds them until its stdin closes.
const floodEnv = "MEDIC_SERVER_FLOOD"

func TestMain(m *testing.M) {
	if addr := os.Getenv(floodEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv(floodEnv + "_N"))
		flood(addr, n)
		return
	}
	os.Exit(m.Run())
}

func flood(addr string, n int) {
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			if err != nil {
				return
			}
			if i%2 == 0 {
				// An idle keep-alive connection: one request, then silence.
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: flood\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("ready %d\n", len(conns))
	io.Copy(io.Discard, os.Stdin)
}

func newTestServer(t *testing.T, o Options) (*Server, func()) {
	t.Helper()
	if o.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o.Listener = ln
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	o.Status = func() any { return map[string]any{} }
	s := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// healthz GETs /healthz on a fresh connection within a generous bound.
func healthz(addr string) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		return fmt.Errorf("status %d %q", resp.StatusCode, b)
	}
	return nil
}

// 20,000 idle connections (half of them keep-alive after a request, half
// silent after connecting) from two other processes must neither exhaust
// medic's file descriptors nor keep /healthz from answering. The test
// process's own descriptor limit is lowered to 4096 for the duration, so
// without the cap the flood would exhaust it wherever the test runs.
func TestHealthzAnswersUnder20kIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test")
	}
	s, stop := newTestServer(t, Options{})
	defer stop()
	addr := s.Addr()

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = min(lim.Cur, 4096)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)

	const perFlooder, flooders = 10_000, 2
	type flooder struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var fs []flooder
	defer func() {
		for _, f := range fs {
			f.stdin.Close()
			f.cmd.Wait()
		}
	}()
	for range flooders {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), floodEnv+"="+addr, floodEnv+"_N="+strconv.Itoa(perFlooder))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, flooder{cmd, stdin, bufio.NewReader(stdout)})
	}
	// /healthz answers while the flood builds up...
	stopProbe := make(chan struct{})
	probeErr := make(chan error, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stopProbe:
				probeErr <- nil
				return
			default:
			}
			if err := healthz(addr); err != nil {
				probeErr <- fmt.Errorf("healthz #%d during the flood: %w", n, err)
				return
			}
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	total := 0
	for i, f := range fs {
		line, err := f.out.ReadString('\n')
		if err != nil {
			t.Fatalf("flooder %d: %v", i, err)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "ready "))
		total += n
	}
	close(stopProbe)
	if err := <-probeErr; err != nil {
		t.Fatal(err)
	}
	// ...and once the flood holds all of its connections.
	for i := range 20 {
		if err := healthz(addr); err != nil {
			t.Fatalf("healthz #%d with %d flood connections open: %v", i, total, err)
		}
	}
	st := s.ConnStats()[0]
	t.Logf("flood connections established: %d; server: %+v", total, st)
	if total < flooders*perFlooder*9/10 {
		t.Fatalf("only %d of %d flood connections were established", total, flooders*perFlooder)
	}
	if st.Open > st.Max {
		t.Fatalf("%d connections open, cap %d", st.Open, st.Max)
	}
	if st.Evicted == 0 {
		t.Fatal("the cap never evicted an idle connection")
	}
}

// Only /metrics, /healthz and /readyz are served on the metrics listener.
func TestMetricsListenerServesReadOnlyEndpoints(t *testing.T) {
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, stop := newTestServer(t, Options{MetricsListener: ml,
		Extra: map[string]http.Handler{"/livez/agent": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}})
	defer stop()
	for _, tc := range []struct {
		addr, path string
		want       int
	}{
		{s.MetricsAddr(), "/metrics", 200}, {s.MetricsAddr(), "/healthz", 200}, {s.MetricsAddr(), "/readyz", 200},
		{s.MetricsAddr(), "/status", 404}, {s.MetricsAddr(), "/livez/agent", 404}, {s.MetricsAddr(), "/", 404},
		{s.Addr(), "/status", 200}, {s.Addr(), "/livez/agent", 200}, {s.Addr(), "/metrics", 200},
	} {
		resp, err := http.Get("http://" + tc.addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s%s: %d, want %d", tc.addr, tc.path, resp.StatusCode, tc.want)
		}
	}
}

// A connection that never finishes its request headers is closed after
// ReadHeaderTimeout, freeing its slot; the server's timeouts are set.
func TestServerTimeoutsAreSet(t *testing.T) {
	s := New(Options{Listener: mustListen(t), Gatherer: prometheus.NewRegistry()})
	for _, srv := range s.srvs {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.ErrorLog == nil {
			t.Fatalf("server without timeouts or error log: %+v", srv)
		}
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Go's own "http: Accept error" lines go to the structured log, as JSON.
// The process runs out of descriptors for real: the limit is lowered to
// what is open while connections wait in the listen queue.
func TestAcceptErrorsGoToTheStructuredLog(t *testing.T) {
	ln := mustListen(t)
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(len(ents) - 1) // ReadDir's own descriptor is closed again
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	defer restore()
	_, stop := newTestServer(t, Options{Listener: ln, Logger: logger})
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		stop()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "Accept error") {
		if time.Now().After(deadline) {
			restore()
			t.Fatalf("no Accept error logged; log: %s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	restore()
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(buf.String())), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		if msg, _ := m["msg"].(string); strings.Contains(msg, "Accept error") {
			if m["level"] != "WARN" || !strings.Contains(msg, "too many open files") {
				t.Fatalf("accept error line %s", line)
			}
			return
		}
	}
	t.Fatalf("no JSON line with the Accept error: %s", buf.String())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
