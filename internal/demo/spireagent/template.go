package spireagent

import (
	_ "embed"
	"strings"
)

// realPage is /metrics of a real spire-agent (1.16.0-dev, join-token
// attestation, one registration entry) after 69 successful syncs, kept as
// scraped in testdata/metrics-healthy.txt. The peer serves it as a template: the sync
// series and the uptime are cut out and rendered live.
//
//go:embed testdata/metrics-healthy.txt
var realPage string

// Names of the series the peer renders itself.
const (
	syncMetric    = "spire_agent_manager_sync_fetch_entries_updates"
	elapsedMetric = syncMetric + "_elapsed_time"
	uptimeMetric  = "spire_agent_uptime_in_ms"
)

// template is the real page split around the dynamic parts.
type template struct {
	beforeSync, beforeUptime, rest string
}

// splitTemplate removes the sync families and the uptime sample from page
// and returns the static text around them, host="node-1" replaced by host.
func splitTemplate(page, host string) template {
	var t template
	var b strings.Builder
	stage := 0 // 0: before the sync block, 1: before uptime, 2: the rest
	for line := range strings.Lines(page) {
		name := lineMetric(line)
		switch {
		case name == syncMetric || strings.HasPrefix(name, elapsedMetric):
			if stage == 0 {
				t.beforeSync = b.String()
				b.Reset()
				stage = 1
			}
			continue
		case name == uptimeMetric && !strings.HasPrefix(line, "#"):
			t.beforeUptime = b.String()
			b.Reset()
			stage = 2
			continue
		}
		b.WriteString(strings.ReplaceAll(line, `host="node-1"`, `host="`+host+`"`))
	}
	t.rest = b.String()
	return t
}

// lineMetric returns the metric name of a sample, HELP or TYPE line.
func lineMetric(line string) string {
	if s, ok := strings.CutPrefix(line, "# HELP "); ok {
		line = s
	} else if s, ok := strings.CutPrefix(line, "# TYPE "); ok {
		line = s
	}
	if i := strings.IndexAny(line, "{ \n"); i >= 0 {
		return line[:i]
	}
	return line
}
