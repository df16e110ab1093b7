// Package relay is a test peer: a gRPC server speaking KubeArmor relay's
// wire protocol (feeder.LogService, see internal/relayapi) and behaving
// like the real relay where medic can tell the difference:
//
//   - filters are accepted and rejected exactly as the relay does: a
//     rejected filter ends the Watch at once with status OK (a clean EOF);
//   - server keepalive Time 5s, Timeout 20s, and the enforcement policy
//     PermitWithoutStream true, MinTime 5 min (grpc-go's default);
//   - HealthCheck echoes the nonce and is answered locally;
//   - grpc.health.v1 is not served unless Options.Health asks for it (the
//     KubeArmor daemon serves it, the relay does not).
//
// Faults are switched at runtime: Stop (the process exits: connections
// close), Start (it comes back on the same address), Hang (every
// connection stops reading and writing, like SIGSTOP; no keepalive acks),
// SetSilent (streams stay open with no events, like a relay whose upstream
// died), SetRejectFilters (every Watch ends at once with status OK),
// SetFailCode and SetMethodFailCode (calls return that gRPC code),
// SetWrongNonce (HealthCheck answers another nonce) and EndStreams (the
// server ends the open streams).
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/internal/relayapi"
)

// The real relay's keepalive settings.
var (
	// RelayKeepalive is the relay's server keepalive: it pings an idle
	// client every 5s and drops it after 20s without an ack.
	RelayKeepalive = keepalive.ServerParameters{Time: 5 * time.Second, Timeout: 20 * time.Second}
	// RelayEnforcement is the relay's keepalive enforcement: grpc-go's
	// default MinTime (5 min) with PermitWithoutStream true.
	RelayEnforcement = keepalive.EnforcementPolicy{MinTime: 5 * time.Minute, PermitWithoutStream: true}
)

// DefaultInterval is the time between events on each stream.
const DefaultInterval = 100 * time.Millisecond

// Options configures a Server. The zero value behaves like the relay.
type Options struct {
	// Addr is the listen address; default "127.0.0.1:0".
	Addr string
	// Interval is the time between events on each open stream (default
	// DefaultInterval); a negative value sends none.
	Interval time.Duration
	// Keepalive overrides RelayKeepalive.
	Keepalive *keepalive.ServerParameters
	// Enforcement overrides RelayEnforcement.
	Enforcement *keepalive.EnforcementPolicy
	// Health also serves grpc.health.v1 (as the KubeArmor daemon does).
	Health bool
	// TLS serves TLS instead of plaintext.
	TLS *tls.Config
}

// Subscription is one Watch call as the server saw it.
type Subscription struct {
	Method string // full method name
	Filter string
}

// Server is a running relay peer.
type Server struct {
	opts   Options
	health *health.Server

	mu      sync.Mutex
	addr    string // fixed after the first Start so a restart reuses it
	gs      *grpc.Server
	hang    chan struct{} // closed while not hung
	hung    bool
	end     chan struct{} // closed by EndStreams
	endCode codes.Code
	subs    []Subscription
	calls   map[string]int

	silent        atomic.Bool
	inflight      atomic.Int64 // events between the silent check and the send's end
	rejectFilters atomic.Bool
	wrongNonce    atomic.Bool
	failCode      atomic.Uint32
	methodFail    map[string]codes.Code // guarded by mu
	accepted      atomic.Int64
	active        atomic.Int64
	sent          atomic.Int64
	healthChecks  atomic.Int64
}

// New returns a stopped server; call Start.
func New(o Options) *Server {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	s := &Server{opts: o, addr: o.Addr, hang: make(chan struct{}), end: make(chan struct{}), calls: map[string]int{}}
	close(s.hang)
	if o.Health {
		s.health = health.NewServer()
	}
	return s
}

// Start returns a started server (New + Start).
func Start(o Options) (*Server, error) {
	s := New(o)
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the address the server listens on (the same across restarts).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Health is the grpc.health.v1 server (nil unless Options.Health): set
// statuses with SetServingStatus.
func (s *Server) Health() *health.Server { return s.health }

// Start listens (on the first Start's address when restarting) and serves.
// It is an error to Start a running server.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gs != nil {
		return errors.New("relay peer: already running")
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("relay peer: listen %s: %w", s.addr, err)
	}
	s.addr = ln.Addr().String()
	ka, kep := RelayKeepalive, RelayEnforcement
	if s.opts.Keepalive != nil {
		ka = *s.opts.Keepalive
	}
	if s.opts.Enforcement != nil {
		kep = *s.opts.Enforcement
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(ka),
		grpc.KeepaliveEnforcementPolicy(kep),
		grpc.ChainUnaryInterceptor(s.unaryFaults),
		grpc.ChainStreamInterceptor(s.streamFaults),
	}
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.opts.TLS)))
	}
	gs := grpc.NewServer(opts...)
	relayapi.RegisterLogServiceServer(gs, &service{s: s})
	if s.health != nil {
		healthpb.RegisterHealthServer(gs, s.health)
	}
	s.gs = gs
	go func() { _ = gs.Serve(&listener{Listener: ln, s: s}) }()
	return nil
}

// Stop is the "process exits" fault: the listener and every connection
// close, and open streams end (clients see Unavailable: the connection
// closed, no status). Start serves again on the same address.
func (s *Server) Stop() {
	s.mu.Lock()
	gs := s.gs
	s.gs = nil
	s.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

// Close stops the server for good.
func (s *Server) Close() { s.Resume(); s.Stop() }

// Hang freezes every connection, open and new: nothing is read or written
// (no data, no keepalive acks) until Resume, like a SIGSTOPped process.
func (s *Server) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hung {
		s.hung = true
		s.hang = make(chan struct{})
	}
}

// Resume ends a Hang; what was held flows again.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hung {
		s.hung = false
		close(s.hang)
	}
}

// SetSilent keeps streams open but stops sending events (true), as the
// relay does when its upstream daemon is gone. SetSilent(true) returns
// once the sends already past the silent check have finished (or after 5 s
// if a send is stuck on a hung connection), so Stats().Sent is final.
func (s *Server) SetSilent(v bool) {
	s.silent.Store(v)
	if !v {
		return
	}
	for deadline := time.Now().Add(5 * time.Second); s.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// SetRejectFilters makes every Watch end at once with status OK, as the
// relay does for a filter it does not accept.
func (s *Server) SetRejectFilters(v bool) { s.rejectFilters.Store(v) }

// SetFailCode makes every call (Watch, HealthCheck, grpc.health.v1) fail
// with code at once; codes.OK turns the fault off.
func (s *Server) SetFailCode(c codes.Code) { s.failCode.Store(uint32(c)) }

// SetMethodFailCode makes calls of one full method name (e.g.
// relayapi.LogService_HealthCheck_FullMethodName) fail with code;
// codes.OK turns it off. SetFailCode, when set, takes precedence.
func (s *Server) SetMethodFailCode(method string, c codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == codes.OK {
		delete(s.methodFail, method)
		return
	}
	if s.methodFail == nil {
		s.methodFail = map[string]codes.Code{}
	}
	s.methodFail[method] = c
}

// SetWrongNonce makes HealthCheck answer with a nonce other than the one
// sent, as a server that is not a LogService might.
func (s *Server) SetWrongNonce(v bool) { s.wrongNonce.Store(v) }

// EndStreams ends every open stream from the server side: with status
// code, or cleanly (io.EOF at the client) for codes.OK.
func (s *Server) EndStreams(code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCode = code
	close(s.end)
	s.end = make(chan struct{})
}

// Stats is a snapshot of what the server saw.
type Stats struct {
	// Accepted counts TCP connections accepted (dials reaching the server).
	Accepted int64
	// Active counts streams open now.
	Active int64
	// Sent counts events sent.
	Sent int64
	// HealthChecks counts LogService.HealthCheck calls.
	HealthChecks int64
	// Calls counts calls by full method name, faulted ones included.
	Calls map[string]int
}

// Stats returns current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	calls := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		calls[k] = v
	}
	s.mu.Unlock()
	return Stats{Accepted: s.accepted.Load(), Active: s.active.Load(), Sent: s.sent.Load(),
		HealthChecks: s.healthChecks.Load(), Calls: calls}
}

// Subscriptions lists every Watch call's method and filter, oldest first.
func (s *Server) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Subscription(nil), s.subs...)
}

// admit counts a call and returns its injected fault, if any.
func (s *Server) admit(method string) error {
	s.mu.Lock()
	s.calls[method]++
	mc := s.methodFail[method]
	s.mu.Unlock()
	if c := codes.Code(s.failCode.Load()); c != codes.OK {
		return status.Error(c, "relay peer: injected fault")
	}
	if mc != codes.OK {
		return status.Error(mc, "relay peer: injected fault")
	}
	return nil
}

func (s *Server) unaryFaults(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.admit(info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) streamFaults(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.admit(info.FullMethod); err != nil {
		return err
	}
	s.active.Add(1)
	defer s.active.Add(-1)
	return h(srv, ss)
}

// service implements relayapi.LogServiceServer.
type service struct {
	relayapi.UnimplementedLogServiceServer
	s *Server
}

func (v *service) HealthCheck(_ context.Context, n *relayapi.NonceMessage) (*relayapi.ReplyMessage, error) {
	v.s.healthChecks.Add(1)
	if v.s.wrongNonce.Load() {
		return &relayapi.ReplyMessage{Retval: n.GetNonce() ^ 0x5a5a}, nil
	}
	return &relayapi.ReplyMessage{Retval: n.GetNonce()}, nil
}

func (v *service) WatchMessages(req *relayapi.RequestMessage, ss relayapi.LogService_WatchMessagesServer) error {
	return v.s.watch(relayapi.StreamMessages, req.GetFilter(), ss, func(seq int64, now time.Time) error {
		return ss.Send(&relayapi.Message{Timestamp: now.Unix(), UpdatedTime: updated(now), ClusterName: "default",
			HostName: "relay-peer", HostIP: "127.0.0.1", Type: "Message", Level: "INFO", Message: fmt.Sprintf("message %d", seq)})
	})
}

func (v *service) WatchAlerts(req *relayapi.RequestMessage, ss relayapi.LogService_WatchAlertsServer) error {
	return v.s.watch(relayapi.StreamAlerts, req.GetFilter(), ss, func(seq int64, now time.Time) error {
		return ss.Send(&relayapi.Alert{Timestamp: now.Unix(), UpdatedTime: updated(now), ClusterName: "default",
			HostName: "relay-peer", NamespaceName: "default", PodName: "app", PID: int32(seq), PolicyName: "block-exec",
			Severity: "5", Type: "MatchedPolicy", Source: "/bin/sh", Operation: "Process", Resource: "/bin/ls",
			Action: "Block", Result: "Permission denied", Message: fmt.Sprintf("alert %d", seq)})
	})
}

func (v *service) WatchLogs(req *relayapi.RequestMessage, ss relayapi.LogService_WatchLogsServer) error {
	return v.s.watch(relayapi.StreamLogs, req.GetFilter(), ss, func(seq int64, now time.Time) error {
		return ss.Send(&relayapi.Log{Timestamp: now.Unix(), UpdatedTime: updated(now), ClusterName: "default",
			HostName: "relay-peer", NamespaceName: "default", PodName: "app", PID: int32(seq), Type: "HostLog",
			Source: "/bin/sh", Operation: "Process", Resource: "/bin/ls", Result: "Passed"})
	})
}

func updated(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// watch runs one Watch: the relay's filter check, then events every
// Interval until the client goes, the server stops or EndStreams.
func (s *Server) watch(stream relayapi.Stream, filter string, ss grpc.ServerStream, send func(seq int64, now time.Time) error) error {
	s.mu.Lock()
	s.subs = append(s.subs, Subscription{Method: stream.Method(), Filter: filter})
	end := s.end
	s.mu.Unlock()
	if s.rejectFilters.Load() || !stream.AcceptsFilter(filter) {
		return nil // the relay's answer to a bad filter: end at once, status OK
	}
	var tick <-chan time.Time
	if s.opts.Interval > 0 {
		t := time.NewTicker(s.opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	var seq int64
	for {
		select {
		case <-ss.Context().Done():
			return ss.Context().Err()
		case <-end:
			s.mu.Lock()
			code := s.endCode
			s.mu.Unlock()
			if code == codes.OK {
				return nil
			}
			return status.Error(code, "relay peer: stream ended by server")
		case now := <-tick:
			s.inflight.Add(1)
			if s.silent.Load() {
				s.inflight.Add(-1)
				continue
			}
			seq++
			err := send(seq, now)
			if err == nil {
				s.sent.Add(1)
			}
			s.inflight.Add(-1)
			if err != nil {
				return err
			}
		}
	}
}

// listener counts accepted connections and wraps them so Hang can freeze them.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.accepted.Add(1)
	return &conn{Conn: c, s: l.s, closed: make(chan struct{})}, nil
}

// conn blocks reads and writes while the server is hung.
type conn struct {
	net.Conn
	s      *Server
	once   sync.Once
	closed chan struct{}
}

// hold waits until the server is not hung; false if the conn closed.
func (c *conn) hold() bool {
	c.s.mu.Lock()
	gate := c.s.hang
	c.s.mu.Unlock()
	select {
	case <-gate:
		return true
	case <-c.closed:
		return false
	}
}

func (c *conn) Read(b []byte) (int, error) {
	if !c.hold() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if n > 0 && !c.hold() { // data that arrived while hung is held, not handed over
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	if !c.hold() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
