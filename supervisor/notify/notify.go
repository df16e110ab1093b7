// Package notify sends medic's alerts to Alertmanager the way Prometheus
// does: every evaluation hands it the firing alerts; it posts new ones at
// once, sends firing ones again every resend delay (with endsAt a few
// resend delays ahead, so an Alertmanager that stops hearing from medic
// resolves them itself), and sends a resolved alert with endsAt set to the
// resolution time, repeated for 15 minutes. Alerts wait in a bounded queue
// (the oldest dropped first, counted) and go to every configured
// Alertmanager's v2 API (POST /api/v2/alerts, the documented JSON).
//
// Update is a function of (state, now, firing) and is tested at chosen
// timestamps; Run only moves the queue to the network.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"
)

// ResolvedRetention is how long a resolved alert is still sent (every
// resend delay), as in Prometheus.
const ResolvedRetention = 15 * time.Minute

// MaxBatch is the most alerts posted in one request.
const MaxBatch = 256

// Alert is one firing alert as the rule engine reports it.
type Alert struct {
	Labels      labels.Labels
	Annotations map[string]string
	// FiredAt is when it started firing (its startsAt); a new FiredAt for
	// the same labels is a new alert.
	FiredAt time.Time
}

// PostableAlert is one element of the POST /api/v2/alerts body
// (Alertmanager's OpenAPI PostableAlert).
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Options configures a Notifier.
type Options struct {
	Config Config
	Logger *slog.Logger
	// EvaluationInterval sets, with the resend delay, how far ahead a
	// firing alert's endsAt lies: 4 × max(resend delay, interval).
	EvaluationInterval time.Duration
	// GeneratorURL is every alert's generatorURL (medic's /status).
	GeneratorURL string
	// UserAgent is sent with every request.
	UserAgent string
	// Lookup reads the environment for the default external labels
	// (default os.LookupEnv).
	Lookup func(string) (string, bool)
}

// tracked is an alert medic has sent or will send.
type tracked struct {
	labels      labels.Labels
	annotations map[string]string
	firedAt     time.Time
	resolvedAt  time.Time
	lastSentAt  time.Time
}

// Notifier tracks alerts and sends them.
type Notifier struct {
	o        Options
	log      *slog.Logger
	external labels.Labels
	resend   time.Duration
	capacity int
	ams      []*alertmanager

	mu      sync.Mutex
	active  map[uint64]*tracked
	queue   []PostableAlert
	more    chan struct{}
	full    bool // the queue overflowed since it last emptied (logged once)
	dropped int

	sent, errors *prometheus.CounterVec
	droppedC     prometheus.Counter
	queueLen     prometheus.GaugeFunc
	queueCap     prometheus.Gauge
	latency      *prometheus.HistogramVec
}

type alertmanager struct {
	url     string
	timeout time.Duration
	client  *http.Client
	failing bool // logged once per change
}

// New builds a Notifier; nothing is sent until Run.
func New(o Options) (*Notifier, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Lookup == nil {
		o.Lookup = os.LookupEnv
	}
	if o.UserAgent == "" {
		o.UserAgent = "medic"
	}
	c := o.Config
	n := &Notifier{
		o: o, log: o.Logger, external: ExternalLabels(c.ExternalLabels, o.Lookup),
		resend: c.EffectiveResendDelay(), capacity: c.EffectiveQueueCapacity(),
		active: map[uint64]*tracked{}, more: make(chan struct{}, 1),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_notifications_sent_total", Help: "Alerts sent to an Alertmanager (including failed sends), by alertmanager.",
		}, []string{"alertmanager"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_notifications_errors_total", Help: "Alerts that could not be sent to an Alertmanager, by alertmanager.",
		}, []string{"alertmanager"}),
		droppedC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_notifications_dropped_total", Help: "Alerts dropped because the notification queue was full (oldest first).",
		}),
		queueCap: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_notifications_queue_capacity", Help: "Capacity of the alert notification queue.",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "medic_notification_latency_seconds", Help: "Time to post a batch of alerts, by alertmanager.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"alertmanager"}),
	}
	n.queueLen = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "medic_notifications_queue_length", Help: "Alerts waiting in the notification queue.",
	}, func() float64 { n.mu.Lock(); defer n.mu.Unlock(); return float64(len(n.queue)) })
	n.queueCap.Set(float64(n.capacity))
	for i, ac := range c.Alertmanagers {
		client, err := commoncfg.NewClientFromConfig(ac.HTTPClientConfig(), "alertmanager")
		if err != nil {
			return nil, fmt.Errorf("alertmanagers[%d]: %w", i, err)
		}
		am := &alertmanager{url: ac.PostURL(), timeout: ac.EffectiveTimeout(), client: client}
		n.ams = append(n.ams, am)
		n.sent.WithLabelValues(am.url)
		n.errors.WithLabelValues(am.url)
	}
	return n, nil
}

// ExternalLabels returns the configured labels, or, when none are
// configured (nil), namespace/pod/node from the Downward API variables.
func ExternalLabels(configured map[string]string, lookup func(string) (string, bool)) labels.Labels {
	if configured != nil {
		return labels.FromMap(configured)
	}
	m := map[string]string{}
	for label, env := range map[string]string{"namespace": "POD_NAMESPACE", "pod": "POD_NAME", "node": "NODE_NAME"} {
		if v, ok := lookup(env); ok && v != "" {
			m[label] = v
		}
	}
	return labels.FromMap(m)
}

// Collectors returns the notifier's metrics.
func (n *Notifier) Collectors() []prometheus.Collector {
	return []prometheus.Collector{n.sent, n.errors, n.droppedC, n.queueLen, n.queueCap, n.latency}
}

// Update takes the alerts firing at the evaluation at now and queues what
// must be sent: alerts that started firing, alerts that stopped (resolved
// at now), and every resend delay the ones still firing or recently resolved.
func (n *Notifier) Update(now time.Time, firing []Alert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := make(map[uint64]struct{}, len(firing))
	for _, a := range firing {
		lset := n.withExternal(a.Labels)
		h := lset.Hash()
		seen[h] = struct{}{}
		t := n.active[h]
		if t == nil || !t.resolvedAt.IsZero() || !t.firedAt.Equal(a.FiredAt) {
			t = &tracked{labels: lset, firedAt: a.FiredAt}
			n.active[h] = t
		}
		t.annotations = a.Annotations
	}
	validUntil := now.Add(4 * max(n.resend, n.o.EvaluationInterval))
	var batch []PostableAlert
	for h, t := range n.active {
		if _, ok := seen[h]; !ok && t.resolvedAt.IsZero() {
			t.resolvedAt = now
		}
		if !t.resolvedAt.IsZero() && now.Sub(t.resolvedAt) > ResolvedRetention {
			delete(n.active, h)
			continue
		}
		if !t.needsSending(now, n.resend) {
			continue
		}
		t.lastSentAt = now
		pa := PostableAlert{Labels: t.labels.Map(), Annotations: maps.Clone(t.annotations),
			StartsAt: t.firedAt, EndsAt: validUntil, GeneratorURL: n.o.GeneratorURL}
		if !t.resolvedAt.IsZero() {
			pa.EndsAt = t.resolvedAt
		}
		batch = append(batch, pa)
	}
	n.enqueue(batch)
}

// needsSending is Prometheus's rule: a resolution not yet sent, or the
// resend delay has passed since the last send.
func (t *tracked) needsSending(now time.Time, resend time.Duration) bool {
	if t.lastSentAt.IsZero() || t.resolvedAt.After(t.lastSentAt) {
		return true
	}
	return !t.lastSentAt.Add(resend).After(now)
}

// withExternal adds the external labels the alert does not carry.
func (n *Notifier) withExternal(l labels.Labels) labels.Labels {
	if n.external.IsEmpty() {
		return l
	}
	b := labels.NewBuilder(l)
	n.external.Range(func(e labels.Label) {
		if l.Get(e.Name) == "" {
			b.Set(e.Name, e.Value)
		}
	})
	return b.Labels()
}

// enqueue appends alerts, dropping the oldest beyond capacity; n.mu held.
func (n *Notifier) enqueue(alerts []PostableAlert) {
	if len(alerts) == 0 {
		return
	}
	n.queue = append(n.queue, alerts...)
	if over := len(n.queue) - n.capacity; over > 0 {
		n.queue = append(n.queue[:0:0], n.queue[over:]...)
		n.droppedC.Add(float64(over))
		n.dropped += over
		if !n.full {
			n.full = true
			n.log.Warn("notification queue full: dropping the oldest alerts", "capacity", n.capacity)
		}
	}
	select {
	case n.more <- struct{}{}:
	default:
	}
}

// next takes up to MaxBatch alerts off the queue.
func (n *Notifier) next() []PostableAlert {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := min(len(n.queue), MaxBatch)
	batch := append([]PostableAlert(nil), n.queue[:k]...)
	n.queue = append(n.queue[:0:0], n.queue[k:]...)
	if len(n.queue) == 0 && n.full {
		n.full = false
		n.log.Info("notification queue drained", "droppedWhileFull", n.dropped)
		n.dropped = 0
	}
	return batch
}

// Run sends queued alerts until ctx ends, then makes one last bounded
// attempt to send what is still queued (resolutions in particular).
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			n.drain(context.WithoutCancel(ctx))
			return
		case <-n.more:
		}
		n.drain(ctx)
	}
}

func (n *Notifier) drain(ctx context.Context) {
	for {
		batch := n.next()
		if len(batch) == 0 {
			return
		}
		n.send(ctx, batch)
	}
}

// send posts one batch to every Alertmanager at once.
func (n *Notifier) send(ctx context.Context, batch []PostableAlert) {
	body, err := json.Marshal(batch)
	if err != nil {
		n.log.Error("encoding alerts", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, am := range n.ams {
		wg.Go(func() {
			start := time.Now()
			err := n.post(ctx, am, body)
			n.latency.WithLabelValues(am.url).Observe(time.Since(start).Seconds())
			n.sent.WithLabelValues(am.url).Add(float64(len(batch)))
			n.report(am, err, len(batch))
		})
	}
	wg.Wait()
}

func (n *Notifier) post(ctx context.Context, am *alertmanager, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, am.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, am.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.o.UserAgent)
	resp, err := am.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// report counts a failure and logs once per change of an Alertmanager's state.
func (n *Notifier) report(am *alertmanager, err error, k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		n.errors.WithLabelValues(am.url).Add(float64(k))
		if !am.failing {
			am.failing = true
			n.log.Error("sending alerts to Alertmanager failed; retried at the next resend", "alertmanager", am.url, "alerts", k, "err", err)
		}
		return
	}
	if am.failing {
		am.failing = false
		n.log.Info("sending alerts to Alertmanager works again", "alertmanager", am.url)
	}
}
