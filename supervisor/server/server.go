// Package server is medic's HTTP surface on one listener and its own
// ServeMux: /healthz, /readyz, /metrics, /status (JSON, or HTML for
// browsers) and any extra handlers the supervisor mounts (/livez/agent).
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures the server.
type Options struct {
	Listener net.Listener
	// MetricsListener, when set, serves only the read-only /metrics,
	// /healthz and /readyz (config metricsListen).
	MetricsListener net.Listener
	// MaxConns caps open connections per listener (default DefaultMaxConns).
	MaxConns int
	Gatherer prometheus.Gatherer
	// Healthy reports whether medic's loops are alive (and why not).
	Healthy func() (bool, string)
	// Ready reports whether config is loaded and first observations are in.
	Ready func() (bool, string)
	// Status returns the /status document.
	Status func() any
	// Extra handlers by path (e.g. "/livez/agent").
	Extra  map[string]http.Handler
	Logger *slog.Logger
}

// Server serves medic's endpoints.
type Server struct {
	o    Options
	srvs []*http.Server
	lns  []*connCap
}

// Timeouts of every connection: a slow or silent client holds a slot (and
// a file descriptor) for a bounded time only.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
)

// New builds the server; Serve starts it.
func New(o Options) *Server {
	mux := http.NewServeMux()
	s := &Server{o: o}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
		s.o.Logger = o.Logger
	}
	mux.HandleFunc("/healthz", check(o.Healthy))
	mux.HandleFunc("/readyz", check(o.Ready))
	mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{ErrorLog: slogAdapter{o.Logger}}))
	mux.HandleFunc("/status", s.status)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	for p, h := range o.Extra {
		mux.Handle(p, h)
	}
	s.add(o.Listener, mux)
	if o.MetricsListener != nil {
		ro := http.NewServeMux()
		ro.HandleFunc("/healthz", check(o.Healthy))
		ro.HandleFunc("/readyz", check(o.Ready))
		ro.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{ErrorLog: slogAdapter{o.Logger}}))
		s.add(o.MetricsListener, ro)
	}
	return s
}

// add serves h on ln behind the connection cap, with timeouts, and with
// net/http's own error lines ("http: Accept error: …") in the structured log.
func (s *Server) add(ln net.Listener, h http.Handler) {
	l := newConnCap(ln, s.o.MaxConns)
	logger := s.o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.lns = append(s.lns, l)
	s.srvs = append(s.srvs, &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         l.connState,
		ErrorLog:          slog.NewLogLogger(logger.With("listen", ln.Addr().String()).Handler(), slog.LevelWarn),
	})
}

// Addr is the listener's address.
func (s *Server) Addr() string { return s.o.Listener.Addr().String() }

// MetricsAddr is the metrics listener's address, "" when there is none.
func (s *Server) MetricsAddr() string {
	if s.o.MetricsListener == nil {
		return ""
	}
	return s.o.MetricsListener.Addr().String()
}

// ConnStats reports each listener's connection cap (main listener first).
func (s *Server) ConnStats() []ConnStats {
	out := make([]ConnStats, len(s.lns))
	for i, l := range s.lns {
		out[i] = l.stats()
	}
	return out
}

// Run serves until ctx ends (or a listener fails), then shuts down within 5 s.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, len(s.srvs))
	for i, srv := range s.srvs {
		go func() { errc <- srv.Serve(s.lns[i]) }()
	}
	var errs []error
	pending := len(s.srvs)
	select {
	case err := <-errc:
		errs, pending = append(errs, err), pending-1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.srvs {
		if err := srv.Shutdown(sctx); err != nil {
			// Connections still open after the grace (a silent client)
			// are cut; that is no failure of medic.
			srv.Close()
		}
	}
	for ; pending > 0; pending-- {
		errs = append(errs, <-errc)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

func check(f func() (bool, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok, why := true, "ok"
		if f != nil {
			ok, why = f()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(why + "\n"))
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	b, err := json.MarshalIndent(s.o.Status(), "", "  ")
	if err != nil {
		s.o.Logger.Error("encoding /status", "err", err)
		http.Error(w, "encoding /status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !wantsHTML(r) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
		return
	}
	var m map[string]any
	var page bytes.Buffer
	if err = json.Unmarshal(b, &m); err == nil {
		err = statusPage.Execute(&page, m)
	}
	if err != nil {
		s.o.Logger.Error("rendering /status", "err", err)
		http.Error(w, "rendering /status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(page.Bytes())
}

func wantsHTML(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return false
	}
	return r.URL.Query().Get("format") == "html" || strings.Contains(r.Header.Get("Accept"), "text/html")
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Println(v ...any) {
	if a.l != nil {
		a.l.Error("metrics handler", "err", v)
	}
}
