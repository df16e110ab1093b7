package scrape

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-sidecar/medic/internal/clientcfg"
)

// testCA is an in-memory certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key in PEM and as a tls.Certificate.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"agent.spire"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	// Write beside and rename, as cert tools do, so a reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// mtlsServer requires a client certificate from clientCA and records the
// CN of the last client.
func mtlsServer(t *testing.T, serverCA, clientCA *testCA, lastCN *atomic.Value) *httptest.Server {
	t.Helper()
	_, _, pair := serverCA.issue(t, "agent", true)
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastCN.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		w.Header().Set("Content-Type", promText)
		_, _ = w.Write([]byte("spire_agent_manager_sync_fetch_entries_updates{status=\"OK\"} 3\n"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected here
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestScrapeMTLS(t *testing.T) {
	serverCA, clientCA := newCA(t, "server-ca"), newCA(t, "client-ca")
	var lastCN atomic.Value
	srv := mtlsServer(t, serverCA, clientCA, &lastCN)

	dir := t.TempDir()
	ca, crt, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeFile(t, ca, serverCA.pem)
	c1, k1, _ := clientCA.issue(t, "medic-1", false)
	writeFile(t, crt, c1)
	writeFile(t, key, k1)

	r := newRig(t, Config{URL: srv.URL + "/metrics", TLS: &clientcfg.TLS{CAFile: ca, CertFile: crt, KeyFile: key}})
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
	r.wantValue(syncOK, 3)
	if lastCN.Load() != "medic-1" {
		t.Fatalf("server saw client %v", lastCN.Load())
	}

	// The client certificate rotates on disk: the next handshake uses it.
	c2, k2, _ := clientCA.issue(t, "medic-2", false)
	writeFile(t, crt, c2)
	writeFile(t, key, k2)
	srv.CloseClientConnections()
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
	if lastCN.Load() != "medic-2" {
		t.Fatalf("after rotation the server saw client %v", lastCN.Load())
	}

	// The CA bundle is replaced by one that does not sign the server: a tls failure.
	writeFile(t, ca, newCA(t, "other-ca").pem)
	srv.CloseClientConnections()
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 0)
	r.wantValue(`medic_probe_failures_total{probe="spire",reason="tls"}`, 1)
	r.wantAbsent(syncOK)

	// A missing client key fails the scrape, not the probe.
	writeFile(t, ca, serverCA.pem)
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	r.cycle()
	r.wantValue(`medic_probe_failures_total{probe="spire",reason="tls"}`, 2)

	// Restored: up again.
	writeFile(t, key, k2)
	srv.CloseClientConnections()
	r.cycle()
	r.wantValue(`medic_probe_up{probe="spire"}`, 1)
}

func TestScrapeTLSVerification(t *testing.T) {
	serverCA, clientCA := newCA(t, "server-ca"), newCA(t, "client-ca")
	var lastCN atomic.Value
	srv := mtlsServer(t, serverCA, clientCA, &lastCN)
	dir := t.TempDir()
	ca, crt, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeFile(t, ca, serverCA.pem)
	c1, k1, _ := clientCA.issue(t, "medic", false)
	writeFile(t, crt, c1)
	writeFile(t, key, k1)

	for _, tc := range []struct {
		name string
		tls  clientcfg.TLS
		up   float64
	}{
		{"server name in the certificate", clientcfg.TLS{CAFile: ca, CertFile: crt, KeyFile: key, ServerName: "agent.spire"}, 1},
		{"server name not in the certificate", clientcfg.TLS{CAFile: ca, CertFile: crt, KeyFile: key, ServerName: "other.spire"}, 0},
		{"system roots do not know the CA", clientcfg.TLS{CertFile: crt, KeyFile: key}, 0},
		{"insecureSkipVerify", clientcfg.TLS{CertFile: crt, KeyFile: key, InsecureSkipVerify: true}, 1},
		{"no client certificate", clientcfg.TLS{CAFile: ca}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{URL: srv.URL, TLS: &tc.tls})
			r.cycle()
			r.wantValue(`medic_probe_up{probe="spire"}`, tc.up)
			if tc.up == 0 {
				r.wantValue(`medic_probe_failures_total{probe="spire",reason="tls"}`, 1)
			}
		})
	}
}
