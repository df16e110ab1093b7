package scrape

import "testing"

// The set of series whose labels were checked follows the page: a series
// that left the page is forgotten (the set does not grow with every
// series a page ever had) and is checked again when it comes back.
func TestSeenSeriesFollowThePage(t *testing.T) {
	srv := newSwitchServer(t, page(promText, []byte("a 1\nb 1\nc 1\n")))
	r := newRig(t, Config{URL: srv.URL})
	r.cycle()
	if n := len(r.p.seen); n != 3 {
		t.Fatalf("after a page of 3 series: %d seen", n)
	}
	srv.set(page(promText, []byte("d 1\n")))
	r.cycle()
	if n := len(r.p.seen); n != 1 {
		t.Fatalf("after a page of 1 other series: %d seen, want 1", n)
	}
	srv.set(page(promText, []byte("d 2\na 2\n")))
	r.cycle()
	if n := len(r.p.seen); n != 2 {
		t.Fatalf("after a returns: %d seen, want 2", n)
	}
	r.wantValue(`a{probe="spire"}`, 2)
}
