// Package clientcfg is the one client configuration of medic's outgoing
// connections: the tls: section every probe, Alertmanager and remote
// source shares (caFile, certFile, keyFile, serverName,
// insecureSkipVerify) and the HTTP client settings of Alertmanagers and
// sources (headers, bearerTokenFile, basicAuth, tls). Keys are medic's
// camelCase spelling of prometheus/common's (ca_file → caFile); the
// settings are carried out by prometheus/common/config, to which they
// convert (HTTP.Common, TLS.Common, TLS.Config).
package clientcfg

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	commoncfg "github.com/prometheus/common/config"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
)

// TLS is a tls: section: the client side of a TLS connection.
type TLS struct {
	// CAFile is a PEM bundle of roots to verify the server with; empty
	// means the system roots.
	CAFile string `yaml:"caFile" json:"caFile,omitempty"`
	// CertFile and KeyFile are a PEM client certificate and its key (mTLS),
	// both or neither.
	CertFile string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile" json:"keyFile,omitempty"`
	// ServerName overrides the name the server certificate is verified
	// against (and sent as SNI); default: the host dialled.
	ServerName string `yaml:"serverName" json:"serverName,omitempty"`
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify" json:"insecureSkipVerify,omitempty"`
}

// Deprecated keys of tls: sections: the http and grpcStream probes
// spelled the files ca, cert and key until they shared this section
// (CHANGELOG.md). They still decode, with a warning.
var aliases = []struct{ old, new string }{{"ca", "caFile"}, {"cert", "certFile"}, {"key", "keyFile"}}

// UnmarshalYAML decodes the section strictly, accepting the deprecated
// keys ca, cert and key with a warning each (cfg.Warning); a deprecated
// key beside its new spelling is an error.
func (t *TLS) UnmarshalYAML(unmarshal func(any) error) error {
	type plain TLS
	var w struct {
		plain `yaml:",inline"`
		CA    string `yaml:"ca"`
		Cert  string `yaml:"cert"`
		Key   string `yaml:"key"`
	}
	w.plain = plain(*t)
	n := cfg.NodeOf(unmarshal)
	errs := []error{unmarshal(&w)}
	*t = TLS(w.plain)
	old := map[string]*string{"ca": &w.CA, "cert": &w.Cert, "key": &w.Key}
	cur := map[string]*string{"caFile": &t.CAFile, "certFile": &t.CertFile, "keyFile": &t.KeyFile}
	for _, a := range aliases {
		k := value(n, a.old)
		if k == nil {
			continue
		}
		if value(n, a.new) != nil {
			errs = append(errs, cfg.NodeError(k, "%s is the deprecated spelling of %s: give only %s", a.old, a.new, a.new))
			continue
		}
		*cur[a.new] = *old[a.old]
		errs = append(errs, cfg.Warning(k, "deprecated key: write %s (the same file; see CHANGELOG.md)", a.new))
	}
	return cfg.TypeErrors(errs...)
}

// value returns the value node of key name in mapping n, or nil (a
// problem reported at the value carries the key's path).
func value(n *yaml.Node, name string) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			return n.Content[i+1]
		}
	}
	return nil
}

// Validate reports the section's problems, with paths relative to it.
func (t *TLS) Validate() error {
	if t == nil {
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return cfg.Errorf("", "certFile and keyFile must be given together")
	}
	return nil
}

// Common is the section as prometheus/common's TLSConfig (TLS 1.2 or newer).
func (t *TLS) Common() commoncfg.TLSConfig {
	if t == nil {
		return commoncfg.TLSConfig{}
	}
	return commoncfg.TLSConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
		ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify,
		MinVersion: commoncfg.TLSVersion(tls.VersionTLS12)}
}

// Config reads the files and returns a client tls.Config, through
// prometheus/common: the CA bundle is read now, the client key pair now
// and again at every handshake (a rotated certificate is picked up).
func (t *TLS) Config() (*tls.Config, error) {
	c := t.Common()
	tc, err := commoncfg.NewTLSConfig(&c)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

// HTTP is the client of an HTTP API medic calls (an Alertmanager, a
// Prometheus source); its keys sit inline in the entry.
type HTTP struct {
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// BearerTokenFile is read at every request (rotated tokens are picked up).
	BearerTokenFile string `yaml:"bearerTokenFile" json:"bearerTokenFile,omitempty"`
	// BasicAuth authenticates with a user name and a password file.
	BasicAuth *BasicAuth `yaml:"basicAuth" json:"basicAuth,omitempty"`
	// TLS configures https; files are re-read when they change.
	TLS *TLS `yaml:"tls" json:"tls,omitempty"`
}

// BasicAuth is basicAuth: a user name and a file holding the password.
type BasicAuth struct {
	Username     string `yaml:"username" json:"username"`
	PasswordFile string `yaml:"passwordFile" json:"passwordFile"`
}

// Common is the client as prometheus/common's HTTPClientConfig.
func (h *HTTP) Common() commoncfg.HTTPClientConfig {
	hc := commoncfg.DefaultHTTPClientConfig
	hc.BearerTokenFile = h.BearerTokenFile
	if b := h.BasicAuth; b != nil {
		hc.BasicAuth = &commoncfg.BasicAuth{Username: b.Username, PasswordFile: b.PasswordFile}
	}
	if h.TLS != nil {
		hc.TLSConfig = h.TLS.Common()
	}
	if len(h.Headers) > 0 {
		hc.HTTPHeaders = &commoncfg.Headers{Headers: map[string]commoncfg.Header{}}
		for k, v := range h.Headers {
			hc.HTTPHeaders.Headers[k] = commoncfg.Header{Values: []string{v}}
		}
	}
	return hc
}

// Validate reports every problem, with paths relative to the entry;
// scheme is the URL's ("" when the URL itself is bad).
func (h *HTTP) Validate(scheme string) error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	if h.TLS != nil && scheme == "http" {
		add("tls", "is set but the url scheme is http (use https)")
	}
	errs = append(errs, cfg.Prefix("tls", h.TLS.Validate()))
	if b := h.BasicAuth; b != nil {
		if b.Username == "" {
			add("basicAuth.username", "is required")
		}
		if h.BearerTokenFile != "" {
			add("basicAuth", "and bearerTokenFile are exclusive")
		}
	}
	for k, v := range h.Headers {
		if strings.ContainsAny(v, "\r\n\x00") {
			add(cfg.Join("headers", k), "header value must not contain CR, LF or NUL")
		}
	}
	hc := h.Common()
	if err := hc.Validate(); err != nil {
		add("", "%v", err)
	}
	return errors.Join(errs...)
}
