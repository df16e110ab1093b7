// Package httpprobe is the "http" probe: GET a health URL (SPIRE agent's
// /live and /ready, which answer 200 or 500 with a JSON body) and judge
// the status code and, optionally, the body.
//
//	probes:
//	  - name: spire-ready
//	    http: {url: http://127.0.0.1:8080/ready, interval: 5s, timeout: 2s}
//
// Samples (each with probe="<name>"):
//
//	medic_probe_up                 1 when the status (and body) matched, else 0
//	medic_http_status_code         the status code; 0 when no response arrived
//	medic_probe_duration_seconds   time to the end of the body, success or failure
//
// Every check opens a fresh connection (no keep-alive), so "up" means the
// endpoint is reachable now, not that an old connection still works.
package httpprobe

import (
	"context"
	"errors"
	"fmt"
	"github.com/medic-sidecar/medic/internal/clientcfg"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probeutil"
)

// Kind is the YAML key.
const Kind = "http"

// MetricStatus is the status-code metric.
const MetricStatus = "medic_http_status_code"

// Defaults and limits.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	// MaxBody is how much of the body is read for expectBody.
	MaxBody = 64 << 10
)

// Config is probes[].http.
type Config struct {
	URL      string       `yaml:"url" json:"url"`
	Interval cfg.Duration `yaml:"interval" json:"interval"`
	Timeout  cfg.Duration `yaml:"timeout" json:"timeout"`
	// ExpectStatus lists accepted codes (200) or classes ("2xx"); one
	// value or a list. Default: 2xx.
	ExpectStatus StatusList `yaml:"expectStatus" json:"expectStatus,omitempty"`
	// ExpectBody, when set, must occur in the first 64 KiB of the body.
	ExpectBody string `yaml:"expectBody" json:"expectBody,omitempty"`
	// Headers are added to the request ("Host" sets the virtual host).
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// TLS configures https:// URLs.
	TLS *clientcfg.TLS `yaml:"tls" json:"tls,omitempty"`
}

// StatusList is one status code or class, or a list of them, as written:
// 200, "2xx", [200, 500], ["2xx", 404]. It is checked by Validate.
type StatusList []string

// UnmarshalYAML accepts a scalar or a list of scalars; values are checked
// by Config.Validate, which reports them with their path.
func (s *StatusList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = StatusList{n.Value}
	case yaml.SequenceNode:
		out := make(StatusList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				out = append(out, "<not a scalar>")
				continue
			}
			out = append(out, c.Value)
		}
		*s = out
	default:
		*s = StatusList{"<not a scalar or list>"}
	}
	return nil
}

// matcher reports whether a code is accepted.
type matcher func(code int) bool

func parseStatus(v string) (matcher, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if len(v) == 3 && v[1:] == "xx" && v[0] >= '1' && v[0] <= '5' {
		class := int(v[0]-'0') * 100
		return func(c int) bool { return c >= class && c < class+100 }, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 || n > 599 {
		return nil, fmt.Errorf("%q is neither a status code (100..599) nor a class (1xx..5xx)", v)
	}
	return func(c int) bool { return c == n }, nil
}

// Validate reports every problem.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, cfg.Errorf("url", "is required"))
	case err != nil:
		errs = append(errs, cfg.Errorf("url", "%v", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, cfg.Errorf("url", "scheme must be http or https, not %q", u.Scheme))
	case u.Host == "":
		errs = append(errs, cfg.Errorf("url", "has no host"))
	}
	errs = append(errs, probe.CheckTiming(c.Interval, c.Timeout)...)
	for i, s := range c.ExpectStatus {
		if _, err := parseStatus(s); err != nil {
			errs = append(errs, cfg.Errorf(fmt.Sprintf("expectStatus[%d]", i), "%v", err))
		}
	}
	if c.TLS != nil && err == nil && u.Scheme == "http" {
		errs = append(errs, cfg.Errorf("tls", "is set but the url scheme is http (use https)"))
	}
	errs = append(errs, cfg.Prefix("tls", c.TLS.Validate()))
	return errors.Join(errs...)
}

func init() {
	probe.Register(probe.Kind{
		Name: Kind,
		NewConfig: func() any {
			return &Config{Interval: cfg.Duration(DefaultInterval), Timeout: cfg.Duration(DefaultTimeout)}
		},
		New: func(c any, env probe.Env) (probe.Probe, error) { return New(*c.(*Config), env) },
	})
}

// Probe GETs URL every Interval.
type Probe struct {
	c       Config
	clk     clock.Clock
	client  *http.Client
	accept  []matcher
	want    string
	headers http.Header
	host    string
	state   probeutil.StateLog
}

var _ probe.Probe = (*Probe)(nil)

// New builds the probe; it fails when TLS files cannot be loaded.
func New(c Config, env probe.Env) (*Probe, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	clk := env.ClockOrReal()
	log := env.LoggerOrDiscard()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil, ResponseHeaderTimeout: c.Timeout.D()}
	if strings.HasPrefix(c.URL, "https:") {
		tc, err := c.TLS.Config()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	p := &Probe{
		c: c, clk: clk, want: c.ExpectBody, headers: http.Header{},
		client: &http.Client{Transport: tr, Timeout: c.Timeout.D()},
		state:  probeutil.StateLog{Log: log.With("url", c.URL)},
	}
	statuses := c.ExpectStatus
	if len(statuses) == 0 {
		statuses = StatusList{"2xx"}
	}
	for _, s := range statuses {
		m, _ := parseStatus(s)
		p.accept = append(p.accept, m)
	}
	for k, v := range c.Headers {
		if strings.EqualFold(k, "Host") {
			p.host = v
			continue
		}
		p.headers.Set(k, v)
	}
	return p, nil
}

// Result is one check.
type Result struct {
	Up       bool
	Status   int // 0 when no response
	Duration time.Duration
	// Reason says why the check failed (empty when up).
	Reason string
	// Body is the start of the body when the check failed, for logs.
	Body string
}

// Check performs one GET.
func (p *Probe) Check(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, p.c.Timeout.D())
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.c.URL, nil)
	if err != nil {
		return Result{Reason: err.Error()}
	}
	req.Header = p.headers.Clone()
	req.Header.Set("User-Agent", "medic")
	if p.host != "" {
		req.Host = p.host
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Result{Duration: time.Since(start), Reason: probeutil.Reason(err)}
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	_ = resp.Body.Close()
	r := Result{Status: resp.StatusCode, Duration: time.Since(start)}
	switch {
	case !p.accepted(resp.StatusCode):
		r.Reason = fmt.Sprintf("status %d not in %s", resp.StatusCode, p.expectString())
	case rerr != nil:
		r.Reason = "reading body: " + probeutil.Reason(rerr)
	case p.want != "" && !strings.Contains(string(body), p.want):
		r.Reason = fmt.Sprintf("body does not contain %q", p.want)
	default:
		r.Up = true
		return r
	}
	r.Body = string(body[:min(len(body), 512)])
	return r
}

func (p *Probe) accepted(code int) bool {
	for _, m := range p.accept {
		if m(code) {
			return true
		}
	}
	return false
}

func (p *Probe) expectString() string {
	if len(p.c.ExpectStatus) == 0 {
		return "[2xx]"
	}
	return "[" + strings.Join(p.c.ExpectStatus, ", ") + "]"
}

// Run checks every interval until ctx ends.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	probe.Ticker(ctx, p.clk, p.c.Interval.D(), func(now time.Time) {
		r := p.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		up, failure := 0.0, error(nil)
		if r.Up {
			up = 1
			p.state.Up("status", r.Status)
		} else {
			p.state.Down(r.Reason, "body", r.Body)
			failure = errors.New(r.Reason)
		}
		probe.ReportError(app, failure)
		app.Add(probeutil.Series(probeutil.MetricUp), up)
		app.Add(probeutil.Series(MetricStatus), float64(r.Status))
		app.Add(probeutil.Series(probeutil.MetricDuration), r.Duration.Seconds())
		_, _ = app.Commit(now)
	})
	return nil
}
