// Package scrape is the built-in "scrape" probe: it GETs a Prometheus text
// or OpenMetrics page (an agent's /metrics) every interval and appends every
// sample to the store, plus medic's own medic_probe_* samples.
//
// A scrape is all or nothing. The page is fetched (gzip, size-limited,
// under a timeout) and parsed completely before a single sample is handed
// to the store; an HTTP error, a timeout, an oversized body or a page that
// fails to parse anywhere commits no page sample at all for that cycle, so
// the page's series get staleness markers and medic_probe_up is 0. The
// parse records each series' raw text and value in a reused arena; the
// samples are then replayed into the store, which looks series up by their
// raw text. Labels are built only when the store does not know a series
// (first scrape, after its GC), by a second parser over the same bytes
// advanced to that series, so a steady-state scrape parses the page once.
//
// Explicit sample timestamps on the page are ignored: every sample is
// stamped with the scrape's start time (Prometheus's honor_timestamps:
// false). The store's batch contract has one timestamp per Commit, and an
// agent-supplied old timestamp would defeat staleness and rate windows.
package scrape

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/prometheus/common/model"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
)

// Names of the samples the probe appends every cycle (the store adds
// probe="<name>").
const (
	// MetricUp is 1 when the last scrape succeeded, else 0.
	MetricUp = "medic_probe_up"
	// MetricDuration is the time the last scrape took (fetch, parse, ingest).
	MetricDuration = "medic_probe_duration_seconds"
	// MetricSamples is the number of page samples ingested by the last scrape.
	MetricSamples = "medic_probe_samples"
	// MetricFailures counts failed scrapes by reason since medic started.
	MetricFailures = "medic_probe_failures_total"
)

// AcceptHeader is sent with every scrape: OpenMetrics first, then the
// Prometheus text format, then anything (Prometheus's default order and
// weights).
const AcceptHeader = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7," +
	"application/openmetrics-text;version=0.0.1;q=0.6," +
	"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"text/plain;version=0.0.4;q=0.4,*/*;q=0.3"

// Reason classifies a failed scrape; it is the reason label of
// medic_probe_failures_total.
type Reason int

// Failure reasons.
const (
	ReasonConnect     Reason = iota // dial refused, reset, DNS, no response
	ReasonTimeout                   // the scrape timeout passed
	ReasonTLS                       // handshake, verification or TLS files
	ReasonHTTPStatus                // a status other than 200
	ReasonBodySize                  // the (decompressed) body exceeds maxBytes
	ReasonRead                      // the body broke off or failed to decompress
	ReasonParse                     // the page is not a valid exposition
	ReasonSampleLimit               // more samples than sampleLimit
	ReasonLabelLimit                // a series beyond labelLimit, labelNameLengthLimit or labelValueLengthLimit
	ReasonRedirect                  // too many redirects (a redirect loop)
	numReasons
)

// The outcomes report tells apart besides the failure reasons.
const (
	outcomeNone = numReasons + iota // no scrape reported yet
	outcomeOK                       // the scrape succeeded
)

var reasonNames = [numReasons]string{"connect", "timeout", "tls", "http_status", "body_size", "read", "parse", "sample_limit",
	"label_limit", "redirect"}

// String returns the reason's label value.
func (r Reason) String() string {
	if r < 0 || r >= numReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// Error is a failed scrape.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return e.Reason.String() + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func fail(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

func init() {
	probe.Register(probe.Kind{
		Name:      Kind,
		NewConfig: func() any { return NewConfig() },
		New: func(c any, env probe.Env) (probe.Probe, error) {
			return New(*c.(*Config), env)
		},
	})
}

// own is one of the probe's own series: a key no page series can have
// (0xff never occurs in UTF-8) and prebuilt labels.
type own struct {
	key []byte
	mk  func() labels.Labels
}

func newOwn(name string, kv ...string) own {
	l := labels.FromStrings(append([]string{labels.MetricName, name}, kv...)...)
	return own{key: []byte("\xff" + l.String()), mk: func() labels.Labels { return l }}
}

// page-level problems that do not fail a scrape; logged when the set changes.
const (
	warnContentType = 1 << iota
	warnDuplicates
	warnHistograms
)

// Probe scrapes one page. Run must not be called concurrently.
type Probe struct {
	c       Config
	url     string // redacted, for logs
	timeout time.Duration
	log     *slog.Logger
	clk     clock.Clock
	client  *http.Client
	tr      *http.Transport
	req     *http.Request
	popts   textparse.ParserOptions

	// Per-cycle state, reused.
	body    bytes.Buffer
	symbols *labels.SymbolTable
	seed    maphash.Seed
	seen    map[uint64]uint32 // series hash -> cycle last seen; labels validated
	gen     uint32
	keys    []byte   // arena: the raw text of this page's series
	recs    []record // this page's unique series, in page order
	// Replay state read by mk: the page, the record being appended and a
	// parser created on the first store miss.
	mk      func() labels.Labels
	page    []byte
	ct      string
	cur     int
	lazy    textparse.Parser
	lazyOrd int

	up, duration, samples own
	failOwn               [numReasons]own
	failures              [numReasons]float64

	state  Reason // the outcome last reported: outcomeNone, outcomeOK or a failure reason
	failed int    // consecutive failed scrapes
	warns  int
}

var _ probe.Probe = (*Probe)(nil)

// New builds a scrape probe from a decoded config.
func New(c Config, env probe.Env) (*Probe, error) {
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("scrape probe %q: %w", env.Name, err)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("scrape probe %q: url: %w", env.Name, err)
	}
	p := &Probe{
		c:       c,
		url:     u.Redacted(),
		timeout: c.EffectiveTimeout(),
		log:     env.LoggerOrDiscard(),
		clk:     env.ClockOrReal(),
		symbols: labels.NewSymbolTable(),
		seed:    maphash.MakeSeed(),
		seen:    map[uint64]uint32{},
		popts: textparse.ParserOptions{
			FallbackContentType:    "text/plain",
			IgnoreNativeHistograms: true,
		},
		up:       newOwn(MetricUp),
		duration: newOwn(MetricDuration),
		samples:  newOwn(MetricSamples),
		state:    outcomeNone,
	}
	p.log = p.log.With("url", p.url) // the supervisor's logger already carries probe=<name>
	for r := range numReasons {
		p.failOwn[r] = newOwn(MetricFailures, "reason", r.String())
	}
	p.mk = p.labelsOfCurrent

	p.tr = &http.Transport{
		Proxy:               nil, // a sidecar scrapes its neighbour directly
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true, // gzip is negotiated and decoded here
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     2*c.Interval.D() + 30*time.Second,
	}
	if c.TLS != nil {
		p.tr.TLSClientConfig = newTLSConfig(c.TLS, u.Hostname())
	}
	p.client = &http.Client{Transport: p.tr, CheckRedirect: p.checkRedirect}

	req, err := http.NewRequest(http.MethodGet, c.URL, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("scrape probe %q: %w", env.Name, err)
	}
	req.Header.Set("Accept", AcceptHeader)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", "medic-scrape")
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(p.timeout.Seconds(), 'f', -1, 64))
	for k, v := range c.Headers {
		if canonicalHeader(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	p.req = req
	return p, nil
}

// Run scrapes every interval until ctx ends. It returns nil: failed
// scrapes are reported as samples, not errors.
func (p *Probe) Run(ctx context.Context, app probe.Appender) error {
	defer p.tr.CloseIdleConnections()
	probe.Ticker(ctx, p.clk, p.c.Interval.D(), func(now time.Time) { p.cycle(ctx, app, now) })
	return nil
}

// cycle runs one scrape and commits its batch at now. A scrape cut short
// by shutdown adds and commits nothing (and is no failure); one that
// completed is committed.
func (p *Probe) cycle(ctx context.Context, app probe.Appender, now time.Time) {
	start := p.clk.Now() // now may be the scheduled time, up to probe.TimestampTolerance earlier
	n, warns, err := p.scrape(ctx, app)
	if err != nil && ctx.Err() != nil {
		return
	}
	up := 1.0
	if err != nil {
		up, n = 0, 0
		p.failures[err.Reason]++
	}
	app.AddRaw(p.up.key, p.up.mk, up)
	app.AddRaw(p.duration.key, p.duration.mk, p.clk.Now().Sub(start).Seconds())
	app.AddRaw(p.samples.key, p.samples.mk, float64(n))
	for r := range numReasons {
		app.AddRaw(p.failOwn[r].key, p.failOwn[r].mk, p.failures[r])
	}
	if err != nil { // a nil *Error is not a nil error
		probe.ReportError(app, err)
	} else {
		probe.ReportError(app, nil)
	}
	if _, cerr := app.Commit(now); cerr != nil {
		p.log.Error("commit scrape samples", "err", cerr)
	}
	p.report(n, warns, err)
	// Let go of buffers that once held a far larger page.
	if c := p.body.Cap(); c > 1<<20 && c > 4*p.body.Len() {
		p.body = bytes.Buffer{}
	}
	if c := cap(p.keys); c > 1<<20 && c > 4*len(p.keys) {
		p.keys = nil
	}
	if c := cap(p.recs); c > 1<<15 && c > 4*len(p.recs) {
		p.recs = nil
	}
}

// report logs once per change of state, never every tick.
func (p *Probe) report(n, warns int, err *Error) {
	state := outcomeOK
	if err != nil {
		state = err.Reason
	}
	if state != p.state {
		switch {
		case err != nil:
			p.log.Warn("scrape failed; page samples are stale until it recovers", "reason", state.String(), "err", err.Err)
		case p.state == outcomeNone:
			p.log.Info("scrape ok", "samples", n)
		default:
			p.log.Info("scrape recovered", "samples", n, "failedScrapes", p.failed)
		}
		p.state = state
	}
	if err != nil {
		p.failed++
		return
	}
	p.failed = 0
	if warns != p.warns {
		if warns != 0 {
			p.log.Warn("scrape page has problems (samples kept)", "problems", warnText(warns))
		}
		p.warns = warns
	}
}

func warnText(w int) string {
	var s []string
	if w&warnContentType != 0 {
		s = append(s, "missing or unsupported Content-Type, parsed as text/plain")
	}
	if w&warnDuplicates != 0 {
		s = append(s, "duplicate series (the first of each kept)")
	}
	if w&warnHistograms != 0 {
		s = append(s, "native histograms ignored")
	}
	return strings.Join(s, "; ")
}

// scrape fetches and parses the page and, only if all of it is valid,
// appends its samples. It returns the number of page samples appended.
func (p *Probe) scrape(ctx context.Context, app probe.Appender) (int, int, *Error) {
	ct, err := p.fetch(ctx)
	if err != nil {
		return 0, 0, err
	}
	b := p.body.Bytes()
	warns, err := p.check(b, ct)
	if err != nil {
		return 0, 0, err
	}
	if cerr := ctx.Err(); cerr != nil {
		return 0, 0, &Error{Reason: ReasonConnect, Err: cerr} // shutting down: add nothing
	}
	return p.ingest(app, b, ct), warns, nil
}

// fetch GETs the page into p.body and returns its Content-Type.
func (p *Probe) fetch(ctx context.Context) (string, *Error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.client.Do(p.req.WithContext(ctx))
	if err != nil {
		if errors.Is(err, errTooManyRedirects) {
			return "", &Error{Reason: ReasonRedirect, Err: err}
		}
		return "", classify(ctx, err, ReasonConnect)
	}
	defer func() {
		// Drain a little so the connection can be reused, never a whole
		// oversized body.
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return "", fail(ReasonHTTPStatus, "server returned HTTP status %s", resp.Status)
	}
	var r io.Reader = resp.Body
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz, err := getGzip(resp.Body)
		if err != nil {
			return "", classify(ctx, fmt.Errorf("gzip: %w", err), ReasonRead)
		}
		defer putGzip(gz)
		r = &gz.zr
	default:
		return "", fail(ReasonRead, "unsupported Content-Encoding %q", enc)
	}
	p.body.Reset()
	limit := int64(p.c.MaxBytes)
	n, err := p.body.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return "", classify(ctx, fmt.Errorf("read body: %w", err), ReasonRead)
	}
	if n > limit {
		return "", fail(ReasonBodySize, "body exceeds maxBytes (%s)", p.c.MaxBytes)
	}
	return resp.Header.Get("Content-Type"), nil
}

// maxRedirects is how many redirects a scrape follows (net/http's default).
const maxRedirects = 10

var errTooManyRedirects = fmt.Errorf("stopped after %d redirects (a redirect loop?)", maxRedirects)

// checkRedirect follows up to maxRedirects redirects. The configured
// headers (an X-Api-Key, say) are for the configured host: a redirect to
// another host or port gets none of them. net/http itself drops only
// Authorization, Cookie and WWW-Authenticate there.
func (p *Probe) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return errTooManyRedirects
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		for k := range p.c.Headers {
			req.Header.Del(k)
		}
	}
	return nil
}

// classify maps a transport error to a reason; def when nothing more
// specific applies.
func classify(ctx context.Context, err error, def Reason) *Error {
	var (
		verr *tls.CertificateVerificationError
		rerr tls.RecordHeaderError
		aerr tls.AlertError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
		nerr net.Error
		oerr *net.OpError
	)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return &Error{Reason: ReasonTimeout, Err: err}
	case errors.Is(err, errTLSFiles), errors.As(err, &verr), errors.As(err, &rerr), errors.As(err, &aerr),
		errors.As(err, &uerr), errors.As(err, &herr), errors.As(err, &cerr),
		// crypto/tls reports alerts (sent or received) as these ops.
		errors.As(err, &oerr) && (oerr.Op == "remote error" || oerr.Op == "local error"):
		return &Error{Reason: ReasonTLS, Err: err}
	}
	return &Error{Reason: def, Err: err}
}

// record is one unique series of the page: its raw text in p.keys, its
// ordinal among the page's series entries, and its value.
type record struct {
	off, end int
	ord      int
	v        float64
	counter  bool // a sample of a counter family (zero-started when new)
}

// check parses the whole page without touching the store: it records every
// unique series (the first of duplicates wins), validates the labels of
// series not seen in earlier scrapes and enforces sampleLimit. It returns
// the page-level warnings.
func (p *Probe) check(b []byte, ct string) (warns int, perr *Error) {
	p.keys, p.recs = p.keys[:0], p.recs[:0]
	// The text lexers treat NUL as end of input: a page with a NUL byte
	// would silently lose everything after it.
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return 0, fail(ReasonParse, "body has a NUL byte at offset %d: binary data, not a text exposition", i)
	}
	defer func() {
		// The parsers are third-party code fed with bytes from the
		// network: a panic fails this scrape, not the sidecar.
		if r := recover(); r != nil {
			perr = fail(ReasonParse, "parser panic: %v", r)
		}
		if perr != nil {
			p.keys, p.recs = p.keys[:0], p.recs[:0]
		}
	}()
	par, err := textparse.New(b, ct, p.symbols, p.popts)
	if par == nil {
		return 0, fail(ReasonParse, "content type: %w", err)
	}
	if err != nil {
		warns |= warnContentType
	}
	p.gen++
	defer p.forgetUnseen()
	w, perr := p.readEntries(par)
	return warns | w, perr
}

// forgetUnseen drops the series that did not appear in this scrape, so
// the set of seen series stays the size of the page.
func (p *Probe) forgetUnseen() {
	if len(p.seen) <= len(p.recs) {
		return
	}
	for h, g := range p.seen {
		if g != p.gen {
			delete(p.seen, h)
		}
	}
}

// readEntries reads the page's entries and records its series, in page
// order; ord counts series entries, repeats included.
func (p *Probe) readEntries(par textparse.Parser) (warns int, perr *Error) {
	var lset labels.Labels
	var family []byte // name of the current counter family, nil when not a counter
	for ord := 0; ; {
		e, err := par.Next()
		if errors.Is(err, io.EOF) {
			return warns, nil
		}
		if err != nil {
			return 0, fail(ReasonParse, "%w", err)
		}
		switch e {
		case textparse.EntryType:
			name, typ := par.Type()
			family = family[:0]
			if typ == model.MetricTypeCounter {
				family = append(family, name...)
			}
		case textparse.EntryHistogram:
			warns |= warnHistograms
		case textparse.EntrySeries:
			dup, perr := p.recordSeries(par, ord, family, &lset)
			if perr != nil {
				return 0, perr
			}
			if dup {
				warns |= warnDuplicates
			}
			ord++
			if p.c.SampleLimit > 0 && len(p.recs) > p.c.SampleLimit {
				return 0, fail(ReasonSampleLimit, "page has more than sampleLimit (%d) samples", p.c.SampleLimit)
			}
		}
	}
}

// recordSeries records the series entry par is at as the page's ord-th;
// dup reports a repeat of a series already recorded from this page (the
// first wins). Labels are built and checked only for a series not seen in
// the previous scrape; lset is reused.
func (p *Probe) recordSeries(par textparse.Parser, ord int, family []byte, lset *labels.Labels) (dup bool, perr *Error) {
	series, _, v := par.Series()
	h := maphash.Bytes(p.seed, series)
	switch g, known := p.seen[h]; {
	case known && g == p.gen:
		return true, nil
	case !known:
		par.Labels(lset)
		if err := validate(*lset); err != nil {
			return false, fail(ReasonParse, "series %s: %w", abbrev(series), err)
		}
		if err := p.c.checkLabelLimits(*lset); err != nil {
			return false, fail(ReasonLabelLimit, "series %s: %w", abbrev(series), err)
		}
	}
	p.seen[h] = p.gen
	off := len(p.keys)
	p.keys = append(p.keys, series...)
	p.recs = append(p.recs, record{off: off, end: len(p.keys), ord: ord, v: v,
		counter: len(family) > 0 && bytes.HasPrefix(series, family) && !isCreated(series)})
	return false, nil
}

func validate(l labels.Labels) error {
	if l.Get(labels.MetricName) == "" {
		return errors.New("no metric name")
	}
	if name, dup := l.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("label %q appears twice", name)
	}
	return nil
}

func abbrev(b []byte) string {
	if len(b) > 120 {
		return strconv.Quote(string(b[:120])) + "…"
	}
	return strconv.Quote(string(b))
}

// pageAppender is implemented by appenders (the store's) that keep series
// read from a page apart from medic's own: page series compete for the
// store's series cap, so a page larger than the cap never crowds out
// medic_probe_up and the probe's other own series.
type pageAppender interface {
	AddPageRaw(key []byte, mk func() labels.Labels, v float64, counter bool)
}

// ingest appends the series check recorded from page b.
func (p *Probe) ingest(app probe.Appender, b []byte, ct string) int {
	p.page, p.ct, p.lazy, p.lazyOrd = b, ct, nil, -1
	defer func() { p.page, p.lazy = nil, nil }()
	if pa, ok := app.(pageAppender); ok {
		for i := range p.recs {
			r := &p.recs[i]
			p.cur = r.ord
			pa.AddPageRaw(p.keys[r.off:r.end], p.mk, r.v, r.counter && !p.c.NoZeroNewCounters)
		}
		return len(p.recs)
	}
	ca, _ := app.(probe.CounterAppender)
	for i := range p.recs {
		r := &p.recs[i]
		p.cur = r.ord
		if r.counter && ca != nil && !p.c.NoZeroNewCounters {
			ca.AddCounterRaw(p.keys[r.off:r.end], p.mk, r.v)
			continue
		}
		app.AddRaw(p.keys[r.off:r.end], p.mk, r.v)
	}
	return len(p.recs)
}

// mismatch names a series whose labels could not be rebuilt; it cannot
// happen (the page was already parsed once, and parsing is deterministic)
// but would be visible rather than a crash.
var mismatch = labels.FromStrings(labels.MetricName, "medic_scrape_internal_error")

// labelsOfCurrent builds the labels of the series being replayed, for a
// store cache miss. Replay runs in page order, so one forward-only parser
// serves every miss of a scrape.
func (p *Probe) labelsOfCurrent() labels.Labels {
	if p.lazy == nil {
		p.lazy, _ = textparse.New(p.page, p.ct, p.symbols, p.popts)
		p.lazyOrd = -1
		if p.lazy == nil {
			return mismatch
		}
	}
	for p.lazyOrd < p.cur {
		e, err := p.lazy.Next()
		if err != nil {
			return mismatch
		}
		if e == textparse.EntrySeries {
			p.lazyOrd++
		}
	}
	var l labels.Labels
	p.lazy.Labels(&l)
	return l
}

// gzipReader pairs a gzip.Reader with the bufio.Reader it reads through,
// so Reset allocates nothing.
type gzipReader struct {
	br *bufio.Reader
	zr gzip.Reader
}

var gzipPool = sync.Pool{New: func() any { return &gzipReader{br: bufio.NewReaderSize(nil, 32<<10)} }}

func getGzip(r io.Reader) (*gzipReader, error) {
	g := gzipPool.Get().(*gzipReader)
	g.br.Reset(r)
	if err := g.zr.Reset(g.br); err != nil {
		putGzip(g)
		return nil, err
	}
	return g, nil
}

func putGzip(g *gzipReader) {
	g.br.Reset(nil)
	gzipPool.Put(g)
}

// ScrapeOnce runs one scrape cycle and commits it at now, exactly as Run
// does every interval. Benchmarks and tools use it to drive the probe.
func (p *Probe) ScrapeOnce(ctx context.Context, app probe.Appender, now time.Time) {
	p.cycle(ctx, app, now)
}

// isCreated reports whether a series is an OpenMetrics _created sample (a
// timestamp, not a count).
func isCreated(series []byte) bool {
	name := series
	if i := bytes.IndexAny(series, "{ "); i >= 0 {
		name = series[:i]
	}
	return bytes.HasSuffix(name, []byte("_created"))
}
