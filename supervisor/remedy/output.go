package remedy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
)

// Output modes (actions.<name>.output): how much of an action's output
// medic keeps in /status, the audit log, incidents.json, Events and logs.
const (
	OutputFull = "full" // all of it (as bounded by the action: 8 KiB)
	OutputTail = "tail" // the last TailBytes, cut at a line start (the default)
	OutputNone = "none" // nothing
)

// TailBytes is how much output the tail mode keeps.
const TailBytes = 2048

// Redacted replaces a secret in output, messages and details.
const Redacted = "[REDACTED]"

// DefaultRedact are the patterns applied to every action's output,
// message and details, before any configured ones: values of keys that
// name a token, secret, password, authorization, API key, credential,
// private or access key or cookie (KEY=value, key: value, "key": "value"),
// and Bearer/Basic credentials. A pattern's capture groups are what is
// replaced; a pattern without groups is replaced whole.
var DefaultRedact = []string{
	`(?i)[\w.-]*(?:token|secret|passw(?:or)?d|pwd|authorization|api[-_]?key|credential|private[-_]?key|access[-_]?key|cookie|session[-_]?id)[\w.-]*["']?\s*[:=]\s*("[^"]*"|'[^']*'|(?:bearer|basic)\s+\S+|[^\s,;&"']+)`,
	`(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})`,
}

// OutputPolicy is one action's output mode and redaction patterns. A nil
// *OutputPolicy is the default: tail, default patterns.
type OutputPolicy struct {
	Mode   string
	redact []*regexp.Regexp
}

var defaultPatterns = func() []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(DefaultRedact))
	for i, p := range DefaultRedact {
		out[i] = regexp.MustCompile(p)
	}
	return out
}()

// ValidateOutput checks an action's output: and redact: settings; error
// paths are relative to the action.
func ValidateOutput(mode string, redact []string) error {
	_, err := NewOutputPolicy(mode, redact)
	return err
}

// NewOutputPolicy builds the policy for mode ("" is tail) and extra
// redaction patterns (Go regular expressions, RE2 syntax).
func NewOutputPolicy(mode string, redact []string) (*OutputPolicy, error) {
	var errs []error
	switch mode {
	case "":
		mode = OutputTail
	case OutputFull, OutputTail, OutputNone:
	default:
		errs = append(errs, cfg.Errorf("output", "must be %q, %q or %q, not %q", OutputFull, OutputTail, OutputNone, mode))
	}
	p := &OutputPolicy{Mode: mode, redact: append([]*regexp.Regexp(nil), defaultPatterns...)}
	for i, r := range redact {
		re, err := regexp.Compile(r)
		switch {
		case err != nil:
			errs = append(errs, cfg.Errorf(fmt.Sprintf("redact[%d]", i), "%v", err))
		case re.MatchString(""):
			errs = append(errs, cfg.Errorf(fmt.Sprintf("redact[%d]", i), "%q matches the empty string", r))
		default:
			p.redact = append(p.redact, re)
		}
	}
	return p, errors.Join(errs...)
}

func (p *OutputPolicy) patterns() []*regexp.Regexp {
	if p == nil {
		return defaultPatterns
	}
	return p.redact
}

func (p *OutputPolicy) mode() string {
	if p == nil || p.Mode == "" {
		return OutputTail
	}
	return p.Mode
}

// Redact replaces every secret in s.
func (p *OutputPolicy) Redact(s string) string {
	for _, re := range p.patterns() {
		s = redactAll(re, s)
	}
	return s
}

func redactAll(re *regexp.Regexp, s string) string {
	if re.NumSubexp() == 0 {
		return re.ReplaceAllLiteralString(s, Redacted)
	}
	idx := re.FindAllStringSubmatchIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		for g := 1; 2*g < len(m); g++ {
			from, to := m[2*g], m[2*g+1]
			if from < last || from < 0 {
				continue
			}
			b.WriteString(s[last:from])
			b.WriteString(Redacted)
			last = to
		}
	}
	b.WriteString(s[last:])
	return b.String()
}

// Apply returns res as medic may show and keep it: the output cut to the
// mode, and output, message and string details redacted.
func (p *OutputPolicy) Apply(res actions.Result) actions.Result {
	switch p.mode() {
	case OutputNone:
		res.Output = ""
	case OutputTail:
		res.Output = tail(res.Output, TailBytes)
	}
	res.Output = p.Redact(res.Output)
	res.Message = p.Redact(res.Message)
	if res.Details != nil {
		res.Details = p.redactValue(res.Details).(map[string]any)
	}
	return res
}

// redactValue redacts strings inside details (copies, never modifies).
func (p *OutputPolicy) redactValue(v any) any {
	switch t := v.(type) {
	case string:
		return p.Redact(t)
	case []string:
		out := make([]string, len(t))
		for i, s := range t {
			out[i] = p.Redact(s)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = p.redactValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = p.redactValue(e)
		}
		return out
	}
	return v
}

// tail keeps the last n bytes of s, starting at a line when one starts
// within them, marked as cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	t := s[len(s)-n:]
	if i := strings.IndexByte(t, '\n'); i >= 0 && i < len(t)-1 {
		t = t[i+1:]
	}
	for len(t) > 0 && !utf8.RuneStart(t[0]) {
		t = t[1:]
	}
	return fmt.Sprintf("[… %d bytes cut; output: tail keeps the last %d]\n", len(s)-len(t), n) + t
}
