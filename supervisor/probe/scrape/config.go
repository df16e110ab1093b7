package scrape

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clientcfg"
)

// Kind is the YAML key of this probe kind: probes[].scrape.
const Kind = "scrape"

// Defaults.
const (
	DefaultInterval   = 5 * time.Second
	DefaultMaxTimeout = 10 * time.Second // the timeout is min(interval, this) unless set
	DefaultMaxBytes   = 16 << 20

	// Label limits: a page series beyond them fails the scrape
	// (label_limit). Far above what SPIRE and KubeArmor export (SPIFFE IDs
	// are at most 2048 bytes), far below what would flood logs, the audit
	// and an exec action's environment.
	DefaultLabelLimit            = 64
	DefaultLabelNameLengthLimit  = 256
	DefaultLabelValueLengthLimit = 4096
)

// Config is probes[].scrape.
type Config struct {
	// URL is the page to scrape (http or https).
	URL string `yaml:"url" json:"url"`
	// Interval is the time between scrape starts.
	Interval cfg.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one scrape (connect, headers, body). Zero means
	// min(interval, 10s); it must not exceed the interval.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
	// Headers are added to every request. "Host" sets the request's host.
	// Accept-Encoding is reserved: the probe negotiates gzip itself.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// TLS configures https targets; files are re-read when they change.
	TLS *clientcfg.TLS `yaml:"tls" json:"tls,omitempty"`
	// MaxBytes is the largest (decompressed) body accepted; a larger page
	// fails the scrape.
	MaxBytes ByteSize `yaml:"maxBytes" json:"maxBytes"`
	// SampleLimit fails a scrape whose page has more samples than this;
	// 0 means no limit other than maxBytes and the store's series cap.
	SampleLimit int `yaml:"sampleLimit" json:"sampleLimit,omitempty"`
	// LabelLimit fails a scrape whose page has a series with more labels
	// than this (the metric name counts); 0 means no limit. Prometheus's
	// label_limit.
	LabelLimit int `yaml:"labelLimit" json:"labelLimit"`
	// LabelNameLengthLimit fails a scrape whose page has a label name
	// longer than this many bytes; 0 means no limit. Prometheus's
	// label_name_length_limit.
	LabelNameLengthLimit int `yaml:"labelNameLengthLimit" json:"labelNameLengthLimit"`
	// LabelValueLengthLimit fails a scrape whose page has a label value
	// (the metric name included) longer than this many bytes; 0 means no
	// limit. Prometheus's label_value_length_limit.
	LabelValueLengthLimit int `yaml:"labelValueLengthLimit" json:"labelValueLengthLimit"`
	// NoZeroNewCounters turns off starting a counter series that appears
	// after the first scrape at 0 (at the previous scrape's time), which
	// lets rate() see a counter's first increment (docs/probes.md).
	NoZeroNewCounters bool `yaml:"noZeroNewCounters" json:"noZeroNewCounters,omitempty"`
}

// NewConfig returns a Config with every default filled in.
func NewConfig() *Config {
	return &Config{Interval: cfg.Duration(DefaultInterval), MaxBytes: DefaultMaxBytes,
		LabelLimit: DefaultLabelLimit, LabelNameLengthLimit: DefaultLabelNameLengthLimit,
		LabelValueLengthLimit: DefaultLabelValueLengthLimit}
}

// EffectiveTimeout is the configured timeout, or min(interval, 10s).
func (c *Config) EffectiveTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout.D()
	}
	return min(c.Interval.D(), DefaultMaxTimeout)
}

// SetDefaults fills the derived default (the timeout); New calls it.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = cfg.Duration(c.EffectiveTimeout())
	}
}

// checkLabelLimits reports the first label limit lset exceeds, as
// Prometheus does (its verifyLabelLimits).
func (c *Config) checkLabelLimits(lset labels.Labels) error {
	if n := lset.Len(); c.LabelLimit > 0 && n > c.LabelLimit {
		return fmt.Errorf("%d labels, more than labelLimit (%d)", n, c.LabelLimit)
	}
	if c.LabelNameLengthLimit <= 0 && c.LabelValueLengthLimit <= 0 {
		return nil
	}
	return lset.Validate(func(l labels.Label) error {
		if c.LabelNameLengthLimit > 0 && len(l.Name) > c.LabelNameLengthLimit {
			return fmt.Errorf("label name of %d bytes (%.40q…), longer than labelNameLengthLimit (%d)",
				len(l.Name), l.Name, c.LabelNameLengthLimit)
		}
		if c.LabelValueLengthLimit > 0 && len(l.Value) > c.LabelValueLengthLimit {
			return fmt.Errorf("label %.40q has a value of %d bytes, longer than labelValueLengthLimit (%d)",
				l.Name, len(l.Value), c.LabelValueLengthLimit)
		}
		return nil
	})
}

// reservedHeaders are set by the probe and may not be configured.
var reservedHeaders = map[string]string{
	"Accept-Encoding": "the probe negotiates gzip itself",
	"Content-Length":  "a scrape is a GET without a body",
	"Connection":      "connection reuse is managed by the probe",
}

// Validate reports every problem, with paths relative to probes[i].scrape.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	var scheme string
	switch u, err := url.Parse(c.URL); {
	case c.URL == "":
		add("url", "is required (e.g. http://127.0.0.1:9988/metrics)")
	case err != nil:
		add("url", "invalid URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		add("url", "%q: scheme must be http or https", c.URL)
	case u.Host == "":
		add("url", "%q: has no host", c.URL)
	default:
		scheme = u.Scheme
	}
	if c.Interval <= 0 {
		add("interval", "must be greater than 0")
	}
	if c.Timeout > 0 && c.Interval > 0 && c.Timeout > c.Interval {
		add("timeout", "%s must not exceed the interval (%s)", c.Timeout, c.Interval)
	}
	if c.MaxBytes <= 0 {
		add("maxBytes", "must be greater than 0 (e.g. 16MiB)")
	}
	if c.SampleLimit < 0 {
		add("sampleLimit", "must not be negative (0 means no limit)")
	}
	for _, l := range []struct {
		path string
		v    int
	}{{"labelLimit", c.LabelLimit}, {"labelNameLengthLimit", c.LabelNameLengthLimit}, {"labelValueLengthLimit", c.LabelValueLengthLimit}} {
		if l.v < 0 {
			add(l.path, "must not be negative (0 means no limit)")
		}
	}
	for k, v := range c.Headers {
		path := cfg.Join("headers", k)
		switch {
		case !validHeaderName(k):
			add(path, "invalid header name")
		case reservedHeaders[canonicalHeader(k)] != "":
			add(path, "reserved: %s", reservedHeaders[canonicalHeader(k)])
		case strings.ContainsAny(v, "\r\n\x00"):
			add(path, "header value must not contain CR, LF or NUL")
		}
	}
	if c.TLS != nil && scheme == "http" {
		add("tls", "is set but the url scheme is http (use https)")
	}
	errs = append(errs, cfg.Prefix("tls", c.TLS.Validate()))
	return errors.Join(errs...)
}

var _ cfg.Validator = (*Config)(nil)

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func canonicalHeader(s string) string {
	parts := strings.Split(strings.ToLower(s), "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

// ByteSize is a size in bytes written as 1048576, "512KiB", "16MiB",
// "1GiB" (powers of 1024) or "10MB" (powers of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// ParseByteSize parses a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || (n > 0 && mult > (1<<62)/n) {
		return 0, fmt.Errorf("invalid size %q (use e.g. 1048576, 512KiB, 16MiB)", s)
	}
	return ByteSize(n * mult), nil
}

// String formats the size with the largest exact binary unit.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b > 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML parses a size; a bad value is an error at the node.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return cfg.NodeError(n, "invalid size %s (use e.g. 1048576, 512KiB, 16MiB)", cfg.KindName(n))
	}
	*b = v
	return nil
}

// MarshalYAML writes the size in config form.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalJSON writes the size in config form.
func (b ByteSize) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(b.String())), nil }
