// Package server is medic's HTTP surface on one listener and its own
// ServeMux: /healthz, /readyz, /metrics, /status (JSON, or HTML for
// browsers) and any extra handlers the supervisor mounts (/livez/agent).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
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
	doc := s.o.Status()
	if wantsHTML(r) {
		b, _ := json.Marshal(doc)
		var m map[string]any
		json.Unmarshal(b, &m)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, m); err != nil {
			s.o.Logger.Warn("rendering status page", "err", err)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(doc)
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

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"json": func(v any) string { b, _ := json.MarshalIndent(v, "", "  "); return string(b) },
	// ts shortens an RFC 3339 timestamp from the JSON document for people.
	"ts": func(v any) string {
		s, _ := v.(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.IsZero() {
			return s
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>medic status</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.firing,.failed,.exhausted{color:#b00020;font-weight:600}.pending,.suppressed{color:#a06000}
.ok,.resolved,.succeeded,.up{color:#0a7a2f}pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:60em}td:last-child{max-width:60em;overflow-wrap:anywhere}
</style></head><body>
<h1>medic</h1>
<p>version {{.version}} · started {{ts .startedAt}} · dry run: {{.dryRun}} · paused: {{.paused}} · <a href="/status?format=json">JSON</a> · <a href="/metrics">metrics</a></p>
<h2>Probes</h2>
<table><tr><th>probe</th><th>kind</th><th>up</th><th>last</th><th>samples</th><th>duration (s)</th></tr>
{{range .probes}}<tr><td>{{.name}}</td><td>{{.kind}}</td><td class="{{if eq .up 1.0}}up{{else}}failed{{end}}">{{.up}}</td><td>{{ts .lastSeen}}</td><td>{{.samples}}</td><td>{{.durationSeconds}}</td></tr>{{end}}
</table>
{{if .budgets}}<h2>Budgets</h2>
<table><tr><th>action</th><th>used</th><th>window</th><th>next free run</th></tr>
{{range .budgets}}<tr><td>{{.action}}</td><td class="{{if ge .used .max}}failed{{else}}ok{{end}}">{{.used}}/{{.max}}</td><td>{{.window}}</td><td>{{ts .nextFreeAt}}</td></tr>{{end}}
</table>{{end}}
{{if .fleet}}<h2>Fleet limits</h2>
<table><tr><th>action</th><th>max</th><th>hold</th><th>held here</th><th>enforced</th></tr>
{{range .fleet}}<tr><td>{{.action}}</td><td>{{.max}}</td><td>{{.hold}}</td><td>{{.held}}</td><td class="{{if .enforced}}ok{{else}}suppressed{{end}}">{{if .enforced}}yes (Leases){{else}}no (not in Kubernetes){{end}}</td></tr>{{end}}
</table>{{end}}
<h2>Alerts</h2>
<table><tr><th>alert</th><th>state</th><th>labels</th><th>value</th><th>active since</th></tr>
{{range .alerts}}<tr><td>{{.alert}}</td><td class="{{.state}}">{{.state}}</td><td>{{range $k, $v := .labels}}{{$k}}={{$v}} {{end}}</td><td>{{.value}}</td><td>{{ts .activeAt}}</td></tr>{{else}}<tr><td colspan="5">none</td></tr>{{end}}
</table>
<h2>Incidents</h2>
{{range .incidents}}<h3>{{.alert}} <span class="{{.state}}">{{.state}}</span> <small>{{.id}}</small></h3>
<p>started {{ts .startedAt}}{{if .endedAt}} · ended {{ts .endedAt}}{{end}}{{if .fixedBy}} · fixed by {{.fixedBy}}{{end}}{{if gt .round 1.0}} · round {{.round}}{{end}} · ladder {{range .ladder}}{{.}} {{end}}</p>
<table><tr><th>step</th><th>action</th><th>attempt</th><th>started</th><th>result</th><th>reason</th><th>message / output</th></tr>
{{range .attempts}}<tr><td>{{.step}}</td><td>{{.action}}</td><td>{{.attempt}}/{{.maxAttempts}}</td><td>{{ts .startedAt}}</td><td class="{{.result}}">{{.result}}</td><td>{{.reason}}</td><td>{{.message}}{{if .output}}<pre>{{.output}}</pre>{{end}}</td></tr>{{end}}
</table>{{else}}<p>none</p>{{end}}
</body></html>
`))
