package clientcfg_test

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
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clientcfg"
)

// pki is a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type pki struct {
	ca, cert, key string
	pool          *x509.CertPool
	server        tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"agent.test"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	sDER, sKey := leaf(2, x509.ExtKeyUsageServerAuth)
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := leaf(3, x509.ExtKeyUsageClientAuth)
	p.cert = write("client.pem", "CERTIFICATE", cDER)
	kDER, _ := x509.MarshalPKCS8PrivateKey(cKey)
	p.key = write("client-key.pem", "PRIVATE KEY", kDER)
	return p
}

// mtlsServer is an https server on loopback that requires a client
// certificate signed by the CA.
func mtlsServer(t *testing.T, p *pki) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// decode decodes a tls: section as medic's config loader does.
func decode(t *testing.T, doc string) (clientcfg.TLS, []error, error) {
	t.Helper()
	var v struct {
		TLS clientcfg.TLS `yaml:"tls"`
	}
	_, err := cfg.Load([]byte(doc), &v, nil)
	warnings, err := cfg.Warnings(err)
	return v.TLS, warnings, err
}

// get fetches the server's page through prometheus/common's client built
// from the section.
func get(t *testing.T, srv *httptest.Server, c *clientcfg.TLS) error {
	t.Helper()
	h := clientcfg.HTTP{TLS: c}
	client, err := commoncfg.NewClientFromConfig(h.Common(), "test")
	if err != nil {
		return err
	}
	resp, err := client.Get(srv.URL)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestKeysDriveARealHandshake(t *testing.T) {
	p := newPKI(t)
	srv := mtlsServer(t, p)
	c, warnings, err := decode(t, "tls: {caFile: "+p.ca+", certFile: "+p.cert+", keyFile: "+p.key+"}\n")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("decode: %v %v", err, warnings)
	}
	if err := get(t, srv, &c); err != nil {
		t.Fatalf("mTLS with caFile, certFile, keyFile: %v", err)
	}
	// Each part is needed: without the client pair the server refuses,
	// without the CA the client does, and serverName is verified.
	for name, bad := range map[string]clientcfg.TLS{
		"no client certificate": {CAFile: p.ca},
		"no CA":                 {CertFile: p.cert, KeyFile: p.key},
		"wrong serverName":      {CAFile: p.ca, CertFile: p.cert, KeyFile: p.key, ServerName: "other.test"},
	} {
		if err := get(t, srv, &bad); err == nil {
			t.Errorf("%s: the request succeeded", name)
		}
	}
	ok := clientcfg.TLS{CAFile: p.ca, CertFile: p.cert, KeyFile: p.key, ServerName: "agent.test"}
	if err := get(t, srv, &ok); err != nil {
		t.Errorf("serverName in the certificate: %v", err)
	}
	insecure := clientcfg.TLS{CertFile: p.cert, KeyFile: p.key, InsecureSkipVerify: true}
	if err := get(t, srv, &insecure); err != nil {
		t.Errorf("insecureSkipVerify: %v", err)
	}
	// Config (what the gRPC probe dials with) does the same handshake.
	tc, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), tc)
	if err != nil {
		t.Fatalf("tls.Dial with Config(): %v", err)
	}
	conn.Close()
}

// Each deprecated spelling (ca, cert, key: the http and grpcStream probes
// until they shared this section) still decodes into the new field, with
// a warning naming the key and its line, and drives the same handshake.
func TestDeprecatedAliases(t *testing.T) {
	p := newPKI(t)
	srv := mtlsServer(t, p)
	for _, tc := range []struct{ old, new, doc string }{
		{"ca", "caFile", "tls:\n  ca: " + p.ca + "\n  certFile: " + p.cert + "\n  keyFile: " + p.key + "\n"},
		{"cert", "certFile", "tls:\n  caFile: " + p.ca + "\n  cert: " + p.cert + "\n  keyFile: " + p.key + "\n"},
		{"key", "keyFile", "tls:\n  caFile: " + p.ca + "\n  certFile: " + p.cert + "\n  key: " + p.key + "\n"},
	} {
		t.Run(tc.old, func(t *testing.T) {
			c, warnings, err := decode(t, tc.doc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if c.CAFile != p.ca || c.CertFile != p.cert || c.KeyFile != p.key {
				t.Fatalf("decoded %+v", c)
			}
			want := "tls." + tc.old + ": deprecated key: write " + tc.new
			if len(warnings) != 1 || !strings.Contains(warnings[0].Error(), want) {
				t.Fatalf("warnings %v, want one containing %q", warnings, want)
			}
			line := map[string]int{"ca": 2, "cert": 3, "key": 4}[tc.old]
			if fe := warnings[0].(*cfg.FieldError); fe.Line != line || !fe.Warning {
				t.Fatalf("warning %+v, want line %d", fe, line)
			}
			if err := get(t, srv, &c); err != nil {
				t.Fatalf("mTLS through the deprecated %s: %v", tc.old, err)
			}
		})
	}
}

func TestAliasBesideItsNewSpellingIsAnError(t *testing.T) {
	_, _, err := decode(t, "tls: {ca: /a.pem, caFile: /b.pem}\n")
	if err == nil || !strings.Contains(err.Error(), "tls.ca: ca is the deprecated spelling of caFile: give only caFile") {
		t.Fatalf("got %v", err)
	}
}

func TestUnknownKeyStillRejected(t *testing.T) {
	_, _, err := decode(t, "tls: {cafile: /a.pem}\n")
	if err == nil || !strings.Contains(err.Error(), `tls.cafile: unknown field (did you mean "caFile"?)`) {
		t.Fatalf("got %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		h      clientcfg.HTTP
		scheme string
		want   []string
	}{
		{clientcfg.HTTP{TLS: &clientcfg.TLS{CertFile: "/c"}}, "https", []string{"tls: certFile and keyFile must be given together"}},
		{clientcfg.HTTP{TLS: &clientcfg.TLS{}}, "http", []string{"tls: is set but the url scheme is http"}},
		{clientcfg.HTTP{BasicAuth: &clientcfg.BasicAuth{PasswordFile: "/p"}, BearerTokenFile: "/t"}, "https",
			[]string{"basicAuth.username: is required", "basicAuth: and bearerTokenFile are exclusive"}},
		{clientcfg.HTTP{Headers: map[string]string{"X": "a\nb"}}, "https", []string{"headers.X: header value must not contain CR, LF or NUL"}},
		{clientcfg.HTTP{TLS: &clientcfg.TLS{CAFile: "/ca"}, BearerTokenFile: "/t"}, "https", nil},
	} {
		err := tc.h.Validate(tc.scheme)
		if tc.want == nil && err != nil {
			t.Errorf("%+v: %v", tc.h, err)
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v\ndoes not contain %q", tc.h, err, w)
			}
		}
	}
}
