package certprobe

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/probe/internal/probeutil"
)

// Metric names.
const (
	MetricNotBefore       = "medic_cert_not_before_timestamp_seconds"
	MetricNotAfter        = "medic_cert_not_after_timestamp_seconds"
	MetricRotationOverdue = "medic_cert_rotation_overdue_seconds"
)

// Certificate roles (label role).
const (
	RoleLeaf         = "leaf"
	RoleIntermediate = "intermediate"
	RoleRoot         = "root"
	RoleBundle       = "bundle" // a trust anchor from a Workload API bundle
)

// Lifetime is NotAfter − NotBefore.
func Lifetime(c *x509.Certificate) time.Duration { return c.NotAfter.Sub(c.NotBefore) }

// RotationDeadline is when a certificate should have been replaced by:
// NotBefore + fraction × lifetime. SPIRE rotates at about half of the
// lifetime (±10%), so past 0.6 a certificate is late.
func RotationDeadline(c *x509.Certificate, fraction float64) time.Time {
	return c.NotBefore.Add(time.Duration(float64(Lifetime(c)) * fraction))
}

// RotationOverdue is how far past its rotation deadline c is at now
// (zero before it).
func RotationOverdue(c *x509.Certificate, now time.Time, fraction float64) time.Duration {
	return max(0, now.Sub(RotationDeadline(c, fraction)))
}

// Role classifies a certificate of a chain: not a CA → leaf; a
// self-signed CA → root; another CA → intermediate.
func Role(c *x509.Certificate) string {
	switch {
	case !c.IsCA:
		return RoleLeaf
	case bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil:
		return RoleRoot
	}
	return RoleIntermediate
}

// Chain is what one source holds: a certificate chain, leaf first, and
// optionally the trust bundle that goes with it.
type Chain struct {
	// Source names where it came from: a file path or "workloadapi".
	Source string
	Certs  []*x509.Certificate
	Bundle []*x509.Certificate
	// Current marks the chain whose first certificate is a current leaf
	// that should be rotated (medic_cert_rotation_overdue_seconds).
	Current bool
}

// Sample is one series value.
type Sample struct {
	Labels labels.Labels
	Value  float64
}

// identity returns the identity label of c: spiffe_id when it has a
// spiffe:// URI SAN, else subject.
func identity(c *x509.Certificate) (string, string) {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return "spiffe_id", u.String()
		}
	}
	return "subject", c.Subject.String()
}

// Serial is the serial number in lower-case hex.
func Serial(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// Observe turns chains into samples at now. Each certificate gives
// not-before and not-after timestamps labelled with its identity, serial,
// role and source; each current chain's leaf gives its rotation overdue.
// A certificate listed twice in one source is reported once. It is pure.
func Observe(chains []Chain, now time.Time, fraction float64) []Sample {
	var out []Sample
	seen := map[string]bool{}
	add := func(src string, c *x509.Certificate, role string) {
		idName, idValue := identity(c)
		lset := func(name string) labels.Labels {
			return probeutil.Series(name, idName, idValue, "role", role, "serial", Serial(c), "source", src)
		}
		key := lset("").String()
		if seen[key] {
			return
		}
		seen[key] = true
		out = append(out,
			Sample{lset(MetricNotBefore), float64(c.NotBefore.Unix())},
			Sample{lset(MetricNotAfter), float64(c.NotAfter.Unix())},
		)
	}
	for _, ch := range chains {
		for _, c := range ch.Certs {
			add(ch.Source, c, Role(c))
		}
		for _, c := range ch.Bundle {
			add(ch.Source, c, RoleBundle)
		}
		if ch.Current && len(ch.Certs) > 0 {
			leaf := ch.Certs[0]
			idName, idValue := identity(leaf)
			lset := probeutil.Series(MetricRotationOverdue, idName, idValue, "source", ch.Source)
			if seen[lset.String()] {
				continue
			}
			seen[lset.String()] = true
			out = append(out, Sample{lset, RotationOverdue(leaf, now, fraction).Seconds()})
		}
	}
	return out
}
