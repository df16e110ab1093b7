package rules

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/supervisor/store"
)

// QueryRange's result is the caller's: closing the query gives the
// engine's point slices back to its pool, and the next query refills them,
// so the result must not share them.
func TestQueryRangeResultOutlivesTheNextQuery(t *testing.T) {
	st := store.New(store.Options{Retention: time.Hour})
	eng := NewEngine(st, 0, slog.New(slog.DiscardHandler))
	base := time.Unix(1_800_000_000, 0)
	up := labels.FromStrings("__name__", "up", "probe", "p")
	for i := range 61 {
		st.Append(up, base.Add(time.Duration(i)*time.Second), 1)
	}
	ctx, end := context.Background(), base.Add(time.Minute)
	for try := range 20 {
		first, err := eng.QueryRange(ctx, `up * 2`, base, end, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eng.QueryRange(ctx, `up * 3`, base, end, time.Second); err != nil {
			t.Fatal(err)
		}
		if len(first) != 1 || len(first[0].Floats) != 61 {
			t.Fatalf("first result %v", first)
		}
		for _, p := range first[0].Floats {
			if p.F != 2 {
				t.Fatalf("try %d: the first query's point became %v after a second query", try, p.F)
			}
		}
	}
}
