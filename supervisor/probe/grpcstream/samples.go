package grpcstream

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/medic-sidecar/medic/supervisor/probe"
)

// Series names. The store adds probe="<name>" to each.
const (
	MetricUp             = "medic_stream_up"
	MetricProbeUp        = "medic_probe_up"
	MetricLastMessage    = "medic_stream_last_message_timestamp_seconds"
	MetricMessages       = "medic_stream_messages_total"
	MetricReconnects     = "medic_stream_reconnects_total"
	MetricErrors         = "medic_stream_errors_total"
	MetricConnectedSince = "medic_stream_connected_since_timestamp_seconds"
	MetricHealthStatus   = "medic_stream_health_status"
)

// CommitInterval is the longest time between two commits of the probe's
// view; every state change commits at once as well.
const CommitInterval = time.Second

var healthStatuses = []healthpb.HealthCheckResponse_ServingStatus{
	healthpb.HealthCheckResponse_UNKNOWN,
	healthpb.HealthCheckResponse_SERVING,
	healthpb.HealthCheckResponse_NOT_SERVING,
	healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
}

// commitLoop commits the probe's view on every state change and at least
// every CommitInterval, until ctx ends. It is the only user of app.
func (p *Probe) commitLoop(ctx context.Context, app probe.Appender) {
	var sc sampleCache
	tick := p.clk.After(CommitInterval)
	for {
		p.commit(app, &sc)
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
		case <-tick:
			tick = p.clk.After(CommitInterval)
		}
	}
}

// sampleCache holds series keys and labels so a commit allocates nothing
// in the steady state.
type sampleCache struct {
	errs map[string]*series
}

type series struct {
	key  []byte
	lset labels.Labels
}

func newSeries(name string, kv ...string) *series {
	lset := labels.FromStrings(append([]string{labels.MetricName, name}, kv...)...)
	return &series{key: []byte(lset.String()), lset: lset}
}

var (
	sUp             = newSeries(MetricUp)
	sProbeUp        = newSeries(MetricProbeUp)
	sLastMessage    = newSeries(MetricLastMessage)
	sMessages       = newSeries(MetricMessages)
	sReconnects     = newSeries(MetricReconnects)
	sConnectedSince = newSeries(MetricConnectedSince)
	sHealth         = func() map[healthpb.HealthCheckResponse_ServingStatus]*series {
		m := map[healthpb.HealthCheckResponse_ServingStatus]*series{}
		for _, s := range healthStatuses {
			m[s] = newSeries(MetricHealthStatus, "status", s.String())
		}
		return m
	}()
)

func add(app probe.Appender, s *series, v float64) {
	app.AddRaw(s.key, func() labels.Labels { return s.lset }, v)
}

// addCounter appends a counter; where the appender can, a counter series
// that first appears after the first batch (errors_total for a code seen
// for the first time) starts at 0 at the previous batch, so rate() and
// increase() see its first increment.
func addCounter(app probe.Appender, s *series, v float64) {
	if ca, ok := app.(probe.CounterAppender); ok {
		ca.AddCounterRaw(s.key, func() labels.Labels { return s.lset }, v)
		return
	}
	add(app, s, v)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (p *Probe) commit(app probe.Appender, sc *sampleCache) {
	now := p.clk.Now()
	p.mu.Lock()
	up, decided := p.phase == PhaseUp, p.decided
	since := p.connectedSince
	reconnects := p.reconnects
	health := p.health
	lastErr, phase := p.lastErr, p.phase
	if sc.errs == nil {
		sc.errs = map[string]*series{}
	}
	for code, n := range p.errs {
		s := sc.errs[code]
		if s == nil {
			s = newSeries(MetricErrors, "code", code)
			sc.errs[code] = s
		}
		addCounter(app, s, float64(n))
	}
	p.mu.Unlock()

	// Until the first attempt has an outcome, up is unknown, not 0: no
	// sample, so "up == 0" rules do not fire while medic starts.
	if decided {
		probeUp := up
		if p.c.API == APIGRPCHealth {
			probeUp = up && health == healthpb.HealthCheckResponse_SERVING
			for _, st := range healthStatuses {
				add(app, sHealth[st], b2f(st == health))
			}
		}
		add(app, sUp, b2f(up))
		add(app, sProbeUp, b2f(probeUp))
		var failure error
		switch {
		case !up && lastErr != "":
			failure = errors.New(lastErr)
		case !up:
			failure = errors.New("stream " + phase.String())
		case !probeUp:
			failure = errors.New("health " + health.String())
		}
		probe.ReportError(app, failure)
	}
	add(app, sLastMessage, float64(p.lastMessage.Load())/1e9)
	addCounter(app, sMessages, float64(p.messages.Load()))
	addCounter(app, sReconnects, float64(reconnects))
	if up {
		add(app, sConnectedSince, float64(since.UnixNano())/1e9)
	}
	_, _ = app.Commit(now)
}
