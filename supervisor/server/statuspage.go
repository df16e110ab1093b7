package server

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// The HTML view of /status is rendered from the same JSON document API
// clients get (decoded into maps), so the two never disagree. It is one
// self-contained page: inline CSS, no scripts, no external assets.

//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"json": func(v any) string { b, _ := json.MarshalIndent(v, "", "  "); return string(b) },
	"ts":   ts,
	"ago":  ago,
	"secs": secs,
	"num":  num,
	"dur":  dur,
	"inc":  func(v any) int { f, _ := v.(float64); return int(f) + 1 },
	"has":  func(v any) bool { return v != nil && v != "" && v != 0.0 && v != false },
	"get": func(m any, key string) any {
		mm, _ := m.(map[string]any)
		return mm[key]
	},
}).Parse(statusHTML))

// parseTS reads an RFC 3339 timestamp from the JSON document.
func parseTS(v any) (time.Time, bool) {
	s, _ := v.(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() || t.Year() <= 1 {
		return time.Time{}, false
	}
	return t, true
}

// ts shortens a timestamp for people (UTC, milliseconds); "" for none.
func ts(v any) string {
	t, ok := parseTS(v)
	if !ok {
		s, _ := v.(string)
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// ago says how long before now t was ("12 s ago", "in 3 s"); "" when
// either is missing.
func ago(v, now any) string {
	t, ok := parseTS(v)
	n, ok2 := parseTS(now)
	if !ok || !ok2 {
		return ""
	}
	d := n.Sub(t)
	if d < 0 {
		return "in " + human(-d)
	}
	if d < time.Second {
		return "just now"
	}
	return human(d) + " ago"
}

// human writes d coarsely, in at most two units: "12 s", "3 min 5 s", "2 h 3 min", "4 d 1 h".
func human(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + " µs"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s"
	case d < time.Hour:
		return two(int(d/time.Minute), "min", int(d%time.Minute/time.Second), "s")
	case d < 24*time.Hour:
		return two(int(d/time.Hour), "h", int(d%time.Hour/time.Minute), "min")
	}
	return two(int(d/(24*time.Hour)), "d", int(d%(24*time.Hour)/time.Hour), "h")
}

func two(a int, au string, b int, bu string) string {
	if b == 0 {
		return fmt.Sprintf("%d %s", a, au)
	}
	return fmt.Sprintf("%d %s %d %s", a, au, b, bu)
}

// secs writes a duration in seconds from the document for people.
func secs(v any) string {
	f, ok := v.(float64)
	if !ok {
		return fmt.Sprint(v)
	}
	return human(time.Duration(f * float64(time.Second)))
}

// dur writes a Go duration string ("1h0m0s") as Prometheus does ("1h").
func dur(v any) string {
	s, _ := v.(string)
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	return model.Duration(d).String()
}

// num writes a sample value: numbers as Prometheus does, non-finite ones
// (strings "NaN", "+Inf", "-Inf" in the document) as they are.
func num(v any) string {
	switch f := v.(type) {
	case float64:
		if math.Trunc(f) == f && math.Abs(f) < 1e15 {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
		return strconv.FormatFloat(f, 'g', 6, 64)
	case string:
		return f
	case nil:
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(v))
}
