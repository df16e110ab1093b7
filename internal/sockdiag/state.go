package sockdiag

import (
	"fmt"
	"strings"
)

// State is a TCP socket state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// TCP states.
const (
	Established State = iota + 1
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
	BoundInactive
)

var stateNames = [...]string{
	Established:   "ESTABLISHED",
	SynSent:       "SYN_SENT",
	SynRecv:       "SYN_RECV",
	FinWait1:      "FIN_WAIT1",
	FinWait2:      "FIN_WAIT2",
	TimeWait:      "TIME_WAIT",
	Close:         "CLOSE",
	CloseWait:     "CLOSE_WAIT",
	LastAck:       "LAST_ACK",
	Listen:        "LISTEN",
	Closing:       "CLOSING",
	NewSynRecv:    "NEW_SYN_RECV",
	BoundInactive: "BOUND_INACTIVE",
}

// String is the kernel's name: ESTABLISHED, CLOSE_WAIT, …
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}

// Label is the lower-case name used as a Prometheus label value
// ("established", "close_wait"), as node_exporter does.
func (s State) Label() string { return strings.ToLower(s.String()) }

// ParseState accepts a state name in any case, with '_' or '-'
// ("CLOSE_WAIT", "close-wait", "FIN_WAIT1").
func ParseState(name string) (State, error) {
	n := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(name), "-", "_"))
	for i, s := range stateNames {
		if s != "" && s == n {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q (known: %s)", name, strings.Join(knownStates(), ", "))
}

func knownStates() []string {
	var out []string
	for _, s := range stateNames {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Destroyable reports whether medic may destroy a socket in state s. A
// listening socket is the agent's own server; TIME_WAIT and CLOSE sockets
// belong to no process and hold nothing up; request sockets (SYN_RECV,
// NEW_SYN_RECV) are the server side of a handshake, never an agent's
// outbound connection.
func (s State) Destroyable() bool {
	switch s {
	case Established, SynSent, FinWait1, FinWait2, CloseWait, LastAck, Closing:
		return true
	}
	return false
}

// States is a set of states, as the kernel's idiag_states bit mask (bit n = state n).
type States uint32

// AllStates selects every state.
const AllStates States = 0xffffffff

// StatesOf builds a set.
func StatesOf(ss ...State) States {
	var m States
	for _, s := range ss {
		m |= 1 << s
	}
	return m
}

// Has reports whether s is in the set.
func (m States) Has(s State) bool { return m&(1<<s) != 0 }

// ParseStates parses a list of names; the error names the first bad one.
func ParseStates(names []string) (States, error) {
	var m States
	for _, n := range names {
		s, err := ParseState(n)
		if err != nil {
			return 0, err
		}
		m |= 1 << s
	}
	return m, nil
}
