package kube_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/kubeclient"
	"github.com/medic-sidecar/medic/internal/kubetest"
	"github.com/medic-sidecar/medic/supervisor/kube"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// fleetAction returns base with a random suffix (tests share the API
// server and may run with -count=N) and deletes its slot Leases (admin)
// when the test ends.
func fleetAction(t *testing.T, env *kubetest.Env, base string, slots int) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	action := base + "-" + hex.EncodeToString(b)
	admin := env.AdminClient(t)
	t.Cleanup(func() {
		for i := range slots {
			_ = admin.CoordinationV1().Leases(env.Namespace).Delete(context.Background(),
				kube.FleetLeaseName(kube.DefaultFleetPrefix, action, i), metav1.DeleteOptions{})
		}
	})
	return action
}

// newFleet builds a Fleet for identity on a client bound to deploy/base's Role.
func newFleet(t *testing.T, env *kubetest.Env, identity string, clk clock.Clock) *kube.Fleet {
	t.Helper()
	f, err := kube.NewFleet(kube.FleetOptions{Client: env.MedicClient(t), Namespace: env.Namespace, Identity: identity, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mustAcquire takes a slot or fails the test; release also runs at cleanup.
func mustAcquire(t *testing.T, f *kube.Fleet, action string, lim remedy.FleetLimit, now time.Time) func() {
	t.Helper()
	rel, ok, msg, err := f.Acquire(context.Background(), action, lim, now, false)
	if err != nil || !ok || rel == nil {
		t.Fatalf("Acquire(%q): ok=%v msg=%q err=%v release nil=%v", action, ok, msg, err, rel == nil)
	}
	t.Cleanup(rel)
	return rel
}

// mustRefuse asserts Acquire is refused without error and returns the message.
func mustRefuse(t *testing.T, f *kube.Fleet, action string, lim remedy.FleetLimit, now time.Time) string {
	t.Helper()
	rel, ok, msg, err := f.Acquire(context.Background(), action, lim, now, false)
	if err != nil || ok {
		t.Fatalf("Acquire(%q) at %s: ok=%v err=%v, want refused", action, now.Format(time.TimeOnly), ok, err)
	}
	if rel == nil {
		t.Errorf("refused Acquire returned a nil release")
	}
	if !strings.HasPrefix(msg, "fleet limit: ") {
		t.Errorf("refusal message %q", msg)
	}
	return msg
}

func getLease(t *testing.T, cs kubernetes.Interface, ns, name string) *coordv1.Lease {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease %s: %v", name, err)
	}
	return l
}

func holderOf(l *coordv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func TestFleetMaxOneHandsOver(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "Restart_Agent", 1)
	clk := clock.NewFake(epoch)
	a, b := newFleet(t, env, "node-a", clk), newFleet(t, env, "node-b", clk)
	lim := remedy.FleetLimit{Max: 1}

	relA := mustAcquire(t, a, action, lim, clk.Now())
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)
	if !strings.HasPrefix(name, "medic-fleet-restart-agent-") || !strings.HasSuffix(name, "-0") {
		t.Errorf("lease name %q", name)
	}
	l := getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "node-a" {
		t.Errorf("holder %q, want node-a", holderOf(l))
	}
	if l.Labels["app.kubernetes.io/managed-by"] != "medic" || l.Labels["medic.io/fleet-action"] != kube.FleetAction(action) {
		t.Errorf("labels %v", l.Labels)
	}
	if !l.Spec.AcquireTime.Time.Equal(epoch) || !l.Spec.RenewTime.Time.Equal(epoch) || *l.Spec.LeaseDurationSeconds != 60 {
		t.Errorf("spec %+v", l.Spec)
	}
	if got := a.Held(); got[action] != 1 {
		t.Errorf("a.Held() = %v", got)
	}

	clk.Advance(3 * time.Second)
	msg := mustRefuse(t, b, action, lim, clk.Now())
	for _, want := range []string{`1 of 1 "` + action + `" slots held`, "node-a since 12:00:00Z"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	relA()
	if l := getLease(t, admin, env.Namespace, name); holderOf(l) != "" {
		t.Errorf("after release holder %q", holderOf(l))
	}
	if got := a.Held(); len(got) != 0 {
		t.Errorf("a.Held() after release = %v", got)
	}
	mustAcquire(t, b, action, lim, clk.Now())
	l = getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "node-b" || *l.Spec.LeaseTransitions != 1 || !l.Spec.AcquireTime.Time.Equal(epoch.Add(3*time.Second)) {
		t.Errorf("after hand-over: holder %q transitions %d acquired %v", holderOf(l), *l.Spec.LeaseTransitions, l.Spec.AcquireTime)
	}
}

func TestFleetConcurrentAcquireNeverExceedsMax(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "race", 2)
	clk := clock.NewFake(epoch)
	ids := []string{"node-a", "node-b", "node-c"}
	fleets := make([]*kube.Fleet, len(ids))
	for i, id := range ids {
		fleets[i] = newFleet(t, env, id, clk)
	}
	lim := remedy.FleetLimit{Max: 2}
	// Round 0 races on Create, the later rounds on Update of released slots.
	for round := range 6 {
		type result struct {
			rel func()
			ok  bool
			msg string
			err error
		}
		results := make([]result, len(fleets))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, f := range fleets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := &results[i]
				r.rel, r.ok, r.msg, r.err = f.Acquire(context.Background(), action, lim, clk.Now(), false)
			}()
		}
		close(start)
		wg.Wait()
		var winners, holders []string
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("round %d: %s: %v", round, ids[i], r.err)
			}
			if r.ok {
				winners = append(winners, ids[i])
			} else if !strings.HasPrefix(r.msg, "fleet limit: ") {
				t.Errorf("round %d: %s refused with %q", round, ids[i], r.msg)
			}
		}
		for i := range 2 {
			holders = append(holders, holderOf(getLease(t, admin, env.Namespace, kube.FleetLeaseName(kube.DefaultFleetPrefix, action, i))))
		}
		sort.Strings(winners)
		sort.Strings(holders)
		if len(winners) != 2 || fmt.Sprint(winners) != fmt.Sprint(holders) {
			t.Fatalf("round %d: winners %v, lease holders %v; want exactly 2 and the same", round, winners, holders)
		}
		for _, r := range results {
			if r.ok {
				r.rel()
			}
		}
	}
}

func TestFleetHoldSpacesStarts(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "hold", 1)
	clk := clock.NewFake(epoch)
	a, b := newFleet(t, env, "node-a", clk), newFleet(t, env, "node-b", clk)
	lim := remedy.FleetLimit{Max: 1, Hold: 10 * time.Minute}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	mustAcquire(t, a, action, lim, clk.Now())()
	l := getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "node-a" || *l.Spec.LeaseDurationSeconds != 600 || l.Annotations[kube.AnnotationFleetReleased] == "" {
		t.Errorf("released under hold: holder %q duration %d annotations %v", holderOf(l), *l.Spec.LeaseDurationSeconds, l.Annotations)
	}
	msg := mustRefuse(t, b, action, lim, clk.Now())
	if !strings.Contains(msg, "node-a since 12:00:00Z (hold until 12:10:00Z)") {
		t.Errorf("message %q", msg)
	}
	// The hold binds its own holder too, also after a restart.
	mustRefuse(t, a, action, lim, clk.Now())
	mustRefuse(t, newFleet(t, env, "node-a", clk), action, lim, clk.Now())

	clk.Advance(10*time.Minute - time.Second)
	mustRefuse(t, b, action, lim, clk.Now())
	clk.Advance(time.Second)
	mustAcquire(t, b, action, lim, clk.Now())
	l = getLease(t, admin, env.Namespace, name)
	// Held, the slot outlives LeaseDuration until the Hold ends.
	if holderOf(l) != "node-b" || *l.Spec.LeaseDurationSeconds != 600 || l.Annotations[kube.AnnotationFleetReleased] != "" {
		t.Errorf("taken after the hold: holder %q duration %d annotations %v", holderOf(l), *l.Spec.LeaseDurationSeconds, l.Annotations)
	}
}

func TestFleetCrashedHolderIsTakenOver(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "crash", 1)
	// a's clock never moves: it never renews, as if it had died.
	a := newFleet(t, env, "node-a", clock.NewFake(epoch))
	b := newFleet(t, env, "node-b", clock.NewFake(epoch))
	lim := remedy.FleetLimit{Max: 1}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	relA := mustAcquire(t, a, action, lim, epoch)
	mustRefuse(t, b, action, lim, epoch.Add(59*time.Second))
	mustAcquire(t, b, action, lim, epoch.Add(60*time.Second))
	l := getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "node-b" || *l.Spec.LeaseTransitions != 1 {
		t.Errorf("taken over: holder %q transitions %d", holderOf(l), *l.Spec.LeaseTransitions)
	}
	// A late release by the old holder leaves the new holder's slot alone.
	relA()
	if l2 := getLease(t, admin, env.Namespace, name); holderOf(l2) != "node-b" || l2.ResourceVersion != l.ResourceVersion {
		t.Errorf("stale release wrote the lease: holder %q rv %s→%s", holderOf(l2), l.ResourceVersion, l2.ResourceVersion)
	}
}

func TestFleetRenewalKeepsTheSlot(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "renew", 1)
	clk := clock.NewFake(epoch)
	a := newFleet(t, env, "node-a", clk)
	b := newFleet(t, env, "node-b", clock.NewFake(epoch))
	lim := remedy.FleetLimit{Max: 1}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	mustAcquire(t, a, action, lim, clk.Now())
	// Six renewals, LeaseDuration/3 apart: 2×LeaseDuration.
	for range 6 {
		if !clk.BlockUntil(1, 10*time.Second) {
			t.Fatal("renewal goroutine not waiting on the clock")
		}
		clk.Advance(20 * time.Second)
		want := clk.Now()
		eventually(t, 10*time.Second, "renewTime "+want.Format(time.TimeOnly), func() (bool, string) {
			l := getLease(t, admin, env.Namespace, name)
			return l.Spec.RenewTime.Time.Equal(want), fmt.Sprintf("renewTime %v", l.Spec.RenewTime)
		})
	}
	l := getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "node-a" || !l.Spec.AcquireTime.Time.Equal(epoch) || *l.Spec.LeaseDurationSeconds != 60 {
		t.Errorf("renewed lease: holder %q acquired %v duration %d", holderOf(l), l.Spec.AcquireTime, *l.Spec.LeaseDurationSeconds)
	}
	mustRefuse(t, b, action, lim, clk.Now())
	mustRefuse(t, b, action, lim, clk.Now().Add(59*time.Second))
}

func TestFleetSameIdentityTakesItsSlotBack(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "restart", 2)
	clk := clock.NewFake(epoch)
	lim := remedy.FleetLimit{Max: 2}
	mustAcquire(t, newFleet(t, env, "node-y", clk), action, lim, clk.Now()) // slot 0
	old := newFleet(t, env, "node-a", clk)
	relOld := mustAcquire(t, old, action, lim, clk.Now()) // slot 1
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 1)
	if h := holderOf(getLease(t, admin, env.Namespace, name)); h != "node-a" {
		t.Fatalf("slot 1 holder %q", h)
	}

	// medic restarts in the same pod: a new instance, the same identity.
	clk.Advance(5 * time.Second)
	restarted := newFleet(t, env, "node-a", clk)
	mustAcquire(t, restarted, action, lim, clk.Now())
	l := getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "node-a" || !l.Spec.AcquireTime.Time.Equal(epoch.Add(5*time.Second)) || *l.Spec.LeaseTransitions != 0 {
		t.Errorf("taken back: holder %q acquired %v transitions %d", holderOf(l), l.Spec.AcquireTime, *l.Spec.LeaseTransitions)
	}
	// An instance does not take the slot it holds a second time.
	msg := mustRefuse(t, restarted, action, lim, clk.Now())
	if !strings.Contains(msg, "2 of 2") || !strings.Contains(msg, "node-y since") || !strings.Contains(msg, "node-a since 12:00:05Z") {
		t.Errorf("message %q", msg)
	}
	// The old instance's release does not touch the new acquisition.
	relOld()
	if h := holderOf(getLease(t, admin, env.Namespace, name)); h != "node-a" {
		t.Errorf("after the old instance's release holder %q", h)
	}
}

func TestFleetDryRunWritesNothing(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "dry", 1)
	clk := clock.NewFake(epoch)
	a, b := newFleet(t, env, "node-a", clk), newFleet(t, env, "node-b", clk)
	lim := remedy.FleetLimit{Max: 1}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	rel, ok, msg, err := a.Acquire(context.Background(), action, lim, clk.Now(), true)
	if err != nil || !ok || msg != "" || rel == nil {
		t.Fatalf("dry run on a free slot: ok=%v msg=%q err=%v", ok, msg, err)
	}
	rel()
	if _, err := admin.CoordinationV1().Leases(env.Namespace).Get(context.Background(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry run created the lease: %v", err)
	}
	if got := a.Held(); len(got) != 0 {
		t.Errorf("Held after dry run = %v", got)
	}

	mustAcquire(t, a, action, lim, clk.Now())
	before := getLease(t, admin, env.Namespace, name).ResourceVersion
	for _, f := range []*kube.Fleet{b, a} {
		rel, ok, msg, err = f.Acquire(context.Background(), action, lim, clk.Now(), true)
		if err != nil || ok || !strings.Contains(msg, "node-a since 12:00:00Z") || rel == nil {
			t.Errorf("dry run on a held slot: ok=%v msg=%q err=%v", ok, msg, err)
		}
		rel()
	}
	if after := getLease(t, admin, env.Namespace, name).ResourceVersion; after != before {
		t.Errorf("dry run wrote the lease: resourceVersion %s → %s", before, after)
	}
}

func TestFleetReleaseIsIdempotent(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "idem", 1)
	clk := clock.NewFake(epoch)
	a, b := newFleet(t, env, "node-a", clk), newFleet(t, env, "node-b", clk)
	lim := remedy.FleetLimit{Max: 1}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	rel := mustAcquire(t, a, action, lim, clk.Now())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(rel)
	}
	wg.Wait()
	l := getLease(t, admin, env.Namespace, name)
	if holderOf(l) != "" {
		t.Errorf("holder after release %q", holderOf(l))
	}
	rel()
	if l2 := getLease(t, admin, env.Namespace, name); l2.ResourceVersion != l.ResourceVersion {
		t.Errorf("second release wrote again: %s → %s", l.ResourceVersion, l2.ResourceVersion)
	}
	if got := a.Held(); len(got) != 0 {
		t.Errorf("Held after release = %v", got)
	}
	mustAcquire(t, b, action, lim, clk.Now())
	rel()
	if h := holderOf(getLease(t, admin, env.Namespace, name)); h != "node-b" {
		t.Errorf("a repeated release freed another holder's slot: holder %q", h)
	}
}

func TestFleetAPIErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cs, err := kubeclient.NewForConfig(&rest.Config{Host: "http://" + addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f, err := kube.NewFleet(kube.FleetOptions{Client: cs, Namespace: "ns", Identity: "node-a", Clock: clock.NewFake(epoch)})
	if err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{false, true} {
		rel, ok, _, err := f.Acquire(context.Background(), "restart-agent", remedy.FleetLimit{Max: 2}, epoch, dry)
		if err == nil || ok || rel == nil || !strings.Contains(err.Error(), "fleet: get lease medic-fleet-restart-agent-") {
			t.Errorf("dryRun=%v unreachable API server: ok=%v err=%v", dry, ok, err)
		}
		rel()
	}
	for _, lim := range []remedy.FleetLimit{{Max: 0}, {Max: -1}, {Max: 1, Hold: -time.Second}} {
		if _, ok, _, err := f.Acquire(context.Background(), "x", lim, epoch, false); err == nil || ok {
			t.Errorf("limit %+v: ok=%v err=%v, want an error", lim, ok, err)
		}
	}
	if _, _, _, err := f.Acquire(context.Background(), "", remedy.FleetLimit{Max: 1}, epoch, false); err == nil {
		t.Error("empty action: no error")
	}
}

func TestFleetForbiddenOutsideItsNamespace(t *testing.T) {
	env := kubetest.Start(t)
	// deploy/base's Role is bound in env.Namespace only.
	f, err := kube.NewFleet(kube.FleetOptions{Client: env.MedicClient(t), Namespace: "default", Identity: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	_, ok, _, err := f.Acquire(context.Background(), "restart-agent", remedy.FleetLimit{Max: 1}, time.Now(), false)
	if ok || !apierrors.IsForbidden(err) {
		t.Errorf("ok=%v err=%v, want Forbidden", ok, err)
	}
}

func TestNewFleetValidates(t *testing.T) {
	cs, _ := kubeclient.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	for _, c := range []struct {
		o    kube.FleetOptions
		want string
	}{
		{kube.FleetOptions{Namespace: "ns", Identity: "p"}, "no client"},
		{kube.FleetOptions{Client: cs, Identity: "p"}, "no namespace"},
		{kube.FleetOptions{Client: cs, Namespace: "ns"}, "no identity"},
		{kube.FleetOptions{Client: cs, Namespace: "ns", Identity: "p", Prefix: "Bad_Prefix"}, "prefix"},
		{kube.FleetOptions{Client: cs, Namespace: "ns", Identity: "p"}, ""},
	} {
		_, err := kube.NewFleet(c.o)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: err %v, want %q", c.o, err, c.want)
		}
	}
}

func TestFleetActionNames(t *testing.T) {
	seen := map[string]string{}
	for _, c := range []struct{ action, prefix string }{
		{"restart-agent", "restart-agent-"},
		{"Restart_Agent", "restart-agent-"},
		{"restart agent", "restart-agent-"},
		{"--Spire.Agent--", "spire-agent-"},
		{"日本", ""},
		{"", ""},
		{strings.Repeat("a", 300), strings.Repeat("a", 40) + "-"},
	} {
		got := kube.FleetAction(c.action)
		if !strings.HasPrefix(got, c.prefix) || len(got) != len(c.prefix)+8 {
			t.Errorf("FleetAction(%q) = %q, want %q + 8 hex digits", c.action, got, c.prefix)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("FleetAction(%q) = %q: %v", c.action, got, errs)
		}
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("FleetAction(%q) = %q as a label value: %v", c.action, got, errs)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q both map to %q", prev, c.action, got)
		}
		seen[got] = c.action
		name := kube.FleetLeaseName(kube.DefaultFleetPrefix, c.action, 9)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 || len(name) > 63 {
			t.Errorf("lease name %q: %v", name, errs)
		}
	}
}

// BenchmarkFleetAcquireRelease: one Acquire + release of a 3-slot action
// against the real API server (what a fleet limit adds to an attempt).
func BenchmarkFleetAcquireRelease(b *testing.B) {
	env := kubetest.Start(b)
	f, err := kube.NewFleet(kube.FleetOptions{Client: env.MedicClient(b), Namespace: env.Namespace, Identity: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	rnd := make([]byte, 3)
	_, _ = rand.Read(rnd)
	action := "bench-" + hex.EncodeToString(rnd)
	lim := remedy.FleetLimit{Max: 3}
	b.ResetTimer()
	for b.Loop() {
		rel, ok, msg, err := f.Acquire(context.Background(), action, lim, time.Now(), false)
		if err != nil || !ok {
			b.Fatalf("acquire: %v %s", err, msg)
		}
		rel()
	}
}

// A slot is written with the time of the write, not of the decision: at
// fleet scale the guards' queries and throttled Lease reads took tens of
// seconds between the engine's now and the write, and a slot written
// with that now was already expired — free for the others — when it
// landed (N=1000: 17 restarts at once against a fleet max of 10).
func TestFleetSlotCountsFromItsWriteNotTheDecision(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "slow", 1)
	clk := clock.NewFake(epoch)
	a, b := newFleet(t, env, "node-a", clk), newFleet(t, env, "node-b", clk)
	lim := remedy.FleetLimit{Max: 1}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	decided := clk.Now()
	clk.Advance(70 * time.Second) // the queries and reads before the write
	mustAcquire(t, a, action, lim, decided)
	l := getLease(t, admin, env.Namespace, name)
	if !l.Spec.RenewTime.Time.Equal(clk.Now()) || !l.Spec.AcquireTime.Time.Equal(clk.Now()) {
		t.Errorf("slot written at %s with renewTime %v acquireTime %v, want the write's time", clk.Now().Format(time.TimeOnly), l.Spec.RenewTime, l.Spec.AcquireTime)
	}
	mustRefuse(t, b, action, lim, clk.Now())
	mustRefuse(t, b, action, lim, clk.Now().Add(59*time.Second))
}

// faultyProxy is a reverse proxy to the real API server (as medic's
// user) that answers 503 to Lease writes while failing is set: an API
// server that is briefly unavailable, which nobody can make the real one
// be on demand. failed counts the refused writes.
type faultyProxy struct {
	failing, failed atomic.Int32
	url             string
}

func newFaultyProxy(t *testing.T, env *kubetest.Env) *faultyProxy {
	t.Helper()
	target, err := url.Parse(env.Medic.Host)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(env.Medic)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultyProxy{}
	rp := &httputil.ReverseProxy{Transport: rt, Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.failing.Load() != 0 && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/leases/") {
			p.failed.Add(1)
			http.Error(w, "injected: unavailable", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// A renewal that fails is retried every LeaseDuration/30, not a whole
// renewal period later: renewals that failed for 30 s of a 60 s Lease
// (two whole periods) still keep the slot.
func TestFleetFailedRenewalIsRetriedBeforeTheSlotExpires(t *testing.T) {
	env := kubetest.Start(t)
	admin := env.AdminClient(t)
	action := fleetAction(t, env, "retry", 1)
	proxy := newFaultyProxy(t, env)
	cs, err := kubeclient.NewForConfig(&rest.Config{Host: proxy.url, QPS: 100, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(epoch)
	a, err := kube.NewFleet(kube.FleetOptions{Client: cs, Namespace: env.Namespace, Identity: "node-a", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	b := newFleet(t, env, "node-b", clock.NewFake(epoch))
	lim := remedy.FleetLimit{Max: 1}
	name := kube.FleetLeaseName(kube.DefaultFleetPrefix, action, 0)

	mustAcquire(t, a, action, lim, clk.Now())
	proxy.failing.Store(1)
	for clk.Now().Before(epoch.Add(50 * time.Second)) {
		if !clk.BlockUntil(1, 10*time.Second) {
			t.Fatal("renewal goroutine not waiting on the clock")
		}
		clk.Advance(2 * time.Second)
	}
	if !clk.BlockUntil(1, 10*time.Second) {
		t.Fatal("renewal goroutine not waiting on the clock")
	}
	if n := proxy.failed.Load(); n < 10 {
		t.Errorf("%d renewals tried between 12:00:20 and 12:00:50, want one every 2 s", n)
	}
	proxy.failing.Store(0)
	clk.Advance(2 * time.Second)
	want := clk.Now()
	eventually(t, 10*time.Second, "renewTime "+want.Format(time.TimeOnly), func() (bool, string) {
		l := getLease(t, admin, env.Namespace, name)
		return l.Spec.RenewTime.Time.Equal(want), fmt.Sprintf("renewTime %v", l.Spec.RenewTime)
	})
	mustRefuse(t, b, action, lim, epoch.Add(61*time.Second))
	mustRefuse(t, b, action, lim, want.Add(59*time.Second))
}
