package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// RemediateAnnotation attaches a remediation ladder to an alerting rule in
// a rule file: `medic.io/remediate: "reconnect-server, restart-agent"`.
// Prometheus 2.x (and 3.x with legacy name validation) rejects that name;
// RemediateAnnotationLegacy is the spelling every Prometheus accepts.
const (
	RemediateAnnotation       = "medic.io/remediate"
	RemediateAnnotationLegacy = "medic_remediate"
)

// LadderAnnotation returns a rule's remediation annotation, under either name.
func LadderAnnotation(anns map[string]string) (name, value string, ok bool) {
	for _, n := range []string{RemediateAnnotation, RemediateAnnotationLegacy} {
		if v, ok := anns[n]; ok {
			return n, v, true
		}
	}
	return "", "", false
}

// The rule annotation that sets a rule-file alert's retryExhaustedAfter
// (a Prometheus duration, e.g. "30m"), under both spellings like the
// remediation annotation.
const (
	RetryAnnotation       = "medic.io/retry-exhausted-after"
	RetryAnnotationLegacy = "medic_retry_exhausted_after"
)

// RetryAnnotationOf returns a rule's retry annotation, under either name.
func RetryAnnotationOf(anns map[string]string) (name, value string, ok bool) {
	for _, n := range []string{RetryAnnotation, RetryAnnotationLegacy} {
		if v, ok := anns[n]; ok {
			return n, v, true
		}
	}
	return "", "", false
}

// FileGroup is one rule group as written in a rule file.
type FileGroup struct {
	File string
	rulefmt.RuleGroup
	// Lines are the line of each rule (same index as Rules).
	Lines []int
}

// FileRule is one rule of a FileGroup with where it was written.
type FileRule struct {
	rulefmt.Rule
	File  string
	Group string
	Line  int
}

// Exprs parser shared by rule files and unit tests; rule files accept what
// Prometheus accepts.
var exprParser = parser.NewParser(parser.Options{})

// ExpandGlobs resolves rule-file globs (relative ones against base) to a
// sorted, de-duplicated file list. A glob without a wildcard must name an
// existing file; a wildcard glob matching nothing is an error too, so a
// typo is not a silently empty rule set.
func ExpandGlobs(globs []string, base string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var errs []error
	for _, g := range globs {
		p := g
		if !filepath.IsAbs(p) && base != "" {
			p = filepath.Join(base, p)
		}
		m, err := filepath.Glob(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: bad pattern: %w", g, err))
			continue
		}
		if len(m) == 0 {
			errs = append(errs, fmt.Errorf("%s: no rule file matches", p))
			continue
		}
		sort.Strings(m)
		for _, f := range m {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out, errors.Join(errs...)
}

// LoadFiles reads rule files: standard Prometheus rule files (`groups:`)
// and PrometheusRule manifests (`spec.groups`, several documents per file
// allowed). Every problem is reported as "file:line:col: ...".
func LoadFiles(files []string) ([]FileGroup, error) {
	var out []FileGroup
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gs, err := ParseRuleFile(f, b)
		errs = append(errs, err)
		out = append(out, gs...)
	}
	return out, errors.Join(errs...)
}

var yamlLineRe = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// fileErr prefixes err with the file name, turning yaml's "line N" into "file:N:".
func fileErr(file string, err error) error {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", file, m[1], m[2])
	}
	if len(msg) > 0 && msg[0] >= '0' && msg[0] <= '9' {
		return fmt.Errorf("%s:%s", file, msg) // rulefmt's "line:col: ..."
	}
	return fmt.Errorf("%s: %s", file, msg)
}

// ParseRuleFile parses one rule file's content (see LoadFiles).
func ParseRuleFile(file string, b []byte) ([]FileGroup, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fileErr(file, err)
		}
		docs = append(docs, &n)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var out []FileGroup
	var errs []error
	for _, d := range docs {
		if len(d.Content) == 0 {
			continue
		}
		root := d.Content[0]
		content := b
		if spec, indent, ok := prometheusRuleSpec(root); ok {
			// Keep every line where it was, so rulefmt's line numbers
			// are the file's: blank all but the spec block, de-indented.
			var buf strings.Builder
			for i, l := range lines {
				ln := i + 1
				if ln >= spec.first && ln <= spec.last {
					if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
						l = l[indent:]
					}
					buf.WriteString(l)
				} else {
					buf.WriteString("\n")
				}
			}
			content = []byte(buf.String())
		} else if len(docs) > 1 {
			errs = append(errs, fmt.Errorf("%s:%d: only PrometheusRule manifests may share a file with other documents", file, root.Line))
			continue
		} else if root.Kind != yaml.MappingNode || !hasKey(root, "groups") {
			errs = append(errs, fmt.Errorf("%s:%d: not a rule file: want `groups:` or a PrometheusRule (spec.groups)", file, root.Line))
			continue
		}
		rgs, perrs := rulefmt.Parse(content, false, model.UTF8Validation, exprParser, slog.New(slog.DiscardHandler))
		for _, e := range perrs {
			errs = append(errs, fileErr(file, e))
		}
		if len(perrs) > 0 || rgs == nil {
			continue
		}
		var node struct {
			Groups []struct {
				Rules []yaml.Node `yaml:"rules"`
			} `yaml:"groups"`
		}
		_ = yaml.Unmarshal(content, &node)
		for i, g := range rgs.Groups {
			fg := FileGroup{File: file, RuleGroup: g}
			for j := range g.Rules {
				line := 0
				if i < len(node.Groups) && j < len(node.Groups[i].Rules) {
					line = node.Groups[i].Rules[j].Line
				}
				fg.Lines = append(fg.Lines, line)
			}
			if g.Limit != 0 {
				errs = append(errs, fmt.Errorf("%s: group %q: limit is not supported by medic", file, g.Name))
			}
			out = append(out, fg)
		}
	}
	return out, errors.Join(errs...)
}

type lineRange struct{ first, last int }

// prometheusRuleSpec finds spec: of a PrometheusRule (or any document with
// spec.groups) and the line range and indentation of its block.
func prometheusRuleSpec(root *yaml.Node) (lineRange, int, bool) {
	if root.Kind != yaml.MappingNode {
		return lineRange{}, 0, false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "spec" || v.Kind != yaml.MappingNode || !hasKey(v, "groups") {
			continue
		}
		if v.Style&yaml.FlowStyle != 0 || v.Line == k.Line {
			return lineRange{}, 0, false
		}
		r := lineRange{first: v.Line, last: 1 << 30}
		if i+2 < len(root.Content) {
			r.last = root.Content[i+2].Line - 1
		}
		return r, v.Column - 1, true
	}
	return lineRange{}, 0, false
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// Rules flattens the groups' rules with file, group and line.
func (g FileGroup) FileRules() []FileRule {
	out := make([]FileRule, len(g.Rules))
	for i, r := range g.Rules {
		out[i] = FileRule{Rule: r, File: g.File, Group: g.Name}
		if i < len(g.Lines) {
			out[i].Line = g.Lines[i]
		}
	}
	return out
}

// Where is "file:line" of the rule.
func (r FileRule) Where() string {
	if r.Line == 0 {
		return r.File
	}
	return r.File + ":" + strconv.Itoa(r.Line)
}

// ParseLadder splits a medic.io/remediate annotation ("a, b") into action names.
func ParseLadder(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		out = append(out, p)
	}
	return out
}

// Interval returns the group's interval or def when unset.
func (g FileGroup) IntervalOr(def time.Duration) time.Duration {
	if g.Interval > 0 {
		return time.Duration(g.Interval)
	}
	return def
}
