package grpcstream

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clientcfg"
	"github.com/medic-sidecar/medic/internal/relayapi"
)

// APIs a grpcStream probe speaks.
const (
	// APIKubeArmor watches one of feeder.LogService's streams (the
	// KubeArmor relay or daemon).
	APIKubeArmor = "kubearmor"
	// APIGRPCHealth watches grpc.health.v1.Health/Watch for one service.
	APIGRPCHealth = "grpc-health"
)

// Defaults.
const (
	DefaultKeepaliveTime    = 15 * time.Second
	DefaultKeepaliveTimeout = 5 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultHealthTimeout    = 5 * time.Second
	// MinKeepaliveTime is grpc-go's floor for a client's keepalive time:
	// anything lower is silently raised to it, so config rejects it.
	MinKeepaliveTime = 10 * time.Second
	// StableAfter is how long a stream must stay open, when it delivers
	// nothing, before its end resets the reconnect backoff (a message
	// resets it at once).
	StableAfter = 10 * time.Second
	// ConfirmAfter is how long a stream that has delivered nothing must
	// stay open to count as up: a server rejects a subscription (bad
	// filter, error code) within one round trip, so a stream that outlives
	// this was accepted. A first message confirms it at once.
	ConfirmAfter = 100 * time.Millisecond
)

// DefaultBackoff is the reconnect policy: exponential 1s → 30s, 20%
// jitter, unlimited attempts (attempts 0).
func DefaultBackoff() backoff.Config {
	return backoff.Config{
		Policy:  backoff.PolicyExponential,
		Initial: cfg.Duration(time.Second),
		Max:     cfg.Duration(30 * time.Second),
		Jitter:  20,
	}
}

// Config is probes[].grpcStream.
type Config struct {
	// Target is a gRPC target: "host:port", "dns:///host:port", "unix:///path".
	Target string `yaml:"target" json:"target"`
	// API is kubearmor (default) or grpc-health.
	API string `yaml:"api" json:"api"`
	// Stream is the LogService stream for api kubearmor: alerts (default),
	// logs or messages.
	Stream string `yaml:"stream" json:"stream,omitempty"`
	// Filter is sent in RequestMessage; default policy for alerts, system
	// for logs, all for messages.
	Filter string `yaml:"filter" json:"filter,omitempty"`
	// HealthCheck optionally calls LogService.HealthCheck with a random
	// nonce on the stream's connection (api kubearmor).
	HealthCheck HealthCheckConfig `yaml:"healthCheck" json:"healthCheck"`
	// Service is the grpc.health.v1 service name for api grpc-health
	// ("" is the server as a whole).
	Service string `yaml:"service" json:"service,omitempty"`
	// Insecure dials without TLS; it must be said explicitly.
	Insecure bool `yaml:"insecure" json:"insecure,omitempty"`
	// TLS dials with TLS. Files are read at every dial, so rotated
	// certificates are picked up on the next reconnect.
	TLS *clientcfg.TLS `yaml:"tls" json:"tls,omitempty"`
	// Keepalive is the client's HTTP/2 keepalive: it bounds how long a hung
	// peer goes unnoticed (time + timeout).
	Keepalive KeepaliveConfig `yaml:"keepalive" json:"keepalive"`
	// DialTimeout bounds connecting and opening the stream.
	DialTimeout cfg.Duration `yaml:"dialTimeout" json:"dialTimeout"`
	// Backoff is the reconnect policy. attempts and maxDuration must be 0:
	// the probe never gives up.
	Backoff backoff.Config `yaml:"backoff" json:"backoff"`
}

// HealthCheckConfig is the optional unary HealthCheck.
type HealthCheckConfig struct {
	// Interval between checks; 0 (default) disables them.
	Interval cfg.Duration `yaml:"interval" json:"interval"`
	// Timeout of one check.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
}

// KeepaliveConfig is the client keepalive.
type KeepaliveConfig struct {
	// Time without any frame from the server after which a ping is sent;
	// at least 10s (grpc-go's floor).
	Time cfg.Duration `yaml:"time" json:"time"`
	// Timeout for the ping's ack; without it the connection is closed.
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		API:         APIKubeArmor,
		HealthCheck: HealthCheckConfig{Timeout: cfg.Duration(DefaultHealthTimeout)},
		Keepalive:   KeepaliveConfig{Time: cfg.Duration(DefaultKeepaliveTime), Timeout: cfg.Duration(DefaultKeepaliveTimeout)},
		DialTimeout: cfg.Duration(DefaultDialTimeout),
		Backoff:     DefaultBackoff(),
	}
}

// stream returns the effective stream (alerts when unset).
func (c *Config) stream() relayapi.Stream {
	if c.Stream == "" {
		return relayapi.StreamAlerts
	}
	return relayapi.Stream(c.Stream)
}

// filter returns the effective filter (the stream's default when unset).
func (c *Config) filter() string {
	if c.Filter == "" {
		return c.stream().DefaultFilter()
	}
	return c.Filter
}

// Validate reports every problem, with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	if strings.TrimSpace(c.Target) == "" {
		add("target", "is required (e.g. kubearmor.kubearmor:32767)")
	}
	switch c.API {
	case APIKubeArmor:
		st := c.stream()
		if st.Method() == "" {
			add("stream", "must be alerts, logs or messages, not %q", c.Stream)
		} else if !st.AcceptsFilter(c.filter()) {
			add("filter", "%q is not accepted on %s: the relay takes only %s and ends the stream at once on anything else",
				c.Filter, st, quoteList(st.Filters()))
		}
		if c.Service != "" {
			add("service", "is for api grpc-health only")
		}
		if c.HealthCheck.Interval > 0 && c.HealthCheck.Timeout <= 0 {
			add("healthCheck.timeout", "must be greater than 0")
		}
	case APIGRPCHealth:
		if c.Stream != "" {
			add("stream", "is for api kubearmor only")
		}
		if c.Filter != "" {
			add("filter", "is for api kubearmor only")
		}
		if c.HealthCheck.Interval > 0 {
			add("healthCheck", "is for api kubearmor only (grpc-health streams the status already)")
		}
	default:
		add("api", "must be %s or %s, not %q", APIKubeArmor, APIGRPCHealth, c.API)
	}
	switch {
	case c.Insecure && c.TLS != nil:
		add("insecure", "conflicts with tls: choose one")
	case !c.Insecure && c.TLS == nil:
		add("tls", "is required unless insecure: true is set explicitly")
	}
	errs = append(errs, cfg.Prefix("tls", c.TLS.Validate()))
	if c.Keepalive.Time.D() < MinKeepaliveTime {
		add("keepalive.time", "must be at least %s (grpc-go raises any lower client keepalive time to %s)", cfg.Duration(MinKeepaliveTime), cfg.Duration(MinKeepaliveTime))
	}
	if c.Keepalive.Timeout <= 0 {
		add("keepalive.timeout", "must be greater than 0")
	}
	if c.DialTimeout <= 0 {
		add("dialTimeout", "must be greater than 0")
	}
	errs = append(errs, cfg.Prefix("backoff", validateBackoff(c.Backoff)))
	return errors.Join(errs...)
}

func validateBackoff(b backoff.Config) error {
	var errs []error
	if b.Attempts != 0 {
		errs = append(errs, cfg.Errorf("attempts", "must be 0 (unlimited): a stream probe never gives up"))
	}
	if b.MaxDuration != 0 {
		errs = append(errs, cfg.Errorf("maxDuration", "must be 0: a stream probe never gives up"))
	}
	if b.Max <= 0 {
		errs = append(errs, cfg.Errorf("max", "must be greater than 0: it is also the retry delay after a permanent error"))
	}
	b.Attempts = 1 // checked above; the shared check wants >= 1
	errs = append(errs, b.Validate())
	return errors.Join(errs...)
}

func quoteList(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, " or ")
}

// unlimited is the attempts value handed to backoff.New.
const unlimited = math.MaxInt32
