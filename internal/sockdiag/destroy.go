package sockdiag

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
)

// Selection picks the sockets DestroyTo aborts.
type Selection struct {
	// Target is the remote end; its name is resolved on every call.
	Target Target
	// States the sockets must be in; only Destroyable states are acted on.
	States States
	// LocalPort, when non-zero, also requires this local port.
	LocalPort uint16
	// ExcludeOwn leaves alone the sockets medic's own process holds.
	ExcludeOwn bool
	// DryRun finds and reports the sockets but destroys nothing.
	DryRun bool
	// Resolver resolves Target.Host; nil is net.DefaultResolver.
	Resolver *net.Resolver
}

// Skipped is a matching socket that was left alone, and why.
type Skipped struct {
	Socket Socket
	Reason string
}

// Outcome is what DestroyTo found and did, for the audit record.
type Outcome struct {
	// Addresses the target resolved to.
	Addresses []netip.Addr
	// Destroyed sockets (or, in a dry run, the ones that would be).
	Destroyed []Socket
	// Skipped sockets matched the target but were not destroyed.
	Skipped []Skipped
}

// DestroyTo resolves the target, dumps the TCP sockets in the selected
// states and destroys every one whose remote end is the target. A socket
// that closes on its own meanwhile is skipped as "gone". A refusal for
// lack of CAP_NET_ADMIN or kernel support stops at once (ErrPermission,
// ErrNotSupported); any other failure is reported and the rest still tried.
func DestroyTo(ctx context.Context, sel Selection) (Outcome, error) {
	var out Outcome
	addrs, err := sel.Target.Resolve(ctx, sel.Resolver)
	if err != nil {
		return out, err
	}
	out.Addresses = addrs
	m := NewMatcher(sel.Target, addrs)
	var own map[uint32]bool
	if sel.ExcludeOwn {
		if own, err = OwnInodes(); err != nil {
			return out, err
		}
	}
	socks, err := Dump(ctx, sel.States, false)
	if err != nil {
		return out, err
	}
	var errs []error
	for _, s := range socks {
		if !m.Match(s) || !sel.States.Has(s.State) {
			continue
		}
		if sel.LocalPort != 0 && s.Local.Port() != sel.LocalPort {
			continue
		}
		switch {
		case !s.State.Destroyable():
			out.Skipped = append(out.Skipped, Skipped{s, "state " + s.State.String() + " is never destroyed"})
			continue
		case s.Inode != 0 && own[s.Inode]:
			out.Skipped = append(out.Skipped, Skipped{s, "held by medic itself"})
			continue
		case sel.DryRun:
			out.Destroyed = append(out.Destroyed, s)
			continue
		}
		err := Destroy(ctx, s)
		switch {
		case err == nil:
			out.Destroyed = append(out.Destroyed, s)
		case errors.Is(err, ErrGone):
			out.Skipped = append(out.Skipped, Skipped{s, "closed before it could be destroyed"})
		case errors.Is(err, ErrPermission), errors.Is(err, ErrNotSupported), ctx.Err() != nil:
			return out, err
		default:
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// Strings lists sockets in audit form ("local->remote STATE").
func Strings(ss []Socket) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

// SkippedStrings lists skipped sockets with their reasons.
func SkippedStrings(ss []Skipped) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Socket.String() + ": " + s.Reason
	}
	return out
}

// AddrStrings lists addresses as text.
func AddrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// Describe names a state set the way messages read: "established",
// "close_wait or fin_wait2".
func (m States) Describe() string {
	var names []string
	for s := State(1); s < 32; s++ {
		if m.Has(s) && int(s) < len(stateNames) && stateNames[s] != "" {
			names = append(names, s.Label())
		}
	}
	switch len(names) {
	case 0:
		return "no"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
