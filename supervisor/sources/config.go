// Package sources are remote PromQL sources (sources.<name>): a
// Prometheus-compatible query API (Prometheus, Thanos, Mimir) that
// actions' requirements (requires: {expr, source}) are evaluated on with
// instant queries, each answer cached for one evaluation interval. This is
// how medic learns what the rest of the fleet sees: the cluster's
// Prometheus scrapes every medic's medic_alerts.
package sources

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/medic-sidecar/medic/internal/cfg"
)

// DefaultTimeout bounds one query when prometheus.timeout is not set.
const DefaultTimeout = 5 * time.Second

// Config is one sources.<name> entry: exactly one kind (prometheus).
type Config struct {
	Prometheus *PrometheusConfig `yaml:"prometheus" json:"prometheus,omitempty"`
}

// PrometheusConfig is sources.<name>.prometheus: a Prometheus HTTP API.
type PrometheusConfig struct {
	// URL is the API's base URL (http://prometheus.monitoring:9090, with
	// any path prefix; queries go to URL + /api/v1/query). Empty: the
	// source is disabled and requirements on it are not evaluated (they
	// count as met, and /status and medic validate say the guard is
	// inactive) — how a shipped config makes the fleet guard opt-in with
	// url: "${MEDIC_FLEET_PROMETHEUS_URL:-}".
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one query (sent to the server as its timeout too).
	// Default 5s.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Headers are added to every request (e.g. X-Scope-OrgID for Mimir).
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// BearerTokenFile is read at every request (rotated tokens are picked up).
	BearerTokenFile string `yaml:"bearerTokenFile" json:"bearerTokenFile,omitempty"`
	// BasicAuth authenticates with a user name and a password file.
	BasicAuth *BasicAuth `yaml:"basicAuth" json:"basicAuth,omitempty"`
	// TLS configures https; files are re-read when they change.
	TLS *TLSConfig `yaml:"tls" json:"tls,omitempty"`
}

// BasicAuth is prometheus.basicAuth.
type BasicAuth struct {
	Username     string `yaml:"username" json:"username"`
	PasswordFile string `yaml:"passwordFile" json:"passwordFile"`
}

// TLSConfig is prometheus.tls.
type TLSConfig struct {
	CAFile             string `yaml:"caFile" json:"caFile,omitempty"`
	CertFile           string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile            string `yaml:"keyFile" json:"keyFile,omitempty"`
	ServerName         string `yaml:"serverName" json:"serverName,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify" json:"insecureSkipVerify,omitempty"`
}

// Enabled reports whether the source has a URL to ask.
func (c *Config) Enabled() bool { return c != nil && c.Prometheus != nil && c.Prometheus.URL != "" }

// EffectiveTimeout is the query timeout with its default.
func (p *PrometheusConfig) EffectiveTimeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout.D()
	}
	return DefaultTimeout
}

// HTTPClientConfig translates the entry to prometheus/common's client config.
func (p *PrometheusConfig) HTTPClientConfig() commoncfg.HTTPClientConfig {
	hc := commoncfg.DefaultHTTPClientConfig
	hc.BearerTokenFile = p.BearerTokenFile
	if b := p.BasicAuth; b != nil {
		hc.BasicAuth = &commoncfg.BasicAuth{Username: b.Username, PasswordFile: b.PasswordFile}
	}
	if t := p.TLS; t != nil {
		hc.TLSConfig = commoncfg.TLSConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
			ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	if len(p.Headers) > 0 {
		hc.HTTPHeaders = &commoncfg.Headers{Headers: map[string]commoncfg.Header{}}
		for k, v := range p.Headers {
			hc.HTTPHeaders.Headers[k] = commoncfg.Header{Values: []string{v}}
		}
	}
	return hc
}

// Validate reports every problem with paths relative to sources.<name>.
func (c *Config) Validate() error {
	if c == nil || c.Prometheus == nil {
		return cfg.Errorf("", "no source kind given (want prometheus: {url: ...})")
	}
	p := c.Prometheus
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, cfg.Errorf(cfg.Join("prometheus", path), format, args...))
	}
	if p.URL != "" {
		switch u, err := url.Parse(p.URL); {
		case err != nil:
			add("url", "invalid URL: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			add("url", "%q: scheme must be http or https", p.URL)
		case u.Host == "":
			add("url", "%q: has no host", p.URL)
		case u.RawQuery != "" || u.Fragment != "":
			add("url", "%q: no query or fragment (the path prefix only)", p.URL)
		default:
			if p.TLS != nil && u.Scheme == "http" {
				add("tls", "is set but the url scheme is http (use https)")
			}
		}
	}
	if p.Timeout < 0 {
		add("timeout", "must not be negative")
	}
	if t := p.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		add("tls", "certFile and keyFile must be given together")
	}
	if b := p.BasicAuth; b != nil {
		if b.Username == "" {
			add("basicAuth.username", "is required")
		}
		if p.BearerTokenFile != "" {
			add("basicAuth", "and bearerTokenFile are exclusive")
		}
	}
	for k, v := range p.Headers {
		if strings.ContainsAny(v, "\r\n\x00") {
			add("headers."+k, "header value must not contain CR, LF or NUL")
		}
	}
	hc := p.HTTPClientConfig()
	if err := hc.Validate(); err != nil {
		add("", "%v", err)
	}
	return errors.Join(errs...)
}

// Describe is a one-line description for medic validate and /status.
func (c *Config) Describe() string {
	if !c.Enabled() {
		return "prometheus, disabled (no url)"
	}
	return fmt.Sprintf("prometheus %s (timeout %s)", c.Prometheus.URL, cfg.Duration(c.Prometheus.EffectiveTimeout()))
}
