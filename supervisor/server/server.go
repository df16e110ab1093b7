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
	o   Options
	srv *http.Server
}

// New builds the server; Serve starts it.
func New(o Options) *Server {
	mux := http.NewServeMux()
	s := &Server{o: o}
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
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Addr is the listener's address.
func (s *Server) Addr() string { return s.o.Listener.Addr().String() }

// Run serves until ctx ends, then shuts down within 5 s.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.o.Listener) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
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
