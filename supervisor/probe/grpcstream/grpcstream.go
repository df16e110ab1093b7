// Package grpcstream is the grpcStream probe: it holds one server-streaming
// RPC open and reports whether it is up, when it last delivered, how many
// messages, reconnects and errors (by gRPC code) it has seen.
//
// Two APIs are spoken: api kubearmor watches one of KubeArmor's
// feeder.LogService streams (WatchAlerts, WatchLogs, WatchMessages) with a
// filter the relay accepts, optionally with a unary HealthCheck nonce
// check; api grpc-health watches grpc.health.v1.Health/Watch for a service.
//
// Each attempt gets its own gRPC client connection, closed when the stream
// ends, so a disconnect releases everything and a reconnect restores the
// same subscription. Client keepalive bounds how long a hung peer goes
// unnoticed. Reconnects follow a go-retry backoff; errors are classified by
// gRPC code as transient (retried with backoff) or permanent (reported
// once, retried only at the backoff cap). An immediate clean end of a
// Watch (status OK before any message) is how the relay rejects a filter:
// a configuration error, not "relay down".
package grpcstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/relayapi"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

// Kind is the YAML key.
const Kind = "grpcStream"

func init() {
	probe.Register(probe.Kind{
		Name:      Kind,
		NewConfig: func() any { return NewConfig() },
		New: func(c any, env probe.Env) (probe.Probe, error) {
			return New(*c.(*Config), env)
		},
	})
}

// Error classes that are not gRPC codes, used as the code label of
// medic_stream_errors_total.
const (
	// CodeEOF: the stream ended cleanly (status OK). Before the first
	// message it is a rejected subscription (bad filter): permanent.
	CodeEOF = "EOF"
	// CodeNonceMismatch: HealthCheck answered with another nonce; the
	// target is not a LogService.
	CodeNonceMismatch = "NonceMismatch"
	// CodeConfig: local configuration could not be used (TLS files, target).
	CodeConfig = "Config"
)

// permanentCodes are gRPC codes that retrying soon cannot fix; every
// other code is transient.
var permanentCodes = map[codes.Code]bool{
	codes.Unimplemented:      true,
	codes.InvalidArgument:    true,
	codes.PermissionDenied:   true,
	codes.Unauthenticated:    true,
	codes.NotFound:           true,
	codes.FailedPrecondition: true,
}

// Permanent reports whether a stream ending with code c is retried only at
// the backoff cap. Unavailable, DeadlineExceeded, ResourceExhausted,
// Aborted, Internal, Unknown and any other code not listed as permanent
// are transient.
func Permanent(c codes.Code) bool { return permanentCodes[c] }

// Phase is the probe's connection state.
type Phase int

// Phases.
const (
	PhaseConnecting Phase = iota // dialling, nothing decided yet
	PhaseUp                      // a stream is open
	PhaseDown                    // the last attempt failed transiently; retrying with backoff
	PhaseRejected                // the last attempt failed permanently; retrying at the cap
)

// String names the phase.
func (p Phase) String() string {
	switch p {
	case PhaseConnecting:
		return "connecting"
	case PhaseUp:
		return "up"
	case PhaseDown:
		return "down"
	case PhaseRejected:
		return "rejected"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Probe is a running grpcStream probe.
type Probe struct {
	c      Config
	name   string
	log    *slog.Logger
	clk    clock.Clock
	method string
	// stableAfter is StableAfter (tests shorten it).
	stableAfter time.Duration
	// onWait, when set (tests), sees every reconnect delay chosen.
	onWait func(d time.Duration, permanent bool)

	redial  chan string   // Redial requests, one pending at most
	changed chan struct{} // state changed: commit now

	messages    atomic.Uint64
	lastMessage atomic.Int64 // unix nanoseconds

	mu             sync.Mutex
	phase          Phase
	code           string // class of the last failure
	lastErr        string
	connectedSince time.Time
	health         healthpb.HealthCheckResponse_ServingStatus
	reconnects     uint64
	dials          uint64
	errs           map[string]uint64
	keepaliveTime  time.Duration // doubled on too_many_pings, as grpc-go does per channel
	decided        bool          // the first attempt has an outcome: up is known
	running        bool
}

var _ probe.Probe = (*Probe)(nil)

// New builds a probe from a validated config.
func New(c Config, env probe.Env) (*Probe, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("grpcStream probe %s: %w", env.Name, err)
	}
	clk := env.ClockOrReal()
	// env.Logger already carries probe=<name> (the supervisor scopes it).
	log := env.LoggerOrDiscard()
	p := &Probe{
		c:             c,
		name:          env.Name,
		clk:           clk,
		stableAfter:   StableAfter,
		redial:        make(chan string, 1),
		changed:       make(chan struct{}, 1),
		errs:          map[string]uint64{},
		keepaliveTime: c.Keepalive.Time.D(),
		health:        healthpb.HealthCheckResponse_UNKNOWN,
	}
	if c.API == APIGRPCHealth {
		p.method = healthpb.Health_Watch_FullMethodName
		p.log = log.With("target", c.Target, "api", c.API, "service", c.Service)
	} else {
		p.method = c.stream().Method()
		p.log = log.With("target", c.Target, "api", c.API, "stream", string(c.stream()), "filter", c.filter())
	}
	return p, nil
}

// Redial drops the current connection, resets the reconnect backoff and
// dials again now (the reconnect action's Redialer).
func (p *Probe) Redial(reason string) {
	select {
	case p.redial <- reason:
	default: // one pending request is enough
	}
}

// Status is the probe's state for /status.
type Status struct {
	Phase          string            `json:"phase"`
	Target         string            `json:"target"`
	Method         string            `json:"method"`
	Filter         string            `json:"filter,omitempty"`
	Service        string            `json:"service,omitempty"`
	Health         string            `json:"health,omitempty"`
	ConnectedSince *time.Time        `json:"connectedSince,omitempty"`
	LastMessage    time.Time         `json:"lastMessage"`
	Messages       uint64            `json:"messages"`
	Reconnects     uint64            `json:"reconnects"`
	Dials          uint64            `json:"dials"`
	Errors         map[string]uint64 `json:"errors,omitempty"`
	LastError      string            `json:"lastError,omitempty"`
	KeepaliveTime  string            `json:"keepaliveTime"`
}

// Status returns a snapshot of the probe's state.
func (p *Probe) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{
		Phase: p.phase.String(), Target: p.c.Target, Method: p.method,
		LastMessage: time.Unix(0, p.lastMessage.Load()), Messages: p.messages.Load(),
		Reconnects: p.reconnects, Dials: p.dials, LastError: p.lastErr,
		KeepaliveTime: p.keepaliveTime.String(), Errors: make(map[string]uint64, len(p.errs)),
	}
	for k, v := range p.errs {
		s.Errors[k] = v
	}
	if p.c.API == APIGRPCHealth {
		s.Service, s.Health = p.c.Service, p.health.String()
	} else {
		s.Filter = p.c.filter()
	}
	if p.phase == PhaseUp {
		t := p.connectedSince
		s.ConnectedSince = &t
	}
	return s
}

// Run holds the stream open until ctx ends, reconnecting as needed. It
// returns nil on shutdown; transient and permanent stream failures are
// reported as samples, never as errors.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return fmt.Errorf("grpcStream probe %s: Run is already running", p.name)
	}
	p.running = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
	}()
	// Until the first message, "last message" is the probe's start, so an
	// event-gap rule also fires for a stream that never delivers.
	p.lastMessage.Store(p.clk.Now().UnixNano())

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.commitLoop(ctx, app)
	}()
	p.loop(ctx)
	cancel()
	wg.Wait()
	return nil
}

// loop dials, waits for the stream to end, classifies the end and waits
// the backoff, until ctx ends.
func (p *Probe) loop(ctx context.Context) {
	bo := newReconnectBackoff(p.c.Backoff, p.clk)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			p.mu.Lock()
			p.reconnects++
			p.mu.Unlock()
		}
		res, redial := p.attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if redial != "" {
			p.onRedial(redial)
			bo = newReconnectBackoff(p.c.Backoff, p.clk)
			continue
		}
		permanent := p.onEnd(res)
		if res.stable(p.stableAfter) {
			bo = newReconnectBackoff(p.c.Backoff, p.clk)
		}
		delay := bo.Next()
		if permanent {
			delay = bo.AtCap()
		}
		// The timer is set before onWait reports the delay, so a test that
		// advances a fake clock once it sees the delay cannot outrun it.
		wait := p.clk.After(delay)
		if p.onWait != nil {
			p.onWait(delay, permanent)
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case reason := <-p.redial:
			p.log.Info("redial requested while waiting to reconnect", "reason", reason)
			bo = newReconnectBackoff(p.c.Backoff, p.clk)
		}
	}
}

// result is how one attempt ended.
type result struct {
	err       error
	code      string // error class: a gRPC code name or one of the Code* constants
	permanent bool
	delivered uint64 // messages received on this stream
	opened    bool
	openedAt  time.Time
	endedAt   time.Time
}

// stable reports whether the stream proved itself, so its end resets the
// backoff: it delivered a message or stayed open long enough.
func (r result) stable(after time.Duration) bool {
	return r.delivered > 0 || (r.opened && r.endedAt.Sub(r.openedAt) >= after)
}

// attempt runs one session. A Redial request cancels it and is returned.
func (p *Probe) attempt(ctx context.Context) (result, string) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- p.session(sctx) }()
	select {
	case r := <-done:
		return r, ""
	case reason := <-p.redial:
		cancel()
		<-done
		return result{}, reason
	}
}

// session dials, opens the stream and receives until it ends. Everything
// it creates is released before it returns.
func (p *Probe) session(ctx context.Context) result {
	p.mu.Lock()
	p.dials++
	kat := p.keepaliveTime
	p.mu.Unlock()

	opts, err := p.dialOptions(kat)
	if err != nil {
		return result{err: err, code: CodeConfig, permanent: true}
	}
	cc, err := grpc.NewClient(p.c.Target, opts...)
	if err != nil {
		return result{err: fmt.Errorf("target %q: %w", p.c.Target, err), code: CodeConfig, permanent: true}
	}
	defer cc.Close()

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The dial timeout covers connecting and opening the stream only.
	dialTimer := time.AfterFunc(p.c.DialTimeout.D(), func() {
		cancel(status.Errorf(codes.DeadlineExceeded, "no stream within dialTimeout %s", p.c.DialTimeout))
	})
	stream, err := p.open(sctx, cc)
	if !dialTimer.Stop() && err != nil {
		err = context.Cause(sctx)
	}
	if err != nil {
		return p.classify(ctx, result{}, err)
	}
	res := result{opened: true, openedAt: p.clk.Now()}

	var wg sync.WaitGroup
	first := make(chan struct{})
	ended := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ended <- p.receive(stream, &res, first)
	}()
	// The stream is up at its first message, or once it has outlived the
	// round trip in which a server rejects a subscription.
	confirm := time.NewTimer(ConfirmAfter)
	select {
	case <-first:
		p.setUp(res.openedAt)
	case <-confirm.C:
		p.setUp(res.openedAt)
	case err = <-ended:
	}
	confirm.Stop()
	if err == nil {
		if p.c.API == APIKubeArmor && p.c.HealthCheck.Interval > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.healthChecks(sctx, relayapi.NewLogServiceClient(cc), cancel)
			}()
		}
		err = <-ended
	}
	cancel(nil)
	wg.Wait()
	if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) && ctx.Err() == nil {
		err = cause // a failed HealthCheck ended the stream
	}
	res.endedAt = p.clk.Now()
	return p.classify(ctx, res, err)
}

// open starts the server stream and sends the subscription.
func (p *Probe) open(ctx context.Context, cc *grpc.ClientConn) (grpc.ClientStream, error) {
	desc := &grpc.StreamDesc{StreamName: p.method[strings.LastIndexByte(p.method, '/')+1:], ServerStreams: true}
	stream, err := cc.NewStream(ctx, desc, p.method)
	if err != nil {
		return nil, err
	}
	var req proto.Message = &relayapi.RequestMessage{Filter: p.c.filter()}
	if p.c.API == APIGRPCHealth {
		req = &healthpb.HealthCheckRequest{Service: p.c.Service}
	}
	if err := stream.SendMsg(req); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream already; RecvMsg has its status.
			return stream, nil
		}
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	return stream, nil
}

// receive reads until the stream ends and returns the error it ended with
// (io.EOF for a clean end). It closes first at the first message.
func (p *Probe) receive(stream grpc.ClientStream, res *result, first chan<- struct{}) error {
	var msg proto.Message
	switch {
	case p.c.API == APIGRPCHealth:
		msg = &healthpb.HealthCheckResponse{}
	case p.c.stream() == relayapi.StreamAlerts:
		msg = &relayapi.Alert{}
	case p.c.stream() == relayapi.StreamLogs:
		msg = &relayapi.Log{}
	default:
		msg = &relayapi.Message{}
	}
	for {
		if err := stream.RecvMsg(msg); err != nil {
			return err
		}
		if res.delivered == 0 {
			close(first)
		}
		res.delivered++
		p.messages.Add(1)
		p.lastMessage.Store(p.clk.Now().UnixNano())
		if h, ok := msg.(*healthpb.HealthCheckResponse); ok {
			p.setHealth(h.GetStatus())
		}
	}
}

// healthChecks calls HealthCheck every interval with a random nonce; a
// failure or a wrong reply ends the session with that cause.
func (p *Probe) healthChecks(ctx context.Context, c relayapi.LogServiceClient, end context.CancelCauseFunc) {
	iv, to := p.c.HealthCheck.Interval.D(), p.c.HealthCheck.Timeout.D()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.clk.After(iv):
		}
		nonce := rand.Int32()
		hctx, cancel := context.WithTimeout(ctx, to)
		r, err := c.HealthCheck(hctx, &relayapi.NonceMessage{Nonce: nonce})
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			end(fmt.Errorf("HealthCheck: %w", err))
			return
		case r.GetRetval() != nonce:
			end(&nonceError{sent: nonce, got: r.GetRetval()})
			return
		}
	}
}

type nonceError struct{ sent, got int32 }

func (e *nonceError) Error() string {
	return fmt.Sprintf("HealthCheck answered nonce %d with %d: the target is not a feeder.LogService", e.sent, e.got)
}

// classify fills the result's error class. A session cancelled by its
// parent (shutdown, Redial) is not classified.
func (p *Probe) classify(parent context.Context, r result, err error) result {
	r.err = err
	var ne *nonceError
	switch {
	case parent.Err() != nil:
		r.code = codes.Canceled.String()
	case errors.As(err, &ne):
		r.code, r.permanent = CodeNonceMismatch, true
	case errors.Is(err, io.EOF):
		r.code = CodeEOF
		if r.delivered == 0 {
			r.permanent = true
			if p.c.API == APIKubeArmor {
				r.err = fmt.Errorf("%s ended cleanly before its first message: the server rejected the subscription (filter %q)", p.method, p.c.filter())
			} else {
				r.err = fmt.Errorf("%s ended cleanly before its first message", p.method)
			}
		} else {
			r.err = fmt.Errorf("%s ended cleanly by the server", p.method)
		}
	default:
		c := status.Code(err)
		r.code, r.permanent = c.String(), Permanent(c)
	}
	return r
}

// setUp records that a stream is open.
func (p *Probe) setUp(now time.Time) {
	p.mu.Lock()
	from := p.phase
	p.phase, p.connectedSince, p.code, p.lastErr, p.decided = PhaseUp, now, "", "", true
	n := p.reconnects
	p.mu.Unlock()
	if from != PhaseUp {
		p.log.Info("stream up", "from", from.String(), "reconnects", n)
	}
	p.notify()
}

func (p *Probe) setHealth(s healthpb.HealthCheckResponse_ServingStatus) {
	p.mu.Lock()
	old := p.health
	p.health = s
	p.mu.Unlock()
	if old != s {
		p.log.Info("serving status", "status", s.String(), "was", old.String())
		p.notify()
	}
}

// onEnd records how a session ended, logs a state change, and reports
// whether the failure is permanent.
func (p *Probe) onEnd(r result) bool {
	phase := PhaseDown
	if r.permanent {
		phase = PhaseRejected
	}
	p.mu.Lock()
	from, fromCode := p.phase, p.code
	p.phase, p.code, p.lastErr, p.decided = phase, r.code, errString(r.err), true
	p.errs[r.code]++
	upFor := time.Duration(0)
	if from == PhaseUp {
		upFor = r.endedAt.Sub(p.connectedSince)
	}
	tooManyPings := r.err != nil && strings.Contains(r.err.Error(), "too_many_pings")
	if tooManyPings {
		// What grpc-go does for a channel that received GOAWAY
		// too_many_pings: double the keepalive time for new connections.
		p.keepaliveTime *= 2
	}
	kat := p.keepaliveTime
	p.health = healthpb.HealthCheckResponse_UNKNOWN
	p.mu.Unlock()

	if tooManyPings {
		p.log.Warn("server sent GOAWAY too_many_pings: doubling keepalive time for new connections", "keepaliveTime", kat)
	}
	if from != phase || fromCode != r.code {
		attrs := []any{"code", r.code, "err", errString(r.err), "from", from.String()}
		if from == PhaseUp {
			attrs = append(attrs, "upFor", upFor.Round(time.Millisecond).String(), "messages", r.delivered)
		}
		if r.permanent {
			p.log.Error("stream rejected: retrying only at the backoff cap", append(attrs, "retryEvery", p.c.Backoff.Max.String())...)
		} else {
			p.log.Warn("stream down: reconnecting with backoff", attrs...)
		}
	}
	p.notify()
	return r.permanent
}

func (p *Probe) onRedial(reason string) {
	p.mu.Lock()
	from := p.phase
	p.phase = PhaseConnecting
	p.health = healthpb.HealthCheckResponse_UNKNOWN
	p.mu.Unlock()
	p.log.Info("redial requested: dropping the connection and dialling now", "reason", reason, "from", from.String())
	p.notify()
}

func (p *Probe) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
