package grpcstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/backoff"
	"github.com/medic-sidecar/medic/internal/clientcfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/testpeers/relay"
)

// testPKI is an in-memory CA with a server and a client certificate,
// written as PEM files into a temp dir.
type testPKI struct {
	dir                 string
	caFile              string
	clientCert, clientK string
	server              tls.Certificate
	pool                *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "medic test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)

	leaf := func(serial int64, usage x509.ExtKeyUsage, dns string) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: dns},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: []string{dns},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := leaf(2, x509.ExtKeyUsageServerAuth, "relay.test")
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := leaf(3, x509.ExtKeyUsageClientAuth, "medic")
	p.clientCert = writePEM(t, dir, "client.pem", "CERTIFICATE", cDER)
	kDER, _ := x509.MarshalPKCS8PrivateKey(cKey)
	p.clientK = writePEM(t, dir, "client-key.pem", "PRIVATE KEY", kDER)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMutualTLS(t *testing.T) {
	pki := newPKI(t)
	s := startRelay(t, relay.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}})
	c := testConfig(s.Addr())
	c.Insecure = false
	c.TLS = &clientcfg.TLS{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientK, ServerName: "relay.test"}
	h := run(t, c, clock.NewFake(t0))
	h.waitUp()
	h.stop()

	// A wrong server name fails the handshake: transient (Unavailable).
	c.TLS.ServerName = "someone-else"
	var w waits
	h2 := run(t, c, clock.NewFake(t0), w.hook)
	h2.waitValue(MetricErrors, 1, 5*time.Second, "code", "Unavailable")
	h2.stop()

	// Unreadable TLS material is a local configuration error: permanent.
	c.TLS = &clientcfg.TLS{CAFile: filepath.Join(pki.dir, "missing.pem")}
	h3 := run(t, c, clock.NewFake(t0))
	h3.waitValue(MetricErrors, 1, 5*time.Second, "code", CodeConfig)
	if st := h3.p.Status(); st.Phase != "rejected" {
		t.Fatalf("status %+v", st)
	}
}

func TestReconnectBackoffSequence(t *testing.T) {
	b := newReconnectBackoff(backoff.Config{Policy: backoff.PolicyExponential,
		Initial: cfgDuration(time.Second), Max: cfgDuration(30 * time.Second)}, clock.NewFake(t0))
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if got := b.Next(); got != w*time.Second {
			t.Fatalf("step %d: %s, want %s", i, got, w*time.Second)
		}
	}
	// A probe retries forever: far past the point where base << attempt
	// overflows, the sequence must still be at the cap.
	for i := range 10_000 {
		if got := b.Next(); got != 30*time.Second {
			t.Fatalf("call %d: %s, want the cap", i+len(want), got)
		}
	}
	if got := b.AtCap(); got != 30*time.Second {
		t.Fatalf("AtCap %s", got)
	}
}

func TestReconnectBackoffJitterAndFibonacci(t *testing.T) {
	b := newReconnectBackoff(backoff.Config{Policy: backoff.PolicyFibonacci,
		Initial: cfgDuration(time.Second), Max: cfgDuration(10 * time.Second), Jitter: 20}, clock.NewFake(t0))
	base := []time.Duration{1, 2, 3, 5, 8, 10, 10, 10}
	for i, w := range base {
		got, lo, hi := b.Next(), w*time.Second*8/10, min(w*time.Second*12/10, 10*time.Second)
		if got < lo || got > hi {
			t.Fatalf("step %d: %s outside [%s, %s]", i, got, lo, hi)
		}
	}
	for range 1000 {
		if got := b.AtCap(); got < 8*time.Second || got > 10*time.Second {
			t.Fatalf("AtCap %s outside [8s, 10s]", got)
		}
	}
}
