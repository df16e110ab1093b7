//go:build linux

package sockdiag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Wire sizes (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID  = 48 // struct inet_diag_sockid
	sizeofReqV2   = 8 + sizeofSockID
	sizeofDiagMsg = 4 + sizeofSockID + 20 // struct inet_diag_msg
	attrInfo      = 2                     // INET_DIAG_INFO
	sizeofRtAttr  = 4
)

// DefaultTimeout bounds one netlink exchange when ctx has no deadline.
const DefaultTimeout = 5 * time.Second

var seq atomic.Uint32

// Dump lists the TCP sockets of both address families in the given states
// (the kernel filters by state). withInfo asks for tcp_info as well.
func Dump(ctx context.Context, states States, withInfo bool) ([]Socket, error) {
	var out []Socket
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ss, err := dumpFamily(ctx, fam, states, withInfo)
		if fam == unix.AF_INET6 && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT)) {
			continue // a kernel without IPv6 has no IPv6 sockets
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump of IPv%d TCP sockets: %w", familyVersion(fam), err)
		}
		out = append(out, ss...)
	}
	return out, nil
}

func familyVersion(fam uint8) int {
	if fam == unix.AF_INET6 {
		return 6
	}
	return 4
}

func dumpFamily(ctx context.Context, fam uint8, states States, withInfo bool) ([]Socket, error) {
	req := make([]byte, sizeofReqV2)
	req[0] = fam
	req[1] = unix.IPPROTO_TCP
	if withInfo {
		req[2] = 1 << (attrInfo - 1)
	}
	binary.NativeEndian.PutUint32(req[4:8], uint32(states))
	// Wildcard id: no ports, no addresses, no cookie.
	binary.NativeEndian.PutUint32(req[8+40:], 0xffffffff)
	binary.NativeEndian.PutUint32(req[8+44:], 0xffffffff)

	var out []Socket
	err := exchange(ctx, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, req, func(b []byte) error {
		s, err := parseSocket(b)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// Destroy aborts the socket s (SOCK_DESTROY): its owner's next read or
// write fails with ECONNABORTED, and the peer gets a RST. The socket is
// found by its exact tuple and cookie as dumped; if it no longer exists
// the error wraps ErrGone. EPERM wraps ErrPermission, EOPNOTSUPP wraps
// ErrNotSupported.
func Destroy(ctx context.Context, s Socket) error {
	req := make([]byte, sizeofReqV2)
	req[0] = unix.AF_INET
	if s.Family == 6 {
		req[0] = unix.AF_INET6
	}
	req[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:8], uint32(AllStates))
	copy(req[8:], s.id[:])
	err := exchange(ctx, unix.SOCK_DESTROY, unix.NLM_F_ACK, req, func([]byte) error { return nil })
	if err != nil {
		return fmt.Errorf("destroy %s: %w", s, classify(err))
	}
	return nil
}

// classify maps the kernel's answer to SOCK_DESTROY onto the package's
// sentinel errors, keeping the errno in the chain.
func classify(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case unix.EPERM, unix.EACCES:
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case unix.EOPNOTSUPP:
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	case unix.ENOENT, unix.ESTALE:
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

// exchange sends one request on a fresh NETLINK_SOCK_DIAG socket and
// feeds every answer's payload to each, until NLMSG_DONE or the ack.
func exchange(ctx context.Context, typ, flags uint16, body []byte, each func([]byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	timeout := DefaultTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("netlink SO_RCVTIMEO: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("netlink SO_SNDTIMEO: %w", err)
	}
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}

	n := seq.Add(1)
	// struct nlmsghdr: len, type, flags, seq, pid (0: the kernel assigns).
	msg := make([]byte, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|flags)
	binary.NativeEndian.PutUint32(msg[8:12], n)
	copy(msg[unix.SizeofNlMsghdr:], body)
	if err := unix.Sendto(fd, msg, 0, kernel); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}

	buf := make([]byte, 1<<16)
	for {
		nr, _, rflags, _, err := unix.Recvmsg(fd, buf, nil, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("netlink: no answer from the kernel within %s", timeout)
		case err != nil:
			return fmt.Errorf("netlink receive: %w", err)
		case rflags&unix.MSG_TRUNC != 0:
			return fmt.Errorf("netlink receive: message truncated")
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			return fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != n {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e < 0 {
						return syscall.Errno(-e)
					}
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return fmt.Errorf("netlink: short error message")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e < 0 {
					return syscall.Errno(-e)
				}
				return nil // the ack
			}
			if err := each(m.Data); err != nil {
				return err
			}
		}
	}
}

// parseSocket decodes struct inet_diag_msg and its attributes.
func parseSocket(b []byte) (Socket, error) {
	if len(b) < sizeofDiagMsg {
		return Socket{}, fmt.Errorf("inet_diag_msg: short (%d bytes)", len(b))
	}
	var s Socket
	fam := b[0]
	s.State = State(b[1])
	id := b[4 : 4+sizeofSockID]
	copy(s.id[:], id)
	sport := binary.BigEndian.Uint16(id[0:2])
	dport := binary.BigEndian.Uint16(id[2:4])
	var src, dst netip.Addr
	switch fam {
	case unix.AF_INET:
		s.Family = 4
		src = netip.AddrFrom4([4]byte(id[4:8]))
		dst = netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		s.Family = 6
		src = netip.AddrFrom16([16]byte(id[4:20])).Unmap()
		dst = netip.AddrFrom16([16]byte(id[20:36])).Unmap()
	default:
		return Socket{}, fmt.Errorf("inet_diag_msg: unexpected family %d", fam)
	}
	s.Local = netip.AddrPortFrom(src, sport)
	s.Remote = netip.AddrPortFrom(dst, dport)
	s.Cookie = uint64(binary.NativeEndian.Uint32(id[40:44])) | uint64(binary.NativeEndian.Uint32(id[44:48]))<<32
	rest := b[4+sizeofSockID:]
	s.UID = binary.NativeEndian.Uint32(rest[12:16])
	s.Inode = binary.NativeEndian.Uint32(rest[16:20])

	attrs := b[sizeofDiagMsg:]
	for len(attrs) >= sizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		t := binary.NativeEndian.Uint16(attrs[2:4])
		if l < sizeofRtAttr || l > len(attrs) {
			break
		}
		if t == attrInfo {
			s.Info = parseTCPInfo(attrs[sizeofRtAttr:l])
		}
		al := (l + 3) &^ 3
		if al > len(attrs) {
			break
		}
		attrs = attrs[al:]
	}
	return s, nil
}

// parseTCPInfo reads struct tcp_info. An older kernel sends a shorter
// struct; the fields it lacks stay zero.
func parseTCPInfo(b []byte) *TCPInfo {
	var ti unix.TCPInfo
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&ti)), unsafe.Sizeof(ti)), b)
	return &TCPInfo{
		RTT:          time.Duration(ti.Rtt) * time.Microsecond,
		RTTVar:       time.Duration(ti.Rttvar) * time.Microsecond,
		Retransmits:  ti.Retransmits,
		TotalRetrans: ti.Total_retrans,
		SegsOut:      ti.Segs_out,
		BytesAcked:   ti.Bytes_acked,
		Unacked:      ti.Unacked,
		LastDataRecv: time.Duration(ti.Last_data_recv) * time.Millisecond,
	}
}
