package grpcstream

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/probe"
	"github.com/medic-sidecar/medic/supervisor/store"
)

// The measurements below run only with MEDIC_MEASURE=1 (see
// scripts/measure-relay.sh). They print numbers; they assert nothing about
// wall-clock time.

func measuring(t *testing.T) {
	if os.Getenv("MEDIC_MEASURE") == "" {
		t.Skip("measurement: set MEDIC_MEASURE=1 (scripts/measure-relay.sh)")
	}
}

// upWatcher wraps a store appender and reports, at each Commit, the
// medic_stream_up value of the batch with the wall time of the commit.
type upWatcher struct {
	probe.Appender
	up  float64
	set bool
	ch  chan upEvent
}

type upEvent struct {
	v  float64
	at time.Time
}

func (w *upWatcher) AddRaw(key []byte, mk func() labels.Labels, v float64) {
	if string(key) == string(sUp.key) {
		w.up, w.set = v, true
	}
	w.Appender.AddRaw(key, mk, v)
}

func (w *upWatcher) Commit(t time.Time) (int, error) {
	n, err := w.Appender.Commit(t)
	if w.set {
		select {
		case w.ch <- upEvent{w.up, time.Now()}:
		default:
		}
		w.set = false
	}
	return n, err
}

// watched runs a probe whose commits are reported on the returned channel.
func watched(t *testing.T, c Config, setup ...func(*Probe)) (*Probe, <-chan upEvent) {
	t.Helper()
	p, err := New(c, probe.Env{Name: "relay", Clock: clock.Real{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(p)
	}
	w := &upWatcher{Appender: store.New(store.Options{}).Appender("relay"), ch: make(chan upEvent, 4096)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, w) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, w.ch
}

// until waits for a commit with up == v and returns its time.
func until(t *testing.T, ch <-chan upEvent, v float64, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-ch:
			if e.v == v {
				return e.at
			}
		case <-deadline:
			t.Fatalf("no commit with up=%v within %s", v, timeout)
		}
	}
}

func drain(ch <-chan upEvent) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func summary(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return fmt.Sprintf("min %s  median %s  max %s  (n=%d)", ds[0].Round(time.Microsecond),
		ds[len(ds)/2].Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond), len(ds))
}

// TestMeasureRelayKilled: relay process killed → medic_stream_up 0 committed.
func TestMeasureRelayKilled(t *testing.T) {
	measuring(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		var fromSignal, fromExit []time.Duration
		for range 10 {
			rp := startRelayProcess(t, "127.0.0.1:0")
			_, ch := watched(t, testConfig(rp.addr))
			until(t, ch, 1, 10*time.Second)
			time.Sleep(50 * time.Millisecond)
			drain(ch)
			exited := make(chan time.Time, 1)
			start := time.Now()
			_ = rp.cmd.Process.Signal(sig)
			go func() { _ = rp.cmd.Wait(); exited <- time.Now() }()
			at := until(t, ch, 0, 10*time.Second)
			exit := <-exited
			fromSignal = append(fromSignal, at.Sub(start))
			// The kernel closes the relay's sockets as the process exits;
			// on a loaded machine the dying process itself may wait for a
			// CPU, so "from exit" isolates medic's part.
			fromExit = append(fromExit, max(at.Sub(exit), 0))
		}
		t.Logf("MEASURE relay process %s -> medic_stream_up 0, from the signal: %s", sig, summary(fromSignal))
		t.Logf("MEASURE relay process %s -> medic_stream_up 0, from the process exit (wait4): %s", sig, summary(fromExit))
	}
}

// TestMeasureRelayHung: relay process stopped (SIGSTOP) → detected by keepalive.
func TestMeasureRelayHung(t *testing.T) {
	measuring(t)
	for _, ka := range []KeepaliveConfig{
		{Time: cfgDuration(10 * time.Second), Timeout: cfgDuration(2 * time.Second)},
		{Time: cfgDuration(DefaultKeepaliveTime), Timeout: cfgDuration(DefaultKeepaliveTimeout)},
	} {
		rp := startRelayProcess(t, "127.0.0.1:0")
		c := testConfig(rp.addr)
		c.Keepalive = ka
		p, ch := watched(t, c)
		until(t, ch, 1, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
		drain(ch)
		start := time.Now()
		_ = rp.cmd.Process.Signal(syscall.SIGSTOP)
		at := until(t, ch, 0, ka.Time.D()+ka.Timeout.D()+10*time.Second)
		took := at.Sub(start)
		bound := ka.Time.D() + ka.Timeout.D() + time.Second
		t.Logf("MEASURE relay SIGSTOP -> detected (keepalive %s/%s): %s (bound time+timeout+1s = %s) err=%q",
			ka.Time, ka.Timeout, took.Round(time.Millisecond), bound, p.Status().LastError)
		_ = rp.cmd.Process.Signal(syscall.SIGCONT)
		rp.kill(syscall.SIGKILL)
	}
}

// TestMeasureRelayBack: relay back → stream restored, relative to the
// dial the backoff had scheduled.
func TestMeasureRelayBack(t *testing.T) {
	measuring(t)
	rp := startRelayProcess(t, "127.0.0.1:0")
	addr := rp.addr
	var mu sync.Mutex
	var scheduled time.Time
	var delay time.Duration
	hook := func(p *Probe) {
		p.onWait = func(d time.Duration, _ bool) {
			mu.Lock()
			scheduled, delay = time.Now().Add(d), d
			mu.Unlock()
		}
	}
	_, ch := watched(t, testConfig(addr), hook)
	until(t, ch, 1, 10*time.Second)
	var ds []string
	for i := range 5 {
		time.Sleep(100 * time.Millisecond)
		rp.kill(syscall.SIGKILL)
		until(t, ch, 0, 10*time.Second)
		// Stay away long enough for some failed dials, so the delay has grown.
		time.Sleep(time.Duration(1+i%3) * time.Second)
		drain(ch)
		rp = startRelayProcess(t, addr)
		listening := time.Now()
		at := until(t, ch, 1, 60*time.Second)
		mu.Lock()
		sched, d := scheduled, delay
		mu.Unlock()
		from := sched
		if listening.After(from) {
			from = listening
		}
		ds = append(ds, fmt.Sprintf("restored %s after the dial was due (current delay %s)",
			at.Sub(from).Round(time.Millisecond), d.Round(time.Millisecond)))
	}
	rp.kill(syscall.SIGKILL)
	for _, s := range ds {
		t.Logf("MEASURE relay back: %s", s)
	}
}

// TestMeasureHundredStreams: one medic holding 100 relay streams.
func TestMeasureHundredStreams(t *testing.T) {
	measuring(t)
	const streams = 100
	const interval = 100 * time.Millisecond // 10 events/s per stream
	rp := startRelayProcessInterval(t, interval)
	rss0 := rssKB(t)
	cpu0 := cpuTime()
	st := store.New(store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var probes []*Probe
	for i := range streams {
		p, err := New(testConfig(rp.addr), probe.Env{Name: fmt.Sprintf("relay-%d", i), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		probes = append(probes, p)
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Run(ctx, st.Appender(fmt.Sprintf("relay-%d", i))) }()
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, p := range probes {
			if p.Status().Phase == "up" {
				n++
			}
		}
		if n == streams {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d/%d streams up", n, streams)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // settle
	setupCPU := cpuTime() - cpu0
	rss1 := rssKB(t)
	var msgs0 uint64
	for _, p := range probes {
		msgs0 += p.Status().Messages
	}
	cpuA, wall := cpuTime(), time.Now()
	time.Sleep(10 * time.Second)
	cpuB, el := cpuTime(), time.Since(wall)
	var msgs1 uint64
	for _, p := range probes {
		msgs1 += p.Status().Messages
	}
	rss2 := rssKB(t)
	cpuPct := float64(cpuB-cpuA) / float64(el) * 100
	t.Logf("MEASURE %d streams at %v/stream: RSS %d KiB before, %d KiB with streams up, %d KiB after 10s; "+
		"%.1f KiB per stream", streams, interval, rss0, rss1, rss2, float64(rss2-rss0)/streams)
	t.Logf("MEASURE %d streams: CPU %.2f%% of one core total, %.4f%% per stream (%.0f msgs/s received); setup CPU %s",
		streams, cpuPct, cpuPct/streams, float64(msgs1-msgs0)/el.Seconds(), setupCPU.Round(time.Millisecond))
}

// startRelayProcessInterval is startRelayProcess with an event interval.
func startRelayProcessInterval(t *testing.T, iv time.Duration) *relayProcess {
	t.Setenv(childIntervalEnv, iv.String())
	return startRelayProcess(t, "127.0.0.1:0")
}

func rssKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
