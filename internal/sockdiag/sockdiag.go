// Package sockdiag is medic's view of the kernel's TCP sockets in its own
// network namespace (which, in a pod, is the agent's): a NETLINK_SOCK_DIAG
// dump of IPv4 and IPv6 TCP sockets with their tcp_info, and SOCK_DESTROY
// of one exact socket (tuple + cookie, so a socket that closed and whose
// tuple was reused is never hit).
//
// The vishvananda/netlink helpers were not enough here: its SocketDestroy
// is IPv4-only and matches by tuple without the cookie, and its dumps
// cannot filter by state. The wire structures are small, so they are
// encoded here directly (include/uapi/linux/inet_diag.h).
//
// Dumping needs no privilege. Destroying needs CAP_NET_ADMIN in the
// namespace's user namespace and a kernel built with CONFIG_INET_DIAG_DESTROY.
package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Socket is one TCP socket as the kernel reported it.
type Socket struct {
	// Family is 4 or 6: the address family of the socket itself. An IPv6
	// socket talking to an IPv4 peer (v4-mapped) has Family 6, while Local
	// and Remote are unmapped to plain IPv4.
	Family int
	State  State
	Local  netip.AddrPort
	Remote netip.AddrPort
	// Inode is the socket inode ("socket:[N]" in /proc/<pid>/fd); 0 for a
	// socket no process holds (TIME_WAIT, orphaned FIN_WAIT2).
	Inode uint32
	// UID owns the socket.
	UID uint32
	// Cookie is the kernel's unique socket id; Destroy checks it.
	Cookie uint64
	// Info is tcp_info, when the dump asked for it and the kernel sent it.
	Info *TCPInfo

	// id is the raw inet_diag_sockid as dumped, sent back verbatim by Destroy.
	id [sizeofSockID]byte
}

// String is "local->remote STATE", the form used in audit records.
func (s Socket) String() string {
	return fmt.Sprintf("%s->%s %s", s.Local, s.Remote, s.State)
}

// TCPInfo is the part of the kernel's struct tcp_info medic uses.
type TCPInfo struct {
	// RTT is the smoothed round-trip time (tcpi_rtt).
	RTT time.Duration
	// RTTVar is the RTT mean deviation (tcpi_rttvar).
	RTTVar time.Duration
	// Retransmits is the number of unrecovered RTO timeouts in a row
	// (tcpi_retransmits); non-zero while the peer is not acknowledging.
	Retransmits uint8
	// TotalRetrans counts retransmitted segments over the connection's life.
	TotalRetrans uint32
	// SegsOut counts segments sent, retransmissions included.
	SegsOut uint32
	// BytesAcked counts payload bytes the peer acknowledged.
	BytesAcked uint64
	// Unacked is the number of segments in flight.
	Unacked uint32
	// LastDataRecv is the time since data was last received.
	LastDataRecv time.Duration
}

// Errors callers branch on. Both are permanent for a remediation: neither
// retrying nor waiting will change them.
var (
	// ErrPermission: SOCK_DESTROY was refused (EPERM/EACCES).
	ErrPermission = errors.New("destroying sockets needs CAP_NET_ADMIN in the pod's network namespace " +
		"(add NET_ADMIN to the medic container's securityContext.capabilities.add)")
	// ErrNotSupported: the kernel has no SOCK_DESTROY for TCP (EOPNOTSUPP).
	ErrNotSupported = errors.New("the kernel does not support SOCK_DESTROY for TCP " +
		"(it needs CONFIG_INET_DIAG_DESTROY=y)")
	// ErrGone: the socket closed, or its tuple now belongs to another
	// socket, between the dump and the destroy. Nothing was destroyed.
	ErrGone = errors.New("socket no longer exists")
)
