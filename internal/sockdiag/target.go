package sockdiag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Target is an upstream peer: a host (name or IP literal) and a port. An
// empty Host means any address on Port.
type Target struct {
	Host string
	Port uint16
}

// ParseTarget reads "host:port", "[v6]:port" and, when portOnly is
// allowed, ":port" or a bare "port".
func ParseTarget(s string, portOnly bool) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, errors.New("empty address (want host:port)")
	}
	want := "want host:port (IPv6 as [addr]:port)"
	if portOnly {
		want = "want host:port (IPv6 as [addr]:port), :port or a port number"
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if _, numErr := strconv.ParseUint(s, 10, 16); !portOnly || numErr != nil {
			return Target{}, fmt.Errorf("%q: %s", s, want)
		}
		host, portStr = "", s
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return Target{}, fmt.Errorf("%q: port must be a number from 1 to 65535", s)
	}
	if host == "" && !portOnly {
		return Target{}, fmt.Errorf("%q: a host is required (name or IP)", s)
	}
	if strings.ContainsAny(host, " /") {
		return Target{}, fmt.Errorf("%q: invalid host", s)
	}
	return Target{Host: host, Port: uint16(port)}, nil
}

// String is host:port, or :port for any address.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// Resolve returns every address of Host (an IP literal is returned as
// is), unmapped and without duplicates. A port-only target resolves to nil.
func (t Target) Resolve(ctx context.Context, r *net.Resolver) ([]netip.Addr, error) {
	if t.Host == "" {
		return nil, nil
	}
	if a, err := netip.ParseAddr(t.Host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", t.Host, err)
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", t.Host)
	}
	return out, nil
}

// Matcher selects the sockets whose remote end is a target.
type Matcher struct {
	port  uint16
	any   bool
	addrs map[netip.Addr]bool
}

// NewMatcher matches remote port t.Port on any of addrs (or on any
// address when t has no host).
func NewMatcher(t Target, addrs []netip.Addr) Matcher {
	m := Matcher{port: t.Port, any: t.Host == "", addrs: map[netip.Addr]bool{}}
	for _, a := range addrs {
		m.addrs[a.Unmap().WithZone("")] = true
	}
	return m
}

// Match reports whether s's remote end is the target.
func (m Matcher) Match(s Socket) bool {
	if s.Remote.Port() != m.port {
		return false
	}
	return m.any || m.addrs[s.Remote.Addr().WithZone("")]
}

// ParsePeer parses an action's peer address and the socket states to act
// on, naming the config key at fault (statesKey) in errors.
func ParsePeer(peer string, states []string, statesKey string) (Target, States, error) {
	t, err := ParseTarget(peer, false)
	if err != nil {
		return Target{}, 0, fmt.Errorf("peer: %w", err)
	}
	st, err := ParseStates(states)
	if err != nil {
		return Target{}, 0, fmt.Errorf("%s: %w", statesKey, err)
	}
	return t, st, nil
}
