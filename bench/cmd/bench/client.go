package main

// The load client: the same for every contender. It speaks raw WebSocket
// frames: requests are pre-built masked binary frames (gobwas/ws compiles
// them once), responses are parsed straight out of a read buffer, so a
// client-side message costs the same whoever the server is. For the raw TCP
// ceiling the handshake is skipped and the server returns the masked frames
// as they were.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/wsasync/wsasync/bench/internal/measure"
)

// dial opens one connection to u (ws://host/path or tcp://host) and returns
// it with any bytes already read past the handshake.
func dial(ctx context.Context, u string) (net.Conn, []byte, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, nil, err
	}
	if pu.Scheme == "tcp" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", pu.Host)
		return c, nil, err
	}
	c, br, _, err := ws.Dialer{}.Dial(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	var pending []byte
	if br != nil {
		if n := br.Buffered(); n > 0 {
			p, _ := br.Peek(n)
			pending = append(pending, p...)
		}
		ws.PutReader(br)
	}
	return c, pending, nil
}

// dialAll opens n connections to u, conc at a time.
func dialAll(u string, n, conc int) ([]net.Conn, [][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := make([]net.Conn, n)
	pend := make([][]byte, n)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				var err error
				for try := 0; try < 3; try++ { // a full backlog can refuse a burst
					var dctx context.Context
					var dcancel context.CancelFunc
					dctx, dcancel = context.WithTimeout(ctx, 10*time.Second)
					cs[i], pend[i], err = dial(dctx, u)
					dcancel()
					if err == nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("dial %d: %w", i, err); cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		closeAll(cs)
		return nil, nil, first
	}
	return cs, pend, nil
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// frame is one parsed frame in a frameReader's buffer.
type frame struct {
	fin     bool
	op      ws.OpCode
	masked  bool
	payload []byte // masked as sent when masked
}

// frameReader reads frames from a connection into one buffer, without
// copying or allocating.
type frameReader struct {
	c    net.Conn
	buf  []byte
	r, w int
}

func newFrameReader(c net.Conn, size int, pending []byte) *frameReader {
	fr := &frameReader{c: c, buf: make([]byte, max(size, 2*len(pending)))}
	fr.w = copy(fr.buf, pending)
	return fr
}

// fill reads once from the connection, first moving a partial frame to the
// front of the buffer.
func (fr *frameReader) fill() error {
	if fr.r > 0 {
		fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		fr.r = 0
	}
	if fr.w == len(fr.buf) {
		return errors.New("frame larger than the read buffer")
	}
	n, err := fr.c.Read(fr.buf[fr.w:])
	fr.w += n
	if n > 0 {
		return nil
	}
	return err
}

// next returns the next whole frame in the buffer, or false.
func (fr *frameReader) next() (frame, bool) {
	b := fr.buf[fr.r:fr.w]
	if len(b) < 2 {
		return frame{}, false
	}
	f := frame{fin: b[0]&0x80 != 0, op: ws.OpCode(b[0] & 0x0f), masked: b[1]&0x80 != 0}
	hl, pl := 2, int(b[1]&0x7f)
	switch pl {
	case 126:
		if len(b) < 4 {
			return frame{}, false
		}
		pl, hl = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return frame{}, false
		}
		pl, hl = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	if f.masked {
		hl += 4
	}
	if len(b) < hl+pl {
		return frame{}, false
	}
	f.payload = b[hl : hl+pl]
	fr.r += hl + pl
	return f, true
}

// Phases of an echo run.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// echoLoad is one echo workload: conns connections with inflight messages in
// flight each.
type echoLoad struct {
	frames   []byte // inflight copies of the masked request frame
	frameLen int
	payload  []byte // expected echo payload from a WebSocket server
	masked   []byte // expected echo payload from the TCP echo (masked)
	inflight int
	phase    atomic.Int32
	base     time.Time
}

func newEchoLoad(size, inflight int) *echoLoad {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := ws.MaskFrameInPlaceWith(ws.NewBinaryFrame(bytes.Clone(payload)), mask) // masks the copy
	raw, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	masked := bytes.Clone(f.Payload)
	e := &echoLoad{frameLen: len(raw), payload: payload, inflight: inflight, masked: masked, base: time.Now()}
	for i := 0; i < inflight; i++ {
		e.frames = append(e.frames, raw...)
	}
	return e
}

// echoConn is one connection's state; touched only by its goroutine until it
// has exited.
type echoConn struct {
	fr       *frameReader
	sent     []int64 // ring of send times, ns since base
	head, n  int
	msgs     uint64 // received in the measured window
	hist     measure.Hist
	err      error
	errPhase int32
	inMsg    bool // inside a fragmented message
	off      int  // bytes of it checked so far
}

func (e *echoLoad) conn(c net.Conn, pending []byte) *echoConn {
	ec := &echoConn{
		fr:   newFrameReader(c, max(64<<10, 4*e.inflight*e.frameLen), pending),
		sent: make([]int64, e.inflight),
	}
	return ec
}

func (ec *echoConn) push(t int64, k int) {
	for ; k > 0; k-- {
		ec.sent[(ec.head+ec.n)%len(ec.sent)] = t
		ec.n++
	}
}

func (ec *echoConn) pop() int64 {
	t := ec.sent[ec.head]
	ec.head = (ec.head + 1) % len(ec.sent)
	ec.n--
	return t
}

// loop keeps inflight messages in flight until the phase is stop, then
// drains what is outstanding and returns.
func (e *echoLoad) loop(ec *echoConn) {
	c := ec.fr.c
	fail := func(err error) {
		ec.err = err
		ec.errPhase = e.phase.Load()
	}
	now := int64(time.Since(e.base))
	ec.push(now, e.inflight)
	if _, err := c.Write(e.frames); err != nil {
		fail(err)
		return
	}
	for {
		if err := ec.fr.fill(); err != nil {
			fail(err)
			return
		}
		now := int64(time.Since(e.base))
		ph := e.phase.Load()
		k := 0
		for {
			f, ok := ec.fr.next()
			if !ok {
				break
			}
			if f.op.IsControl() {
				if f.op == ws.OpClose {
					fail(errors.New("server sent close"))
					return
				}
				continue // a ping: none is due within a run
			}
			// A message may come in fragments (coder's Writer sends the
			// data, then an empty final frame); compare piece by piece.
			if f.op != ws.OpContinuation {
				if ec.inMsg || f.op != ws.OpBinary {
					fail(fmt.Errorf("bad echo: op=%v while in a message: %v", f.op, ec.inMsg))
					return
				}
				ec.inMsg, ec.off = true, 0
			} else if !ec.inMsg {
				fail(errors.New("bad echo: continuation outside a message"))
				return
			}
			want := e.payload
			if f.masked {
				want = e.masked
			}
			if ec.off+len(f.payload) > len(want) || !bytes.Equal(f.payload, want[ec.off:ec.off+len(f.payload)]) {
				fail(fmt.Errorf("bad echo: %d bytes at %d differ", len(f.payload), ec.off))
				return
			}
			ec.off += len(f.payload)
			if !f.fin {
				continue
			}
			ec.inMsg = false
			if ec.off != len(want) {
				fail(fmt.Errorf("bad echo: %d bytes, want %d", ec.off, len(want)))
				return
			}
			if ec.n == 0 {
				fail(errors.New("echo of a message never sent"))
				return
			}
			t := ec.pop()
			if ph == phaseMeasure {
				ec.msgs++
				ec.hist.Add(now - t)
			}
			k++
		}
		if ph == phaseStop {
			if ec.n == 0 {
				return
			}
			continue
		}
		if k > 0 {
			ec.push(now, k)
			if _, err := c.Write(e.frames[:k*e.frameLen]); err != nil {
				fail(err)
				return
			}
		}
	}
}

// fanout tracks which broadcast connections have received the current
// broadcast.
type fanout struct {
	seq    atomic.Uint64
	left   atomic.Int64
	doneAt atomic.Int64 // ns since base
	done   chan struct{}
	stray  atomic.Int64
	errs   atomic.Int64
	base   time.Time
}

func (f *fanout) arm(seq uint64, n int) {
	f.done = make(chan struct{})
	f.left.Store(int64(n))
	f.seq.Store(seq)
}

// read receives broadcasts on one connection until it fails.
func (f *fanout) read(c net.Conn, pending []byte) {
	fr := newFrameReader(c, 512, pending)
	for {
		if err := fr.fill(); err != nil {
			f.errs.Add(1)
			return
		}
		for {
			fm, ok := fr.next()
			if !ok {
				break
			}
			if (fm.op != ws.OpBinary && fm.op != ws.OpText) || len(fm.payload) < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(fm.payload)
			if seq != f.seq.Load() {
				f.stray.Add(1)
				continue
			}
			if f.left.Add(-1) == 0 {
				f.doneAt.Store(int64(time.Since(f.base)))
				close(f.done)
			}
		}
	}
}
