package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/medic-sidecar/medic/internal/kubeclient"
	coordv1 "github.com/medic-sidecar/medic/internal/kubeclient/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"

	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/supervisor/remedy"
)

// Fleet defaults and labels.
const (
	DefaultFleetPrefix        = "medic-fleet"
	DefaultFleetLeaseDuration = 60 * time.Second

	// LabelManagedBy and LabelFleetAction label every slot Lease.
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelFleetAction = "medic.io/fleet-action"
	// AnnotationFleetReleased marks a slot that its holder released while
	// its Hold runs on (value: the release time, RFC 3339). Such a slot is
	// taken even for its own holder until it expires.
	AnnotationFleetReleased = "medic.io/fleet-released"

	// fleetCallTimeout bounds each write of a slot (take, renewal,
	// release) and the reads of renewals and releases (at most a sixth of
	// the LeaseDuration: see callTimeout).
	fleetCallTimeout = 10 * time.Second
	// fleetWriteTries is how many times a renewal or release is written
	// when it meets a conflict (re-reading the Lease in between).
	fleetWriteTries = 3
	// fleetActionMax bounds the readable part of a sanitised action name.
	fleetActionMax = 40
)

// FleetOptions configure a Fleet.
type FleetOptions struct {
	// Client gets, creates and updates coordination.k8s.io/v1 Leases.
	Client *kubeclient.Clientset
	// Namespace holds the slot Leases: the namespace every medic of the
	// fleet runs in.
	Namespace string
	// Identity is this instance's holder identity: its pod name.
	Identity string
	// Clock drives renewals and releases (nil: the wall clock).
	Clock  clock.Clock
	Logger *slog.Logger
	// LeaseDuration is how long a held slot survives without renewal
	// (default 60s; rounded up to whole seconds). A medic that dies while
	// holding a slot frees it after this long.
	LeaseDuration time.Duration
	// Prefix of the Lease names (default "medic-fleet"), a DNS-1123 label.
	Prefix string
}

// Fleet is a fleet-wide counting semaphore on Kubernetes Leases: action
// has Max slots, the Leases <prefix>-<action>-<i>, and an instance runs the
// action only while it holds one. Slots are taken with optimistic
// concurrency (create, or update at the resourceVersion read), renewed
// LeaseDuration/3 after each write while held (a failed renewal is retried
// every LeaseDuration/30), and free themselves LeaseDuration after the
// last write, so a crashed holder does not block the fleet.
// Only get, create and update are used on Leases.
//
// Every write carries the time it is sent (never the caller's earlier
// decision time) and is bounded by LeaseDuration/6, so a slot that lands
// is valid for at least 5/6 of LeaseDuration, and a renewal has 2/3 of it
// (about 20 tries) to land before the others may take the slot.
type Fleet struct {
	o   FleetOptions
	log *slog.Logger
	ttl int32 // LeaseDuration in seconds

	// acquire serialises Acquire so that this instance never takes the
	// same slot twice (see holding).
	acquire sync.Mutex

	mu sync.Mutex
	// holding maps the Lease names this instance holds (from Acquire until
	// release has written) to their action.
	holding map[string]string
}

var _ remedy.Fleet = (*Fleet)(nil)

// NewFleet validates o and fills defaults.
func NewFleet(o FleetOptions) (*Fleet, error) {
	if o.Client == nil {
		return nil, errors.New("fleet: no client")
	}
	if o.Namespace == "" {
		return nil, errors.New("fleet: no namespace (set POD_NAMESPACE from the Downward API)")
	}
	if o.Identity == "" {
		return nil, errors.New("fleet: no identity (set POD_NAME from the Downward API)")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultFleetPrefix
	}
	if errs := utilvalidation.IsDNS1123Label(o.Prefix); len(errs) > 0 {
		return nil, fmt.Errorf("fleet: prefix %q: %s", o.Prefix, strings.Join(errs, "; "))
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultFleetLeaseDuration
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Fleet{
		o:       o,
		log:     o.Logger.With("component", "fleet"),
		ttl:     ceilSeconds(o.LeaseDuration),
		holding: map[string]string{},
	}, nil
}

// FleetAction is action in a form fit for a DNS-1123 label and a label
// value: lower case, runs of characters outside [a-z0-9] as one '-', at
// most 40 of them, then '-' and 8 hex digits of the SHA-256 of the
// original name, so that "Restart_Agent" and "restart-agent" differ.
func FleetAction(action string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(action) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > fleetActionMax {
		s = strings.TrimRight(s[:fleetActionMax], "-")
	}
	sum := sha256.Sum256([]byte(action))
	h := hex.EncodeToString(sum[:4])
	if s == "" {
		return h
	}
	return s + "-" + h
}

// FleetLeaseName is the name of slot i of action: <prefix>-<FleetAction>-<i>.
func FleetLeaseName(prefix, action string, i int) string {
	return fmt.Sprintf("%s-%s-%d", prefix, FleetAction(action), i)
}

// Held reports how many slots this instance holds, by action.
func (f *Fleet) Held() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, action := range f.holding {
		out[action]++
	}
	return out
}

// Acquire implements remedy.Fleet. It reads every slot of action, then
// tries to take one — first a slot its own identity holds but this
// instance does not (a restarted medic taking its slot back), then the
// first free one. A take that loses a race (AlreadyExists, Conflict)
// re-reads that slot once before moving on. release is never nil.
func (f *Fleet) Acquire(ctx context.Context, action string, limit remedy.FleetLimit, now time.Time, dryRun bool) (func(), bool, string, error) {
	noop := func() {}
	if action == "" {
		return noop, false, "", errors.New("fleet: empty action name")
	}
	if limit.Max < 1 {
		return noop, false, "", fmt.Errorf("fleet: %q: max must be at least 1, not %d", action, limit.Max)
	}
	if limit.Hold < 0 {
		return noop, false, "", fmt.Errorf("fleet: %q: negative hold %s", action, limit.Hold)
	}
	f.acquire.Lock()
	defer f.acquire.Unlock()

	leases := make([]*coordv1.Lease, limit.Max)
	var own, rest []int
	for i := range leases {
		l, err := f.get(ctx, FleetLeaseName(f.o.Prefix, action, i))
		if err != nil {
			return noop, false, "", err
		}
		leases[i] = l
		if l != nil && holder(l) == f.o.Identity && f.free(l, now) {
			own = append(own, i)
		} else {
			rest = append(rest, i)
		}
	}

	var held []string
	contested := 0
	for _, i := range append(own, rest...) {
		name, l := FleetLeaseName(f.o.Prefix, action, i), leases[i]
		for try := 0; ; try++ {
			if !f.free(l, now) {
				held = append(held, describe(l))
				break
			}
			if dryRun {
				return noop, true, "", nil
			}
			got, err := f.take(ctx, name, action, l, limit.Hold, now)
			if err == nil {
				return f.hold(got, action, limit.Hold), true, "", nil
			}
			if !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
				return noop, false, "", err
			}
			if try > 0 {
				contested++
				break
			}
			if l, err = f.get(ctx, name); err != nil {
				return noop, false, "", err
			}
		}
	}
	msg := fmt.Sprintf("fleet limit: %d of %d %q slots held (%s)", len(held), limit.Max, action, strings.Join(held, ", "))
	if contested > 0 {
		msg += fmt.Sprintf(", %d contested", contested)
	}
	return noop, false, msg, nil
}

// get reads a slot; a missing Lease is (nil, nil).
func (f *Fleet) get(ctx context.Context, name string) (*coordv1.Lease, error) {
	l, err := f.o.Client.Leases(f.o.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: get lease %s: %w", name, err)
	}
	return l, nil
}

// free says whether slot l can be taken by this instance at now.
func (f *Fleet) free(l *coordv1.Lease, now time.Time) bool {
	if l == nil {
		return true
	}
	h := holder(l)
	if h == "" || expired(l, now) {
		return true
	}
	if h != f.o.Identity || l.Annotations[AnnotationFleetReleased] != "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, mine := f.holding[l.Name]
	return !mine
}

// take writes this instance as the holder of slot name: Create when l is
// nil, else Update at l's resourceVersion. API errors are returned as the
// client's (wrapped), so apierrors predicates still apply.
func (f *Fleet) take(ctx context.Context, name, action string, l *coordv1.Lease, hold time.Duration, now time.Time) (*coordv1.Lease, error) {
	leases := f.o.Client.Leases(f.o.Namespace)
	create := l == nil
	if create {
		l = &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.o.Namespace}}
	} else {
		l = l.DeepCopy()
	}
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[LabelManagedBy] = "medic"
	l.Labels[LabelFleetAction] = FleetAction(action)
	delete(l.Annotations, AnnotationFleetReleased)
	if holder(l) != f.o.Identity {
		var n int32
		if l.Spec.LeaseTransitions != nil {
			n = *l.Spec.LeaseTransitions
		}
		if !create {
			n++
		}
		l.Spec.LeaseTransitions = &n
	}
	// The slot counts from its write, not from the decision: the guards'
	// queries and the reads above may have taken longer than a
	// LeaseDuration at fleet scale (then a slot stamped with now was
	// expired, free for the others, when it landed).
	id, at := f.o.Identity, metav1.NewMicroTime(laterOf(now, f.o.Clock.Now()))
	l.Spec.HolderIdentity = &id
	l.Spec.AcquireTime = &at
	l.Spec.RenewTime = &at
	d := f.duration(at.Time, hold, at.Time)
	l.Spec.LeaseDurationSeconds = &d

	ctx, cancel := context.WithTimeout(ctx, f.callTimeout())
	defer cancel()
	var out *coordv1.Lease
	var err error
	if create {
		out, err = leases.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("fleet: create lease %s: %w", name, err)
		}
	} else {
		out, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		if err != nil {
			return nil, fmt.Errorf("fleet: update lease %s: %w", name, err)
		}
	}
	f.log.Debug("fleet slot taken", "action", action, "lease", name, "lag", at.Time.Sub(now))
	return out, nil
}

// duration is the leaseDurationSeconds of a held slot renewed at now: one
// LeaseDuration, or longer while the Hold from acquired runs, so a holder
// that dies mid-action still keeps the slot until acquired+Hold.
func (f *Fleet) duration(acquired time.Time, hold time.Duration, now time.Time) int32 {
	return max(f.ttl, ceilSeconds(acquired.Add(hold).Sub(now)))
}

// callTimeout bounds one API call of a slot: fleetCallTimeout, at most a
// sixth of the LeaseDuration.
func (f *Fleet) callTimeout() time.Duration { return min(fleetCallTimeout, f.o.LeaseDuration/6) }

// hold registers a taken slot, starts its renewals and returns its release.
func (f *Fleet) hold(l *coordv1.Lease, action string, hold time.Duration) func() {
	ctx, cancel := context.WithCancel(context.Background())
	s := &slot{f: f, action: action, name: l.Name, hold: hold, lease: l, acquired: l.Spec.AcquireTime.Time, cancel: cancel, done: make(chan struct{})}
	f.mu.Lock()
	f.holding[l.Name] = action
	f.mu.Unlock()
	go s.renew(ctx)
	return s.release
}

// slot is one held slot.
type slot struct {
	f        *Fleet
	action   string
	name     string // the Lease's
	hold     time.Duration
	acquired time.Time // acquireTime as stored: identifies this acquisition
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once

	// lease is the slot as last written; owned by the renew goroutine,
	// then (after done) by release.
	lease *coordv1.Lease
}

// errLost: the slot was taken by another acquisition (or deleted).
var errLost = errors.New("slot lost to another holder")

// renew writes renewTime LeaseDuration/3 after the slot's last write,
// retrying a failed renewal every LeaseDuration/30, until release cancels
// ctx or the slot is lost. Should the slot expire before a renewal lands
// (the API server unreachable for 2/3 of a LeaseDuration), it says so at
// error level: from then on another instance may take it.
func (s *slot) renew(ctx context.Context) {
	defer close(s.done)
	f := s.f
	every, retry := f.o.LeaseDuration/3, max(f.o.LeaseDuration/30, 100*time.Millisecond)
	next, lapsed := s.written().Add(every), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.o.Clock.After(next.Sub(f.o.Clock.Now())):
		}
		err := s.write(ctx, func(l *coordv1.Lease) {
			now := f.o.Clock.Now()
			at := metav1.NewMicroTime(now)
			d := f.duration(s.acquired, s.hold, now)
			l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &at, &d
		})
		now := f.o.Clock.Now()
		switch {
		case err == nil:
			next, lapsed = s.written().Add(every), false
			continue
		case ctx.Err() != nil:
			return
		case errors.Is(err, errLost):
			f.log.Error("fleet slot lost while held: another instance took it; the fleet limit may be exceeded until this attempt ends",
				"action", s.action, "lease", s.lease.Name)
			return
		}
		next = now.Add(retry)
		if until := expiry(s.lease); !lapsed && !now.Before(until) {
			lapsed = true
			f.log.Error("fleet slot expired before it could be renewed: another instance may take it while this attempt runs",
				"action", s.action, "lease", s.lease.Name, "expired", until, "err", err)
			continue
		}
		f.log.Warn("fleet slot renewal failed; retrying", "action", s.action, "lease", s.lease.Name, "in", retry, "err", err)
	}
}

// written is the time of the slot's last write (its renewTime).
func (s *slot) written() time.Time {
	if s.lease.Spec.RenewTime != nil {
		return s.lease.Spec.RenewTime.Time
	}
	return s.acquired
}

// release stops renewals and gives the slot back: while acquire+Hold is
// ahead it keeps the holder and lets the Lease expire then; otherwise it
// clears the holder. Idempotent; errors are logged.
func (s *slot) release() {
	s.once.Do(func() {
		f := s.f
		// Logged before anything waits: the attempt has ended here (the
		// fleet simulation measures the attempts' overlap with it).
		f.log.Debug("fleet slot released by its holder", "action", s.action, "lease", s.name)
		s.cancel()
		<-s.done
		ctx, cancel := context.WithTimeout(context.Background(), 2*f.callTimeout())
		defer cancel()
		err := s.write(ctx, func(l *coordv1.Lease) {
			now := f.o.Clock.Now()
			if until := s.acquired.Add(s.hold); s.hold > 0 && until.After(now) {
				at := metav1.NewMicroTime(now)
				d := ceilSeconds(until.Sub(now))
				l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &at, &d
				if l.Annotations == nil {
					l.Annotations = map[string]string{}
				}
				l.Annotations[AnnotationFleetReleased] = now.UTC().Format(time.RFC3339)
				return
			}
			l.Spec.HolderIdentity = nil
			delete(l.Annotations, AnnotationFleetReleased)
		})
		switch {
		case errors.Is(err, errLost):
			f.log.Info("fleet slot already taken by another holder at release", "action", s.action, "lease", s.lease.Name)
		case err != nil:
			f.log.Warn("fleet slot release failed; it frees itself when its lease expires", "action", s.action, "lease", s.lease.Name, "err", err)
		default:
			f.log.Debug("fleet slot released", "action", s.action, "lease", s.lease.Name, "hold", s.hold)
		}
		f.mu.Lock()
		delete(f.holding, s.lease.Name)
		f.mu.Unlock()
	})
}

// write applies mutate to the slot and updates it, re-reading on conflict
// as long as the Lease is still this acquisition's (errLost otherwise).
func (s *slot) write(ctx context.Context, mutate func(*coordv1.Lease)) error {
	leases := s.f.o.Client.Leases(s.f.o.Namespace)
	name := s.lease.Name
	l := s.lease.DeepCopy()
	var err error
	for range fleetWriteTries {
		cctx, cancel := context.WithTimeout(ctx, s.f.callTimeout())
		mutate(l)
		var out *coordv1.Lease
		out, err = leases.Update(cctx, l, metav1.UpdateOptions{})
		cancel()
		if err == nil {
			s.lease = out
			return nil
		}
		if !apierrors.IsConflict(err) {
			return fmt.Errorf("fleet: update lease %s: %w", name, err)
		}
		cctx, cancel = context.WithTimeout(ctx, s.f.callTimeout())
		fresh, gerr := s.f.get(cctx, name)
		cancel()
		if gerr != nil {
			return gerr
		}
		if !s.owns(fresh) {
			return errLost
		}
		l = fresh
	}
	return fmt.Errorf("fleet: update lease %s: %w", name, err)
}

// owns says whether l is still this acquisition: our holder identity and
// the acquireTime we wrote, not released.
func (s *slot) owns(l *coordv1.Lease) bool {
	return l != nil && holder(l) == s.f.o.Identity && l.Spec.AcquireTime != nil &&
		l.Spec.AcquireTime.Time.Equal(s.acquired) && l.Annotations[AnnotationFleetReleased] == ""
}

// laterOf is the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// holder is l's holder identity ("" for none).
func holder(l *coordv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// expiry is when l frees itself: renewTime (else acquireTime) plus
// leaseDurationSeconds; zero when it has neither time.
func expiry(l *coordv1.Lease) time.Time {
	t := l.Spec.RenewTime
	if t == nil {
		t = l.Spec.AcquireTime
	}
	if t == nil {
		return time.Time{}
	}
	var d int32
	if l.Spec.LeaseDurationSeconds != nil {
		d = *l.Spec.LeaseDurationSeconds
	}
	return t.Add(time.Duration(d) * time.Second)
}

// expired says whether l's hold has ended by now.
func expired(l *coordv1.Lease, now time.Time) bool {
	return !expiry(l).After(now)
}

// describe names a held slot's holder for the refusal message.
func describe(l *coordv1.Lease) string {
	s := holder(l)
	if l.Spec.AcquireTime != nil {
		s += " since " + l.Spec.AcquireTime.UTC().Format("15:04:05Z")
	}
	if l.Annotations[AnnotationFleetReleased] != "" {
		s += " (hold until " + expiry(l).UTC().Format("15:04:05Z") + ")"
	}
	return s
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int32 {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		return 1
	}
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(s)
}
