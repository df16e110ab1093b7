package relay

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/medic-sidecar/medic/internal/relayapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, o Options) (*Server, relayapi.LogServiceClient, *grpc.ClientConn) {
	t.Helper()
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return s, relayapi.NewLogServiceClient(cc), cc
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

type recver interface{ RecvMsg(any) error }

// first receives one message from a Watch stream or returns its end.
func first(st recver) error {
	var m relayapi.Alert // any of the three decodes the leading fields
	return st.RecvMsg(&m)
}

func TestFiltersLikeTheRelay(t *testing.T) {
	_, c, _ := start(t, Options{})
	cases := []struct {
		stream relayapi.Stream
		filter string
		open   bool
	}{
		{relayapi.StreamAlerts, "policy", true},
		{relayapi.StreamAlerts, "all", true},
		{relayapi.StreamAlerts, "system", false},
		{relayapi.StreamAlerts, "", false},
		{relayapi.StreamLogs, "system", true},
		{relayapi.StreamLogs, "all", true},
		{relayapi.StreamLogs, "policy", false},
		{relayapi.StreamLogs, "", false},
		{relayapi.StreamMessages, "all", true},
		{relayapi.StreamMessages, "anything", true},
		{relayapi.StreamMessages, "", true},
	}
	for _, tc := range cases {
		ctx := ctxT(t, 5*time.Second)
		req := &relayapi.RequestMessage{Filter: tc.filter}
		var st recver
		var err error
		switch tc.stream {
		case relayapi.StreamAlerts:
			st, err = c.WatchAlerts(ctx, req)
		case relayapi.StreamLogs:
			st, err = c.WatchLogs(ctx, req)
		default:
			st, err = c.WatchMessages(ctx, req)
		}
		if err != nil {
			t.Fatal(err)
		}
		err = first(st)
		if tc.open && err != nil {
			t.Errorf("%s filter %q: want an event, got %v", tc.stream, tc.filter, err)
		}
		if !tc.open && !errors.Is(err, io.EOF) {
			t.Errorf("%s filter %q: want a clean EOF, got %v", tc.stream, tc.filter, err)
		}
		if tc.stream.AcceptsFilter(tc.filter) != tc.open {
			t.Errorf("relayapi.AcceptsFilter(%s, %q) disagrees with the peer", tc.stream, tc.filter)
		}
	}
}

func TestHealthCheckAndStats(t *testing.T) {
	s, c, _ := start(t, Options{})
	r, err := c.HealthCheck(ctxT(t, 5*time.Second), &relayapi.NonceMessage{Nonce: 4242})
	if err != nil || r.GetRetval() != 4242 {
		t.Fatalf("HealthCheck: %v %v", r, err)
	}
	st, err := c.WatchAlerts(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); err != nil {
		t.Fatal(err)
	}
	got := s.Stats()
	if got.Accepted != 1 || got.HealthChecks != 1 || got.Active != 1 || got.Sent < 1 ||
		got.Calls[relayapi.LogService_WatchAlerts_FullMethodName] != 1 {
		t.Fatalf("stats: %+v", got)
	}
	subs := s.Subscriptions()
	if len(subs) != 1 || subs[0] != (Subscription{Method: "/feeder.LogService/WatchAlerts", Filter: "policy"}) {
		t.Fatalf("subscriptions: %+v", subs)
	}
}

func TestGRPCHealthOnlyWhenAsked(t *testing.T) {
	_, _, cc := start(t, Options{})
	_, err := healthpb.NewHealthClient(cc).Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("the relay serves no grpc.health.v1: want Unimplemented, got %v", err)
	}
	s, _, cc2 := start(t, Options{Health: true})
	s.Health().SetServingStatus("kubearmor", healthpb.HealthCheckResponse_NOT_SERVING)
	r, err := healthpb.NewHealthClient(cc2).Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{Service: "kubearmor"})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health: %v %v", r, err)
	}
}

func TestFailCode(t *testing.T) {
	s, c, _ := start(t, Options{})
	s.SetFailCode(codes.PermissionDenied)
	st, err := c.WatchLogs(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "system"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("want PermissionDenied, got %v", err)
	}
	_, err = c.HealthCheck(ctxT(t, 5*time.Second), &relayapi.NonceMessage{Nonce: 1})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("HealthCheck: want PermissionDenied, got %v", err)
	}
	s.SetFailCode(codes.OK)
	if _, err := c.HealthCheck(ctxT(t, 5*time.Second), &relayapi.NonceMessage{Nonce: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestRejectFilters(t *testing.T) {
	s, c, _ := start(t, Options{})
	s.SetRejectFilters(true)
	st, err := c.WatchAlerts(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); !errors.Is(err, io.EOF) {
		t.Fatalf("want clean EOF, got %v", err)
	}
}

func TestStopStartSameAddress(t *testing.T) {
	s, c, _ := start(t, Options{})
	addr := s.Addr()
	st, err := c.WatchAlerts(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	for {
		err = first(st)
		if err != nil {
			break
		}
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("after Stop: want Unavailable, got %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start on a running server must fail")
	}
	if s.Addr() != addr {
		t.Fatalf("restart moved from %s to %s", addr, s.Addr())
	}
	st, err = c.WatchAlerts(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "policy"}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestHangSilentEndStreams(t *testing.T) {
	s, c, _ := start(t, Options{})
	st, err := c.WatchAlerts(ctxT(t, 10*time.Second), &relayapi.RequestMessage{Filter: "all"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); err != nil {
		t.Fatal(err)
	}

	s.Hang()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = c.HealthCheck(ctx, &relayapi.NonceMessage{Nonce: 7})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("hung: want DeadlineExceeded, got %v", err)
	}
	s.Resume()
	if _, err := c.HealthCheck(ctxT(t, 5*time.Second), &relayapi.NonceMessage{Nonce: 8}); err != nil {
		t.Fatalf("resumed: %v", err)
	}

	s.SetSilent(true) // returns once in-flight sends are done
	before := s.Stats().Sent
	time.Sleep(100 * time.Millisecond)
	if after := s.Stats().Sent; after != before {
		t.Fatalf("silent relay sent %d events", after-before)
	}
	if s.Stats().Active != 1 {
		t.Fatal("silent relay must keep the stream open")
	}
	s.SetSilent(false)

	s.EndStreams(codes.Aborted)
	for {
		if err = first(st); err != nil {
			break
		}
	}
	if status.Code(err) != codes.Aborted {
		t.Fatalf("EndStreams(Aborted): got %v", err)
	}
	ls, err := c.WatchLogs(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "all"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(ls); err != nil {
		t.Fatal(err)
	}
	s.EndStreams(codes.OK)
	for {
		if err = first(ls); err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("EndStreams(OK): want clean EOF, got %v", err)
	}
}

func TestMethodFailCodeAndWrongNonce(t *testing.T) {
	s, c, _ := start(t, Options{})
	s.SetMethodFailCode(relayapi.LogService_HealthCheck_FullMethodName, codes.Internal)
	if _, err := c.HealthCheck(ctxT(t, 5*time.Second), &relayapi.NonceMessage{Nonce: 1}); status.Code(err) != codes.Internal {
		t.Fatalf("want Internal, got %v", err)
	}
	st, err := c.WatchAlerts(ctxT(t, 5*time.Second), &relayapi.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first(st); err != nil {
		t.Fatalf("other methods are not faulted: %v", err)
	}
	s.SetMethodFailCode(relayapi.LogService_HealthCheck_FullMethodName, codes.OK)
	s.SetWrongNonce(true)
	r, err := c.HealthCheck(ctxT(t, 5*time.Second), &relayapi.NonceMessage{Nonce: 3})
	if err != nil || r.GetRetval() == 3 {
		t.Fatalf("want a wrong nonce: %v %v", r, err)
	}
}
