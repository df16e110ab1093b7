package tcpconn

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// build decodes one probe through config.Parse and builds it through its Kind.
func build(t *testing.T, spec string, env probe.Env) (*Probe, error) {
	t.Helper()
	c, err := config.Parse([]byte("probes:\n  - name: up\n    tcpconn: " + spec + "\n"))
	if err != nil {
		return nil, err
	}
	pc := c.Probes[0]
	k, ok := probe.Lookup(pc.Kind)
	if !ok {
		t.Fatalf("kind %q not registered", pc.Kind)
	}
	env.Name = pc.Name
	p, err := k.New(pc.Spec, env)
	if err != nil {
		return nil, err
	}
	return p.(*Probe), nil
}

// slowMachine is the interval and timeout of the probes whose dump must
// succeed: the default 2 s timeout ran out for the netlink dump on a
// loaded machine (load 25-32, -race), and medic_probe_up was 0 with no
// connection series at all.
const slowMachine = "interval: 30s, timeout: 30s"

func mustBuild(t *testing.T, spec string) *Probe {
	t.Helper()
	p, err := build(t, spec, probe.Env{})
	if err != nil {
		t.Fatalf("build %s: %v", spec, err)
	}
	return p
}

// upstream is a loopback server that echoes, with n clients connected.
type upstream struct {
	ln      net.Listener
	mu      sync.Mutex
	servers []net.Conn
	clients []net.Conn
}

func newUpstream(t *testing.T, addr string, n int) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	u := &upstream{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		defer u.mu.Unlock()
		for _, c := range append(u.servers, u.clients...) {
			c.Close()
		}
	})
	for range n {
		u.dial(t)
	}
	return u
}

// dial opens one more client connection and exchanges data on it, so
// tcp_info has RTT samples and acknowledged bytes.
func (u *upstream) dial(t *testing.T) net.Conn {
	t.Helper()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := u.ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	c, err := net.Dial("tcp", u.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	for range 3 {
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
	}
	u.mu.Lock()
	u.servers = append(u.servers, s)
	u.clients = append(u.clients, c)
	u.mu.Unlock()
	return c
}

func (u *upstream) port() int { return u.ln.Addr().(*net.TCPAddr).Port }

// observe runs one observation into a fresh view of st and returns the
// latest value of every series, keyed "name{peer,state}".
func observe(t *testing.T, p *Probe, app probe.Appender, st *store.Store, now time.Time) map[string]float64 {
	t.Helper()
	p.observe(context.Background(), app, now)
	out := map[string]float64{}
	for _, pt := range st.Latest(func(string) bool { return true }) {
		if pt.T != now.Truncate(time.Millisecond) {
			continue
		}
		key := pt.Labels.Get(labels.MetricName)
		if peer := pt.Labels.Get("peer"); peer != "" {
			key += "{" + peer
			if s := pt.Labels.Get("state"); s != "" {
				key += "," + s
			}
			key += "}"
		}
		if pt.Labels.Get("probe") != "up" {
			t.Errorf("series %s has probe=%q, want up", pt.Labels, pt.Labels.Get("probe"))
		}
		out[key] = pt.V
	}
	return out
}

func TestCountsRTTAndScoreOfRealConnections(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			u := newUpstream(t, listen, 3)
			// A fourth connection whose peer closes: the client end sits in CLOSE_WAIT.
			stuck := u.dial(t)
			u.mu.Lock()
			u.servers[3].Close()
			u.mu.Unlock()
			stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := stuck.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("want EOF, got %v", err)
			}

			peerLabel := u.ln.Addr().String()
			p := mustBuild(t, fmt.Sprintf("{peers: [%q], excludeOwn: false, %s}", peerLabel, slowMachine))
			st := store.New(store.Options{})
			app := st.Appender("up")
			now := time.Unix(1_800_000_000, 0)
			got := observe(t, p, app, st, now)
			t.Logf("samples: %v", got)

			key := func(name string, state ...string) string {
				if len(state) > 0 {
					return name + "{" + peerLabel + "," + state[0] + "}"
				}
				return name + "{" + peerLabel + "}"
			}
			want := map[string]float64{
				MetricUp:                              1,
				key(MetricConnections, "established"): 3,
				key(MetricConnections, "close_wait"):  1,
				key(MetricConnections, "syn_sent"):    0,
				// Not time_wait: a connection that an earlier user of this
				// ephemeral port number (another test, another process)
				// closed may still be in TIME_WAIT for 60 s (seen in CI).
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if n := countPrefix(got, MetricConnections+"{"); n != len(ReportedStates) {
				t.Errorf("%d connection series, want one per reported state (%d)", n, len(ReportedStates))
			}
			if rtt := got[key(MetricRTT)]; rtt <= 0 || rtt > 0.1 {
				t.Errorf("rtt = %v s, want a small positive loopback RTT", rtt)
			}
			if _, ok := got[key(MetricRTTVar)]; !ok {
				t.Error("no rtt variance series")
			}
			// 3 × 1000 bytes acked on each of 4 connections.
			if acked := got[key(MetricBytesAcked)]; acked < 12000 {
				t.Errorf("bytes acked = %v, want >= 12000", acked)
			}
			if _, ok := got[key(MetricRetrans)]; !ok {
				t.Error("no retransmits series")
			}
			// 3 established, 1 in CLOSE_WAIT, no loss: 3/4, times the jitter
			// factor of the RTT and variance the kernel reported (1 for
			// loopback's normal microsecond jitter; below 1 on a loaded machine).
			wantScore := Score(Quality{Established: 3, Troubled: 1,
				RTT:    time.Duration(got[key(MetricRTT)] * float64(time.Second)),
				RTTVar: time.Duration(got[key(MetricRTTVar)] * float64(time.Second))})
			if wantScore > 0.75+1e-9 {
				t.Errorf("expected score %v above the 3/4 share of healthy connections", wantScore)
			}
			if s := got[key(MetricScore)]; math.Abs(s-wantScore) > 0.01 {
				t.Errorf("score = %v, want %v (3/4 with the reported RTT and variance)", s, wantScore)
			}

			// Close one established connection entirely: the counters keep it.
			u.mu.Lock()
			u.clients[0].Close()
			u.servers[0].Close()
			u.mu.Unlock()
			before := got[key(MetricBytesAcked)]
			got = observe(t, p, app, st, now.Add(5*time.Second))
			if got[key(MetricConnections, "established")] != 2 {
				t.Errorf("established after close = %v, want 2", got[key(MetricConnections, "established")])
			}
			if got[key(MetricBytesAcked)] < before {
				t.Errorf("bytes acked went back from %v to %v", before, got[key(MetricBytesAcked)])
			}
		})
	}
}

func countPrefix(m map[string]float64, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func TestOwnConnectionsAreExcludedByDefault(t *testing.T) {
	u := newUpstream(t, "127.0.0.1:0", 2)
	peerLabel := u.ln.Addr().String()
	p := mustBuild(t, fmt.Sprintf("{peers: [%q], %s}", peerLabel, slowMachine))
	st := store.New(store.Options{})
	got := observe(t, p, st.Appender("up"), st, time.Unix(1_800_000_000, 0))
	if v := got[MetricConnections+"{"+peerLabel+",established}"]; v != 0 {
		t.Errorf("established = %v: medic's own connections were counted", v)
	}
	if v, ok := got[MetricScore+"{"+peerLabel+"}"]; !ok || v != 0 {
		t.Errorf("score = %v (present %v), want 0 with no established connection", v, ok)
	}
	if _, ok := got[MetricRTT+"{"+peerLabel+"}"]; ok {
		t.Error("rtt series present without an established connection")
	}
}

func TestPeerForms(t *testing.T) {
	u := newUpstream(t, "127.0.0.1:0", 2)
	port := u.port()
	for _, peer := range []string{fmt.Sprintf("localhost:%d", port), fmt.Sprintf(":%d", port), fmt.Sprint(port)} {
		p := mustBuild(t, fmt.Sprintf("{peers: [%q], excludeOwn: false, %s}", peer, slowMachine))
		st := store.New(store.Options{})
		got := observe(t, p, st.Appender("up"), st, time.Unix(1_800_000_000, 0))
		label := p.peers[0].label
		if v := got[MetricConnections+"{"+label+",established}"]; v != 2 {
			t.Errorf("peer %q (label %s): established = %v, want 2 (%v)", peer, label, v, got)
		}
	}
}

func TestDumpFailureReportsDown(t *testing.T) {
	p, err := New(Config{Peers: []string{"127.0.0.1:1"}, Interval: cfg.Duration(time.Second), Timeout: 1}, probe.Env{})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{})
	got := observe(t, p, st.Appender("up"), st, time.Unix(1_800_000_000, 0))
	if len(got) != 1 || got[MetricUp] != 0 {
		t.Errorf("samples = %v, want only %s = 0 (a 1ns timeout cannot finish a dump)", got, MetricUp)
	}
}

// commits records Commit times on top of a real store appender.
type commits struct {
	probe.Appender
	mu sync.Mutex
	at []time.Time
}

func (c *commits) Commit(t time.Time) (int, error) {
	c.mu.Lock()
	c.at = append(c.at, t)
	c.mu.Unlock()
	return c.Appender.Commit(t)
}

func (c *commits) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.at) }

func TestRunObservesEveryInterval(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(start)
	p, err := build(t, `{peers: ["127.0.0.1:1"], interval: 10s}`, probe.Env{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{})
	app := &commits{Appender: st.Appender("up")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, app) }()
	for i := 1; i <= 3; i++ {
		if !clk.BlockUntil(1, 5*time.Second) {
			t.Fatal("probe never waited for its next tick")
		}
		if app.count() != i {
			t.Fatalf("after %d ticks: %d commits", i, app.count())
		}
		clk.Advance(10 * time.Second)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, at := range app.at[:3] {
		if want := start.Add(time.Duration(i) * 10 * time.Second); !at.Equal(want) {
			t.Errorf("commit %d at %s, want %s", i, at, want)
		}
	}
}

func TestScore(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		q    Quality
		want float64
	}{
		{"no connection", Quality{}, 0},
		{"only stuck", Quality{Troubled: 2}, 0},
		{"one healthy", Quality{Established: 1, SentSegs: 100, RTT: 20 * ms, RTTVar: 10 * ms}, 1},
		{"healthy and close_wait", Quality{Established: 1, Troubled: 1}, 0.5},
		{"3 of 4", Quality{Established: 3, Troubled: 1}, 0.75},
		{"5% retransmitted", Quality{Established: 1, RetransSegs: 5, SentSegs: 100}, 0.5},
		{"1% retransmitted", Quality{Established: 1, RetransSegs: 1, SentSegs: 100}, 1 / 1.2},
		{"idle keepalive retransmit", Quality{Established: 1, RetransSegs: 1, SentSegs: 2}, 1 / 3.0},
		{"all retransmits", Quality{Established: 1, RetransSegs: 50, SentSegs: 50}, 1 / 21.0},
		{"retransmits exceed sent", Quality{Established: 1, RetransSegs: 50, SentSegs: 5}, 1 / 21.0},
		{"variance 1.5 rtt", Quality{Established: 1, RTT: 20 * ms, RTTVar: 30 * ms}, 0.5},
		{"variance 0.5 rtt is normal", Quality{Established: 1, RTT: 20 * ms, RTTVar: 10 * ms}, 1},
		{"loopback jitter", Quality{Established: 1, RTT: 50 * time.Microsecond, RTTVar: 400 * time.Microsecond}, 1},
		{"rtt unknown", Quality{Established: 1, RTTVar: 10 * ms}, 1},
		{"all three", Quality{Established: 1, Troubled: 1, RetransSegs: 5, SentSegs: 100, RTT: 20 * ms, RTTVar: 30 * ms}, 0.125},
	} {
		if got := Score(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Score(%+v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for spec, want := range map[string]string{
		`{}`:                              "probes[0].tcpconn.peers: list at least one upstream",
		`{peers: [nohost]}`:               `probes[0].tcpconn.peers[0]: "nohost": want host:port`,
		`{peers: ["h:0"]}`:                `probes[0].tcpconn.peers[0]: "h:0": port must be`,
		`{peers: [":8081", "8081"]}`:      "probes[0].tcpconn.peers[1]: :8081 is already listed as peers[0]",
		`{peers: [":1"], interval: 0s}`:   "probes[0].tcpconn.interval: must be greater than 0",
		`{peers: [":1"], timeout: 10s}`:   "probes[0].tcpconn.timeout: must not exceed interval (5s)",
		`{peers: [":1"], interval: fast}`: "probes[0].tcpconn.interval: invalid duration",
		`{peers: [":1"], peer: x}`:        "probes[0].tcpconn.peer: unknown field",
	} {
		_, err := build(t, spec, probe.Env{})
		if err == nil {
			t.Errorf("%s: no error", spec)
			continue
		}
		var msgs []string
		for _, e := range cfg.Sorted(err) {
			msgs = append(msgs, e.Error())
		}
		if all := strings.Join(msgs, "\n"); !strings.Contains(all, want) {
			t.Errorf("%s:\n%s\nwant %q", spec, all, want)
		}
	}
	p := mustBuild(t, `{peers: ["spire-server.spire:8081", "[fd00::1]:32767", ":9000"]}`)
	if p.c.Interval.D() != DefaultInterval || !p.c.ExcludeOwn {
		t.Errorf("defaults not applied: %+v", p.c)
	}
}
