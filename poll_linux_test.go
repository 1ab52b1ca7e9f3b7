//go:build linux

package wsasync_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
)

// Tests of the shared poller (poll_linux.go): an idle connection's reader
// exits, and the poller starts a new one when bytes arrive or the socket
// closes.

// pollPeer is a client on a raw socket: it holds no goroutine, so that the
// goroutines counted are the server's.
type pollPeer struct {
	nc  net.Conn
	br  *bufio.Reader
	hdr [ws.MaxHeaderSize]byte
}

func pollDial(t testing.TB, srv *httptest.Server) *pollPeer {
	t.Helper()
	u, err := url.Parse(wsURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	br, _, err := ws.Dialer{}.Upgrade(nc, u)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReader(nc)
	}
	return &pollPeer{nc: nc, br: br}
}

// send writes frames made by confFrame and its helpers.
func (p *pollPeer) send(frames ...[]byte) error {
	p.nc.SetWriteDeadline(time.Now().Add(lcWait))
	for _, f := range frames {
		if _, err := p.nc.Write(f); err != nil {
			return err
		}
	}
	return nil
}

// recv reads one server frame.
func (p *pollPeer) recv() (ws.Header, []byte, error) {
	p.nc.SetReadDeadline(time.Now().Add(lcWait))
	h, err := ws.ReadHeaderBuffer(p.br, p.hdr[:])
	if err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, errors.New("masked server frame")
	}
	b := make([]byte, h.Length)
	_, err = io.ReadFull(p.br, b)
	return h, b, err
}

// echo sends a text message and checks that it comes back (pings in
// between are skipped, unanswered).
func (p *pollPeer) echo(s string) error {
	if err := p.send(confText(s)); err != nil {
		return err
	}
	h, b, err := p.recv()
	for err == nil && h.OpCode == ws.OpPing {
		h, b, err = p.recv()
	}
	if err != nil {
		return err
	}
	if h.OpCode != ws.OpText || string(b) != s {
		return fmt.Errorf("echo of %q: got %v %q", s, h.OpCode, b)
	}
	return nil
}

// recvClose reads frames until a close frame and returns its code.
func (p *pollPeer) recvClose() (int, error) {
	for {
		h, b, err := p.recv()
		if err != nil {
			return 0, err
		}
		if h.OpCode == ws.OpClose {
			if len(b) < 2 {
				return 1005, nil
			}
			return int(binary.BigEndian.Uint16(b)), nil
		}
	}
}

// pollWait waits for cond, which has no channel to wait on (it looks at the
// poller's state or the goroutine count), checking it every millisecond.
func pollWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(lcWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, lcWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// pollArmed returns how many connections are parked in the poller.
func pollArmed() int {
	_, armed, _ := wsasync.PollState()
	return armed
}

// pollQuiet waits until no connection of an earlier test is attached to the
// poller and the poller has stopped, so that counts start from zero.
func pollQuiet(t testing.TB) {
	t.Helper()
	pollWait(t, "the poller stopped", func() bool {
		attached, _, running := wsasync.PollState()
		return attached == 0 && !running
	})
}

// pollGoroutinesAtMost waits until at most want goroutines run.
func pollGoroutinesAtMost(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(lcWait)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d", n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// goroutineSlack absorbs goroutines of earlier tests still finishing, and the
// test's own.
const goroutineSlack = 20

// pollLingers are the ReaderLinger settings the tests run with: readers that
// park as soon as they have read everything, and the default (explicit, so
// that WSASYNC_READER_LINGER does not change it).
var pollLingers = []time.Duration{time.Nanosecond, wsasync.DefaultReaderLinger}

// pollEach runs f as a subtest for each of pollLingers.
func pollEach(t *testing.T, f func(t *testing.T, linger time.Duration)) {
	for _, linger := range pollLingers {
		t.Run("linger="+linger.String(), func(t *testing.T) { f(t, linger) })
	}
}

// TestPollIdleConnectionsHoldNoReader opens many connections, lets them go
// idle, and counts goroutines: two per connection (handler and writer) and
// the poller, against three per connection when readers are kept. Then it
// sends on all of them at once, more than one epoll batch, and checks that
// every echo comes back and every reader parks again; closing them all stops
// the poller.
func TestPollIdleConnectionsHoldNoReader(t *testing.T) {
	const n = 300
	for _, linger := range append(pollLingers, -1) {
		keep := linger < 0
		t.Run("linger="+linger.String(), func(t *testing.T) {
			pollQuiet(t)
			u := wsasync.Upgrader{Options: wsasync.Options{ReaderLinger: linger}}
			srv := httptest.NewServer(u.GoWebsocket(echoHandler))
			defer srv.Close()
			base := runtime.NumGoroutine()

			peers := make([]*pollPeer, n)
			for i := range peers {
				peers[i] = pollDial(t, srv)
				defer peers[i].nc.Close()
				if err := peers[i].echo("hello"); err != nil {
					t.Fatal(err)
				}
			}
			if keep {
				if d := runtime.NumGoroutine() - base; d < 3*n-goroutineSlack {
					t.Fatalf("%d goroutines more for %d connections with readers kept, want at least 3 each", d, n)
				}
				if armed := pollArmed(); armed != 0 {
					t.Fatalf("%d connections armed with readers kept", armed)
				}
			} else {
				pollWait(t, "every reader parked", func() bool { return pollArmed() == n })
				pollGoroutinesAtMost(t, base+2*n+1+goroutineSlack)
			}

			// Traffic on all at once.
			var wg sync.WaitGroup
			for i, p := range peers {
				wg.Go(func() {
					for j := range 5 {
						if err := p.echo(fmt.Sprintf("%d.%d", i, j)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if !keep {
				pollWait(t, "every reader parked again", func() bool { return pollArmed() == n })
				pollGoroutinesAtMost(t, base+2*n+1+goroutineSlack)
			}

			for _, p := range peers {
				p.nc.Close()
			}
			pollQuiet(t)
			pollGoroutinesAtMost(t, base+goroutineSlack)
		})
	}
}

// pollEndServer runs a handler that echoes, and on closeNow sends
// Closed(4001, "bye") and reads in to its end; either way it reports the
// error from errs on res once in is closed.
func pollEndServer(t *testing.T, opts wsasync.Options) (srv *httptest.Server, closeNow chan struct{}, res chan error) {
	closeNow = make(chan struct{})
	res = make(chan error, 1)
	u := wsasync.Upgrader{Options: opts}
	srv = httptest.NewServer(u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for {
			select {
			case m, ok := <-in:
				if !ok {
					res <- <-errs
					return
				}
				out <- m
			case <-closeNow:
				out <- wsasync.Closed(4001, "bye")
				for range in {
				}
				res <- <-errs
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, closeNow, res
}

// pollParkedPeer dials srv, exchanges one message and waits for the server's
// reader to park.
func pollParkedPeer(t *testing.T, srv *httptest.Server) *pollPeer {
	t.Helper()
	pollQuiet(t)
	p := pollDial(t, srv)
	t.Cleanup(func() { p.nc.Close() })
	if err := p.echo("hello"); err != nil {
		t.Fatal(err)
	}
	pollWait(t, "the reader parked", func() bool { return pollArmed() == 1 })
	return p
}

func pollCloseErr(t *testing.T, err error, code wsasync.StatusCode, remote bool, cause error) {
	t.Helper()
	var ce *wsasync.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("errs gave %v, want a *CloseError", err)
	}
	if ce.Code != code || ce.Remote != remote {
		t.Fatalf("errs gave %v, want code %d, remote %v", err, code, remote)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Fatalf("errs gave %v, want it to wrap %v", err, cause)
	}
}

// TestPollCloseWhileParked closes connections whose reader is parked in every
// way this end can: the reader must come back, finish the connection once,
// and report its end.
func TestPollCloseWhileParked(t *testing.T) {
	pollEach(t, testPollCloseWhileParked)
}

func testPollCloseWhileParked(t *testing.T, linger time.Duration) {
	t.Run("this end closes, peer answers", func(t *testing.T) {
		srv, closeNow, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger})
		p := pollParkedPeer(t, srv)
		close(closeNow)
		code, err := p.recvClose()
		if err != nil || code != 4001 {
			t.Fatalf("peer got close %d, %v; want 4001", code, err)
		}
		if err := p.send(confClose(4001, "")); err != nil {
			t.Fatal(err)
		}
		err, _ = lcRecv(t, res, lcWait, "the handler's end")
		pollCloseErr(t, err, 4001, false, nil)
		if _, _, err := p.recv(); err != io.EOF {
			t.Fatalf("peer read %v after the close handshake, want EOF", err)
		}
		pollQuiet(t)
	})
	t.Run("this end closes, peer silent", func(t *testing.T) {
		srv, closeNow, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger, CloseTimeout: 50 * time.Millisecond})
		p := pollParkedPeer(t, srv)
		close(closeNow)
		if code, err := p.recvClose(); err != nil || code != 4001 {
			t.Fatalf("peer got close %d, %v; want 4001", code, err)
		}
		// The peer never answers: the close timeout closes the socket
		// under the parked reader.
		err, _ := lcRecv(t, res, lcWait, "the handler's end")
		pollCloseErr(t, err, 4001, false, nil)
		if _, _, err := p.recv(); err != io.EOF {
			t.Fatalf("peer read %v after the close timeout, want EOF", err)
		}
		pollQuiet(t)
	})
	t.Run("ping timeout", func(t *testing.T) {
		srv, _, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger, PingInterval: 20 * time.Millisecond, PongTimeout: 200 * time.Millisecond})
		pollParkedPeer(t, srv) // and never answers a ping
		err, _ := lcRecv(t, res, lcWait, "the handler's end")
		pollCloseErr(t, err, wsasync.StatusAbnormalClosure, false, wsasync.ErrPingTimeout)
		pollQuiet(t)
	})
	t.Run("peer answers pings while idle", func(t *testing.T) {
		srv, closeNow, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger, PingInterval: 5 * time.Millisecond, PongTimeout: 150 * time.Millisecond})
		p := pollParkedPeer(t, srv)
		// Each ping wakes the peer; each pong wakes the server's reader,
		// which parks again. Well past the pong timeout, the connection
		// is alive.
		for range 60 {
			h, b, err := p.recv()
			if err != nil {
				t.Fatal(err)
			}
			if h.OpCode != ws.OpPing {
				t.Fatalf("got %v, want a ping", h.OpCode)
			}
			if err := p.send(confPong(b)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-res:
			t.Fatalf("connection ended: %v", err)
		default:
		}
		close(closeNow)
		if code, err := p.recvClose(); err != nil || code != 4001 {
			t.Fatalf("peer got close %d, %v; want 4001", code, err)
		}
		p.send(confClose(4001, ""))
		err, _ := lcRecv(t, res, lcWait, "the handler's end")
		pollCloseErr(t, err, 4001, false, nil)
		pollQuiet(t)
	})
	t.Run("peer closes", func(t *testing.T) {
		srv, _, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger})
		p := pollParkedPeer(t, srv)
		if err := p.send(confClose(4002, "later")); err != nil {
			t.Fatal(err)
		}
		if code, err := p.recvClose(); err != nil || code != 4002 {
			t.Fatalf("peer got close %d, %v; want 4002 echoed", code, err)
		}
		err, _ := lcRecv(t, res, lcWait, "the handler's end")
		pollCloseErr(t, err, 4002, true, nil)
		pollQuiet(t)
	})
}

// TestPollPeerHangUpWhileParked drops the TCP connection under a parked
// reader in each way a peer can: the poller must wake it to report 1006.
func TestPollPeerHangUpWhileParked(t *testing.T) {
	pollEach(t, testPollPeerHangUpWhileParked)
}

func testPollPeerHangUpWhileParked(t *testing.T, linger time.Duration) {
	for _, tc := range []struct {
		name   string
		hangUp func(nc *net.TCPConn)
		cause  error
	}{
		{"close", func(nc *net.TCPConn) { nc.Close() }, io.ErrUnexpectedEOF},
		{"shutdown write", func(nc *net.TCPConn) { nc.CloseWrite() }, io.ErrUnexpectedEOF},
		{"reset", func(nc *net.TCPConn) { nc.SetLinger(0); nc.Close() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger})
			p := pollParkedPeer(t, srv)
			tc.hangUp(p.nc.(*net.TCPConn))
			err, _ := lcRecv(t, res, lcWait, "the handler's end")
			pollCloseErr(t, err, wsasync.StatusAbnormalClosure, false, tc.cause)
			pollQuiet(t)
		})
	}
}

// TestPollBackpressureWhileArmed lets a parked connection's peer send while
// the handler reads nothing: the reader must wake, stop reading the socket
// once it holds a message the handler does not take (the peer's writes then
// block), and not park again until it has delivered everything; nothing is
// lost or reordered.
func TestPollBackpressureWhileArmed(t *testing.T) {
	pollEach(t, testPollBackpressureWhileArmed)
}

func testPollBackpressureWhileArmed(t *testing.T, linger time.Duration) {
	release := make(chan struct{})
	got := make(chan string, 1)
	u := wsasync.Upgrader{Options: wsasync.Options{ReaderLinger: linger, InBuffer: -1}}
	srv := httptest.NewServer(u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		m, ok := <-in
		if !ok {
			return
		}
		out <- m // the first message is echoed at once
		<-release
		n := 0
		for m := range in {
			if m.Type == wsasync.TextMessage {
				out <- wsasync.Text(strconv.Itoa(n))
				continue
			}
			if seq := binary.BigEndian.Uint64(m.Data); seq != uint64(n) || len(m.Data) != 16<<10 {
				got <- fmt.Sprintf("message %d: seq %d, %d bytes", n, seq, len(m.Data))
				return
			}
			n++
		}
	}))
	defer srv.Close()
	p := pollParkedPeer(t, srv)

	// Send until the socket's buffers are full: a write that cannot finish
	// within 200 ms says the server has stopped reading.
	payload := make([]byte, 16<<10)
	sent := 0
	var rest []byte
	for rest == nil {
		binary.BigEndian.PutUint64(payload, uint64(sent))
		frame := confBinary(payload)
		p.nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := p.nc.Write(frame)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			rest = frame[n:]
		default:
			t.Fatal(err)
		}
		sent++
		if sent > 100_000 {
			t.Fatal("the server never stopped reading")
		}
	}
	// The reader is blocked handing a message over, not parked.
	if armed := pollArmed(); armed != 0 {
		t.Fatalf("%d readers parked while the handler holds back", armed)
	}
	close(release)
	p.nc.SetWriteDeadline(time.Time{})
	if _, err := p.nc.Write(rest); err != nil {
		t.Fatal(err)
	}
	if err := p.send(confText("count")); err != nil {
		t.Fatal(err)
	}
	h, b, err := p.recv()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Fatal(s)
	default:
	}
	if h.OpCode != ws.OpText || string(b) != strconv.Itoa(sent) {
		t.Fatalf("handler counted %q messages, want %d", b, sent)
	}
	pollWait(t, "the reader parked once all was delivered", func() bool { return pollArmed() == 1 })
	p.nc.Close()
	pollQuiet(t)
}

// TestPollFragmentsAcrossPauses sends a message in fragments with pauses
// between them, and a ping in the middle: the reader must not park inside a
// message, and the message arrives whole.
func TestPollFragmentsAcrossPauses(t *testing.T) {
	pollEach(t, testPollFragmentsAcrossPauses)
}

func testPollFragmentsAcrossPauses(t *testing.T, linger time.Duration) {
	srv, _, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger})
	p := pollParkedPeer(t, srv)
	if err := p.send(confData(ws.OpText, false, []byte("one "))); err != nil {
		t.Fatal(err)
	}
	// The pong says the reader has read the first fragment and the ping.
	if err := p.send(confPing([]byte("p"))); err != nil {
		t.Fatal(err)
	}
	if h, _, err := p.recv(); err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("got %v, %v; want a pong", h.OpCode, err)
	}
	if err := p.send(confData(ws.OpContinuation, false, []byte("two "))); err != nil {
		t.Fatal(err)
	}
	if err := p.send(confData(ws.OpContinuation, true, []byte("three"))); err != nil {
		t.Fatal(err)
	}
	h, b, err := p.recv()
	if err != nil || h.OpCode != ws.OpText || string(b) != "one two three" {
		t.Fatalf("got %v %q, %v; want the text whole", h.OpCode, b, err)
	}
	pollWait(t, "the reader parked again", func() bool { return pollArmed() == 1 })
	p.nc.Close()
	err, _ = lcRecv(t, res, lcWait, "the handler's end")
	pollCloseErr(t, err, wsasync.StatusAbnormalClosure, false, io.ErrUnexpectedEOF)
	pollQuiet(t)
}

// TestPollLingerDeadlineInsideMessage pauses longer than the linger inside a
// message, inside a frame, and inside a payload big enough to be read straight
// into the message: the deadline that bounds the linger must not end the
// connection there, and the reader parks only once the message is whole.
// Each message starts right after an echo, while the reader lingers with the
// deadline set.
func TestPollLingerDeadlineInsideMessage(t *testing.T) {
	const linger = 100 * time.Millisecond
	const pause = 2 * linger // the subject of the test: a slow peer
	srv, _, res := pollEndServer(t, wsasync.Options{ReaderLinger: linger})
	p := pollParkedPeer(t, srv)

	if err := p.echo("wake"); err != nil {
		t.Fatal(err)
	}
	if err := p.send(confData(ws.OpText, false, []byte("one "))); err != nil {
		t.Fatal(err)
	}
	if err := p.send(confPing(nil)); err != nil {
		t.Fatal(err)
	}
	if h, _, err := p.recv(); err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("got %v, %v; want a pong", h.OpCode, err)
	}
	time.Sleep(pause)
	last := confData(ws.OpContinuation, true, []byte("two"))
	if err := p.send(last[:3]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pause)
	if err := p.send(last[3:]); err != nil {
		t.Fatal(err)
	}
	h, b, err := p.recv()
	if err != nil || h.OpCode != ws.OpText || string(b) != "one two" {
		t.Fatalf("got %v %q, %v; want the text whole", h.OpCode, b, err)
	}

	big := confBinary(confBytes(256 << 10))
	if err := p.send(big[:len(big)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pause)
	if err := p.send(big[len(big)/2:]); err != nil {
		t.Fatal(err)
	}
	h, b, err = p.recv()
	if err != nil || h.OpCode != ws.OpBinary || len(b) != 256<<10 {
		t.Fatalf("got %v of %d bytes, %v; want 256 KiB of binary", h.OpCode, len(b), err)
	}
	pollWait(t, "the reader parked again", func() bool { return pollArmed() == 1 })
	select {
	case err := <-res:
		t.Fatalf("connection ended: %v", err)
	default:
	}
	p.nc.Close()
	err, _ = lcRecv(t, res, lcWait, "the handler's end")
	pollCloseErr(t, err, wsasync.StatusAbnormalClosure, false, io.ErrUnexpectedEOF)
	pollQuiet(t)
}

// TestPollDialClients parks clients' readers too: an idle client holds its
// writer only, and closing Out still ends with Done.
func TestPollDialClients(t *testing.T) {
	pollEach(t, testPollDialClients)
}

func testPollDialClients(t *testing.T, linger time.Duration) {
	pollQuiet(t)
	const n = 100
	u := wsasync.Upgrader{Options: wsasync.Options{ReaderLinger: -1}}
	d := wsasync.Dialer{Options: wsasync.Options{ReaderLinger: linger}}
	srv := httptest.NewServer(u.GoWebsocket(echoHandler))
	defer srv.Close()
	base := runtime.NumGoroutine()
	clients := make([]*wsasync.Conn, n)
	for i := range clients {
		c, err := d.Dial(t.Context(), wsURL(srv))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		clients[i].Out <- wsasync.Text("hello")
		if m, ok := lcRecv(t, clients[i].In, lcWait, "echo"); !ok || string(m.Data) != "hello" {
			t.Fatalf("echo: %q, %v", m.Data, ok)
		}
	}
	pollWait(t, "every client's reader parked", func() bool { return pollArmed() == n })
	// Per connection: the server's handler, writer and reader, and the
	// client's writer.
	pollGoroutinesAtMost(t, base+4*n+1+goroutineSlack)
	for i, c := range clients {
		c.Out <- wsasync.Text(strconv.Itoa(i))
	}
	for i, c := range clients {
		if m, ok := lcRecv(t, c.In, lcWait, "echo"); !ok || string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("echo: %q, %v", m.Data, ok)
		}
	}
	for _, c := range clients {
		close(c.Out)
	}
	for _, c := range clients {
		lcRecv(t, c.Done, lcWait, "Done")
		err, _ := lcRecv(t, c.Errs, lcWait, "the client's end")
		pollCloseErr(t, err, wsasync.StatusNormalClosure, false, nil)
	}
	pollQuiet(t)
}

// TestPollShake runs connections through every ending at random, both ends
// parking, to give the race detector and the state machine a workout: each
// end must report exactly one error and close its channels.
func TestPollShake(t *testing.T) {
	const n = 64
	u := wsasync.Upgrader{Options: wsasync.Options{
		PingInterval: 3 * time.Millisecond,
		PongTimeout:  time.Second,
		CloseTimeout: 20 * time.Millisecond,
		ReaderLinger: time.Nanosecond,
		Logger:       slog.New(slog.DiscardHandler), // the panics asked for
	}}
	srv := httptest.NewServer(u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for m := range in {
			switch string(m.Data) {
			case "close":
				out <- wsasync.Closed(4000, "asked")
			case "return":
				return
			case "panic":
				panic("asked")
			default:
				out <- m
			}
		}
	}))
	defer srv.Close()
	d := wsasync.Dialer{Options: wsasync.Options{PingInterval: 2 * time.Millisecond, ReaderLinger: time.Nanosecond}}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := d.Dial(t.Context(), wsURL(srv))
			if err != nil {
				t.Error(err)
				return
			}
			r := rand.New(rand.NewPCG(uint64(i), 1))
			ending := []string{"close", "return", "panic", "client", ""}[i%5]
			for range r.IntN(20) {
				for range r.IntN(4) + 1 {
					c.Out <- wsasync.Text("x")
				}
				if r.IntN(3) == 0 {
					runtime.Gosched()
				}
			}
			if ending == "client" {
				close(c.Out)
			} else {
				c.Out <- wsasync.Text(ending)
				if ending == "" {
					c.Out <- wsasync.Closed(4001, "")
				}
				defer close(c.Out)
			}
			for range c.In {
			}
			errsSeen := 0
			for range c.Errs {
				errsSeen++
			}
			if errsSeen != 1 {
				t.Errorf("client %d: %d errors on Errs", i, errsSeen)
			}
		})
	}
	wg.Wait()
	pollQuiet(t)
}
