// Package prometheus runs the real Prometheus (Debian's 2.42, or the
// binary named by MEDIC_PROMETHEUS) as a child process on loopback,
// scraping targets listed in a file_sd file the caller rewrites at will.
// Used by the remote-source tests and the fleet simulation
// (scripts/fleet-sim.sh); not part of medic.
package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Binary returns the Prometheus executable, or an error saying how to
// install it.
func Binary() (string, error) {
	if p := os.Getenv("MEDIC_PROMETHEUS"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return "", errors.New("prometheus not found (apt-get install prometheus, or set MEDIC_PROMETHEUS)")
	}
	return p, nil
}

// Required reports whether a missing Prometheus must fail (CI=true or
// MEDIC_REQUIRE_PROMETHEUS set) rather than skip.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("MEDIC_REQUIRE_PROMETHEUS") != ""
}

// Options configures a Prometheus.
type Options struct {
	// Dir holds the config, the targets file and the TSDB (required).
	Dir string
	// ScrapeInterval (default 1s); the scrape timeout is the same.
	ScrapeInterval time.Duration
	// RuleFiles are extra rule files Prometheus evaluates at EvalInterval.
	RuleFiles    []string
	EvalInterval time.Duration
	// Extra flags (e.g. --query.max-concurrency=...).
	Flags []string
}

// Server is a running Prometheus.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	logs *syncBuffer
	sd   string
	done chan struct{}
}

// Start writes the config and starts Prometheus, waiting (up to 60 s)
// until it is ready. Targets are added with SetTargets.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = time.Second
	}
	if o.EvalInterval <= 0 {
		o.EvalInterval = o.ScrapeInterval
	}
	sd := filepath.Join(o.Dir, "targets.json")
	if err := writeFile(sd, []byte("[]")); err != nil {
		return nil, err
	}
	rf, _ := json.Marshal(o.RuleFiles)
	conf := fmt.Sprintf(`global: {scrape_interval: %s, scrape_timeout: %s, evaluation_interval: %s}
rule_files: %s
scrape_configs:
  - job_name: medic
    file_sd_configs: [{files: [%q], refresh_interval: 1s}]
`, o.ScrapeInterval, o.ScrapeInterval, o.EvalInterval, rf, sd)
	cf := filepath.Join(o.Dir, "prometheus.yml")
	if err := writeFile(cf, []byte(conf)); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"--config.file=" + cf, "--storage.tsdb.path=" + filepath.Join(o.Dir, "data"),
		"--web.listen-address=" + addr, "--storage.tsdb.retention.time=1d", "--log.level=warn"}, o.Flags...)
	cmd := exec.Command(bin, args...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, logs: logs, sd: sd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("prometheus exited: %s", logs.String())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("prometheus not ready after 60 s: %s", logs.String())
		}
	}
}

// Target is one scrape target with its labels.
type Target struct {
	Addr   string
	Labels map[string]string
}

// SetTargets replaces the scraped targets (file_sd, picked up within ~1 s).
func (s *Server) SetTargets(ts []Target) error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	}
	gs := make([]group, 0, len(ts))
	for _, t := range ts {
		gs = append(gs, group{Targets: []string{t.Addr}, Labels: t.Labels})
	}
	b, err := json.Marshal(gs)
	if err != nil {
		return err
	}
	return writeFile(s.sd, b)
}

// Logs returns what Prometheus wrote.
func (s *Server) Logs() string { return s.logs.String() }

// Stop kills Prometheus and waits for it.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// writeFile replaces path atomically (file_sd must never read half a file).
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
