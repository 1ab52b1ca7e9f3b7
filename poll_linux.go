//go:build linux

package wsasync

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// The shared poller lets an idle connection hold no reader goroutine.
//
// A reader that has consumed everything the peer sent, at a message boundary,
// arms its socket in an epoll instance (EPOLLONESHOT) and exits. The poller, a
// single goroutine, waits on that instance through the runtime's own poller
// (the epoll descriptor is itself pollable), so it holds no thread while
// waiting, and starts a new reader for each socket that becomes readable or
// hung up. The epoll instance and its goroutine exist only while a connection
// that has parked at least once is open: the last one to close stops them.
//
// Each connection's pstate, under its mu, decides who owns the reader:
//
//	pollReading --park--> pollArmed       the reader armed the socket and exits
//	pollArmed   --event--> pollReading    the poller starts a new reader
//	any         --closeSocket--> pollClosed
//
// closeSocket removes the socket from the epoll instance before closing it,
// under mu, so the descriptor number (kept in pfd) is only ever used while the
// socket is open; if it finds pollArmed, no reader runs, and it starts one to
// finish the connection. The poller, for its part, only starts a reader when
// it finds pollArmed. So exactly one reader runs or is owed at any time, and
// exactly one finishes the connection.

const pollSupported = true

// Reader states, guarded by conn.mu.
const (
	pollReading = iota // a reader goroutine runs (the initial state)
	pollArmed          // the socket is armed and no reader runs
	pollClosed         // the socket is closed or closing: never armed again
)

// pollEvents are the events a parked socket waits for: bytes, the peer's
// shutdown (errors and hang-ups are always reported), once per arming.
const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// epoller is one epoll instance and the state of its goroutine.
type epoller struct {
	f      *os.File // the epoll descriptor, registered with the runtime's poller
	raw    syscall.RawConn
	fd     int
	waitFn func(fd uintptr) bool // ep.wait, made once
	events [128]syscall.EpollEvent
	ready  [128]*conn
}

// pollers holds the process's epoll instance while connections are attached
// to it. conns maps the keys in epoll's event data to connections: epoll
// never holds a Go pointer.
var pollers struct {
	mu    sync.Mutex
	ep    *epoller
	conns map[uint64]*conn
	last  uint64 // the last key given; keys are never reused
}

func newEpoller() (*epoller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	ep := &epoller{f: os.NewFile(uintptr(fd), "wsasync-epoll"), fd: fd}
	// A descriptor the runtime's poller did not take has no deadlines:
	// waiting on it would fail, so it is not used.
	if err := ep.f.SetReadDeadline(time.Time{}); err != nil {
		ep.f.Close()
		return nil, err
	}
	if ep.raw, err = ep.f.SyscallConn(); err != nil {
		ep.f.Close()
		return nil, err
	}
	ep.waitFn = ep.wait
	return ep, nil
}

// loop runs the poller until its epoll descriptor is closed.
func (ep *epoller) loop() {
	for ep.raw.Read(ep.waitFn) == nil {
	}
}

// wait is called by the runtime's poller with the epoll descriptor: it
// takes the ready events without blocking and hands them out, and reports
// false, to be called again once more are ready, when it has taken them all.
func (ep *epoller) wait(fd uintptr) bool {
	for {
		n, err := syscall.EpollWait(int(fd), ep.events[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			// epoll_wait fails only on a bad descriptor or buffer;
			// neither happens while ep is open.
			return false
		}
		ep.dispatch(n)
		if n < len(ep.events) {
			// The ready list was emptied; a socket armed or ready
			// from now on wakes the runtime's poller again.
			return false
		}
	}
}

// dispatch starts a reader for each of the first n events' connections that
// is still armed.
func (ep *epoller) dispatch(n int) {
	pollers.mu.Lock()
	for i := range n {
		e := &ep.events[i]
		ep.ready[i] = pollers.conns[uint64(uint32(e.Fd))|uint64(uint32(e.Pad))<<32]
	}
	pollers.mu.Unlock()
	for i := range n {
		c := ep.ready[i]
		ep.ready[i] = nil
		if c == nil {
			continue // closed since
		}
		c.mu.Lock()
		armed := c.pstate == pollArmed
		if armed {
			c.pstate = pollReading
		}
		c.mu.Unlock()
		if armed {
			go c.readFn()
		}
	}
}

// park arms the socket, attaching the connection to the poller the first
// time. true means the reader must return at once and touch nothing more: a
// new reader starts when bytes arrive or the socket is closed. false means it
// must go on reading (with blocking reads), because the socket is closing or
// cannot be polled.
func (c *conn) park() bool {
	c.mu.Lock()
	if c.pstate == pollClosed {
		c.mu.Unlock()
		return false
	}
	var stop *epoller
	var err error
	if c.pid == 0 {
		stop, err = c.attach()
	} else {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(c.pid)), Pad: int32(uint32(c.pid >> 32))}
		err = syscall.EpollCtl(int(c.epfd), syscall.EPOLL_CTL_MOD, int(c.pfd), &ev)
	}
	if err != nil {
		c.poll = false // read the rest of the connection the plain way
		c.mu.Unlock()
		if stop != nil {
			stop.f.Close()
		}
		return false
	}
	c.pstate = pollArmed
	c.mu.Unlock()
	return true
}

// attach adds the socket to the poller, armed, starting the poller if it is
// not running. Called under c.mu with c.pstate != pollClosed. On failure, a
// poller left with no connection is returned to be closed once c.mu is
// released.
func (c *conn) attach() (stop *epoller, err error) {
	fd := -1
	if err := c.rd.raw.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return nil, err
	}
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	ep := pollers.ep
	if ep == nil {
		if ep, err = newEpoller(); err != nil {
			return nil, err
		}
		pollers.ep = ep
		pollers.conns = make(map[uint64]*conn)
		go ep.loop()
	}
	pollers.last++
	id := pollers.last
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	// Under pollers.mu: the event cannot be looked up before the
	// connection is in conns; under c.mu, it cannot start a reader before
	// park records pollArmed.
	if err := syscall.EpollCtl(ep.fd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		if len(pollers.conns) == 0 {
			pollers.ep, pollers.conns = nil, nil
			return ep, os.NewSyscallError("epoll_ctl", err)
		}
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	pollers.conns[id] = c
	c.epfd, c.pfd, c.pid = int32(ep.fd), int32(fd), id
	return nil, nil
}

// unpoll is closeSocket's, before it closes the socket: the connection can
// never park again, its socket leaves the epoll instance (stopped if it was
// the last one), and true means a reader was parked, so none runs: the
// caller must start one once the socket is closed.
func (c *conn) unpoll() (parked bool) {
	if c.readFn == nil {
		return false // never pollable
	}
	c.mu.Lock()
	parked = c.pstate == pollArmed
	c.pstate = pollClosed
	var stop *epoller
	if c.pid != 0 {
		// The epoll instance is open: it is closed only once no
		// connection is attached, and this one still is.
		ev := syscall.EpollEvent{}
		syscall.EpollCtl(int(c.epfd), syscall.EPOLL_CTL_DEL, int(c.pfd), &ev)
		pollers.mu.Lock()
		delete(pollers.conns, c.pid)
		if len(pollers.conns) == 0 {
			stop = pollers.ep
			pollers.ep, pollers.conns = nil, nil
		}
		pollers.mu.Unlock()
		c.pid = 0
	}
	c.mu.Unlock()
	if stop != nil {
		// Outside every lock: Close waits for the poller's goroutine to
		// leave wait, which may be taking them.
		stop.f.Close()
	}
	return parked
}

// rawReads, rawWrites: a connection with a RawConn reads with readFD in the
// RawConn's callback, and writes through a socketSink.
const rawReads, rawWrites = true, true

func readFD(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }

// A socketSink writes a connection's bytes through its RawConn. A write the
// socket takes at once touches no deadline; one that would block arms the
// write deadline (armWrite), then waits in the runtime's poller, which ends
// the wait when the deadline passes. (Arming the deadline for every batch
// cost a broadcast to 10,000 connections a tenth of the server's CPU, and
// more in the stack growth of parked writer goroutines.) Its state lives in
// the pooled writeBuf, so that a write allocates nothing.
type socketSink struct {
	c   *conn
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // s.write, made once
}

func (s *socketSink) init() { s.fn = s.write }

func (s *socketSink) Write(p []byte) (int, error) {
	c := s.c
	if c.wdeadline != 0 && time.Now().UnixNano() >= c.wdeadline {
		// An earlier wait's deadline has passed: the runtime would fail
		// this write before trying it.
		c.nc.SetWriteDeadline(time.Time{})
		c.wdeadline = 0
	}
	s.p, s.n, s.err = p, 0, nil
	err := c.wraw.Write(s.fn)
	n := s.n
	if err == nil {
		err = s.err
	}
	s.p = nil
	return n, err
}

// write is the RawConn callback: false asks the runtime to wait until the
// socket is writable.
func (s *socketSink) write(fd uintptr) bool {
	for s.n < len(s.p) {
		k, err := syscall.Write(int(fd), s.p[s.n:])
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			s.c.armWrite()
			return false
		case err != nil:
			s.err = os.NewSyscallError("write", err)
			return true
		case k <= 0:
			s.err = io.ErrShortWrite
			return true
		default:
			s.n += k
		}
	}
	return true
}
