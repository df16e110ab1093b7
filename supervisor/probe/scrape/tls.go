package scrape

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/medic-sidecar/medic/internal/clientcfg"
)

// errTLSFiles marks a failure to load the configured TLS files, so the
// scrape is counted under reason "tls".
var errTLSFiles = errors.New("tls files")

// tlsFiles serves the CA bundle and client key pair from disk. Files are
// re-read at every handshake (connections are kept alive, so that is
// rare) and re-parsed when their content changed: certificates on disk
// rotate (SPIFFE SVIDs every hour or so), and a modification time is too
// coarse to notice two quick rewrites of the same size. A missing or bad
// file fails that scrape, not the probe: the files may not exist yet when
// medic starts (an SVID written by the agent beside it), which is why this
// loader is not prometheus/common's (clientcfg.TLS.Config), which reads
// them when the client is built and fails there.
type tlsFiles struct {
	c clientcfg.TLS

	mu      sync.Mutex
	caPEM   []byte
	pool    *x509.CertPool
	certPEM []byte
	keyPEM  []byte
	pair    *tls.Certificate
}

// newTLSConfig builds the client tls.Config for c; host is the URL's host
// name, used for verification when c.ServerName is empty.
func newTLSConfig(c *clientcfg.TLS, host string) *tls.Config {
	f := &tlsFiles{c: *c}
	name := c.ServerName
	if name == "" {
		name = host
	}
	tc := &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: c.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if c.CertFile != "" {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return f.clientCert()
		}
	}
	if c.CAFile != "" && !c.InsecureSkipVerify {
		// Standard verification would pin RootCAs at construction; verify
		// ourselves against the current bundle instead.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error { return f.verify(cs, name) }
	}
	return tc
}

func (f *tlsFiles) roots() (*x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: caFile: %w", errTLSFiles, err)
	}
	if f.pool != nil && bytes.Equal(b, f.caPEM) {
		return f.pool, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: caFile %s: no PEM certificate found", errTLSFiles, f.c.CAFile)
	}
	f.pool, f.caPEM = pool, b
	return pool, nil
}

func (f *tlsFiles) clientCert() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cb, err := os.ReadFile(f.c.CertFile)
	if err != nil {
		return nil, fmt.Errorf("%w: certFile: %w", errTLSFiles, err)
	}
	kb, err := os.ReadFile(f.c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: keyFile: %w", errTLSFiles, err)
	}
	if f.pair != nil && bytes.Equal(cb, f.certPEM) && bytes.Equal(kb, f.keyPEM) {
		return f.pair, nil
	}
	pair, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return nil, fmt.Errorf("%w: client key pair %s, %s: %w", errTLSFiles, f.c.CertFile, f.c.KeyFile, err)
	}
	f.pair, f.certPEM, f.keyPEM = &pair, cb, kb
	return f.pair, nil
}

func (f *tlsFiles) verify(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	pool, err := f.roots()
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Roots: pool, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(opts)
	return err
}
