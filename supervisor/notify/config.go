package notify

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clientcfg"
)

// Defaults, as in Prometheus (rules.resend-delay, notifier queue capacity,
// alertmanager timeout).
const (
	DefaultResendDelay   = time.Minute
	DefaultQueueCapacity = 10_000
	DefaultTimeout       = 10 * time.Second
)

// Config is the alerting: section: where medic sends its alerts.
type Config struct {
	// Alertmanagers receive every firing and resolved alert (POST /api/v2/alerts).
	Alertmanagers []AlertmanagerConfig `yaml:"alertmanagers" json:"alertmanagers,omitempty"`
	// ExternalLabels are added to every alert that does not carry the label
	// already. Unset (nil): namespace, pod and node from the Downward API
	// variables POD_NAMESPACE, POD_NAME and NODE_NAME, where set. An empty
	// mapping ({}) adds none.
	ExternalLabels map[string]string `yaml:"externalLabels" json:"externalLabels,omitempty"`
	// ExternalURL is how people reach this medic's HTTP server; every
	// alert's generatorURL is ExternalURL + "/status". Default:
	// http://<POD_IP or hostname>:<listen port>.
	ExternalURL string `yaml:"externalURL" json:"externalURL,omitempty"`
	// ResendDelay is how often a firing alert is sent again (and a resolved
	// one, for 15 minutes), so an Alertmanager that restarted or missed a
	// notification learns it. Default 1m.
	ResendDelay cfg.Duration `yaml:"resendDelay" json:"resendDelay,omitempty"`
	// QueueCapacity bounds the alerts waiting to be sent; beyond it the
	// oldest are dropped (medic_notifications_dropped_total). Default 10000.
	QueueCapacity int `yaml:"queueCapacity" json:"queueCapacity,omitempty"`
}

// AlertmanagerConfig is one alerting.alertmanagers[] entry.
type AlertmanagerConfig struct {
	// URL is the Alertmanager's base URL (http://host:9093, with any path
	// prefix); alerts go to URL + /api/v2/alerts.
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one POST. Default 10s.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Headers, bearerTokenFile, basicAuth and tls: the shared HTTP client
	// settings.
	clientcfg.HTTP `yaml:",inline"`
}

// Enabled reports whether any Alertmanager is configured.
func (c *Config) Enabled() bool { return len(c.Alertmanagers) > 0 }

// EffectiveResendDelay is the resend delay with its default.
func (c *Config) EffectiveResendDelay() time.Duration {
	if c.ResendDelay > 0 {
		return c.ResendDelay.D()
	}
	return DefaultResendDelay
}

// EffectiveQueueCapacity is the queue capacity with its default.
func (c *Config) EffectiveQueueCapacity() int {
	if c.QueueCapacity > 0 {
		return c.QueueCapacity
	}
	return DefaultQueueCapacity
}

// EffectiveTimeout is the POST timeout with its default.
func (a *AlertmanagerConfig) EffectiveTimeout() time.Duration {
	if a.Timeout > 0 {
		return a.Timeout.D()
	}
	return DefaultTimeout
}

// PostURL is where alerts are posted: URL + /api/v2/alerts.
func (a *AlertmanagerConfig) PostURL() string {
	return strings.TrimSuffix(a.URL, "/") + "/api/v2/alerts"
}

// HTTPClientConfig translates the entry to prometheus/common's client config.
func (a *AlertmanagerConfig) HTTPClientConfig() commoncfg.HTTPClientConfig { return a.HTTP.Common() }

// Validate reports every problem with paths relative to alerting.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	seen := map[string]int{}
	for i, a := range c.Alertmanagers {
		path := fmt.Sprintf("alertmanagers[%d]", i)
		scheme := ""
		switch u, err := url.Parse(a.URL); {
		case a.URL == "":
			add(path+".url", "is required (e.g. http://alertmanager.monitoring:9093)")
		case err != nil:
			add(path+".url", "invalid URL: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			add(path+".url", "%q: scheme must be http or https", a.URL)
		case u.Host == "":
			add(path+".url", "%q: has no host", a.URL)
		case u.RawQuery != "" || u.Fragment != "":
			add(path+".url", "%q: no query or fragment (the path prefix only)", a.URL)
		default:
			if j, dup := seen[a.PostURL()]; dup {
				add(path+".url", "%q is already alertmanagers[%d]", a.URL, j)
			}
			seen[a.PostURL()] = i
			scheme = u.Scheme
		}
		if a.Timeout < 0 {
			add(path+".timeout", "must not be negative")
		}
		errs = append(errs, cfg.Prefix(path, a.HTTP.Validate(scheme)))
	}
	for k, v := range c.ExternalLabels {
		if !model.LabelName(k).IsValidLegacy() || strings.HasPrefix(k, "__") {
			add("externalLabels."+k, "invalid label name")
		}
		if v == "" {
			add("externalLabels."+k, "empty value (leave the label out instead)")
		}
	}
	if c.ExternalURL != "" {
		if u, err := url.Parse(c.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("externalURL", "%q: want an absolute http(s) URL", c.ExternalURL)
		}
	}
	if c.ResendDelay < 0 {
		add("resendDelay", "must not be negative")
	}
	if c.QueueCapacity < 0 {
		add("queueCapacity", "must not be negative")
	}
	if !c.Enabled() && (c.ExternalLabels != nil || c.ExternalURL != "" || c.ResendDelay != 0 || c.QueueCapacity != 0) {
		add("alertmanagers", "is empty: the other alerting settings have no effect without an Alertmanager")
	}
	return errors.Join(errs...)
}

var _ cfg.Validator = (*Config)(nil)

// GeneratorURL is the generatorURL of medic's alerts: externalURL +
// /status, or http://<host>:<port>/status from the HTTP server's address,
// where an unspecified host (":9555", "0.0.0.0") becomes POD_IP or the
// hostname.
func GeneratorURL(externalURL, listenAddr string, lookup func(string) (string, bool)) string {
	if externalURL != "" {
		return strings.TrimSuffix(externalURL, "/") + "/status"
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		host, port = listenAddr, ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if v, ok := lookup("POD_IP"); ok && v != "" {
			host = v
		} else if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	if port == "" {
		return "http://" + host + "/status"
	}
	return "http://" + net.JoinHostPort(host, port) + "/status"
}
