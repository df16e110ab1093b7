// Package socketprobe is the "socket" probe: does a Unix socket (the SPIRE
// agent's Workload API socket, a CSI or CRI socket) accept connections —
// and, optionally, does the server behind it actually answer?
//
//	probes:
//	  - name: workload-api
//	    socket: {path: /run/spire/sockets/agent.sock, handshake: http2, interval: 5s, timeout: 2s}
//
// A connect() to a Unix stream socket succeeds as soon as the kernel queues
// it on the listener's backlog, even if the server never calls accept():
// a hung agent keeps "accepting" until its backlog (often 4096) is full.
// handshake: http2 closes that gap for gRPC servers (the Workload API is
// one): after connecting, medic sends the HTTP/2 client preface and an empty
// SETTINGS frame and needs the server's SETTINGS frame back within timeout.
//
// Samples (each with probe="<name>"):
//
//	medic_probe_up                 1 when the check passed, else 0
//	medic_probe_duration_seconds   time the check took, success or failure
//	medic_socket_connect_seconds   time to connect (and handshake), only when up
//	medic_socket_exists            1 when path exists and is a socket, else 0
//
// medic_socket_exists == 1 and medic_probe_up == 0 with reason "connection
// refused" is a stale socket: its server is gone but the file was left
// behind (the socketCleanup action's case). exists == 0 is a missing socket.
package socketprobe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probeutil"
)

// Kind is the YAML key.
const Kind = "socket"

// Metric names.
const (
	MetricConnect = "medic_socket_connect_seconds"
	MetricExists  = "medic_socket_exists"
)

// Handshakes.
const (
	HandshakeNone  = "none"
	HandshakeHTTP2 = "http2"
)

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
)

// Config is probes[].socket.
type Config struct {
	// Path is the socket's absolute path; "unix://" is accepted and dropped.
	Path string `yaml:"path" json:"path"`
	// Handshake is "none" (connect only, the default) or "http2" (the
	// server must answer the HTTP/2 preface: any gRPC server does).
	Handshake string       `yaml:"handshake" json:"handshake"`
	Interval  cfg.Duration `yaml:"interval" json:"interval"`
	Timeout   cfg.Duration `yaml:"timeout" json:"timeout"`
}

// path is Path without a unix:// scheme.
func (c *Config) path() string { return strings.TrimPrefix(c.Path, "unix://") }

// Validate reports every problem.
func (c *Config) Validate() error {
	var errs []error
	switch p := c.path(); {
	case p == "":
		errs = append(errs, cfg.Errorf("path", "is required (the socket's absolute path)"))
	case !filepath.IsAbs(p):
		errs = append(errs, cfg.Errorf("path", "must be absolute, not %q", c.Path))
	case len(p) > 107:
		// sun_path is 108 bytes including the terminating NUL.
		errs = append(errs, cfg.Errorf("path", "is %d bytes; a Unix socket path is at most 107", len(p)))
	}
	switch c.Handshake {
	case HandshakeNone, HandshakeHTTP2:
	default:
		errs = append(errs, cfg.Errorf("handshake", "must be %q or %q, not %q", HandshakeNone, HandshakeHTTP2, c.Handshake))
	}
	errs = append(errs, probe.CheckTiming(c.Interval, c.Timeout)...)
	return errors.Join(errs...)
}

func init() {
	probe.Register(probe.Kind{
		Name: Kind,
		NewConfig: func() any {
			return &Config{Handshake: HandshakeNone, Interval: cfg.Duration(DefaultInterval), Timeout: cfg.Duration(DefaultTimeout)}
		},
		New: func(c any, env probe.Env) (probe.Probe, error) { return New(*c.(*Config), env), nil },
	})
}

// Probe connects to Path every Interval.
type Probe struct {
	c      Config
	path   string
	clk    clock.Clock
	state  probeutil.StateLog
	dialer net.Dialer
}

var _ probe.Probe = (*Probe)(nil)

// New returns a socket probe.
func New(c Config, env probe.Env) *Probe {
	clk := env.ClockOrReal()
	log := env.LoggerOrDiscard()
	if c.Handshake == "" {
		c.Handshake = HandshakeNone
	}
	return &Probe{c: c, path: c.path(), clk: clk,
		state: probeutil.StateLog{Log: log.With("path", c.path())}}
}

// Result is one check.
type Result struct {
	Up       bool
	Exists   bool // the path is a socket (following symlinks)
	Duration time.Duration
	Err      error
}

// Check connects once (and handshakes when configured), then closes.
func (p *Probe) Check(ctx context.Context) Result {
	fi, statErr := os.Stat(p.path)
	exists := statErr == nil && fi.Mode().Type() == fs.ModeSocket
	ctx, cancel := context.WithTimeout(ctx, p.c.Timeout.D())
	defer cancel()
	start := time.Now()
	if statErr == nil && !exists {
		return Result{Duration: time.Since(start), Err: errNotSocket}
	}
	conn, err := p.dialer.DialContext(ctx, "unix", p.path)
	if err == nil {
		if p.c.Handshake == HandshakeHTTP2 {
			err = http2Handshake(ctx, conn)
		}
		_ = conn.Close()
	}
	d := time.Since(start)
	return Result{Up: err == nil, Exists: exists, Duration: d, Err: err}
}

var errNotSocket = errors.New("not a socket")

// errNoHandshake: connected, but the server did not answer the preface.
var errNoHandshake = errors.New("connected but no HTTP/2 answer (server not accepting or not gRPC)")

// preface is the HTTP/2 client connection preface followed by an empty
// SETTINGS frame (RFC 9113 §3.4, §6.5).
var preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 0x4, 0, 0, 0, 0, 0)

// http2Handshake sends the client preface and waits for the server's first
// frame, which must be SETTINGS without ACK (RFC 9113 §3.4).
func http2Handshake(ctx context.Context, conn net.Conn) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(preface); err != nil {
		return fmt.Errorf("write preface: %w", err)
	}
	var hdr [9]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		if probeutil.IsTimeout(err) {
			return errNoHandshake
		}
		return fmt.Errorf("read server preface: %w", err)
	}
	if hdr[3] != 0x4 || hdr[4]&0x1 != 0 || !bytes.Equal(hdr[5:9], []byte{0, 0, 0, 0}) {
		return fmt.Errorf("server's first frame is type %#x, not SETTINGS: not an HTTP/2 server", hdr[3])
	}
	return nil
}

// Run checks every interval until ctx ends.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	probe.Ticker(ctx, p.clk, p.c.Interval.D(), func(now time.Time) {
		r := p.Check(ctx)
		if ctx.Err() != nil {
			return // shutting down: not an observation
		}
		p.record(app, now, r)
	})
	return nil
}

func (p *Probe) record(app probe.Appender, now time.Time, r Result) {
	up, exists := 0.0, 0.0
	if r.Exists {
		exists = 1
	}
	if r.Up {
		up = 1
		app.Add(probeutil.Series(MetricConnect), r.Duration.Seconds())
		p.state.Up("connect_seconds", r.Duration.Seconds())
	} else {
		p.state.Down(Reason(r.Err))
	}
	app.Add(probeutil.Series(MetricExists), exists)
	app.Add(probeutil.Series(probeutil.MetricUp), up)
	app.Add(probeutil.Series(probeutil.MetricDuration), r.Duration.Seconds())
	probe.ReportError(app, r.Err)
	_, _ = app.Commit(now)
}

// Reason shortens a check error to a stable phrase for logs.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errNotSocket):
		return "not a socket"
	case errors.Is(err, errNoHandshake):
		return "no HTTP/2 answer"
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return "missing"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (stale socket?)"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "permission denied"
	case errors.Is(err, syscall.EAGAIN):
		return "backlog full"
	case errors.Is(err, context.DeadlineExceeded), probeutil.IsTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "closed by server"
	}
	return err.Error()
}

// String describes the probe.
func (p *Probe) String() string {
	s := fmt.Sprintf("socket %s every %s", p.path, p.c.Interval)
	if p.c.Handshake == HandshakeHTTP2 {
		s += " (http2 handshake)"
	}
	return s
}
