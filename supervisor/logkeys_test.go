package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/supervisor/config"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// duplicateKeys returns the keys that appear more than once at the top
// level of one JSON object.
func duplicateKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := tok.(string)
		if seen[k] {
			dups = append(dups, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return dups, nil
}

// Every probe kind's log lines, as medic writes them in JSON, carry each
// key once: the supervisor scopes each probe's logger with probe=<name>,
// and no probe adds it again. The probes point at nothing, so each logs
// its failure.
func TestJSONLogLinesHaveNoDuplicateKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time run")
	}
	dir := t.TempDir()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	c, err := config.Parse(fmt.Appendf(nil, `
listen: 127.0.0.1:0
stateDir: %s
evaluationInterval: 100ms
probes:
  - name: p-scrape
    scrape: {url: http://%s/metrics, interval: 100ms}
  - name: p-http
    http: {url: http://%s/ready, interval: 100ms, timeout: 100ms}
  - name: p-tcp
    tcp: {address: %s, interval: 100ms, timeout: 100ms}
  - name: p-socket
    socket: {path: %s, interval: 100ms, timeout: 100ms}
  - name: p-cert
    cert: {files: [%s], interval: 100ms, timeout: 100ms}
  - name: p-stream
    grpcStream: {target: %s, api: grpc-health, insecure: true}
`, dir, addr, addr, addr, filepath.Join(dir, "none.sock"), filepath.Join(dir, "none.pem"), addr))
	if err != nil {
		t.Fatal(err)
	}
	var buf lockedBuf
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: c, Listener: ln, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		logged := 0
		for _, name := range []string{"p-scrape", "p-http", "p-tcp", "p-socket", "p-cert", "p-stream"} {
			if strings.Contains(buf.String(), `"probe":"`+name+`"`) {
				logged++
			}
		}
		if logged == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 6 probes logged:\n%s", logged, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		dups, err := duplicateKeys(sc.Bytes())
		if err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		if len(dups) > 0 {
			t.Errorf("keys %v twice in %s", dups, sc.Bytes())
		}
	}
}
