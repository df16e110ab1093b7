package grpcstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// dialOptions builds one attempt's client options. TLS files are read
// here, at every dial, so rotated certificates are used on reconnect.
func (p *Probe) dialOptions(keepaliveTime time.Duration) ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	if p.c.TLS != nil {
		tc, err := p.c.TLS.load()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// PermitWithoutStream false: medic never keeps an idle connection
		// (one stream per connection, closed when the stream ends), and
		// pings without a stream are what servers punish first.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:    keepaliveTime,
			Timeout: p.c.Keepalive.Timeout.D(),
		}),
		// The probe owns reconnects (one connection per attempt); this
		// only bounds a single connection attempt.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: p.c.DialTimeout.D()}),
		grpc.WithDisableServiceConfig(),
		grpc.WithUserAgent("medic-grpcstream"),
	}, nil
}

func (t *TLSConfig) load() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca: %s holds no PEM certificate", t.CA)
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert/tls.key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
