package wsasync

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// conn runs one WebSocket connection: a reader (the goroutine that calls run)
// and a writer goroutine that owns every write to the socket.
//
// On Linux, a plain TCP connection's reader does not wait long for the peer's
// next message: at a message boundary with nothing to read, once the peer has
// been silent for the linger (Options.ReaderLinger), it arms the socket in a
// shared poller (poll_linux.go) and exits, and the poller starts a new reader
// when bytes arrive. Everything the reader needs past a message boundary is
// in conn, so the new reader carries on where the old one stopped.
type conn struct {
	// What the writer touches when a send on out wakes it comes first, in
	// as few cache lines as will hold it: a broadcast wakes thousands of
	// writers whose connections have all gone cold in the cache, and each
	// line is a miss. (In the fan-out profile, the first loads of these
	// fields, then spread over the struct, were among the largest costs
	// outside the write syscalls.)
	out <-chan Message
	// wake (cap 1) tells the writer to look at what is pending: a ping or
	// pong due, a close asked for, the handler returned, the reader done,
	// the socket closed. The writer waits on out and wake alone, so that an
	// idle writer costs the runtime two waiting entries, not one per cause.
	wake      chan struct{}
	cfg       *config
	bw        *writeBuf // taken from the pool for a batch of writes only
	batched   int       // bytes written in this batch; past maxBatch it is flushed
	wdeadline int64     // the write deadline last set, in Unix nanoseconds
	closeSent atomic.Bool
	returned  atomic.Bool // the handler has returned (then wake)
	readEnded atomic.Bool // the last reader is done (then wake)
	closed    atomic.Bool // the socket is closed (then dead is closed too)
	server    bool
	// handler is set when the connection runs a Handler (GoWebsocket),
	// whose return ends the connection; Listener's and Dial's out is drained
	// until the caller closes it.
	handler bool
	whdr    [ws.MaxHeaderSize]byte
	nc      net.Conn
	wraw    syscall.RawConn // the socket's, for raw writes (socketSink); nil: none

	// Parking the reader in the poller (poll_linux.go). poll is the
	// reader's own; pstate, pfd, epfd and pid are guarded by mu.
	poll   bool  // the reader may park: a pollable socket, and a linger
	pstate uint8 // pollReading, pollArmed or pollClosed
	pfd    int32 // the socket's descriptor, valid while pstate != pollClosed

	in   chan<- Message
	errs chan<- error
	// done, when not nil (Dial, Accept), is closed once the connection's
	// goroutines have all exited.
	done chan<- struct{}

	rd   socketReader
	rhdr [ws.MaxHeaderSize]byte
	ctl  [ws.MaxControlFramePayloadSize]byte // reader's control payloads

	closing    chan struct{} // closed once this end has sent its close frame
	dead       chan struct{} // closed once the socket is closed
	writerDone chan struct{}
	deadOnce   sync.Once
	// delivering is set while the reader waits for the handler to take a
	// message: the peer's silence then is not the peer's doing.
	delivering atomic.Bool
	epfd       int32 // the poller's epoll descriptor while pid != 0
	// ping runs keepalive: a callback timer rather than a channel the
	// writer waits on, so that no timer code runs on the writer's stack,
	// which then stays at its least while idle.
	ping     *time.Timer
	nextPing atomic.Int64 // Unix nanoseconds; keepalive's own
	pingDue  bool         // guarded by mu: the writer owes a ping

	mu      sync.Mutex
	pong    [ws.MaxControlFramePayloadSize]byte
	pongLen uint8
	pongDue bool
	term    *CloseError // close the writer must send before closing the socket
	end     *CloseError // why the connection ended; the first cause wins
	pid     uint64      // the poller's key for this connection, 0 until attached
	readFn  func()      // c.read, made once: a reader started on it allocates nothing
}

var (
	writerPool = sync.Pool{New: func() any { return newWriteBuf(DefaultBufferSize) }}
)

// A writeBuf is a connection's write buffer, taken for a batch of writes.
// Where the socket allows (see socketSink), it writes through sink, which
// arms the write deadline only for a write that would block.
type writeBuf struct {
	bufio.Writer
	sink socketSink
}

func newWriteBuf(size int) *writeBuf {
	wb := &writeBuf{Writer: *bufio.NewWriterSize(nil, size)}
	wb.sink.init()
	return wb
}

// newConn sets up a connection. pending holds bytes the handshake already read
// past its end (a client may send frames right behind its request); they are
// read before the socket.
func newConn(nc net.Conn, cfg *config, server bool, pending []byte, in chan<- Message, out <-chan Message, errs chan<- error, handler bool) *conn {
	c := &conn{
		nc:         nc,
		cfg:        cfg,
		server:     server,
		in:         in,
		out:        out,
		errs:       errs,
		handler:    handler,
		wake:       make(chan struct{}, 1),
		closing:    make(chan struct{}),
		dead:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	c.rd.init(nc, cfg.readBufSize, pending)
	if rawWrites {
		c.wraw = c.rd.raw
	}
	if pollSupported && cfg.linger > 0 && c.rd.raw != nil {
		c.poll = true
		c.readFn = c.read
	}
	if cfg.pingInterval > 0 {
		c.nextPing.Store(time.Now().Add(cfg.pingInterval).UnixNano())
		// Under mu, which keepalive takes, so that a callback that
		// fires at once sees the timer.
		c.mu.Lock()
		c.ping = time.AfterFunc(cfg.pingInterval, c.keepalive)
		c.mu.Unlock()
	}
	return c
}

// buffered returns the bytes a bufio.Reader holds, copied, or nil.
func buffered(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	p, _ := br.Peek(br.Buffered())
	return slices.Clone(p)
}

// dialConn makes the channels of a connection whose caller owns them (Dial,
// Accept), starts it, and returns them.
func dialConn(nc net.Conn, cfg *config, server bool, pending []byte) *Conn {
	in := make(chan Message, cfg.inBuf)
	out := make(chan Message, cfg.outBuf)
	errs := make(chan error, 1)
	c := newConn(nc, cfg, server, pending, in, out, errs, false)
	done := make(chan struct{})
	c.done = done
	go c.run()
	return &Conn{In: in, Out: out, Errs: errs, Done: done}
}

// run starts the writer and reads.
func (c *conn) run() {
	go c.writeLoop()
	c.read()
}

// read reads until the connection has ended and then finishes it, unless the
// reader parks in the poller: then this goroutine exits, and the poller or
// closeSocket starts read again on a new one, exactly once.
func (c *conn) read() {
	if c.readLoop() {
		return
	}
	c.finish()
}

// finish is the last reader's: it reports the end on errs once the socket is
// closed and waits for the writer.
func (c *conn) finish() {
	<-c.dead
	c.mu.Lock()
	end := c.end
	c.mu.Unlock()
	if end == nil {
		end = &CloseError{Code: StatusAbnormalClosure}
	}
	select {
	case c.errs <- end:
	default:
	}
	close(c.errs)
	<-c.writerDone
	c.rd.close()
	if c.done != nil {
		close(c.done)
	}
}

// setEnd records why the connection ended, unless a cause is known already.
func (c *conn) setEnd(e *CloseError) {
	c.mu.Lock()
	if c.end == nil {
		c.end = e
	}
	c.mu.Unlock()
}

func (c *conn) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// terminate asks the writer to send e's close frame (unless a close was sent
// already) and close the socket.
func (c *conn) terminate(e *CloseError) {
	c.mu.Lock()
	if c.end == nil {
		c.end = e
	}
	if c.term == nil {
		c.term = e
	}
	c.mu.Unlock()
	c.notify()
}

// drop closes the socket at once, without a close frame.
func (c *conn) drop(e *CloseError) {
	c.setEnd(e)
	c.closeSocket()
}

// closeSocket closes the socket, once. A reader parked in the poller is taken
// out of it first (so that the poller never touches a closed descriptor) and
// started again, to see the socket closed and finish the connection.
func (c *conn) closeSocket() {
	c.deadOnce.Do(func() {
		parked := c.unpoll()
		c.nc.Close()
		c.closed.Store(true)
		close(c.dead)
		c.notify()
		if parked {
			go c.readFn()
		}
	})
}

func (c *conn) isDead() bool { return c.closed.Load() }

// ---- reading ----

// readLoop reads frames and delivers messages until the connection ends
// (false), or until, at a message boundary with nothing to read, it parks the
// connection in the poller (true): the caller must then return at once,
// touching nothing, since a new reader may already be running.
//
// Its variables are the same at every point where it parks as at its start
// (no message under way, not discarding, in open), so a new reader starts
// with them afresh where the parked one stopped.
func (c *conn) readLoop() (parked bool) {
	inOpen := true
	closeIn := func() {
		if inOpen {
			inOpen = false
			close(c.in)
		}
	}
	defer func() {
		if !parked {
			closeIn()
			c.readEnded.Store(true)
			c.notify()
		}
	}()

	side := ws.StateClientSide
	if c.server {
		side = ws.StateServerSide
	}
	var (
		typ  MessageType
		msg  []byte
		frag bool
		// discard is set once this end has failed the connection with the
		// framing still intact (read limit, invalid UTF-8): data frames
		// are skipped until the peer's close frame, so that the socket is
		// not closed under bytes the peer is still sending, which would
		// reset the connection and lose the close frame on its side.
		discard bool
	)
	for {
		if c.poll && !frag && !discard && c.rd.drained() {
			idle, err := c.await()
			if err != nil {
				c.readFailed(err)
				return false
			}
			if idle {
				return true // parked
			}
		}
		h, err := ws.ReadHeaderBuffer(&c.rd, c.rhdr[:])
		if err != nil {
			if !discard {
				c.readFailed(err)
			}
			return false
		}
		state := side
		if frag {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			c.protocolError(err)
			return false
		}
		if h.OpCode.IsControl() {
			p := c.ctl[:h.Length]
			if _, err := io.ReadFull(&c.rd, p); err != nil {
				if !discard {
					c.readFailed(err)
				}
				return false
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if !discard { // a failed connection answers nothing more
					c.queuePong(p)
				}
			case ws.OpClose:
				code, reason, ok := parseClose(p)
				switch {
				case !ok && code == StatusInvalidFramePayloadData:
					c.terminate(&CloseError{Code: code, Reason: "invalid UTF-8 in close reason", Err: ErrInvalidUTF8})
				case !ok:
					c.protocolError(errors.New("malformed close frame"))
				case c.closeSent.Load():
					// The peer's answer to this end's close: the end is
					// this end's close, recorded by the writer.
					c.mu.Lock()
					if c.term == nil {
						c.term = &CloseError{Code: code, Reason: reason, Remote: true}
					}
					c.mu.Unlock()
					c.notify()
				default:
					c.terminate(&CloseError{Code: code, Reason: reason, Remote: true})
				}
				return false
			}
			continue
		}

		if h.OpCode != ws.OpContinuation {
			typ = MessageType(h.OpCode)
		}
		if limit := c.cfg.readLimit; !discard && limit > 0 && h.Length > limit-int64(len(msg)) {
			c.terminate(&CloseError{Code: StatusMessageTooBig, Reason: "message too big", Err: ErrReadLimit})
			discard, msg = true, nil
			closeIn()
		}
		if discard {
			if _, err := io.CopyN(io.Discard, &c.rd, h.Length); err != nil {
				return false // the close is pending: the writer sends it and closes
			}
			frag = !h.Fin
			continue
		}
		msg, err = c.readPayload(msg, h)
		if err != nil {
			c.readFailed(err)
			return false
		}
		if frag = !h.Fin; frag {
			continue
		}
		if typ == TextMessage && !utf8.Valid(msg) {
			c.terminate(&CloseError{Code: StatusInvalidFramePayloadData, Reason: "invalid UTF-8", Err: ErrInvalidUTF8})
			release(msg)
			discard, msg = true, nil
			closeIn()
			continue
		}
		// Once this end has sent its close, what still arrives is
		// discarded: the reader waits only for the peer's close frame.
		if !c.deliver(Message{Type: typ, Data: msg}) {
			return false
		}
		msg = nil
	}
}

// await is the reader's at a message boundary with nothing buffered, when it
// may park: it waits for bytes in the runtime's poller as long as the peer sent
// something less than the linger ago, then parks the connection in the shared
// poller (true) unless bytes are there after all.
func (c *conn) await() (parked bool, err error) {
	s := &c.rd
	linger := int64(c.cfg.linger)
	if s.lingers(linger) {
		if err := s.fillLinger(linger); err != errIdle {
			return false, err
		}
	}
	s.clearDeadline()
	ok, err := s.fillNow()
	if err != nil || ok {
		return false, err
	}
	return c.park(), nil
}

// deliver hands m to the handler, waiting while it is busy; false means the
// socket is closed. Once this end has sent its close, m is discarded.
func (c *conn) deliver(m Message) bool {
	select {
	case c.in <- m:
		return true
	default:
	}
	c.delivering.Store(true)
	defer func() {
		c.rd.touch() // the wait was the handler's, not the peer's
		c.delivering.Store(false)
	}()
	select {
	case c.in <- m:
	case <-c.closing:
		release(m.Data)
	case <-c.dead:
		release(m.Data)
		return false
	}
	return true
}

// chunk is how much of a payload is allocated before its bytes arrive when
// no read limit bounds it.
const chunk = 64 << 10

// readPayload appends h's payload, unmasked, to msg.
func (c *conn) readPayload(msg []byte, h ws.Header) ([]byte, error) {
	if h.Length == 0 {
		return msg, nil
	}
	if msg == nil && (c.cfg.readLimit > 0 || h.Length <= chunk) {
		// Bounded by the read limit: one buffer of the size, taken from
		// the released ones when there is one.
		msg = payload(int(h.Length))
	}
	start := len(msg)
	for rest := h.Length; rest > 0; {
		n := int(min(rest, chunk))
		if c.cfg.readLimit > 0 {
			n = int(rest)
		}
		msg = slices.Grow(msg, n)
		at := len(msg)
		msg = msg[:at+n]
		if _, err := io.ReadFull(&c.rd, msg[at:]); err != nil {
			return msg, err
		}
		rest -= int64(n)
	}
	if h.Masked {
		ws.Cipher(msg[start:], h.Mask, 0)
	}
	return msg, nil
}

func (c *conn) queuePong(p []byte) {
	c.mu.Lock()
	c.pongLen = uint8(copy(c.pong[:], p))
	c.pongDue = true
	c.mu.Unlock()
	c.notify()
}

func (c *conn) protocolError(err error) {
	reason := err.Error()
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
	}
	c.terminate(&CloseError{Code: StatusProtocolError, Reason: reason, Err: fmt.Errorf("%w: %v", ErrProtocol, err)})
}

func (c *conn) readFailed(err error) {
	switch {
	case c.isDead():
		// This end closed the socket; the cause is recorded.
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.drop(&CloseError{Code: StatusAbnormalClosure, Err: ErrPingTimeout})
	case errors.Is(err, ws.ErrHeaderLengthMSB), errors.Is(err, ws.ErrHeaderLengthUnexpected):
		c.protocolError(err)
	default:
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.drop(&CloseError{Code: StatusAbnormalClosure, Err: err})
	}
}

// ---- writing ----

func (c *conn) writeLoop() {
	defer close(c.writerDone)
	defer c.releaseWriter()

	if c.ping != nil {
		defer c.ping.Stop()
	}
	var closeTimer *time.Timer
	defer func() {
		if closeTimer != nil {
			closeTimer.Stop()
		}
	}()
	var closeWait <-chan time.Time

	out := c.out
	waiting := c.handler // for the handler to return
	for !c.isDead() {
		select {
		case m, ok := <-out:
			switch {
			case !ok:
				out = nil
				c.closeNormally()
			case c.closeSent.Load():
				// Discarded: the connection is closing.
				m.releaseTaken()
			default:
				c.send(m)
			}
		case <-c.wake:
			c.servePending()
			if waiting && c.returned.Load() {
				// The handler returned: write what it queued, then
				// close.
				waiting = false
				for len(out) > 0 && !c.closeSent.Load() && !c.isDead() {
					m, ok := <-out
					if !ok {
						out = nil
						break
					}
					c.send(m)
				}
				c.closeNormally()
			}
			if c.readEnded.Load() {
				c.servePending()
				c.closeSocket()
			}
		case <-closeWait:
			c.closeSocket()
		}
		if c.closeSent.Load() && closeTimer == nil && !c.isDead() {
			closeTimer = time.NewTimer(c.cfg.closeTimeout)
			closeWait = closeTimer.C
		}
		if c.bw != nil && (len(out) == 0 || c.batched >= maxBatch) {
			c.flush()
		}
	}

	// The socket is closed. Discard sends on out so that nobody blocks on
	// it, until the handler returns (GoWebsocket) or out is closed.
	for out != nil && !(c.handler && c.returned.Load()) {
		select {
		case m, ok := <-out:
			if !ok {
				return
			}
			m.releaseTaken()
		case <-c.wake:
		}
	}
}

// closeNormally closes with 1000 for the handler (out closed, or the handler
// returned), unless the reader already asked for a close: the handler may be
// reacting to in closed because of it, and that close must win.
func (c *conn) closeNormally() {
	c.mu.Lock()
	term := c.term
	c.mu.Unlock()
	if term != nil {
		c.servePending()
		return
	}
	c.sendClose(StatusNormalClosure, nil)
}

// keepalive runs on the ping timer: it drops a peer silent for the ping
// interval plus the pong timeout (unless the wait is the handler's), has the
// writer send a ping when one is due, and sets the timer for whichever comes
// next.
func (c *conn) keepalive() {
	if c.isDead() {
		return
	}
	now := time.Now()
	silentUntil := time.Unix(0, c.rd.lastRead.Load()).Add(c.cfg.idle)
	if !c.delivering.Load() && !now.Before(silentUntil) {
		c.drop(&CloseError{Code: StatusAbnormalClosure, Err: ErrPingTimeout})
		return
	}
	next := time.Unix(0, c.nextPing.Load())
	if !now.Before(next) {
		c.mu.Lock()
		c.pingDue = true
		c.mu.Unlock()
		c.notify()
		next = now.Add(c.cfg.pingInterval)
		c.nextPing.Store(next.UnixNano())
	}
	if silentUntil.After(now) && silentUntil.Before(next) {
		next = silentUntil
	}
	c.mu.Lock()
	ping := c.ping
	c.mu.Unlock()
	ping.Reset(next.Sub(now))
}

// servePending writes a due ping or pong and carries out a requested close.
func (c *conn) servePending() {
	c.mu.Lock()
	due, n := c.pongDue, c.pongLen
	var p [ws.MaxControlFramePayloadSize]byte
	copy(p[:], c.pong[:n])
	c.pongDue = false
	pingDue := c.pingDue
	c.pingDue = false
	term := c.term
	c.mu.Unlock()

	if pingDue && !c.closeSent.Load() {
		c.writeFrame(ws.OpPing, nil)
	}

	if due && !c.closeSent.Load() {
		c.writeFrame(ws.OpPong, p[:n])
	}
	if term == nil {
		return
	}
	if !c.closeSent.Load() {
		code := term.Code
		reason := term.Reason
		if term.Remote {
			reason = "" // echo the code only
		}
		c.sendClose(code, []byte(reason))
	}
	c.flush()
	// The socket is closed once the reader returns (it has the peer's
	// close, or failed) or when the close timeout passes.
}

// releaseTaken releases a recycled message's Data once the writer is done
// with it.
func (m Message) releaseTaken() {
	if m.recycle {
		release(m.Data)
	}
}

// send writes one message from out.
func (c *conn) send(m Message) {
	defer m.releaseTaken()
	switch m.Type {
	case TextMessage:
		c.writeFrame(ws.OpText, m.Data)
	case BinaryMessage:
		c.writeFrame(ws.OpBinary, m.Data)
	case CloseMessage:
		if len(m.Data) == 0 {
			c.sendClose(StatusNoStatusReceived, nil)
			return
		}
		code, reason, ok := parseClose(m.Data)
		if !ok || len(m.Data) > ws.MaxControlFramePayloadSize {
			c.invalid(fmt.Errorf("%w: close frame payload %q", ErrInvalidMessage, m.Data))
			return
		}
		c.sendClose(code, []byte(reason))
	default:
		c.invalid(fmt.Errorf("%w: message type %v", ErrInvalidMessage, m.Type))
	}
}

func (c *conn) invalid(err error) {
	c.setEnd(&CloseError{Code: StatusInternalError, Reason: "internal error", Err: err})
	c.sendClose(StatusInternalError, []byte("internal error"))
}

// sendClose writes a close frame, once. StatusNoStatusReceived sends none.
func (c *conn) sendClose(code StatusCode, reason []byte) {
	if c.closeSent.Swap(true) {
		return
	}
	close(c.closing)
	var p [ws.MaxControlFramePayloadSize]byte
	n := 0
	if code != StatusNoStatusReceived {
		p[0], p[1] = byte(code>>8), byte(code)
		n = 2 + copy(p[2:], reason)
	}
	c.writeFrame(ws.OpClose, p[:n])
	c.flush()
	// After a failed write the failure is the recorded cause already.
	c.setEnd(&CloseError{Code: code, Reason: string(reason)})
}

// maxBatch bounds the bytes written under one write deadline.
const maxBatch = 64 << 10

// writer takes a pooled buffer for a batch of writes. Writing through the
// socket's RawConn, it leaves the write deadline to the writes that would
// block; otherwise it arms the deadline for the batch.
func (c *conn) writer() *bufio.Writer {
	if c.bw == nil {
		if c.cfg.writeBufSize == DefaultBufferSize {
			c.bw = writerPool.Get().(*writeBuf)
		} else {
			c.bw = newWriteBuf(c.cfg.writeBufSize)
		}
		if c.wraw != nil {
			c.bw.sink.c = c
			c.bw.Reset(&c.bw.sink)
		} else {
			c.bw.Reset(c.nc)
			c.armWrite()
		}
	}
	return &c.bw.Writer
}

// armWrite makes sure a batch of writes has at least WriteTimeout before
// the write deadline, moving it to now + 1.5 WriteTimeout when it has less:
// batches then cost one call into the runtime's timers per half
// WriteTimeout, not one each. (With a tighter margin, a broadcast to
// thousands of connections every few seconds spent a tenth of its CPU
// setting deadlines.)
func (c *conn) armWrite() {
	wt := c.cfg.writeTimeout
	if wt <= 0 {
		return
	}
	now := time.Now()
	if time.Duration(c.wdeadline-now.UnixNano()) >= wt {
		return
	}
	d := now.Add(wt + wt/2)
	c.wdeadline = d.UnixNano()
	c.nc.SetWriteDeadline(d)
}

func (c *conn) releaseWriter() {
	if c.bw == nil {
		return
	}
	c.bw.sink.c = nil
	if c.cfg.writeBufSize == DefaultBufferSize {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
	}
	c.bw = nil
}

// writeFrame writes one whole frame into the write buffer.
func (c *conn) writeFrame(op ws.OpCode, p []byte) {
	if c.isDead() {
		return
	}
	bw := c.writer()
	c.batched += len(p)
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if c.server {
		err := ws.WriteHeaderBuffer(bw, h, c.whdr[:])
		if err == nil {
			_, err = bw.Write(p)
		}
		c.writeFailed(err)
		return
	}
	// Client frames are masked into the buffer, leaving the caller's
	// bytes as they were.
	h.Masked = true
	mask := rand.Uint32()
	h.Mask = [4]byte{byte(mask), byte(mask >> 8), byte(mask >> 16), byte(mask >> 24)}
	err := ws.WriteHeaderBuffer(bw, h, c.whdr[:])
	for off := 0; err == nil && off < len(p); {
		if bw.Available() == 0 {
			if err = bw.Flush(); err != nil {
				break
			}
		}
		b := bw.AvailableBuffer()
		b = append(b, p[off:min(len(p), off+cap(b))]...)
		ws.Cipher(b, h.Mask, off)
		off += len(b)
		_, err = bw.Write(b)
	}
	c.writeFailed(err)
}

func (c *conn) flush() {
	if c.bw == nil {
		return
	}
	err := c.bw.Flush()
	c.batched = 0
	c.releaseWriter()
	c.writeFailed(err)
}

func (c *conn) writeFailed(err error) {
	if err == nil {
		return
	}
	if c.isDead() {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = ErrWriteTimeout
	}
	c.drop(&CloseError{Code: StatusAbnormalClosure, Err: err})
}
