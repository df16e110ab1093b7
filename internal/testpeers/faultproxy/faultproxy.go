// Package faultproxy is a test peer: a TCP proxy between a client and a
// server whose behaviour is switched at runtime to inject network faults.
//
//   - Pass forwards bytes both ways.
//   - Stall is a blackhole: connections stay open, nothing is forwarded in
//     either direction and nothing is closed, the way a hung (SIGSTOPped)
//     peer or a silently dropped path looks to the client. New connections
//     are accepted and held too. Switching back to Pass releases what was
//     held.
//   - Reset aborts every open connection with a TCP RST and resets each new
//     one at once.
package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// Mode is the proxy's fault mode.
type Mode int32

// Modes.
const (
	Pass Mode = iota
	Stall
	Reset
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Stall:
		return "stall"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// Proxy forwards connections from its listener to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	mode   Mode
	gate   chan struct{} // closed while in Pass; replaced on leaving Pass
	conns  map[*pair]struct{}
	closed bool

	accepted atomic.Int64
	wg       sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{} // closed by close
}

// close shuts both sides; with rst the kernel sends RST instead of FIN.
func (p *pair) close(rst bool) {
	p.once.Do(func() {
		close(p.done)
		for _, c := range []net.Conn{p.client, p.server} {
			if c == nil {
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok && rst {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
}

// Start listens on listen (e.g. "127.0.0.1:0") and proxies every accepted
// connection to target, starting in Pass mode.
func Start(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", listen, err)
	}
	p := &Proxy{ln: ln, target: target, gate: make(chan struct{}), conns: map[*pair]struct{}{}}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted counts connections accepted since Start.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Active counts connections currently open through the proxy.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the fault mode; it applies to open connections at once.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	if p.mode == Pass {
		p.gate = make(chan struct{})
	}
	p.mode = m
	switch m {
	case Pass:
		close(p.gate)
	case Reset:
		for c := range p.conns {
			c.close(true)
		}
	}
}

// Close stops listening and closes every connection. It waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.close(false)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

// gateFor returns the channel to wait on before forwarding, or nil when
// the connection must be dropped (reset mode or closing).
func (p *Proxy) gateFor() (chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate, !p.closed && p.mode != Reset
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	pr := &pair{client: client, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.mode == Reset {
		p.mu.Unlock()
		pr.close(true)
		return
	}
	p.conns[pr] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, pr)
		p.mu.Unlock()
	}()

	server, err := net.Dial("tcp", p.target)
	if err != nil {
		pr.close(true) // upstream down: the client sees a reset, as with no proxy
		return
	}
	// pr may have been closed (reset, Close) while dialling; close() runs
	// under p.mu for those, so checking and assigning under p.mu means a
	// later close always sees server.
	p.mu.Lock()
	dead := p.closed || p.mode == Reset
	select {
	case <-pr.done:
		dead = true
	default:
	}
	if !dead {
		pr.server = server
	}
	p.mu.Unlock()
	if dead {
		if tc, ok := server.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = server.Close()
		pr.close(true)
		return
	}
	done := make(chan struct{}, 2)
	go p.pump(pr, server, client, done)
	go p.pump(pr, client, server, done)
	<-done
	pr.close(p.Mode() == Reset)
	<-done
}

// pump copies src to dst, holding each chunk at the gate while the proxy
// is not in Pass mode.
func (p *Proxy) pump(pr *pair, dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(pr) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or error: serve closes both sides
		}
	}
}

// wait blocks until the proxy passes traffic; false means the connection
// was reset or closed meanwhile.
func (p *Proxy) wait(pr *pair) bool {
	gate, ok := p.gateFor()
	if !ok {
		return false
	}
	select {
	case <-gate:
		_, ok = p.gateFor()
		return ok
	case <-pr.done:
		return false
	}
}
