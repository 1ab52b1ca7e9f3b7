package wsasync

import (
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
// writer tells a silent peer; no read deadline is involved, which keeps the
// runtime's timers out of every read and the parked reader's stack small.
type socketReader struct {
	nc      net.Conn
	raw     syscall.RawConn // nil: plain reads
	size    int
	pending []byte // bytes read past the handshake, served first

	buf  *[]byte // nil while empty
	r, w int

	// lastRead is when bytes last arrived, in Unix nanoseconds.
	lastRead atomic.Int64

	fillErr error
	fillFn  func(fd uintptr) bool // s.fillRaw, made once
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, DefaultBufferSize); return &b }}

func (s *socketReader) init(nc net.Conn, size int, pending []byte) {
	s.nc, s.size, s.pending = nc, size, pending
	s.touch()
	if sc, ok := nc.(syscall.Conn); ok {
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
	s.r += n
	if s.r == s.w {
		s.release()
	}
	return n, nil
}

// touch records that the peer is alive now.
func (s *socketReader) touch() { s.lastRead.Store(time.Now().UnixNano()) }

// fill reads at least one byte into a buffer.
func (s *socketReader) fill() error {
	if s.raw != nil {
		s.fillErr = nil
		if err := s.raw.Read(s.fillFn); err != nil {
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
		s.r, s.w = 0, n
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
		n, err := syscall.Read(int(fd), *s.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.release()
			return false
		case err != nil:
			s.release()
			s.fillErr = &net.OpError{Op: "read", Net: "tcp", Addr: s.nc.RemoteAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0:
			s.release()
			s.fillErr = io.EOF
		default:
			s.r, s.w = 0, n
		}
		return true
	}
}

// close gives the buffer back.
func (s *socketReader) close() {
	s.release()
	s.pending = nil
}
