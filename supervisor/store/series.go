package store

import (
	"bytes"
	"math"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Samples are held in Prometheus's XOR chunks (tsdb/chunkenc, the
// Gorilla encoding of the TSDB head): about 1-2 bytes per sample instead
// of 16, values bit-exact (stale markers included). A series is a list of
// sealed chunks (immutable, trimmed to their length, shared with queries),
// one open chunk being appended to (copied for a query), and its newest
// sample kept aside: a sample at the same timestamp replaces it (the 0 a
// new counter gets where a vanished series left a stale marker, see
// Appender.Commit), which an append-only chunk could not do.
//
// Retention drops whole chunks as appends move the horizon; samples of a
// partly expired chunk are hidden from every read (each read starts at the
// series' horizon, mint), so queries see exactly the samples the retention
// keeps, and Store.GC re-encodes that chunk without them. A chunk is cut
// after maxChunkSamples samples, at chunkenc.MaxBytesPerXORChunk, or once it
// spans half the retention. BenchmarkStoreMemory measures the result.
const (
	chunkEncoding   = chunkenc.EncXOR
	maxChunkSamples = 240
)

type sample struct {
	t int64
	v float64
}

// sealedChunk is a full chunk's encoded samples.
type sealedChunk struct {
	minT, maxT int64
	data       []byte
}

type memSeries struct {
	lset    labels.Labels
	name    string
	own     bool // counted against the reserve, not MaxSeries
	removed atomic.Bool

	// mint is the horizon: samples before it are expired and never read.
	mint   int64
	sealed []sealedChunk // ascending, immutable once here
	// head is the open chunk (nil when none), app its appender;
	// headMinT/headMaxT its first and last sample's timestamps.
	head               chunkenc.Chunk
	app                chunkenc.Appender
	headMinT, headMaxT int64
	// last is the newest sample, not yet encoded; hasLast is false only
	// for a series that never had a sample.
	last    sample
	hasLast bool
}

func newMemSeries(lset labels.Labels, name string, own bool) *memSeries {
	return &memSeries{lset: lset, name: name, own: own, mint: math.MinInt64}
}

func (s *memSeries) lastT() int64 {
	if !s.hasLast {
		return math.MinInt64
	}
	return s.last.t
}

// append adds (t, v): a sample older than the newest is ignored, one at
// the newest's timestamp replaces its value. It reports whether the
// series gained a sample.
func (s *memSeries) append(t int64, v float64, chunkSpan int64) bool {
	if s.hasLast {
		if t < s.last.t {
			return false
		}
		if t == s.last.t {
			s.last.v = v
			return false
		}
		s.encode(s.last, chunkSpan)
	}
	s.last, s.hasLast = sample{t, v}, true
	return true
}

// encode appends x to the open chunk, sealing it first when it is full.
func (s *memSeries) encode(x sample, chunkSpan int64) {
	if s.head != nil && (s.head.NumSamples() >= maxChunkSamples ||
		len(s.head.Bytes()) >= chunkenc.MaxBytesPerXORChunkBeforeAppend ||
		x.t-s.headMinT >= chunkSpan) {
		s.seal()
	}
	if s.head == nil {
		c, err := chunkenc.NewEmptyChunk(chunkEncoding)
		if err != nil {
			panic(err) // EncXOR is always valid
		}
		app, err := c.Appender()
		if err != nil {
			panic(err) // an empty chunk's appender cannot fail
		}
		s.head, s.app, s.headMinT = c, app, x.t
	}
	s.app.Append(0, x.t, x.v)
	s.headMaxT = x.t
}

// seal moves the open chunk to the sealed list, copied to its exact length.
func (s *memSeries) seal() {
	s.sealed = append(s.sealed, sealedChunk{minT: s.headMinT, maxT: s.headMaxT, data: bytes.Clone(s.head.Bytes())})
	s.head, s.app = nil, nil
}

// trim raises the horizon to mint and drops the chunks entirely before
// it. The newest sample is kept aside, so a series is empty only when
// lastT() < mint.
func (s *memSeries) trim(mint int64) {
	if mint <= s.mint {
		return
	}
	s.mint = mint
	i := 0
	for i < len(s.sealed) && s.sealed[i].maxT < mint {
		i++
	}
	clear(s.sealed[:i]) // let the dropped chunks' data go
	s.sealed = s.sealed[i:]
	if s.head != nil && s.headMaxT < mint {
		s.head, s.app = nil, nil
	}
}

// dropExpired re-encodes the oldest chunk without its samples before the
// horizon, which appends only hide. Store.GC calls it, so what a series
// holds beyond its retention is bounded by the GC period.
func (s *memSeries) dropExpired() {
	if len(s.sealed) == 0 || s.sealed[0].minT >= s.mint {
		return
	}
	old, err := chunkenc.FromData(chunkEncoding, s.sealed[0].data)
	if err != nil {
		panic(err) // chunkEncoding is a valid encoding
	}
	c, err := chunkenc.NewEmptyChunk(chunkEncoding)
	if err != nil {
		panic(err)
	}
	app, err := c.Appender()
	if err != nil {
		panic(err) // an empty chunk's appender cannot fail
	}
	minT := int64(math.MaxInt64)
	it := old.Iterator(nil)
	for vt := it.Seek(s.mint); vt != chunkenc.ValNone; vt = it.Next() {
		t, v := it.At()
		minT = min(minT, t)
		app.Append(0, t, v)
	}
	if it.Err() != nil || c.NumSamples() == 0 {
		return // keep the chunk as it is; reads still skip the expired part
	}
	// Readers hold copies of the old entry, never the slice element.
	s.sealed[0] = sealedChunk{minT: minT, maxT: s.sealed[0].maxT, data: bytes.Clone(c.Bytes())}
}

// numSamples counts the samples at or after the horizon (decoding only
// the chunks that straddle it).
func (s *memSeries) numSamples() int {
	if !s.hasLast || s.last.t < s.mint {
		return 0
	}
	n := 1
	count := func(minT int64, c chunkenc.Chunk) {
		if minT >= s.mint {
			n += c.NumSamples()
			return
		}
		it := c.Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			if it.AtT() >= s.mint {
				n++
			}
		}
	}
	for _, sc := range s.sealed {
		c, err := chunkenc.FromData(chunkEncoding, sc.data)
		if err != nil {
			panic(err) // chunkEncoding is a valid encoding
		}
		count(sc.minT, c)
	}
	if s.head != nil {
		count(s.headMinT, s.head)
	}
	return n
}

// snapshot returns the series' samples in [mint, maxt] as an immutable
// view (the open chunk is copied, sealed chunks are shared), and whether
// there is any. Caller holds the store's lock.
func (s *memSeries) snapshot(mint, maxt int64) (*seriesData, bool) {
	mint = max(mint, s.mint)
	if !s.hasLast || s.last.t < mint || mint > maxt {
		return nil, false
	}
	d := &seriesData{mint: mint, maxt: maxt}
	// Chunk bounds are sample timestamps: a chunk with a bound inside
	// [mint, maxt] has a sample there; only a chunk spanning the whole
	// range needs decoding to know.
	known := s.last.t <= maxt
	add := func(c sealedChunk) bool {
		if c.maxT < mint || c.minT > maxt {
			return false
		}
		d.chunks = append(d.chunks, c)
		known = known || c.minT >= mint || c.maxT <= maxt
		return true
	}
	for _, c := range s.sealed {
		add(c)
	}
	if s.head != nil && add(sealedChunk{minT: s.headMinT, maxT: s.headMaxT}) {
		d.chunks[len(d.chunks)-1].data = bytes.Clone(s.head.Bytes()) // its appender writes on
	}
	if s.last.t <= maxt {
		d.last, d.hasLast = s.last, true
	}
	if !known && d.newIterator().Next() == chunkenc.ValNone {
		return nil, false
	}
	return d, true
}

// seriesData is one series' samples as a query sees them: immutable, so
// it is read without the store's lock.
type seriesData struct {
	mint, maxt int64
	chunks     []sealedChunk // ascending
	last       sample
	hasLast    bool
}

// newIterator chains one iterator per chunk: a chunk inside [mint, maxt]
// is read as encoded; the samples of one crossing a bound are decoded and
// cut to it, and join the newest sample in a list.
func (d *seriesData) newIterator() chunkenc.Iterator {
	var its []chunkenc.Iterator
	var cut sampleList
	flush := func() {
		if len(cut) > 0 {
			its = append(its, storage.NewListSeriesIterator(cut))
			cut = nil
		}
	}
	for _, sc := range d.chunks {
		c, err := chunkenc.FromData(chunkEncoding, sc.data)
		if err != nil {
			panic(err) // chunkEncoding is a valid encoding
		}
		it := c.Iterator(nil)
		if sc.minT >= d.mint && sc.maxT <= d.maxt {
			flush()
			its = append(its, it)
			continue
		}
		for vt := it.Seek(d.mint); vt != chunkenc.ValNone; vt = it.Next() {
			t, v := it.At()
			if t > d.maxt {
				break
			}
			cut = append(cut, sample{t, v})
		}
		if it.Err() != nil {
			flush()
			its = append(its, it) // reports the error
		}
	}
	if d.hasLast && d.last.t >= d.mint {
		cut = append(cut, d.last)
	}
	flush()
	switch len(its) {
	case 0:
		return chunkenc.NewNopIterator()
	case 1:
		return its[0]
	}
	return storage.ChainSampleIteratorFromIterators(nil, its)
}

// sampleList adapts []sample to storage.Samples without allocating: Get
// returns a pointer into the slice.
type sampleList []sample

func (l sampleList) Get(i int) chunks.Sample { return &l[i] }
func (l sampleList) Len() int                { return len(l) }

func (s *sample) T() int64                      { return s.t }
func (s *sample) ST() int64                     { return 0 }
func (s *sample) F() float64                    { return s.v }
func (s *sample) H() *histogram.Histogram       { return nil }
func (s *sample) FH() *histogram.FloatHistogram { return nil }
func (s *sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *sample) Copy() chunks.Sample           { c := *s; return &c }
