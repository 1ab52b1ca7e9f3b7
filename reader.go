package wsasync

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// socketReader reads the connection through a buffer that it takes from a
// pool only once bytes have arrived and gives back as soon as they are
// consumed, so that an idle connection holds no read buffer.
//
// On a socket that exposes its descriptor (a plain TCP connection), it waits
// for readability through the runtime's poller with no buffer held and reads
// into a pooled buffer only when the read will not block. Elsewhere (TLS) it
// holds its buffer while blocked.
//
// It records when bytes last arrived (lastRead), from which the connection's
// keepalive tells a silent peer; no read deadline is involved in that, which
// keeps the runtime's timers out of every read and the parked reader's stack
// small. The one read deadline it may set bounds how long the reader lingers
// at a message boundary before parking in the shared poller (fillLinger), and
// it is moved once per half linger at most, not once per read.
type socketReader struct {
	nc      net.Conn
	raw     syscall.RawConn // nil: plain reads
	size    int
	pending []byte // bytes read past the handshake, served first

	buf  *[]byte // nil while empty
	r, w int32

	// lastRead is when bytes last arrived, in Unix nanoseconds.
	lastRead atomic.Int64

	fillErr error
	fillFn  func(fd uintptr) bool // s.fillRaw, made once

	// With the shared poller (conn.poll): the read deadline that bounds
	// the wait for bytes before parking (Unix nanoseconds, 0: none), which
	// is this reader's only.
	rdeadline  int64
	noWait     bool // fillRaw reports errWouldBlock instead of waiting
	lingerWait bool // fill returns the deadline's expiry instead of clearing it
}

var (
	// errWouldBlock is fillNow's signal from fillRaw: nothing to read.
	errWouldBlock = errors.New("wsasync: read would block")
	// errIdle is fillLinger's: the peer has been silent for the linger.
	errIdle = errors.New("wsasync: peer idle")
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, DefaultBufferSize); return &b }}

func (s *socketReader) init(nc net.Conn, size int, pending []byte) {
	s.nc, s.size, s.pending = nc, size, pending
	s.touch()
	if sc, ok := nc.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			s.fillFn = s.fillRaw
		}
	}
}

func (s *socketReader) take() {
	if s.buf != nil {
		return
	}
	if s.size == DefaultBufferSize {
		s.buf = bufPool.Get().(*[]byte)
		return
	}
	b := make([]byte, s.size)
	s.buf = &b
}

func (s *socketReader) release() {
	if s.buf == nil {
		return
	}
	if s.size == DefaultBufferSize {
		bufPool.Put(s.buf)
	}
	s.buf = nil
	s.r, s.w = 0, 0
}

func (s *socketReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if s.r == s.w {
		if len(p) >= s.size {
			// Big enough to read into directly.
			n, err := s.nc.Read(p)
			for n == 0 && s.expired(err) {
				n, err = s.nc.Read(p)
			}
			if n > 0 {
				s.touch()
			}
			return n, err
		}
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*s.buf)[s.r:s.w])
	s.r += int32(n)
	if s.r == s.w {
		s.release()
	}
	return n, nil
}

// drained reports whether every byte received so far has been consumed: no
// buffer is held and nothing is pending from the handshake.
func (s *socketReader) drained() bool { return s.buf == nil && len(s.pending) == 0 }

// lingers reports whether the peer sent something less than linger
// nanoseconds ago.
func (s *socketReader) lingers(linger int64) bool {
	return time.Now().UnixNano()-s.lastRead.Load() < linger
}

// fillLinger reads at least one byte, waiting in the runtime's poller until
// the peer has been silent for the linger: then it returns errIdle, with no
// read deadline left.
func (s *socketReader) fillLinger(linger int64) error {
	for {
		until := s.lastRead.Load() + linger
		if s.rdeadline < until {
			// Half a linger ahead: while bytes keep coming, the
			// deadline moves once per half linger, not once per wait.
			s.rdeadline = until + linger/2
			s.nc.SetReadDeadline(time.Unix(0, s.rdeadline))
		}
		s.lingerWait = true
		err := s.fill()
		s.lingerWait = false
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if !s.lingers(linger) {
			s.clearDeadline()
			return errIdle
		}
		s.rdeadline = 0 // passed early (the clock was set back): set it again
	}
}

// expired reports whether err is the linger's deadline passing where the
// reader is not lingering (inside a frame, or in a message): it then clears
// the deadline, to be set again at the next message boundary, and the read
// must be retried.
func (s *socketReader) expired(err error) bool {
	if s.rdeadline == 0 || s.lingerWait || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	s.clearDeadline()
	return true
}

func (s *socketReader) clearDeadline() {
	if s.rdeadline != 0 {
		s.rdeadline = 0
		s.nc.SetReadDeadline(time.Time{})
	}
}

// fillNow reads what a socket with a descriptor holds, without waiting for
// more: false with a nil error means there was nothing, and no buffer is held.
func (s *socketReader) fillNow() (bool, error) {
	s.noWait = true
	err := s.fill()
	s.noWait = false
	if err == errWouldBlock {
		return false, nil
	}
	return err == nil, err
}

// touch records that the peer is alive now.
func (s *socketReader) touch() { s.lastRead.Store(time.Now().UnixNano()) }

// fill reads at least one byte into a buffer.
func (s *socketReader) fill() error {
	if s.raw != nil {
		s.fillErr = nil
		err := s.raw.Read(s.fillFn)
		for err != nil && s.expired(err) {
			err = s.raw.Read(s.fillFn)
		}
		if err != nil {
			s.release()
			return err
		}
		if s.fillErr == nil {
			s.touch()
		}
		return s.fillErr
	}
	s.take()
	n, err := s.nc.Read(*s.buf)
	if n > 0 {
		s.r, s.w = 0, int32(n)
		s.touch()
		return nil
	}
	s.release()
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// fillRaw is called by the poller with the socket's descriptor: it reads if
// bytes are there and reports false, holding no buffer, if the read would
// block.
func (s *socketReader) fillRaw(fd uintptr) bool {
	s.take()
	for {
		n, err := readFD(fd, *s.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.release()
			if s.noWait {
				s.fillErr = errWouldBlock
				return true
			}
			return false
		case err != nil:
			s.release()
			s.fillErr = &net.OpError{Op: "read", Net: "tcp", Addr: s.nc.RemoteAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0:
			s.release()
			s.fillErr = io.EOF
		default:
			s.r, s.w = 0, int32(n)
		}
		return true
	}
}

// close gives the buffer back.
func (s *socketReader) close() {
	s.release()
	s.pending = nil
}
