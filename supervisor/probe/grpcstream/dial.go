package grpcstream

import (
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
		tc, err := p.c.TLS.Config()
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
