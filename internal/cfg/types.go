// Package cfg holds the small pieces every config section shares: a
// Duration and Percent that read the way operators write them, field-path
// errors, and strict decoding on yaml.v3 (KnownFields) that reports
// every problem at once, each with its path and line.
package cfg

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "5s", "1m30s", "2h" or "1d".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration the way it is written in config.
// (Prometheus's form, "1d"; Go's below a millisecond, which it cannot write).
func (d Duration) String() string {
	if time.Duration(d)%time.Millisecond != 0 {
		return time.Duration(d).String()
	}
	return model.Duration(d).String()
}

// ParseDuration accepts Go durations ("1m30s", "500ms") and Prometheus ones ("1d", "1w").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("duration %q must not be negative", s)
		}
		return Duration(d), nil
	}
	md, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 500ms, 5s, 1m, 1h, 1d)", s)
	}
	return Duration(md), nil
}

// UnmarshalYAML parses a duration scalar; a bad value is an error at the
// node (see NodeError).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return NodeError(n, "expected a duration (e.g. 30s), got %s", KindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return NodeError(n, "%v", err)
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration back in config form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration in config form.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

// Percent is a whole percentage written as "20%" or 20.
type Percent uint64

// ParsePercent accepts "20%", "20" or "0".
func ParsePercent(s string) (Percent, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "%")
	v, err := strconv.ParseUint(strings.TrimSpace(t), 10, 64)
	if err != nil || v > 100 {
		return 0, fmt.Errorf("invalid percentage %q (want 0%%..100%%)", s)
	}
	return Percent(v), nil
}

// UnmarshalYAML parses "20%" or 20; a bad value is an error at the node.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return NodeError(n, "expected a percentage (e.g. 20%%), got %s", KindName(n))
	}
	v, err := ParsePercent(n.Value)
	if err != nil {
		return NodeError(n, "%v", err)
	}
	*p = v
	return nil
}
