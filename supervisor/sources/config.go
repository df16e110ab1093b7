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
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clientcfg"
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
	// Headers (e.g. X-Scope-OrgID for Mimir), bearerTokenFile, basicAuth
	// and tls: the shared HTTP client settings.
	clientcfg.HTTP `yaml:",inline"`
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
func (p *PrometheusConfig) HTTPClientConfig() commoncfg.HTTPClientConfig { return p.HTTP.Common() }

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
	scheme := ""
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
			scheme = u.Scheme
		}
	}
	if p.Timeout < 0 {
		add("timeout", "must not be negative")
	}
	errs = append(errs, cfg.Prefix("prometheus", p.HTTP.Validate(scheme)))
	return errors.Join(errs...)
}

// Describe is a one-line description for medic validate and /status.
func (c *Config) Describe() string {
	if !c.Enabled() {
		return "prometheus, disabled (no url)"
	}
	return fmt.Sprintf("prometheus %s (timeout %s)", c.Prometheus.URL, cfg.Duration(c.Prometheus.EffectiveTimeout()))
}
