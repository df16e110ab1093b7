package replay

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// Summary counts what happened.
type Summary struct {
	Incidents, Attempts, Succeeded, Failed, Suppressed int
	ByReason                                           map[string]int
}

// Summary counts incidents and attempts by result and reason.
func (r *Report) Summary() Summary {
	s := Summary{Incidents: len(r.Incidents), ByReason: map[string]int{}}
	for _, inc := range r.Incidents {
		for _, a := range inc.Attempts {
			s.Attempts++
			switch a.Result {
			case remedy.ResultSucceeded:
				s.Succeeded++
			case remedy.ResultFailed:
				s.Failed++
			case remedy.ResultSuppressed:
				s.Suppressed++
			}
			if a.Reason != "" {
				s.ByReason[a.Result+"/"+a.Reason]++
			}
		}
	}
	return s
}

// WriteText writes a human-readable report: every incident with its
// timeline, then the alerts without a ladder.
func (r *Report) WriteText(w io.Writer) error {
	s := r.Summary()
	fmt.Fprintf(w, "replay %s → %s (UTC), every %s: %d evaluations, %d series, %d samples (%s, of which fetching %s)\n",
		ts(r.From), ts(r.To), r.Step, r.Evaluations, r.Series, r.Samples, r.Elapsed.Round(time.Millisecond), r.FetchElapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "%d incident(s); %d attempt(s) would have run or been held: %d succeeded, %d failed, %d suppressed\n",
		s.Incidents, s.Attempts, s.Succeeded, s.Failed, s.Suppressed)
	byInc := map[string][]remedy.Event{}
	for _, ev := range r.Events {
		byInc[ev.IncidentID] = append(byInc[ev.IncidentID], ev)
	}
	for _, inc := range r.Incidents {
		fmt.Fprintf(w, "\nincident %s: %s%s — %s", inc.ID, inc.Alert, labelString(inc.Labels), inc.State)
		if inc.FixedBy != "" {
			fmt.Fprintf(w, ", fixed by %s", inc.FixedBy)
		}
		end := "still open at the end"
		if !inc.Ended.IsZero() {
			end = fmt.Sprintf("%s, after %s", ts(inc.Ended), inc.Ended.Sub(inc.Started))
		}
		fmt.Fprintf(w, "\n  opened %s, ended %s; ladder %v\n", ts(inc.Started), end, inc.Ladder)
		for _, ev := range byInc[inc.ID] {
			if ev.Type == remedy.RemediationStarted {
				continue // the result line says it
			}
			line := fmt.Sprintf("  %s  %-22s", ts(ev.Time), ev.Type)
			if ev.Action != "" {
				line += fmt.Sprintf(" %s (step %d, attempt %d/%d)", ev.Action, ev.Step, ev.Attempt, ev.MaxAttempts)
			}
			if ev.Reason != "" {
				line += " [" + ev.Reason + "]"
			}
			if ev.Message != "" {
				line += ": " + ev.Message
			}
			fmt.Fprintln(w, line)
		}
	}
	var quiet []*AlertTimeline
	for _, a := range r.Alerts {
		found := false
		for _, inc := range r.Incidents {
			if inc.Alert == a.Alert && labelString(inc.Labels) == labelString(a.Labels) {
				found = true
			}
		}
		if !found {
			quiet = append(quiet, a)
		}
	}
	if len(quiet) > 0 {
		fmt.Fprintln(w, "\nalerts without a remediation ladder (reported, not acted on):")
		for _, a := range quiet {
			firing := 0
			var total time.Duration
			for _, sp := range a.Spans {
				if sp.State == rules.StateFiring {
					firing++
					end := sp.To
					if end.IsZero() {
						end = r.To
					}
					total += end.Sub(sp.From)
				}
			}
			fmt.Fprintf(w, "  %s%s: fired %d time(s), %s in total\n", a.Alert, labelString(a.Labels), firing, total)
		}
	}
	return nil
}

// svg geometry
const (
	svgWidth  = 1100
	svgLeft   = 330
	svgRow    = 22
	svgTop    = 30
	svgRight  = 20
	plotWidth = svgWidth - svgLeft - svgRight
)

type svgRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type svgMark struct {
	X, Y  float64
	Class string
	Title string
}

type svgRowLabel struct {
	Y    float64
	Text string
}

type svgTick struct {
	X    float64
	Text string
}

type htmlData struct {
	R        *Report
	S        Summary
	Height   float64
	Rows     []svgRowLabel
	Rects    []svgRect
	Marks    []svgMark
	Ticks    []svgTick
	Text     string
	PlotLeft float64
	PlotW    float64
}

// WriteHTML writes a self-contained page (no scripts, no CDN): the
// timeline as inline SVG — one row per alert instance with its pending and
// firing spans, the incident's attempts as marks on it — and the text report.
func (r *Report) WriteHTML(w io.Writer) error {
	d := htmlData{R: r, S: r.Summary(), PlotLeft: svgLeft, PlotW: plotWidth}
	span := r.To.Sub(r.From).Seconds()
	x := func(t time.Time) float64 {
		f := t.Sub(r.From).Seconds() / span
		return svgLeft + max(0, min(1, f))*plotWidth
	}
	row := 0
	for _, a := range r.Alerts {
		y := float64(svgTop + row*svgRow)
		d.Rows = append(d.Rows, svgRowLabel{Y: y + 14, Text: a.Alert + labelString(a.Labels)})
		for _, sp := range a.Spans {
			end := sp.To
			if end.IsZero() {
				end = r.To
			}
			d.Rects = append(d.Rects, svgRect{X: x(sp.From), Y: y + 4, W: max(1, x(end)-x(sp.From)), H: svgRow - 8, Class: sp.State.String(),
				Title: fmt.Sprintf("%s %s → %s", sp.State, ts(sp.From), ts(end))})
		}
		for _, inc := range r.Incidents {
			if inc.Alert != a.Alert || labelString(inc.Labels) != labelString(a.Labels) {
				continue
			}
			for _, at := range inc.Attempts {
				title := fmt.Sprintf("%s %s: %s", ts(at.StartedAt), at.Action, at.Result)
				if at.Reason != "" {
					title += " (" + at.Reason + ")"
				}
				if at.Message != "" {
					title += " — " + at.Message
				}
				d.Marks = append(d.Marks, svgMark{X: x(at.StartedAt), Y: y + svgRow/2, Class: at.Result, Title: title})
			}
		}
		row++
	}
	d.Height = float64(svgTop + max(row, 1)*svgRow + 30)
	for i := 0; i <= 6; i++ {
		t := r.From.Add(time.Duration(float64(r.To.Sub(r.From)) * float64(i) / 6))
		d.Ticks = append(d.Ticks, svgTick{X: x(t), Text: t.UTC().Format("01-02 15:04")})
	}
	var b strings.Builder
	r.WriteText(&b)
	d.Text = b.String()
	return htmlTmpl.Execute(w, d)
}

var htmlTmpl = template.Must(template.New("replay").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>medic replay {{.R.From.UTC.Format "2006-01-02 15:04"}} – {{.R.To.UTC.Format "2006-01-02 15:04"}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
svg text{font-size:11px;font-family:monospace}
.pending{fill:#f4c542}.firing{fill:#d9453b}
.succeeded{fill:#2e9e44}.failed{fill:#222}.suppressed{fill:#fff;stroke:#555;stroke-width:1.5}.running{fill:#3b6fd9}
.grid{stroke:#ddd}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
</style></head><body>
<h1>What medic would have done</h1>
<p>{{.R.From.UTC.Format "2006-01-02 15:04:05"}} → {{.R.To.UTC.Format "2006-01-02 15:04:05"}} UTC, evaluated every {{.R.Step}}:
{{.R.Evaluations}} evaluations of {{.R.Series}} series ({{.R.Samples}} samples).
{{.S.Incidents}} incident(s), {{.S.Attempts}} attempt(s): {{.S.Succeeded}} succeeded, {{.S.Failed}} failed, {{.S.Suppressed}} suppressed.</p>
<p class="legend"><span><i style="background:#f4c542"></i>pending</span><span><i style="background:#d9453b"></i>firing</span>
<span><i style="background:#2e9e44;border-radius:6px"></i>attempt succeeded</span><span><i style="background:#222;border-radius:6px"></i>failed</span>
<span><i style="border:1.5px solid #555;border-radius:6px"></i>suppressed (held by a guard)</span></p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="1100" height="{{.Height}}" viewBox="0 0 1100 {{.Height}}">
{{range .Ticks}}<line class="grid" x1="{{.X}}" y1="20" x2="{{.X}}" y2="{{$.Height}}"/><text x="{{.X}}" y="14" text-anchor="middle">{{.Text}}</text>
{{end}}{{range .Rows}}<text x="4" y="{{.Y}}">{{.Text}}</text>
{{end}}{{range .Rects}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Marks}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{.Y}}" r="5"><title>{{.Title}}</title></circle>
{{end}}</svg>
<h2>Incidents</h2>
<pre>{{.Text}}</pre>
</body></html>
`))
