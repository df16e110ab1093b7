package workloadapi

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	wlapi "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/internal/clock"
)

var t0 = time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)

func client(t *testing.T, s *Server) *wlapi.Client {
	t.Helper()
	c, err := wlapi.New(context.Background(), wlapi.WithAddr(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestFetchVerifiesAgainstBundle(t *testing.T) {
	s := StartT(t, Options{SPIFFEID: "spiffe://example.org/ns/spire/sa/web", TTL: 10 * time.Minute})
	xc, err := client(t, s).FetchX509Context(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	svid := xc.DefaultSVID()
	if svid.ID.String() != "spiffe://example.org/ns/spire/sa/web" || len(svid.Certificates) != 2 {
		t.Fatalf("svid %s with %d certs", svid.ID, len(svid.Certificates))
	}
	if got := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); got != 10*time.Minute {
		t.Fatalf("lifetime %s", got)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, xc.Bundles); err != nil {
		t.Fatalf("SVID does not verify against its bundle: %v", err)
	}
	if s.Fetches() != 1 {
		t.Fatalf("fetches %d", s.Fetches())
	}
}

func TestSecurityHeaderRequired(t *testing.T) {
	s := StartT(t, Options{})
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx(t), &workload.X509SVIDRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "security header missing from request" {
		t.Fatalf("without header: %v", err)
	}
}

func TestRotationAtHalfLifeAndStop(t *testing.T) {
	clk := clock.NewFake(t0)
	s := StartT(t, Options{TTL: time.Hour, Clock: clk})
	c := client(t, s)
	serialOf := func() string {
		t.Helper()
		svid, err := c.FetchX509SVID(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		return svid.Certificates[0].SerialNumber.String()
	}
	first := serialOf()
	clk.Advance(29 * time.Minute)
	if serialOf() != first {
		t.Fatal("rotated before half-life")
	}
	clk.Advance(time.Minute)
	second := serialOf()
	if second == first {
		t.Fatal("did not rotate at half-life")
	}
	s.StopRotating()
	clk.Advance(45 * time.Minute)
	if serialOf() != second {
		t.Fatal("rotated although stopped")
	}
	s.ResumeRotating()
	if serialOf() == second {
		t.Fatal("did not rotate after resuming")
	}
}

type watcher struct{ updates chan *x509.Certificate }

func (w watcher) OnX509ContextUpdate(c *wlapi.X509Context) {
	w.updates <- c.DefaultSVID().Certificates[0]
}
func (w watcher) OnX509ContextWatchError(error) {}

func TestRotatePushesToStreams(t *testing.T) {
	s := StartT(t, Options{})
	w := watcher{updates: make(chan *x509.Certificate, 4)}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = client(t, s).WatchX509Context(wctx, w); close(done) }()
	defer func() { cancel(); <-done }()
	recv := func() *x509.Certificate {
		select {
		case c := <-w.updates:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no update")
			return nil
		}
	}
	first := recv()
	leaf, err := s.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 || got.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("pushed %s, want new leaf %s", got.SerialNumber, leaf.SerialNumber)
	}
}

func TestDenyAndJWTBundles(t *testing.T) {
	s := StartT(t, Options{})
	c := client(t, s)
	set, err := c.FetchJWTBundles(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := set.GetJWTBundleForTrustDomain(s.ID().TrustDomain())
	if err != nil || len(b.JWTAuthorities()) != 1 {
		t.Fatalf("jwt bundle: %v %v", b, err)
	}
	if _, err := s.AddJWTAuthority(); err != nil {
		t.Fatal(err)
	}
	set, _ = c.FetchJWTBundles(ctx(t))
	if b, _ := set.GetJWTBundleForTrustDomain(s.ID().TrustDomain()); len(b.JWTAuthorities()) != 2 {
		t.Fatalf("after AddJWTAuthority: %d keys", len(b.JWTAuthorities()))
	}
	s.Deny(true)
	if _, err := c.FetchX509SVID(ctx(t)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("denied: %v", err)
	}
	s.Deny(false)
	if _, err := c.FetchX509SVID(ctx(t)); err != nil {
		t.Fatal(err)
	}
}
