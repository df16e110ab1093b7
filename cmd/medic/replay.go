package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/replay"
)

func init() {
	commands["replay"] = command{summary: "replay recorded data from Prometheus: what would medic have done?", run: cmdReplay,
		examples: "medic replay --config medic.yaml --prometheus http://prometheus:9090 --from now-7d --to now\nmedic replay --config medic.yaml --prometheus http://prometheus:9090 --from now-1d --to now --report replay.html"}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// parseTime accepts RFC 3339, Unix seconds, "now" and "now-<duration>" (e.g. now-7d).
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if d, ok := strings.CutPrefix(s, "now-"); ok {
		md, err := model.ParseDuration(d)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(-time.Duration(md)), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(f * 1000)), nil
	}
	return time.Parse(time.RFC3339, s)
}

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", "--config FILE --prometheus URL --from T --to T [flags]", stderr)
	path := fs.String("config", "", "config file (YAML) whose rules, actions and ladders are replayed")
	url := fs.String("prometheus", "", "Prometheus base URL (e.g. http://prometheus:9090)")
	from := fs.String("from", "", "start: RFC 3339, Unix seconds, or now-<duration> (e.g. now-7d)")
	to := fs.String("to", "now", "end (same forms)")
	output := fs.String("output", "text", "text or json (on stdout)")
	report := fs.String("report", "", "also write an HTML report (timeline as inline SVG) to this file")
	scrapeProbe := fs.String("scrape-probe", "", "the scrape probe the agent's own metrics stand for (default: the config's only scrape probe)")
	var match, pauses listFlag
	fs.Var(&match, "match", "extra selector every query gets, to pick one agent, e.g. '{instance=~\"node1.*\"}' (repeatable)")
	fs.Var(&pauses, "pause", "FROM,TO: medic was paused then (repeatable)")
	chunk := fs.Duration("chunk", time.Hour, "data fetched and replayed at a time")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *url == "" || *from == "" {
		fmt.Fprintln(stderr, "--prometheus and --from are required")
		fs.Usage()
		return errUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "--output must be text or json, not %q\n", *output)
		return errUsage
	}
	c, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	now := time.Now()
	var o replay.Options
	if o.From, err = parseTime(*from, now); err != nil {
		fmt.Fprintf(stderr, "--from: %v\n", err)
		return errUsage
	}
	if o.To, err = parseTime(*to, now); err != nil {
		fmt.Fprintf(stderr, "--to: %v\n", err)
		return errUsage
	}
	for _, p := range pauses {
		a, b, ok := strings.Cut(p, ",")
		f, err1 := parseTime(a, now)
		t, err2 := parseTime(b, now)
		if !ok || err1 != nil || err2 != nil {
			fmt.Fprintf(stderr, "--pause %q: want FROM,TO\n", p)
			return errUsage
		}
		o.Pauses = append(o.Pauses, replay.Window{From: f, To: t, Why: "paused (--pause)"})
	}
	src, err := replay.NewPromSource(*url)
	if err != nil {
		return err
	}
	for _, m := range match {
		ms, err := config.ExprParser.ParseMetricSelector(m)
		if err != nil {
			fmt.Fprintf(stderr, "--match %q: %v\n", m, err)
			return errUsage
		}
		src.Match = append(src.Match, ms...)
	}
	src.ScrapeProbe = *scrapeProbe
	if src.ScrapeProbe == "" {
		for _, p := range c.Probes {
			if p.Kind == "scrape" {
				if src.ScrapeProbe != "" {
					fmt.Fprintln(stderr, "the config has several scrape probes: name one with --scrape-probe")
					return errUsage
				}
				src.ScrapeProbe = p.Name
			}
		}
	}
	o.Config, o.Source, o.Chunk = c, src, *chunk
	rep, err := replay.Run(ctx, o)
	if err != nil {
		return err
	}
	if *report != "" {
		f, err := os.Create(*report)
		if err != nil {
			return err
		}
		err = errors.Join(rep.WriteHTML(f), f.Close())
		if err != nil {
			return err
		}
	}
	if *output == "json" {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}
