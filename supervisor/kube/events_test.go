package kube_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/kubeclient"
	corev1 "github.com/medic-sidecar/medic/internal/kubeclient/api/core/v1"
	"github.com/medic-sidecar/medic/internal/kubetest"
	"github.com/medic-sidecar/medic/supervisor/kube"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// runSink starts s.Run until the test ends and waits for it to return.
func runSink(t *testing.T, s *kube.EventSink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func podRef(env *kubetest.Env, name string) corev1.ObjectReference {
	return kube.PodReference(kube.Identity{Namespace: env.Namespace, Pod: name})
}

func TestEventsReasonsTypesAndNotes(t *testing.T) {
	env := kubetest.Start(t)
	pod := newPod(t, env, "events-basic", nil)
	sink, err := kube.NewEventSink(kube.EventOptions{
		Client:    env.MedicClient(t), // deploy/base's Role: events create/patch, pods get
		Regarding: podRef(env, pod.Name),
		Burst:     20,
	})
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, sink)

	base := remedy.Event{Time: time.Now(), IncidentID: "inc-1", Alert: "SPIREAgentSyncFailure", Value: 0.4,
		Labels: map[string]string{"probe": "spire"}}
	attempt := func(typ remedy.EventType, result, reason, msg string) remedy.Event {
		e := base
		e.Type, e.Action, e.Step, e.Attempt, e.MaxAttempts = typ, "restart-agent", 2, 2, 3
		e.Result, e.Reason, e.Message = result, reason, msg
		return e
	}
	opened := base
	opened.Type = remedy.IncidentOpened
	resolved := base
	resolved.Type, resolved.Duration = remedy.IncidentResolved, 93.5
	exhausted := base
	exhausted.Type, exhausted.IncidentID = remedy.IncidentExhausted, "inc-2"
	cases := []struct {
		ev       remedy.Event
		typ      string
		action   string
		contains []string
	}{
		{opened, "Warning", "Incident", []string{"alert=SPIREAgentSyncFailure", "value=0.4", "incident=inc-1"}},
		{attempt(remedy.RemediationStarted, "", "", ""), "Normal", "restart-agent",
			[]string{"alert=SPIREAgentSyncFailure", "action=restart-agent", "attempt=2/3", "step=2", "value=0.4"}},
		{attempt(remedy.RemediationSucceeded, "succeeded", "", "sent SIGTERM to pid 42"), "Normal", "restart-agent",
			[]string{"attempt=2/3", ": sent SIGTERM to pid 42"}},
		{attempt(remedy.RemediationFailed, "failed", "verify", "alert still firing"), "Warning", "restart-agent",
			[]string{"attempt=2/3", "reason=verify", "value=0.4"}},
		{attempt(remedy.RemediationSuppressed, "suppressed", "budget", "3 runs in 1h"), "Warning", "restart-agent",
			[]string{"reason=budget"}},
		{resolved, "Normal", "Incident", []string{"duration=1m33.5s"}},
		{exhausted, "Warning", "Incident", []string{"incident=inc-2"}},
	}
	for _, c := range cases {
		sink.Record(c.ev)
	}
	admin := env.AdminClient(t)
	eventually(t, 15*time.Second, "7 Events on the pod", func() (bool, string) {
		n := len(eventsAbout(t, admin, env.Namespace, pod.Name))
		return n == len(cases), fmt.Sprintf("%d events", n)
	})
	got := map[string]int{}
	for _, e := range eventsAbout(t, admin, env.Namespace, pod.Name) {
		got[e.Reason]++
		var c *struct {
			ev       remedy.Event
			typ      string
			action   string
			contains []string
		}
		for i := range cases {
			if string(cases[i].ev.Type) == e.Reason {
				c = &cases[i]
			}
		}
		if c == nil {
			t.Errorf("unexpected reason %q", e.Reason)
			continue
		}
		if e.Type != c.typ || e.Action != c.action {
			t.Errorf("%s: type %q action %q, want %q %q", e.Reason, e.Type, e.Action, c.typ, c.action)
		}
		for _, s := range c.contains {
			if !strings.Contains(e.Note, s) {
				t.Errorf("%s: note %q lacks %q", e.Reason, e.Note, s)
			}
		}
		if e.Regarding.UID != pod.UID || e.Regarding.Kind != "Pod" {
			t.Errorf("%s: regarding %+v, want the pod with uid %s", e.Reason, e.Regarding, pod.UID)
		}
		if e.ReportingController != kube.DefaultReportingController || e.ReportingInstance != pod.Name {
			t.Errorf("%s: reporting %q/%q", e.Reason, e.ReportingController, e.ReportingInstance)
		}
		if e.Series != nil {
			t.Errorf("%s: unexpected series %+v", e.Reason, e.Series)
		}
	}
	if got[string(remedy.RemediationSucceeded)] != 1 || got[string(remedy.IncidentExhausted)] != 1 {
		t.Errorf("reasons = %v", got)
	}
}

func TestEventsAggregateAFloodIntoOneSeries(t *testing.T) {
	env := kubetest.Start(t)
	pod := newPod(t, env, "events-flood", nil)
	clk := clock.NewFake(epoch)
	sink, err := kube.NewEventSink(kube.EventOptions{
		Client: env.MedicClient(t), Regarding: podRef(env, pod.Name), Clock: clk,
		QPS: 0.1, Burst: 3, QueueSize: 128,
	})
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, sink)
	admin := env.AdminClient(t)
	// A flapping alert: the same failure of the same action in the same
	// incident, over and over.
	i := 0
	record := func(n int) {
		for range n {
			sink.Record(remedy.Event{Time: epoch.Add(time.Duration(i) * time.Millisecond), Type: remedy.RemediationFailed,
				IncidentID: "flap", Alert: "RelayStreamDown", Action: "redial-relay", Attempt: 1 + i%3, MaxAttempts: 3,
				Reason: "verify", Value: 0})
			i++
		}
	}
	series := func() (int, int32) {
		evs := eventsAbout(t, admin, env.Namespace, pod.Name)
		if len(evs) == 0 {
			return 0, 0
		}
		if evs[0].Series == nil {
			return len(evs), 1
		}
		return len(evs), evs[0].Series.Count
	}

	// 1. Ten bursts of 100 that the queue can hold: with the clock frozen
	// during a burst, 3 tokens allow at most 3 writes; then 15 s pass.
	for range 10 {
		record(100)
		kube.WaitIdle(t, sink)
		clk.Advance(15 * time.Second)
	}
	eventually(t, 15*time.Second, "one Event counting 1000", func() (bool, string) {
		clk.Advance(15 * time.Second)
		n, c := series()
		return n == 1 && c == 1000, fmt.Sprintf("%d events, count %d", n, c)
	})
	// The token bucket bounds the writes: burst + QPS × elapsed time.
	writes := kube.Writes(sink, "created") + kube.Writes(sink, "updated")
	bound := 3 + 0.1*clk.Now().Sub(epoch).Seconds()
	if kube.Writes(sink, "created") != 1 || writes > bound {
		t.Errorf("%v creates, %v writes for 1000 occurrences, want 1 create and at most %v writes", kube.Writes(sink, "created"), writes, bound)
	}
	if got := kube.Aggregated(sink); got != 999 {
		t.Errorf("aggregated_total = %v, want 999", got)
	}
	if got := kube.Dropped(sink, "queue_full"); got != 0 {
		t.Errorf("dropped %v with room in the queue", got)
	}
	e := eventsAbout(t, admin, env.Namespace, pod.Name)[0]
	if e.Reason != string(remedy.RemediationFailed) || e.Type != "Warning" || !e.Series.LastObservedTime.After(e.EventTime.Time) {
		t.Errorf("event = %+v", e)
	}
	t.Logf("1000 in bursts over %s: 1 Event, series.count 1000, %v API writes (bucket allows %v)", clk.Now().Sub(epoch), writes, bound)

	// 2. 5000 as fast as Record can be called: the queue overflows, the
	// rest is dropped and counted, Record never waits.
	record(5000)
	kube.WaitIdle(t, sink)
	eventually(t, 15*time.Second, "count + drops = 6000", func() (bool, string) {
		clk.Advance(15 * time.Second)
		n, c := series()
		d := kube.Dropped(sink, "queue_full")
		return n == 1 && int(c)+int(d) == 6000, fmt.Sprintf("%d events, count %d, dropped %v", n, c, d)
	})
	_, c := series()
	t.Logf("then 5000 at once: still 1 Event, series.count %d, %v dropped at the queue, %v API writes in all",
		c, kube.Dropped(sink, "queue_full"), kube.Writes(sink, "created")+kube.Writes(sink, "updated"))
}

func TestEventsTokenBucketBoundsDistinctEvents(t *testing.T) {
	env := kubetest.Start(t)
	pod := newPod(t, env, "events-bucket", nil)
	clk := clock.NewFake(epoch)
	sink, err := kube.NewEventSink(kube.EventOptions{
		Client: env.MedicClient(t), Regarding: podRef(env, pod.Name), Clock: clk,
		QPS: 1, Burst: 4, MaxSeries: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, sink)
	// 25 different incidents: nothing to aggregate.
	for i := range 25 {
		sink.Record(remedy.Event{Time: epoch, Type: remedy.IncidentOpened, IncidentID: fmt.Sprintf("i%02d", i), Alert: "A"})
	}
	kube.WaitIdle(t, sink)
	admin := env.AdminClient(t)
	if n := len(eventsAbout(t, admin, env.Namespace, pod.Name)); n != 4 {
		t.Fatalf("%d Events with a burst of 4 and a frozen clock, want 4", n)
	}
	if got := kube.Dropped(sink, "backlog_full"); got != 5 {
		t.Errorf("backlog_full drops = %v, want 5 (20 tracked series)", got)
	}
	if got := kube.Pending(sink); got != 16 {
		t.Errorf("pending = %v, want 16", got)
	}
	// One token a second: 16 more seconds write the rest.
	eventually(t, 15*time.Second, "20 Events", func() (bool, string) {
		clk.Advance(time.Second)
		n := len(eventsAbout(t, admin, env.Namespace, pod.Name))
		return n == 20, fmt.Sprintf("%d events", n)
	})
}

func TestEventsNeverBlockWhenTheAPIServerIsGone(t *testing.T) {
	// A closed port: every write fails at once with connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cs, err := kubeclient.NewForConfig(&rest.Config{Host: "http://" + addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(epoch)
	sink, err := kube.NewEventSink(kube.EventOptions{
		Client: cs, Regarding: kube.PodReference(kube.Identity{Namespace: "ns", Pod: "p"}), Clock: clk,
		QueueSize: 8, Attempts: 2, MaxSeries: 4, QPS: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, sink)
	// Record returns at once however many events arrive.
	for i := range 5000 {
		sink.Record(remedy.Event{Type: remedy.RemediationStarted, IncidentID: fmt.Sprint(i), Alert: "A", Action: "x"})
	}
	// At most 8 queued, 4 tracked and 1 in hand were kept.
	if got := kube.Dropped(sink, "queue_full") + kube.Dropped(sink, "backlog_full"); got < 5000-8-4-1 {
		t.Errorf("queue_full + backlog_full drops = %v", got)
	}
	// Writes fail, are retried after a hold, then dropped and counted.
	eventually(t, 20*time.Second, "api_error drops", func() (bool, string) {
		clk.Advance(10 * time.Second)
		got := kube.Dropped(sink, "api_error")
		return got >= 1, fmt.Sprintf("api_error drops %v", got)
	})
}

func TestEventsRejectedWithoutPermission(t *testing.T) {
	env := kubetest.Start(t)
	// medic's Role is bound in env.Namespace only.
	sink, err := kube.NewEventSink(kube.EventOptions{
		Client: env.MedicClient(t), Regarding: kube.PodReference(kube.Identity{Namespace: "default", Pod: "elsewhere"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, sink)
	sink.Record(remedy.Event{Type: remedy.IncidentOpened, IncidentID: "x", Alert: "A"})
	eventually(t, 10*time.Second, "rejected drop", func() (bool, string) {
		got := kube.Dropped(sink, "rejected")
		return got == 1, fmt.Sprintf("rejected %v", got)
	})
}

func TestNewEventSinkNeedsAPod(t *testing.T) {
	if _, err := kube.NewEventSink(kube.EventOptions{Client: nil}); err == nil {
		t.Error("no client: no error")
	}
	cs, _ := kubeclient.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	_, err := kube.NewEventSink(kube.EventOptions{Client: cs, Regarding: kube.PodReference(kube.Identity{})})
	if err == nil || !strings.Contains(err.Error(), "POD_NAME") {
		t.Errorf("no pod: %v", err)
	}
}

func TestNoteAndType(t *testing.T) {
	ev := remedy.Event{Type: remedy.RemediationSuppressed, Alert: "A", Action: "restart", Attempt: 1, MaxAttempts: 2,
		Value: 3, IncidentID: "i", Reason: "paused", DryRun: true, Message: strings.Repeat("é", 2000)}
	n := kube.Note(ev)
	if len(n) > kube.MaxNoteBytes || !strings.HasPrefix(n, "alert=A action=restart attempt=1/2 value=3 incident=i reason=paused dryRun=true: é") {
		t.Errorf("note (%d bytes) = %.120q", len(n), n)
	}
	if !strings.HasSuffix(n, "é") {
		t.Errorf("note cut inside a rune: %q", n[len(n)-4:])
	}
	for reason, want := range map[string]string{"paused": "Normal", "dryRun": "Normal", "budget": "Warning", "precondition": "Warning"} {
		ev.Reason = reason
		if got := kube.EventType(ev); got != want {
			t.Errorf("suppressed (%s): %s, want %s", reason, got, want)
		}
	}
	q := remedy.Event{Type: remedy.PluginQuarantined, Plugin: "webhook", Message: "crashed 4 times in 10m"}
	if n := kube.Note(q); n != "plugin=webhook: crashed 4 times in 10m" || kube.EventType(q) != "Warning" {
		t.Errorf("plugin event: %q %s", n, kube.EventType(q))
	}
}
