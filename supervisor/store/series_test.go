package store

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// GC re-encodes the oldest chunk without its expired samples, so a series
// holds no more than the retention plus what arrived since the last GC.
func TestGCDropsExpiredSamplesFromTheOldestChunk(t *testing.T) {
	st := New(Options{Retention: time.Minute})
	l := labels.FromStrings("__name__", "x")
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 200 {
		st.Append(l, t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	s := st.series[l.Hash()][0]
	held := func() int {
		n := 1 // the newest, kept aside
		for _, c := range s.sealed {
			n += int(c.data[0])<<8 | int(c.data[1]) // the chunk's sample count
		}
		if s.head != nil {
			n += s.head.NumSamples()
		}
		return n
	}
	if len(s.sealed) == 0 || s.sealed[0].minT >= s.mint {
		t.Fatalf("test set-up: want a sealed chunk reaching past the horizon, have %d chunks", len(s.sealed))
	}
	before := held()
	st.GC(t0.Add(199 * time.Second))
	if s.sealed[0].minT < s.mint {
		t.Fatalf("oldest chunk starts at %d, before the horizon %d", s.sealed[0].minT, s.mint)
	}
	if got := held(); got != 61 || got >= before {
		t.Fatalf("holds %d samples after GC (%d before), want the 61 retained", got, before)
	}
	if st.Stats().Samples != 61 {
		t.Fatalf("stats %+v", st.Stats())
	}
}
