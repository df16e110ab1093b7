package scrape

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/internal/cfg"
)

func decode(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	c := NewConfig()
	if err := cfg.Decode(&n, c, "probes[0].scrape"); err != nil {
		return c, err
	}
	return c, cfg.Prefix("probes[0].scrape", c.Validate())
}

func TestConfigDefaults(t *testing.T) {
	c, err := decode(t, `url: http://127.0.0.1:9988/metrics`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval.D() != 5*time.Second || c.MaxBytes != 16<<20 || c.SampleLimit != 0 || c.TLS != nil {
		t.Errorf("defaults: %+v", c)
	}
	if c.LabelLimit != 64 || c.LabelNameLengthLimit != 256 || c.LabelValueLengthLimit != 4096 {
		t.Errorf("label limit defaults: %d %d %d", c.LabelLimit, c.LabelNameLengthLimit, c.LabelValueLengthLimit)
	}
	if got := c.EffectiveTimeout(); got != 5*time.Second {
		t.Errorf("timeout = %v, want the interval (5s)", got)
	}
	c.Interval = cfg.Duration(time.Minute)
	if got := c.EffectiveTimeout(); got != 10*time.Second {
		t.Errorf("timeout = %v, want 10s for a 1m interval", got)
	}
	c.SetDefaults()
	if c.Timeout.D() != 10*time.Second {
		t.Errorf("SetDefaults: timeout %v", c.Timeout)
	}
}

func TestConfigFull(t *testing.T) {
	c, err := decode(t, `
url: https://agent.spire:9988/metrics
interval: 15s
timeout: 3s
maxBytes: 4MiB
sampleLimit: 5000
headers: {Authorization: "Bearer x", X-Scope: a}
tls: {caFile: /ca.pem, certFile: /c.pem, keyFile: /k.pem, serverName: agent, insecureSkipVerify: false}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval.D() != 15*time.Second || c.Timeout.D() != 3*time.Second || c.MaxBytes != 4<<20 ||
		c.SampleLimit != 5000 || c.Headers["X-Scope"] != "a" || c.TLS.ServerName != "agent" || c.TLS.KeyFile != "/k.pem" {
		t.Errorf("decoded %+v %+v", c, c.TLS)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`interval: 5s`, "probes[0].scrape.url: is required"},
		{`url: ftp://x/metrics`, "probes[0].scrape.url: \"ftp://x/metrics\": scheme must be http or https"},
		{`url: "http:///metrics"`, "has no host"},
		{`url: "http://a b/"`, "probes[0].scrape.url: invalid URL"},
		{"url: http://x\ninterval: 5s\ntimeout: 6s", "probes[0].scrape.timeout: 6s must not exceed the interval (5s)"},
		{"url: http://x\ninterval: 0s", "probes[0].scrape.interval: must be greater than 0"},
		{"url: http://x\ninterval: soon", "probes[0].scrape.interval: invalid duration \"soon\""},
		{"url: http://x\nmaxBytes: 12XB", "probes[0].scrape.maxBytes: invalid size \"12XB\""},
		{"url: http://x\nmaxBytes: 0", "probes[0].scrape.maxBytes: must be greater than 0"},
		{"url: http://x\nsampleLimit: -1", "probes[0].scrape.sampleLimit: must not be negative"},
		{"url: http://x\nlabelLimit: -1", "probes[0].scrape.labelLimit: must not be negative"},
		{"url: http://x\nlabelNameLengthLimit: -1", "probes[0].scrape.labelNameLengthLimit: must not be negative"},
		{"url: http://x\nlabelValueLengthLimit: -1", "probes[0].scrape.labelValueLengthLimit: must not be negative"},
		{"url: http://x\nheaders: {accept-encoding: br}", "probes[0].scrape.headers.accept-encoding: reserved"},
		{"url: http://x\nheaders: {\"bad header\": x}", "probes[0].scrape.headers.bad header: invalid header name"},
		{"url: http://x\nheaders: {X-A: \"a\\nb\"}", "probes[0].scrape.headers.X-A: header value must not contain"},
		{"url: https://x\ntls: {certFile: /c.pem}", "probes[0].scrape.tls: certFile and keyFile must be given together"},
		{"url: http://x\ntls: {caFile: /ca.pem}", "probes[0].scrape.tls: is set but the url scheme is http"},
		{"url: http://x\ntls: {cafile: /ca.pem}", `probes[0].scrape.tls.cafile: unknown field (did you mean "caFile"?)`},
		{"url: http://x\nintervall: 5s", "probes[0].scrape.intervall: unknown field"},
	} {
		_, err := decode(t, tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.doc, err, tc.want)
		}
	}
	// Every problem is reported at once.
	_, err := decode(t, "interval: 0s\nmaxBytes: 0\nsampleLimit: -2")
	if n := len(cfg.Flatten(err)); n != 4 {
		t.Errorf("want 4 problems, got %d: %v", n, err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"1048576": 1 << 20, "512KiB": 512 << 10, "16MiB": 16 << 20, "1GiB": 1 << 30, "16mib": 16 << 20,
		"10MB": 10e6, "3kb": 3000, "2M": 2 << 20, "100B": 100, " 7 KiB ": 7 << 10, "0": 0,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "12XB", "99999999999GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	for b, want := range map[ByteSize]string{16 << 20: "16MiB", 1 << 30: "1GiB", 1536: "1536", 3 << 10: "3KiB", 0: "0"} {
		if got := b.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(b), got, want)
		}
	}
}
