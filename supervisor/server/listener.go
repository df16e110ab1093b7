package server

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// DefaultMaxConns is the default cap on open connections per listener.
const DefaultMaxConns = 256

// connCap bounds a listener's open connections without ever blocking
// Accept. At the cap, a new connection makes room by closing the
// connection that has been waiting longest without a request in flight
// (idle keep-alive, or connected and silent); when every connection is
// busy the new one is closed at once. So a flood of idle connections
// cannot exhaust file descriptors nor lock out /healthz: the newest
// connection, about to send its request, is the last to be evicted.
// (netutil.LimitListener blocks Accept at the cap instead, which leaves a
// health check in the kernel backlog until an idle connection times out.)
type connCap struct {
	net.Listener
	max int

	mu    sync.Mutex
	open  map[*capConn]struct{}
	idle  *list.List // *capConn without a request in flight, oldest first
	shed  atomic.Uint64
	evict atomic.Uint64
}

type capConn struct {
	net.Conn
	l    *connCap
	elem *list.Element // in l.idle, or nil while a request is in flight
	once sync.Once
}

func newConnCap(l net.Listener, max int) *connCap {
	if max <= 0 {
		max = DefaultMaxConns
	}
	return &connCap{Listener: l, max: max, open: map[*capConn]struct{}{}, idle: list.New()}
}

// Accept returns the next connection, making room for it first.
func (l *connCap) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &capConn{Conn: c, l: l}
		l.mu.Lock()
		var victim *capConn
		if len(l.open) >= l.max {
			if e := l.idle.Front(); e != nil {
				victim = e.Value.(*capConn)
				l.forget(victim)
			}
		}
		full := len(l.open) >= l.max
		if !full {
			l.open[cc] = struct{}{}
			cc.elem = l.idle.PushBack(cc)
		}
		l.mu.Unlock()
		if victim != nil {
			l.evict.Add(1)
			victim.Conn.Close()
		}
		if full {
			l.shed.Add(1)
			c.Close()
			continue
		}
		return cc, nil
	}
}

// forget removes c from the books. Caller holds l.mu.
func (l *connCap) forget(c *capConn) {
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	delete(l.open, c)
}

// connState is the http.Server's ConnState hook: it keeps the idle list.
func (l *connCap) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*capConn)
	if !ok || c.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, open := l.open[c]; !open {
		return
	}
	switch st {
	case http.StateActive:
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
	case http.StateIdle:
		if c.elem != nil {
			l.idle.Remove(c.elem)
		}
		c.elem = l.idle.PushBack(c)
	case http.StateHijacked, http.StateClosed:
		l.forget(c)
	}
}

// Close closes the connection and frees its slot.
func (c *capConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.forget(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// ConnStats counts what the connection cap did.
type ConnStats struct {
	Open    int    `json:"open"`
	Max     int    `json:"max"`
	Evicted uint64 `json:"evicted"` // idle connections closed to make room
	Shed    uint64 `json:"shed"`    // new connections closed because every slot was busy
}

func (l *connCap) stats() ConnStats {
	l.mu.Lock()
	n := len(l.open)
	l.mu.Unlock()
	return ConnStats{Open: n, Max: l.max, Evicted: l.evict.Load(), Shed: l.shed.Load()}
}
