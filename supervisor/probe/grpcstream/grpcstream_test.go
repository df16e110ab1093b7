package grpcstream

import (
	"context"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/relayapi"
	"github.com/medic-sidecar/medic/internal/testpeers/faultproxy"
	"github.com/medic-sidecar/medic/internal/testpeers/relay"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// calls counts the Watch calls a relay peer has seen for the alerts stream.
func calls(s *relay.Server) int {
	return s.Stats().Calls[relayapi.LogService_WatchAlerts_FullMethodName]
}

func TestRelayExitsThenComesBack(t *testing.T) {
	s := startRelay(t, relay.Options{})
	clk := clock.NewFake(t0)
	var w waits
	h := run(t, testConfig(s.Addr()), clk, w.hook)
	h.waitUp()
	if got := h.mustValue(MetricProbeUp); got != 1 {
		t.Fatalf("medic_probe_up = %v, want 1", got)
	}
	if got := h.mustValue(MetricConnectedSince); got != float64(t0.Unix()) {
		t.Fatalf("connected since = %v, want %v", got, t0.Unix())
	}
	h.waitFor("messages", 5*time.Second, func() bool { return h.p.Status().Messages >= 5 })
	clk.Advance(CommitInterval) // messages are committed on the tick
	h.waitFor("messages committed", 5*time.Second, func() bool { v, _ := h.value(MetricMessages); return v >= 5 })

	s.Stop() // the relay exits
	h.waitDown(5 * time.Second)
	if got := h.mustValue(MetricErrors, "code", "Unavailable"); got != 1 {
		t.Fatalf("errors{Unavailable} = %v, want 1", got)
	}
	if _, ok := h.value(MetricConnectedSince); ok {
		t.Fatal("connected_since must vanish while down")
	}
	before := h.mustValue(MetricMessages)

	// The stream delivered, so the backoff was reset: 1s, then 2s, 4s
	// while the relay stays away.
	h.waitFor("first delay", 5*time.Second, func() bool { return w.n() == 1 })
	clk.Advance(time.Second)
	h.waitFor("second delay", 5*time.Second, func() bool { return w.n() == 2 })
	clk.Advance(2 * time.Second)
	h.waitFor("third delay", 5*time.Second, func() bool { return w.n() == 3 })
	d, perm := w.get()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	for i := range want {
		if d[i] != want[i] || perm[i] {
			t.Fatalf("delays %v (permanent %v), want %v transient", d, perm, want)
		}
	}
	if st := h.p.Status(); st.Dials != 3 || st.Reconnects != 2 || st.Phase != "down" {
		t.Fatalf("status %+v", st)
	}

	// The relay comes back; the next dial restores the same subscription
	// and messages are counted again from where they were.
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Second)
	h.waitUp()
	h.waitFor("new messages", 5*time.Second, func() bool { return float64(h.p.Status().Messages) > before+3 })
	clk.Advance(CommitInterval)
	h.waitFor("messages counted again", 5*time.Second, func() bool { v, _ := h.value(MetricMessages); return v > before })
	if got := h.mustValue(MetricReconnects); got != 3 {
		t.Fatalf("reconnects = %v, want 3", got)
	}
	subs := s.Subscriptions()
	if len(subs) != 2 {
		t.Fatalf("subscriptions %v", subs)
	}
	for _, sub := range subs {
		if sub != (relay.Subscription{Method: relayapi.LogService_WatchAlerts_FullMethodName, Filter: "policy"}) {
			t.Fatalf("subscription not restored: %+v", subs)
		}
	}
	if n := h.logs.count("stream down"); n != 1 {
		t.Fatalf("%d 'stream down' lines for one outage, want 1:\n%s", n, h.logs)
	}
	if n := h.logs.count("stream up"); n != 2 {
		t.Fatalf("%d 'stream up' lines, want 2:\n%s", n, h.logs)
	}
}

func TestRelayProcessKilled(t *testing.T) {
	rp := startRelayProcess(t, "127.0.0.1:0")
	c := testConfig(rp.addr)
	c.Backoff.Initial = cfgDuration(100 * time.Millisecond)
	h := run(t, c, clock.Real{})
	h.waitUp()
	rp.kill(syscall.SIGKILL)
	h.waitDown(5 * time.Second)
	if st := h.p.Status(); !strings.Contains(st.LastError, "Unavailable") {
		t.Fatalf("last error %q", st.LastError)
	}
	startRelayProcess(t, rp.addr) // a new relay process on the same address
	h.waitUp()
	h.waitFor("messages after restart", 5*time.Second, func() bool { return h.p.Status().Messages > 0 })
}

func TestBadFilterIsAConfigurationErrorNotAStorm(t *testing.T) {
	s := startRelay(t, relay.Options{})
	s.SetRejectFilters(true) // every Watch ends at once with status OK
	clk := clock.NewFake(t0)
	var w waits
	h := run(t, testConfig(s.Addr()), clk, w.hook)
	h.waitValue(MetricErrors, 1, 5*time.Second, "code", CodeEOF)
	h.waitFor("wait chosen", 5*time.Second, func() bool { return w.n() == 1 })
	if d, perm := w.get(); d[0] != 30*time.Second || !perm[0] {
		t.Fatalf("after a rejected filter the probe must wait the cap (30s), got %v permanent=%v", d, perm)
	}
	if got := h.mustValue(MetricUp); got != 0 {
		t.Fatalf("up = %v", got)
	}
	if st := h.p.Status(); st.Phase != "rejected" || !strings.Contains(st.LastError, "rejected the subscription") {
		t.Fatalf("status %+v", st)
	}
	clk.Advance(29 * time.Second)
	if n := calls(s); n != 1 {
		t.Fatalf("%d Watch calls before the cap", n)
	}
	// The commit ticker fired at the advance: wait until it is re-armed
	// (beside the reconnect timer) so the next advance fires both.
	if !clk.BlockUntil(2, 5*time.Second) {
		t.Fatal("commit ticker not re-armed")
	}
	clk.Advance(time.Second)
	h.waitValue(MetricErrors, 2, 5*time.Second, "code", CodeEOF)
	if n, acc := calls(s), s.Stats().Accepted; n != 2 || acc != 2 {
		t.Fatalf("Watch calls %d, connections %d; want 2 and 2", n, acc)
	}
	if n := h.logs.count("stream rejected"); n != 1 {
		t.Fatalf("rejection logged %d times, want once:\n%s", n, h.logs)
	}
	// Fixed on the relay side: the next retry at the cap connects.
	s.SetRejectFilters(false)
	h.waitFor("second wait", 5*time.Second, func() bool { return w.n() == 2 })
	clk.Advance(30 * time.Second)
	h.waitUp()
}

func TestErrorClassification(t *testing.T) {
	transient := []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.Internal, codes.Unknown}
	permanent := []codes.Code{codes.Unimplemented, codes.InvalidArgument, codes.PermissionDenied,
		codes.Unauthenticated, codes.NotFound, codes.FailedPrecondition}
	s := startRelay(t, relay.Options{})
	for _, list := range [][]codes.Code{transient, permanent} {
		for _, code := range list {
			t.Run(code.String(), func(t *testing.T) {
				s.SetFailCode(code)
				clk := clock.NewFake(t0)
				var w waits
				h := run(t, testConfig(s.Addr()), clk, w.hook)
				h.waitValue(MetricErrors, 1, 5*time.Second, "code", code.String())
				h.waitFor("wait chosen", 5*time.Second, func() bool { return w.n() == 1 })
				d, perm := w.get()
				wantPerm := Permanent(code)
				want := time.Second
				if wantPerm {
					want = 30 * time.Second
				}
				if d[0] != want || perm[0] != wantPerm {
					t.Fatalf("%s: delay %v permanent %v; want %v permanent %v", code, d[0], perm[0], want, wantPerm)
				}
				wantPhase := "down"
				if wantPerm {
					wantPhase = "rejected"
				}
				if st := h.p.Status(); st.Phase != wantPhase {
					t.Fatalf("phase %s, want %s", st.Phase, wantPhase)
				}
				h.stop()
			})
		}
	}
	s.SetFailCode(codes.OK)
}

func TestPermanentCodeNoHotLoop(t *testing.T) {
	s := startRelay(t, relay.Options{})
	s.SetFailCode(codes.PermissionDenied)
	h := run(t, testConfig(s.Addr()), clock.Real{}) // the real clock: a hot loop would show
	h.waitValue(MetricErrors, 1, 5*time.Second, "code", "PermissionDenied")
	time.Sleep(300 * time.Millisecond)
	if n := calls(s); n != 1 {
		t.Fatalf("%d calls in 300ms after a permanent error: hot loop", n)
	}
	if n := h.logs.count("stream rejected"); n != 1 {
		t.Fatalf("logged %d times", n)
	}
}

func TestRelayHangDetectedByKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a real keepalive timeout (~11s)")
	}
	s := startRelay(t, relay.Options{})
	px, err := faultproxy.Start("127.0.0.1:0", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	c := testConfig(px.Addr())
	c.Keepalive = KeepaliveConfig{Time: cfgDuration(10 * time.Second), Timeout: cfgDuration(time.Second)}
	h := run(t, c, clock.Real{})
	h.waitUp()
	h.waitFor("messages", 5*time.Second, func() bool { return h.p.Status().Messages > 0 })

	px.SetMode(faultproxy.Stall) // connections stay open; nothing moves
	start := time.Now()
	h.waitDown(30 * time.Second)
	took := time.Since(start)
	st := h.p.Status()
	if !strings.Contains(st.LastError, "keepalive") || st.Errors["Unavailable"] != 1 {
		t.Fatalf("want a keepalive failure, got %+v", st)
	}
	// Bound: keepalive time + timeout + 1s, with slack for a loaded machine.
	if took > 16*time.Second {
		t.Fatalf("hang detected after %s", took)
	}
	t.Logf("hang detected after %s (keepalive 10s/1s)", took.Round(time.Millisecond))

	px.SetMode(faultproxy.Pass)
	h.waitUp()
}

func TestSilentRelayTriggersGapRule(t *testing.T) {
	s := startRelay(t, relay.Options{})
	clk := clock.NewFake(t0)
	h := run(t, testConfig(s.Addr()), clk)
	h.waitUp()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	const rule = `time() - medic_stream_last_message_timestamp_seconds{probe="relay"} > 60`
	firing := func() bool {
		t.Helper()
		q, err := eng.NewInstantQuery(context.Background(), h.st, nil, rule, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		v, err := res.Vector()
		if err != nil {
			t.Fatal(err)
		}
		return len(v) > 0
	}

	// Events flow: after 90s of fake time the last message is recent.
	clk.Advance(90 * time.Second)
	n := h.p.Status().Messages
	h.waitFor("a message after the advance", 5*time.Second, func() bool { return h.p.Status().Messages > n+2 })
	clk.Advance(CommitInterval)
	h.waitFor("commit", 5*time.Second, func() bool {
		v, _ := h.value(MetricLastMessage)
		return v == float64(t0.Add(90*time.Second).Unix())
	})
	if firing() {
		t.Fatal("gap rule fires while events flow")
	}

	// The relay's upstream dies: the stream stays open, no events.
	s.SetSilent(true) // returns once the relay's in-flight sends are done
	sent := uint64(s.Stats().Sent)
	h.waitFor("events already sent received", 5*time.Second, func() bool { return h.p.Status().Messages == sent })
	clk.Advance(61 * time.Second)
	h.waitFor("commit", 5*time.Second, func() bool {
		_, ok := h.value(MetricLastMessage)
		return ok && h.st.Stats().Samples > 0 && firing()
	})
	if got := h.mustValue(MetricUp); got != 1 {
		t.Fatalf("a silent relay keeps the stream up; up = %v", got)
	}
	s.SetSilent(false)
	n = h.p.Status().Messages
	h.waitFor("events again", 5*time.Second, func() bool { return h.p.Status().Messages > n })
	clk.Advance(CommitInterval)
	h.waitFor("gap closed", 5*time.Second, func() bool { return !firing() })
}

func TestRedialRestoresSubscription(t *testing.T) {
	s := startRelay(t, relay.Options{})
	c := testConfig(s.Addr())
	c.Stream, c.Filter = "logs", "all"
	h := run(t, c, clock.Real{})
	h.waitUp()
	for i := 1; i <= 3; i++ {
		h.p.Redial("test")
		h.waitFor("redialled", 5*time.Second, func() bool {
			st := h.p.Status()
			return st.Dials == uint64(i+1) && st.Phase == "up"
		})
	}
	subs := s.Subscriptions()
	if len(subs) != 4 {
		t.Fatalf("subscriptions %v", subs)
	}
	for _, sub := range subs {
		if sub != (relay.Subscription{Method: relayapi.LogService_WatchLogs_FullMethodName, Filter: "all"}) {
			t.Fatalf("subscription changed: %+v", subs)
		}
	}
	if st := h.p.Status(); st.Reconnects != 3 || len(st.Errors) != 0 {
		t.Fatalf("a redial is a reconnect, not an error: %+v", st)
	}
	if n := h.logs.count("redial requested"); n != 3 {
		t.Fatalf("redial logged %d times", n)
	}
}

func TestRedialWhileWaitingAtCap(t *testing.T) {
	s := startRelay(t, relay.Options{})
	s.SetFailCode(codes.Unauthenticated)
	clk := clock.NewFake(t0)
	var w waits
	h := run(t, testConfig(s.Addr()), clk, w.hook)
	h.waitFor("waiting at the cap", 5*time.Second, func() bool { return w.n() == 1 })
	s.SetFailCode(codes.OK)
	h.p.Redial("credentials fixed")
	h.waitUp() // no clock advance: the redial dials now
}

func TestRedialBeforeRunIsKept(t *testing.T) {
	s := startRelay(t, relay.Options{})
	clk := clock.NewFake(t0)
	h := run(t, testConfig(s.Addr()), clk, func(p *Probe) { p.Redial("early") })
	h.waitFor("up after the early redial", 5*time.Second, func() bool {
		st := h.p.Status()
		return st.Phase == "up" && st.Dials >= 1
	})
}

func TestGRPCHealthWatch(t *testing.T) {
	s := startRelay(t, relay.Options{Health: true})
	s.Health().SetServingStatus("kubearmor", healthpb.HealthCheckResponse_SERVING)
	c := testConfig(s.Addr())
	c.API, c.Service = APIGRPCHealth, "kubearmor"
	h := run(t, c, clock.Real{})
	h.waitValue(MetricProbeUp, 1, 5*time.Second)
	status := func(st string) float64 { return h.mustValue(MetricHealthStatus, "status", st) }
	if status("SERVING") != 1 || status("NOT_SERVING") != 0 || status("SERVICE_UNKNOWN") != 0 {
		t.Fatal("status series wrong while serving")
	}

	s.Health().SetServingStatus("kubearmor", healthpb.HealthCheckResponse_NOT_SERVING)
	h.waitValue(MetricProbeUp, 0, 5*time.Second)
	if h.mustValue(MetricUp) != 1 || status("NOT_SERVING") != 1 || status("SERVING") != 0 {
		t.Fatal("NOT_SERVING: the stream stays up, the probe is down")
	}
	if n := h.logs.count("serving status"); n != 2 {
		t.Fatalf("serving status logged %d times", n)
	}
	h.stop()

	c.Service = "nope"
	h2 := run(t, c, clock.Real{})
	h2.waitValue(MetricHealthStatus, 1, 5*time.Second, "status", "SERVICE_UNKNOWN")
	if h2.mustValue(MetricProbeUp) != 0 || h2.mustValue(MetricUp) != 1 {
		t.Fatal("SERVICE_UNKNOWN: stream up, probe down")
	}
	h2.stop()

	// The relay itself serves no grpc.health.v1: Unimplemented, permanent.
	r := startRelay(t, relay.Options{})
	c.Target, c.Service = r.Addr(), ""
	h3 := run(t, c, clock.Real{})
	h3.waitValue(MetricErrors, 1, 5*time.Second, "code", "Unimplemented")
	if st := h3.p.Status(); st.Phase != "rejected" {
		t.Fatalf("status %+v", st)
	}
}

func TestHealthCheckNonce(t *testing.T) {
	s := startRelay(t, relay.Options{})
	clk := clock.NewFake(t0)
	c := testConfig(s.Addr())
	c.HealthCheck.Interval = cfgDuration(5 * time.Second)
	var w waits
	h := run(t, c, clk, w.hook)
	h.waitUp()
	clk.BlockUntil(2, 5*time.Second) // commit tick + health check
	clk.Advance(5 * time.Second)
	h.waitFor("a health check", 5*time.Second, func() bool { return s.Stats().HealthChecks == 1 })

	s.SetMethodFailCode(relayapi.LogService_HealthCheck_FullMethodName, codes.DeadlineExceeded)
	clk.BlockUntil(2, 5*time.Second)
	clk.Advance(5 * time.Second)
	h.waitDown(5 * time.Second)
	if st := h.p.Status(); st.Errors["DeadlineExceeded"] != 1 || !strings.Contains(st.LastError, "HealthCheck") {
		t.Fatalf("status %+v", st)
	}
	s.SetMethodFailCode(relayapi.LogService_HealthCheck_FullMethodName, codes.OK)

	s.SetWrongNonce(true)
	h.waitFor("backoff", 5*time.Second, func() bool { return w.n() == 1 })
	clk.Advance(time.Second)
	h.waitUp()
	clk.BlockUntil(2, 5*time.Second)
	clk.Advance(5 * time.Second)
	h.waitValue(MetricErrors, 1, 5*time.Second, "code", CodeNonceMismatch)
	if st := h.p.Status(); st.Phase != "rejected" {
		t.Fatalf("a wrong nonce means a wrong target: %+v", st)
	}
}

// TestThousandReconnects drives 1,000 disconnect/reconnect cycles, half
// by Redial and half by the server ending the stream, and checks that
// goroutines and file descriptors do not grow.
func TestThousandReconnects(t *testing.T) {
	s := startRelay(t, relay.Options{Interval: time.Millisecond})
	c := testConfig(s.Addr())
	c.Backoff.Initial, c.Backoff.Max = cfgDuration(time.Millisecond), cfgDuration(2*time.Millisecond)
	h := run(t, c, clock.Real{})
	h.waitUp()
	// Warm up, then take the baseline.
	cycle := func(i int) {
		dials := h.p.Status().Dials
		if i%2 == 0 {
			h.p.Redial("cycle")
		} else {
			s.EndStreams(codes.Unavailable)
		}
		// Up, and a message received on the new stream: the probe also
		// calls a stream up once it outlives ConfirmAfter without a
		// message, and on a loaded machine that happened before the relay's
		// handler had even started; the next EndStreams then missed the
		// stream (it had not taken the relay's end channel yet) and the
		// wait for the reconnect timed out.
		h.waitFor("reconnected", 30*time.Second, func() bool {
			st := h.p.Status()
			return st.Dials > dials && st.Phase == "up" && !st.LastMessage.Before(st.ConnectedSince.Round(0))
		})
	}
	for i := range 20 {
		cycle(i)
	}
	g0, f0 := settled(t, 0, 0)
	const cycles = 1000
	for i := range cycles {
		cycle(i)
	}
	g1, f1 := settled(t, g0, f0)
	t.Logf("after %d cycles: goroutines %d -> %d, fds %d -> %d", cycles, g0, g1, f0, f1)
	if st := h.p.Status(); st.Dials < cycles+20 {
		t.Fatalf("only %d dials", st.Dials)
	}
}

// settled waits until goroutine and fd counts are at most the baseline
// plus a small slack (background work of the runtime and grpc winding
// down), failing if they stay above it. With a zero baseline it just
// returns the current counts.
func settled(t *testing.T, g0, f0 int) (int, int) {
	t.Helper()
	const slack = 3
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g0 == 0 || (g <= g0+slack && f <= f0+slack) {
			return g, f
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("growth: goroutines %d -> %d, fds %d -> %d\n%s", g0, g, f0, f, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestTooManyPingsDoublesKeepalive(t *testing.T) {
	if os.Getenv("MEDIC_SLOW_TESTS") == "" {
		t.Skip("takes ~45s; set MEDIC_SLOW_TESTS=1")
	}
	// A server that never pings (so the client does) and allows one ping a minute.
	s := startRelay(t, relay.Options{
		Keepalive:   &keepalive.ServerParameters{Time: time.Hour},
		Enforcement: &keepalive.EnforcementPolicy{MinTime: time.Minute},
	})
	s.SetSilent(true)
	c := testConfig(s.Addr())
	c.Keepalive.Time = cfgDuration(10 * time.Second)
	h := run(t, c, clock.Real{})
	h.waitUp()
	h.waitFor("too_many_pings", 60*time.Second, func() bool { return h.p.Status().KeepaliveTime == "20s" })
	h.waitUp()
	if n := h.logs.count("too_many_pings"); n < 1 {
		t.Fatal("not logged")
	}
}

// TestUpUnknownUntilFirstOutcome: while the first dial is still pending,
// up has no sample (unknown), so an "up == 0" rule cannot fire at startup.
func TestUpUnknownUntilFirstOutcome(t *testing.T) {
	s := startRelay(t, relay.Options{})
	px, err := faultproxy.Start("127.0.0.1:0", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.SetMode(faultproxy.Stall) // the TCP connect succeeds, the HTTP/2 handshake hangs
	h := run(t, testConfig(px.Addr()), clock.NewFake(t0))
	h.waitFor("first commit", 5*time.Second, func() bool { _, ok := h.value(MetricMessages); return ok })
	time.Sleep(200 * time.Millisecond) // the dial is pending, not failed
	if v, ok := h.value(MetricUp); ok {
		t.Fatalf("up = %v before the first attempt has an outcome", v)
	}
	if _, ok := h.value(MetricProbeUp); ok {
		t.Fatal("medic_probe_up before the first outcome")
	}
	px.SetMode(faultproxy.Pass)
	h.waitUp()
}

// TestErrorCounterStartsAtZero: errors_total for a code seen for the first
// time starts at 0 at the previous commit, so increase() sees the first
// error (the store's counter zero-start).
func TestErrorCounterStartsAtZero(t *testing.T) {
	s := startRelay(t, relay.Options{})
	clk := clock.NewFake(t0)
	h := run(t, testConfig(s.Addr()), clk)
	h.waitUp()
	clk.Advance(10 * time.Second) // a tick commit at t0+10s without any error series
	h.waitFor("commit at t0+10s", 5*time.Second, func() bool {
		for _, pt := range h.st.Latest(func(n string) bool { return n == MetricReconnects }) {
			if pt.T.Equal(t0.Add(10 * time.Second)) {
				return true
			}
		}
		return false
	})
	clk.Advance(500 * time.Millisecond) // before the next tick: the error commits at t0+10.5s
	s.Stop()
	h.waitValue(MetricErrors, 1, 5*time.Second, "code", "Unavailable")
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewInstantQuery(context.Background(), h.st, nil,
		`increase(medic_stream_errors_total{probe="relay",code="Unavailable"}[1m])`, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	v, err := q.Exec(context.Background()).Vector()
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].F < 1 {
		t.Fatalf("increase() of the first error: %v", v)
	}
}
