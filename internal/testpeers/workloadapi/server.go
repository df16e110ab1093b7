// Package workloadapi is a test peer: an in-process SPIFFE Workload API
// server on a real Unix socket, backed by an in-memory CA. It behaves like
// the SPIRE agent's Workload API where medic depends on it:
//
//   - every call must carry the "workload.spiffe.io: true" metadata header,
//     or it fails with InvalidArgument "security header missing from request";
//   - FetchX509SVID streams the workload's X509-SVID (leaf + intermediate),
//     its trust bundle (root), and a new message on every rotation;
//   - FetchX509Bundles and FetchJWTBundles stream bundles likewise;
//   - with Deny, calls fail with PermissionDenied "no identity issued", as
//     SPIRE answers a workload that has no registration entry.
//
// Rotation happens as in SPIRE at half of the SVID's lifetime, but lazily:
// it is checked against Options.Clock on every fetch (and by RotateIfDue),
// so a fake clock needs no coordination with a timer goroutine. Rotate
// forces one; StopRotating freezes the current SVID so that a client sees
// "rotation overdue".
package workloadapi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/internal/clock"
)

// Options configures a Server.
type Options struct {
	// SocketPath is where the Unix socket is created (required).
	SocketPath string
	// SPIFFEID is the workload's identity; default spiffe://example.org/workload.
	SPIFFEID string
	// TTL is each X509-SVID's lifetime; default 1h (SPIRE's default).
	TTL time.Duration
	// Clock dates certificates and decides rotation; default the wall clock.
	Clock clock.Clock
}

// Server is a running Workload API.
type Server struct {
	opts Options
	id   spiffeid.ID
	clk  clock.Clock
	ln   net.Listener
	grpc *grpc.Server

	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey

	mu       sync.Mutex
	leaf     *x509.Certificate
	leafKey  *ecdsa.PrivateKey
	rotating bool
	deny     bool
	jwtKeys  map[string]crypto.PublicKey
	changed  chan struct{} // closed and replaced on every update
	fetches  int
	issued   int
}

// SecurityHeader is the metadata key every Workload API call must carry.
const SecurityHeader = "workload.spiffe.io"

// Start listens on opts.SocketPath and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.SocketPath == "" {
		return nil, errors.New("workloadapi peer: SocketPath is required")
	}
	if opts.SPIFFEID == "" {
		opts.SPIFFEID = "spiffe://example.org/workload"
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	id, err := spiffeid.FromString(opts.SPIFFEID)
	if err != nil {
		return nil, fmt.Errorf("workloadapi peer: %w", err)
	}
	s := &Server{opts: opts, id: id, clk: opts.Clock, rotating: true, jwtKeys: map[string]crypto.PublicKey{}, changed: make(chan struct{})}
	if err := s.newCA(); err != nil {
		return nil, err
	}
	if err := s.issueLocked(); err != nil {
		return nil, err
	}
	if _, err := s.addJWTAuthorityLocked(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.SocketPath), 0o755); err != nil {
		return nil, err
	}
	s.ln, err = net.Listen("unix", opts.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("workloadapi peer: %w", err)
	}
	s.grpc = grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkHeader(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkHeader(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	workload.RegisterSpiffeWorkloadAPIServer(s.grpc, &handler{s: s})
	go func() { _ = s.grpc.Serve(s.ln) }()
	return s, nil
}

func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(SecurityHeader); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// Addr is the socket as a Workload API address: "unix:///path".
func (s *Server) Addr() string { return "unix://" + s.opts.SocketPath }

// ID is the workload's SPIFFE ID.
func (s *Server) ID() spiffeid.ID { return s.id }

// Close stops serving and removes the socket.
func (s *Server) Close() {
	s.grpc.Stop()
	_ = os.Remove(s.opts.SocketPath)
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// newCA makes a root and an intermediate valid for a long time around now.
func (s *Server) newCA() error {
	var err error
	if s.rootKey, err = newKey(); err != nil {
		return err
	}
	if s.interKey, err = newKey(); err != nil {
		return err
	}
	now := s.clk.Now()
	life := max(100*s.opts.TTL, 30*24*time.Hour)
	td := s.id.TrustDomain()
	root := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"medic test CA"}, CommonName: td.Name() + " root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, root, root, &s.rootKey.PublicKey, s.rootKey)
	if err != nil {
		return err
	}
	if s.root, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	inter := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"medic test CA"}, CommonName: td.Name() + " intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life - time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{td.ID().URL()},
	}
	der, err = x509.CreateCertificate(rand.Reader, inter, s.root, &s.interKey.PublicKey, s.rootKey)
	if err != nil {
		return err
	}
	s.inter, err = x509.ParseCertificate(der)
	return err
}

// issueLocked issues a new leaf valid from now for TTL and wakes streams.
func (s *Server) issueLocked() error {
	key, err := newKey()
	if err != nil {
		return err
	}
	now := s.clk.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"SPIRE"}, Country: []string{"US"}},
		NotBefore: now, NotAfter: now.Add(s.opts.TTL), BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{s.id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.inter, &key.PublicKey, s.interKey)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	s.leaf, s.leafKey = leaf, key
	s.issued++
	s.notifyLocked()
	return nil
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Rotate issues a new X509-SVID now, whatever the rotation setting, and
// pushes it to open streams. It returns the new leaf.
func (s *Server) Rotate() (*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.issueLocked(); err != nil {
		return nil, err
	}
	return s.leaf, nil
}

// RotateIfDue rotates when rotation is on and half the current SVID's
// lifetime has passed on the clock. It reports whether it rotated.
func (s *Server) RotateIfDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotateIfDueLocked()
}

func (s *Server) rotateIfDueLocked() bool {
	if !s.rotating {
		return false
	}
	half := s.leaf.NotBefore.Add(s.leaf.NotAfter.Sub(s.leaf.NotBefore) / 2)
	if s.clk.Now().Before(half) {
		return false
	}
	return s.issueLocked() == nil
}

// StopRotating freezes the current SVID (an agent that cannot reach its
// server); ResumeRotating undoes it.
func (s *Server) StopRotating() { s.setRotating(false) }

// ResumeRotating re-enables rotation at half-life.
func (s *Server) ResumeRotating() { s.setRotating(true) }

func (s *Server) setRotating(on bool) {
	s.mu.Lock()
	s.rotating = on
	s.mu.Unlock()
}

// Deny makes every fetch fail with PermissionDenied (no registration entry).
func (s *Server) Deny(on bool) {
	s.mu.Lock()
	s.deny = on
	s.notifyLocked()
	s.mu.Unlock()
}

// Current returns the current leaf, its chain (leaf first, without the
// root) and its key.
func (s *Server) Current() (chain []*x509.Certificate, key *ecdsa.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []*x509.Certificate{s.leaf, s.inter}, s.leafKey
}

// Root is the trust bundle's only certificate.
func (s *Server) Root() *x509.Certificate { return s.root }

// Fetches counts X.509 fetch calls (stream openings) served.
func (s *Server) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// AddJWTAuthority adds a new JWT signing key to the bundle, pushes the
// update and returns its key ID.
func (s *Server) AddJWTAuthority() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kid, err := s.addJWTAuthorityLocked()
	if err == nil {
		s.notifyLocked()
	}
	return kid, err
}

func (s *Server) addJWTAuthorityLocked() (string, error) {
	k, err := newKey()
	if err != nil {
		return "", err
	}
	kid := fmt.Sprintf("key-%d", len(s.jwtKeys)+1)
	s.jwtKeys[kid] = &k.PublicKey
	return kid, nil
}

// snapshot is one consistent view for a response.
type snapshot struct {
	deny    bool
	leaf    *x509.Certificate
	key     *ecdsa.PrivateKey
	jwt     map[string]crypto.PublicKey
	changed <-chan struct{}
}

func (s *Server) snapshot(countFetch bool) snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if countFetch {
		s.fetches++
	}
	s.rotateIfDueLocked()
	jwt := make(map[string]crypto.PublicKey, len(s.jwtKeys))
	for k, v := range s.jwtKeys {
		jwt[k] = v
	}
	return snapshot{deny: s.deny, leaf: s.leaf, key: s.leafKey, jwt: jwt, changed: s.changed}
}

var errDenied = status.Error(codes.PermissionDenied, "no identity issued")

type handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	s *Server
}

func (h *handler) x509Response(sn snapshot) (*workload.X509SVIDResponse, error) {
	key, err := x509.MarshalPKCS8PrivateKey(sn.key)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	chain := append(append([]byte{}, sn.leaf.Raw...), h.s.inter.Raw...)
	return &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: h.s.id.String(), X509Svid: chain, X509SvidKey: key, Bundle: h.s.root.Raw,
	}}}, nil
}

// stream sends build(snapshot) now and after every change until the client goes.
func stream[T any](ctx context.Context, s *Server, count bool, build func(snapshot) (*T, error), send func(*T) error) error {
	for {
		sn := s.snapshot(count)
		count = false
		if sn.deny {
			return errDenied
		}
		resp, err := build(sn)
		if err != nil {
			return err
		}
		if err := send(resp); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sn.changed:
		}
	}
}

func (h *handler) FetchX509SVID(_ *workload.X509SVIDRequest, ss grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return stream(ss.Context(), h.s, true, h.x509Response, ss.Send)
}

func (h *handler) FetchX509Bundles(_ *workload.X509BundlesRequest, ss grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return stream(ss.Context(), h.s, true, func(snapshot) (*workload.X509BundlesResponse, error) {
		return &workload.X509BundlesResponse{Bundles: map[string][]byte{h.s.id.TrustDomain().IDString(): h.s.root.Raw}}, nil
	}, ss.Send)
}

func (h *handler) FetchJWTBundles(_ *workload.JWTBundlesRequest, ss grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	return stream(ss.Context(), h.s, false, func(sn snapshot) (*workload.JWTBundlesResponse, error) {
		b, err := jwtbundle.FromJWTAuthorities(h.s.id.TrustDomain(), sn.jwt).Marshal()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &workload.JWTBundlesResponse{Bundles: map[string][]byte{h.s.id.TrustDomain().IDString(): b}}, nil
	}, ss.Send)
}

// StartT starts a server for a test on a short socket path (Unix socket
// paths are limited to 108 bytes; t.TempDir can be longer) and closes it
// when the test ends.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.SocketPath == "" {
		dir, err := os.MkdirTemp("", "wlapi")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		opts.SocketPath = filepath.Join(dir, "agent.sock")
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
