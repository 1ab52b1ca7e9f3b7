package wsasync_test

// RFC 6455 conformance of the server side, in the spirit of the Autobahn
// test suite's case groups 1-7 and 9: a raw client writes hand-built frames
// to a GoWebsocket echo server and checks, byte by byte, what comes back.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
)

// confTimeout bounds every raw connection, so that a server that does not
// answer fails the test instead of hanging it.
const confTimeout = 10 * time.Second

// confEmpty stands, in confCase.wantClose, for a close frame with no payload.
const confEmpty = -1

// confMsg is a data message expected back from the server.
type confMsg struct {
	op   ws.OpCode
	data []byte
}

var confOpName = map[ws.OpCode]string{ws.OpText: "text", ws.OpBinary: "binary", ws.OpPong: "pong", ws.OpClose: "close"}

func (m confMsg) String() string {
	if len(m.data) > 40 {
		return fmt.Sprintf("%s(%d bytes, %q...)", confOpName[m.op], len(m.data), m.data[:40])
	}
	return fmt.Sprintf("%s(%q)", confOpName[m.op], m.data)
}

// confCase is one conformance case. The client writes send, waits for echo
// and pongs, writes after, and then waits for the server's close frame, which
// must carry one of wantClose. When wantClose is empty the server must not
// close by itself: the client then closes with 1000 and expects 1000 back. In
// every case the server must close TCP after the close frame.
type confCase struct {
	name string
	// opts configure the server's Upgrader.
	opts wsasync.Options
	// handler, when set, replaces the echo handler. It must send what errs
	// delivers to errc.
	handler func(errc chan<- error) wsasync.Handler
	// send is written right after the handshake, in one write, or in writes
	// of chop bytes when chop is set.
	send [][]byte
	chop int
	// echo and pongs must come back, in order, before after is written.
	echo  []confMsg
	pongs [][]byte
	// echoPrefix: the server's close may cut echo short; what arrives must
	// be a prefix of it.
	echoPrefix bool
	// lastPong: only the answer to the last ping is required; every pong
	// must still answer one of pongs.
	lastPong bool
	after    [][]byte
	// wantClose lists the close codes accepted from the server.
	wantClose []int
	// reason, when set, is the close reason the server must send.
	reason string
	// errCode, when set, is the Code of the *wsasync.CloseError the handler
	// must receive on errs; errIs, when set, must be in its chain.
	errCode wsasync.StatusCode
	errIs   error
}

// ---- frames the client sends ----

// confFrame builds one client frame with a fresh mask (or none).
func confFrame(fin bool, rsv byte, op ws.OpCode, masked bool, p []byte) []byte {
	h := ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Masked: masked, Length: int64(len(p))}
	if masked {
		h.Mask = ws.NewMask()
	}
	var b bytes.Buffer
	if err := ws.WriteHeader(&b, h); err != nil {
		panic(err)
	}
	q := bytes.Clone(p)
	if masked {
		ws.Cipher(q, h.Mask, 0)
	}
	b.Write(q)
	return b.Bytes()
}

func confData(op ws.OpCode, fin bool, p []byte) []byte { return confFrame(fin, 0, op, true, p) }

func confText(s string) []byte { return confData(ws.OpText, true, []byte(s)) }

func confBinary(p []byte) []byte { return confData(ws.OpBinary, true, p) }

func confPing(p []byte) []byte { return confData(ws.OpPing, true, p) }

func confPong(p []byte) []byte { return confData(ws.OpPong, true, p) }

func confClose(code uint16, reason string) []byte {
	return confData(ws.OpClose, true, append(binary.BigEndian.AppendUint16(nil, code), reason...))
}

// confFragments splits p into a first frame of type op and continuations of
// size bytes each (at least one frame).
func confFragments(op ws.OpCode, p []byte, size int) [][]byte {
	var fs [][]byte
	for first := true; first || len(p) > 0; first = false {
		n := min(size, len(p))
		fop := ws.OpContinuation
		if first {
			fop = op
		}
		fs = append(fs, confData(fop, n == len(p), p[:n]))
		p = p[n:]
	}
	return fs
}

// confFrames gathers frames and lists of frames into one list.
func confFrames(parts ...any) [][]byte {
	var fs [][]byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			fs = append(fs, p)
		case [][]byte:
			fs = append(fs, p...)
		default:
			panic(fmt.Sprintf("confFrames: %T", p))
		}
	}
	return fs
}

func confT(s string) confMsg { return confMsg{ws.OpText, []byte(s)} }

func confB(p []byte) confMsg { return confMsg{ws.OpBinary, p} }

// confBytes returns n bytes of a fixed pattern that is not UTF-8.
func confBytes(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

// confStr returns n bytes of printable text.
func confStr(n int) string {
	var b strings.Builder
	b.Grow(n)
	for i := range n {
		b.WriteByte('a' + byte(i%26))
	}
	return b.String()
}

// ---- handlers ----

// confEcho is the echo handler as the package documents it (close out once
// in is closed), which also forwards errs.
func confEcho(errc chan<- error) wsasync.Handler {
	return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer func() { errc <- <-errs }()
		defer close(out)
		for m := range in {
			out <- m
		}
	}
}

// confSends returns a handler that sends m and then reads in to its end.
func confSends(m wsasync.Message) func(chan<- error) wsasync.Handler {
	return func(errc chan<- error) wsasync.Handler {
		return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			defer func() { errc <- <-errs }()
			defer close(out)
			out <- m
			for range in {
			}
		}
	}
}

// ---- the client ----

type confPeer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func confURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

// confDial opens a TCP connection to srv and does the client handshake.
func confDial(t *testing.T, srv *httptest.Server) *confPeer {
	t.Helper()
	u, err := url.Parse(confURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(confTimeout))
	br, _, err := ws.Dialer{}.Upgrade(nc, u)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 64<<10)
	}
	return &confPeer{t: t, nc: nc, br: br}
}

// write writes frames in the background (in chunks of chop bytes when chop
// is set), so that a server echoing faster than the client reads cannot
// deadlock the test. A write error is logged only: the server may close while
// the client still writes, and what the client reads decides the case.
func (p *confPeer) write(wg *sync.WaitGroup, frames [][]byte, chop int) {
	b := bytes.Join(frames, nil)
	wg.Go(func() {
		for len(b) > 0 {
			n := len(b)
			if chop > 0 {
				n = min(n, chop)
			}
			if _, err := p.nc.Write(b[:n]); err != nil {
				p.t.Logf("client write: %v", err)
				return
			}
			b = b[n:]
		}
	})
}

// confIn is one thing received from the server: a whole data message, a pong
// or a close.
type confIn struct {
	op   ws.OpCode
	data []byte
}

// next reads the server's next message, checking each frame's header.
func (p *confPeer) next() (confIn, error) {
	var msg confIn
	for {
		h, err := ws.ReadHeader(p.br)
		if err != nil {
			return msg, err
		}
		switch {
		case h.Masked:
			return msg, fmt.Errorf("server frame is masked: %+v", h)
		case h.Rsv != 0:
			return msg, fmt.Errorf("server frame has RSV bits: %+v", h)
		case h.OpCode.IsReserved():
			return msg, fmt.Errorf("server frame has a reserved opcode: %+v", h)
		case h.OpCode.IsControl() && (!h.Fin || h.Length > ws.MaxControlFramePayloadSize):
			return msg, fmt.Errorf("bad server control frame: %+v", h)
		case h.Length > 64<<20:
			return msg, fmt.Errorf("server frame of %d bytes", h.Length)
		}
		b := make([]byte, h.Length)
		if _, err := io.ReadFull(p.br, b); err != nil {
			return msg, err
		}
		switch {
		case h.OpCode.IsControl():
			if h.OpCode == ws.OpPing {
				continue // a keepalive; not part of any case
			}
			return confIn{op: h.OpCode, data: b}, nil
		case h.OpCode == ws.OpContinuation && msg.op == 0:
			return msg, errors.New("server sent a continuation without a start")
		case h.OpCode != ws.OpContinuation && msg.op != 0:
			return msg, errors.New("server sent a data frame inside a fragmented message")
		}
		if msg.op == 0 {
			msg.op = h.OpCode
		}
		msg.data = append(msg.data, b...)
		if h.Fin {
			return msg, nil
		}
	}
}

// containsClose reports whether frames hold a close frame.
func containsClose(frames [][]byte) bool {
	r := bytes.NewReader(bytes.Join(frames, nil))
	for {
		h, err := ws.ReadHeader(r)
		if err != nil || h.Length > int64(r.Len()) {
			return false
		}
		if h.OpCode == ws.OpClose {
			return true
		}
		r.Seek(h.Length, io.SeekCurrent)
	}
}

// confCheckCloseFrame checks a close payload the server sent and returns its
// code, or confEmpty.
func confCheckCloseFrame(t *testing.T, p []byte) int {
	t.Helper()
	if len(p) == 0 {
		return confEmpty
	}
	if len(p) == 1 {
		t.Fatalf("server sent a 1-byte close payload %q", p)
	}
	code := wsasync.StatusCode(binary.BigEndian.Uint16(p))
	reason := p[2:]
	if !code.Sendable() {
		t.Errorf("server sent close code %v, which may not be sent", code)
	}
	if !utf8.Valid(reason) {
		t.Errorf("server sent a close reason that is not UTF-8: %q", reason)
	}
	return int(code)
}

func confCodes(cs []int) string {
	var s []string
	for _, c := range cs {
		if c == confEmpty {
			s = append(s, "empty")
		} else {
			s = append(s, fmt.Sprint(c))
		}
	}
	return strings.Join(s, "|")
}

func runConfCase(t *testing.T, tc confCase) {
	errc := make(chan error, 1)
	h := confEcho(errc)
	if tc.handler != nil {
		h = tc.handler(errc)
	}
	opts := tc.opts
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	u := wsasync.Upgrader{Options: opts}
	srv := httptest.NewServer(u.GoWebsocket(h))
	defer srv.Close()

	p := confDial(t, srv)
	var wg sync.WaitGroup
	defer func() {
		p.nc.Close()
		wg.Wait()
	}()

	// Phase 1: send, and collect the echoes and pongs.
	p.write(&wg, tc.send, tc.chop)
	var got []confMsg
	var pongs [][]byte
	pongsDone := func() bool {
		if len(tc.pongs) == 0 {
			return true
		}
		if tc.lastPong {
			return len(pongs) > 0 && bytes.Equal(pongs[len(pongs)-1], tc.pongs[len(tc.pongs)-1])
		}
		return len(pongs) >= len(tc.pongs)
	}
	var early *confIn // a close received before everything expected
	for len(got) < len(tc.echo) || !pongsDone() {
		m, err := p.next()
		if err != nil {
			t.Fatalf("reading echoes (got %d of %d messages, %d of %d pongs): %v", len(got), len(tc.echo), len(pongs), len(tc.pongs), err)
		}
		switch m.op {
		case ws.OpText, ws.OpBinary:
			got = append(got, confMsg{m.op, m.data})
			if i := len(got) - 1; i >= len(tc.echo) || got[i].op != tc.echo[i].op || !bytes.Equal(got[i].data, tc.echo[i].data) {
				want := "nothing"
				if i < len(tc.echo) {
					want = tc.echo[i].String()
				}
				t.Fatalf("message %d: got %v, want %v", i, got[i], want)
			}
		case ws.OpPong:
			pongs = append(pongs, m.data)
			if !tc.lastPong {
				if i := len(pongs) - 1; i >= len(tc.pongs) || !bytes.Equal(pongs[i], tc.pongs[i]) {
					t.Fatalf("pong %d: got %q, want %q", i, pongs[i], tc.pongs)
				}
			} else if !slices.ContainsFunc(tc.pongs, func(q []byte) bool { return bytes.Equal(q, m.data) }) {
				t.Fatalf("pong %q answers no ping", m.data)
			}
		case ws.OpClose:
			if !tc.echoPrefix {
				t.Fatalf("server closed (payload %q) after %d of %d messages and %d of %d pongs", m.data, len(got), len(tc.echo), len(pongs), len(tc.pongs))
			}
			early = &m
		}
		if early != nil {
			break
		}
	}

	// Phase 2: after, or a normal close, and the server's close frame.
	want := tc.wantClose
	clientClosed := containsClose(tc.send)
	if early == nil {
		switch {
		case tc.after != nil:
			p.write(&wg, tc.after, tc.chop)
			clientClosed = clientClosed || containsClose(tc.after)
		case len(want) == 0:
			p.write(&wg, confFrames(confClose(1000, "")), 0)
			want = []int{1000}
			clientClosed = true
		}
	}
	closeFrame := early
	for closeFrame == nil {
		m, err := p.next()
		if err != nil {
			t.Fatalf("waiting for the close frame (want %s): %v", confCodes(want), err)
		}
		if m.op == ws.OpClose {
			closeFrame = &m
			break
		}
		if m.op == ws.OpPong && tc.lastPong {
			continue
		}
		t.Fatalf("unexpected %s %q before the close frame", confOpName[m.op], m.data[:min(len(m.data), 40)])
	}
	code := confCheckCloseFrame(t, closeFrame.data)
	if !slices.Contains(want, code) {
		t.Errorf("close code %s (reason %q), want %s", confCodes([]int{code}), closeFrame.data[min(2, len(closeFrame.data)):], confCodes(want))
	}
	if tc.reason != "" && (len(closeFrame.data) < 2 || string(closeFrame.data[2:]) != tc.reason) {
		t.Errorf("close reason %q, want %q", closeFrame.data[min(2, len(closeFrame.data)):], tc.reason)
	}
	if !clientClosed {
		// Complete the closing handshake; the server may have closed the
		// socket already.
		p.write(&wg, confFrames(confData(ws.OpClose, true, closeFrame.data[:min(2, len(closeFrame.data))])), 0)
	}

	// The server closes TCP, and sends nothing after its close frame.
	if b, err := p.br.ReadByte(); err == nil {
		t.Errorf("server sent byte %#x after its close frame", b)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server did not close TCP after the close frame: %v", err)
	}

	// What the handler saw.
	var err error
	select {
	case err = <-errc:
	case <-time.After(confTimeout):
		t.Fatal("the handler received nothing on errs")
	}
	var ce *wsasync.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("errs delivered %T %v, want a *wsasync.CloseError", err, err)
	}
	if tc.errCode != 0 && ce.Code != tc.errCode {
		t.Errorf("errs: Code %v, want %v (%v)", ce.Code, tc.errCode, err)
	}
	if tc.errIs != nil && !errors.Is(err, tc.errIs) {
		t.Errorf("errs: %v, want it to wrap %v", err, tc.errIs)
	}
}

func runConfCases(t *testing.T, cases []confCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runConfCase(t, tc)
		})
	}
}

// ---- the cases ----

// Autobahn's UTF-8 samples.
const (
	confKosme   = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε
	confHello   = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"
	confSurrog  = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
	confMaxRune = "\xf4\x8f\xbf\xbf"
)

func TestConformanceFraming(t *testing.T) { // groups 1 and 2
	var cases []confCase
	for _, n := range []int{0, 125, 126, 127, 128, 65535, 65536, 1<<20 - 1, 1 << 20} {
		cases = append(cases, confCase{
			name: fmt.Sprintf("1.1 text %d", n),
			send: confFrames(confText(confStr(n))),
			echo: []confMsg{confT(confStr(n))},
		}, confCase{
			name: fmt.Sprintf("1.2 binary %d", n),
			send: confFrames(confBinary(confBytes(n))),
			echo: []confMsg{confB(confBytes(n))},
		})
	}
	cases = append(cases,
		confCase{
			name: "1.1.8 text 65536 in chops of 997 bytes",
			send: confFrames(confText(confStr(65536))),
			chop: 997,
			echo: []confMsg{confT(confStr(65536))},
		},
		confCase{
			name: "1.2.8 binary 65536 in chops of 997 bytes",
			send: confFrames(confBinary(confBytes(65536))),
			chop: 997,
			echo: []confMsg{confB(confBytes(65536))},
		},
		confCase{
			name: "1 many messages in one write",
			send: confFrames(confText("a"), confBinary([]byte("b")), confText(""), confBinary(nil), confText("e")),
			echo: []confMsg{confT("a"), confB([]byte("b")), confT(""), confB(nil), confT("e")},
		},
		confCase{
			name:  "2.1 ping without payload",
			send:  confFrames(confPing(nil)),
			pongs: [][]byte{{}},
		},
		confCase{
			name:  "2.2 ping with text payload",
			send:  confFrames(confPing([]byte("Hello, world!"))),
			pongs: [][]byte{[]byte("Hello, world!")},
		},
		confCase{
			name:  "2.3 ping with binary payload",
			send:  confFrames(confPing([]byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff})),
			pongs: [][]byte{{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}},
		},
		confCase{
			name:  "2.4 ping with 125 bytes",
			send:  confFrames(confPing(confBytes(125))),
			pongs: [][]byte{confBytes(125)},
		},
		confCase{
			name:      "2.5 ping with 126 bytes",
			send:      confFrames(confPing(confBytes(126))),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		},
		confCase{
			name:  "2.6 ping with 125 bytes in chops of 1 byte",
			send:  confFrames(confPing(confBytes(125))),
			chop:  1,
			pongs: [][]byte{confBytes(125)},
		},
		confCase{
			name: "2.7 unsolicited pong without payload",
			send: confFrames(confPong(nil), confText("after pong")),
			echo: []confMsg{confT("after pong")},
		},
		confCase{
			name: "2.8 unsolicited pong with payload",
			send: confFrames(confPong([]byte("unsolicited pong payload")), confText("after pong")),
			echo: []confMsg{confT("after pong")},
		},
		confCase{
			name:  "2.9 unsolicited pong, then ping",
			send:  confFrames(confPong([]byte("unsolicited pong payload")), confPing([]byte("ping payload"))),
			pongs: [][]byte{[]byte("ping payload")},
		},
		confCase{
			name:     "2.10 ten pings",
			send:     confFrames(confPing([]byte("0")), confPing([]byte("1")), confPing([]byte("2")), confPing([]byte("3")), confPing([]byte("4")), confPing([]byte("5")), confPing([]byte("6")), confPing([]byte("7")), confPing([]byte("8")), confPing([]byte("9"))),
			pongs:    [][]byte{[]byte("0"), []byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5"), []byte("6"), []byte("7"), []byte("8"), []byte("9")},
			lastPong: true,
		},
	)
	runConfCases(t, cases)
}

func TestConformanceReserved(t *testing.T) { // groups 3 and 4
	var cases []confCase
	for rsv := byte(1); rsv <= 7; rsv++ {
		cases = append(cases, confCase{
			name:      fmt.Sprintf("3 text with RSV=%d", rsv),
			send:      confFrames(confFrame(true, rsv, ws.OpText, true, []byte("Hello, world!"))),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		})
	}
	cases = append(cases,
		confCase{
			name:      "3.2 text, then text with RSV=2, then ping",
			send:      confFrames(confText("Hello, world!")),
			echo:      []confMsg{confT("Hello, world!")},
			after:     confFrames(confFrame(true, 2, ws.OpText, true, []byte("Hello, world!")), confPing(nil)),
			wantClose: []int{1002},
		},
		confCase{
			name:      "3.5 binary with RSV=5",
			send:      confFrames(confFrame(true, 5, ws.OpBinary, true, confBytes(8))),
			wantClose: []int{1002},
		},
		confCase{
			name:      "3.6 ping with RSV=6",
			send:      confFrames(confFrame(true, 6, ws.OpPing, true, []byte("Hello, world!"))),
			wantClose: []int{1002},
		},
		confCase{
			name:      "3.7 close with RSV=7",
			send:      confFrames(confFrame(true, 7, ws.OpClose, true, nil)),
			wantClose: []int{1002},
		},
		confCase{
			name:      "3 continuation with RSV=1",
			send:      confFrames(confData(ws.OpText, false, []byte("Hello, ")), confFrame(true, 1, ws.OpContinuation, true, []byte("world!"))),
			wantClose: []int{1002},
		},
	)
	for _, op := range []ws.OpCode{3, 4, 5, 6, 7, 11, 12, 13, 14, 15} {
		cases = append(cases, confCase{
			name:      fmt.Sprintf("4 reserved opcode %d", op),
			send:      confFrames(confData(op, true, nil)),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		}, confCase{
			name:      fmt.Sprintf("4 text, reserved opcode %d with payload, ping", op),
			send:      confFrames(confText("Hello, world!")),
			echo:      []confMsg{confT("Hello, world!")},
			after:     confFrames(confData(op, true, []byte("reserved opcode payload")), confPing(nil)),
			wantClose: []int{1002},
		})
	}
	cases = append(cases, confCase{
		name:      "4 reserved opcode 3 inside a fragmented message",
		send:      confFrames(confData(ws.OpText, false, []byte("frag")), confData(3, true, nil)),
		wantClose: []int{1002},
	})
	runConfCases(t, cases)
}

func TestConformanceFragmentation(t *testing.T) { // group 5
	text := confStr(1000)
	data := confBytes(65536)
	cases := []confCase{
		{
			name: "5.1 text in two fragments",
			send: confFrames(confData(ws.OpText, false, []byte("fragment1")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			echo: []confMsg{confT("fragment1fragment2")},
		},
		{
			name: "5 text in 1-byte fragments",
			send: confFragments(ws.OpText, []byte("Hello, world!"), 1),
			echo: []confMsg{confT("Hello, world!")},
		},
		{
			name: "5 text in 1-byte fragments in chops of 1 byte",
			send: confFragments(ws.OpText, []byte("Hello, world!"), 1),
			chop: 1,
			echo: []confMsg{confT("Hello, world!")},
		},
		{
			name: "5 binary in 1-byte fragments",
			send: confFragments(ws.OpBinary, confBytes(300), 1),
			echo: []confMsg{confB(confBytes(300))},
		},
		{
			name: "5 text in many fragments",
			send: confFragments(ws.OpText, []byte(text), 7),
			echo: []confMsg{confT(text)},
		},
		{
			name: "5 binary 64 KiB in 1 KiB fragments",
			send: confFragments(ws.OpBinary, data, 1024),
			echo: []confMsg{confB(data)},
		},
		{
			name: "5 empty fragments",
			send: confFrames(confData(ws.OpText, false, nil), confData(ws.OpContinuation, false, []byte("middle")), confData(ws.OpContinuation, false, nil), confData(ws.OpContinuation, true, nil)),
			echo: []confMsg{confT("middle")},
		},
		{
			name: "5 fragmented messages back to back",
			send: confFrames(confFragments(ws.OpText, []byte("first"), 2), confFragments(ws.OpBinary, []byte("second"), 4), confText("third")),
			echo: []confMsg{confT("first"), confB([]byte("second")), confT("third")},
		},
		{
			name:      "5.3 ping fragmented in two",
			send:      confFrames(confData(ws.OpPing, false, []byte("fragment1")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		},
		{
			name:      "5.4 pong fragmented in two",
			send:      confFrames(confData(ws.OpPong, false, []byte("fragment1")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			wantClose: []int{1002},
		},
		{
			name:      "5 close with fin=0",
			send:      confFrames(confData(ws.OpClose, false, nil)),
			wantClose: []int{1002},
		},
		{
			name:  "5.6 ping between fragments",
			send:  confFrames(confData(ws.OpText, false, []byte("fragment1")), confPing([]byte("ping payload")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			echo:  []confMsg{confT("fragment1fragment2")},
			pongs: [][]byte{[]byte("ping payload")},
		},
		{
			name:  "5.7 ping between fragments in chops of 1 byte",
			send:  confFrames(confData(ws.OpText, false, []byte("fragment1")), confPing([]byte("ping payload")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			chop:  1,
			echo:  []confMsg{confT("fragment1fragment2")},
			pongs: [][]byte{[]byte("ping payload")},
		},
		{
			name: "5 pong between fragments is ignored",
			send: confFrames(confData(ws.OpBinary, false, []byte("fragment1")), confPong([]byte("pong")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			echo: []confMsg{confB([]byte("fragment1fragment2"))},
		},
		{
			name:  "5 ping between every fragment",
			send:  confFrames(confData(ws.OpText, false, []byte("a")), confPing([]byte("1")), confData(ws.OpContinuation, false, []byte("b")), confPing([]byte("2")), confData(ws.OpContinuation, true, []byte("c"))),
			echo:  []confMsg{confT("abc")},
			pongs: [][]byte{[]byte("1"), []byte("2")},
			// Answering only the latest ping is allowed.
			lastPong: true,
		},
		{
			name:      "5.9 continuation (fin) without a start",
			send:      confFrames(confData(ws.OpContinuation, true, []byte("fragment1")), confText("fragment2")),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		},
		{
			name:      "5.12 continuation (no fin) without a start",
			send:      confFrames(confData(ws.OpContinuation, false, []byte("fragment1")), confText("fragment2")),
			wantClose: []int{1002},
		},
		{
			name:      "5.15 continuation after a complete fragmented message",
			send:      confFrames(confData(ws.OpText, false, []byte("fragment1")), confData(ws.OpContinuation, true, []byte("fragment2"))),
			echo:      []confMsg{confT("fragment1fragment2")},
			after:     confFrames(confData(ws.OpContinuation, false, []byte("fragment3")), confData(ws.OpContinuation, true, []byte("fragment4"))),
			wantClose: []int{1002},
		},
		{
			name:      "5.16 text while a text is fragmented",
			send:      confFrames(confData(ws.OpText, false, []byte("fragment1")), confData(ws.OpText, true, []byte("fragment2"))),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		},
		{
			name:      "5.17 binary while a text is fragmented",
			send:      confFrames(confData(ws.OpText, false, []byte("fragment1")), confData(ws.OpBinary, false, []byte("fragment2"))),
			wantClose: []int{1002},
		},
		{
			name:      "5.18 text while a binary is fragmented, after a ping",
			send:      confFrames(confData(ws.OpBinary, false, []byte("fragment1")), confPing(nil), confData(ws.OpText, true, []byte("fragment2"))),
			pongs:     [][]byte{{}},
			wantClose: []int{1002},
		},
	}
	runConfCases(t, cases)
}

func TestConformanceUTF8(t *testing.T) { // group 6
	cases := []confCase{
		{
			name: "6.1 empty text in three empty fragments",
			send: confFrames(confData(ws.OpText, false, nil), confData(ws.OpContinuation, false, nil), confData(ws.OpContinuation, true, nil)),
			echo: []confMsg{confT("")},
		},
		{
			name: "6.2 valid multi-byte text",
			send: confFrames(confText(confHello)),
			echo: []confMsg{confT(confHello)},
		},
		{
			name: "6.2 valid multi-byte text in 1-byte fragments",
			send: confFragments(ws.OpText, []byte(confHello), 1),
			echo: []confMsg{confT(confHello)},
		},
		{
			name: "6.2 valid text split inside a code point",
			send: confFrames(confData(ws.OpText, false, []byte(confKosme[:1])), confData(ws.OpContinuation, false, []byte(confKosme[1:4])), confData(ws.OpContinuation, true, []byte(confKosme[4:]))),
			echo: []confMsg{confT(confKosme)},
		},
		{
			name: "6 valid 4-byte code point U+10FFFF",
			send: confFrames(confText(confMaxRune)),
			echo: []confMsg{confT(confMaxRune)},
		},
		{
			name: "6 valid 4-byte code point split in 1-byte fragments",
			send: confFragments(ws.OpText, []byte(confMaxRune), 1),
			echo: []confMsg{confT(confMaxRune)},
		},
		{
			name: "6 binary that is not UTF-8 is echoed",
			send: confFrames(confBinary([]byte(confSurrog))),
			echo: []confMsg{confB([]byte(confSurrog))},
		},
		{
			name:      "6.3 invalid text (surrogate) in one frame",
			send:      confFrames(confText(confSurrog)),
			wantClose: []int{1007},
			errCode:   wsasync.StatusInvalidFramePayloadData,
			errIs:     wsasync.ErrInvalidUTF8,
		},
		{
			name:      "6.3 invalid text (surrogate) in 1-byte fragments",
			send:      confFragments(ws.OpText, []byte(confSurrog), 1),
			wantClose: []int{1007},
			errCode:   wsasync.StatusInvalidFramePayloadData,
		},
		{
			name:      "6.4 invalid text split across fragments",
			send:      confFrames(confData(ws.OpText, false, []byte(confKosme)), confData(ws.OpContinuation, true, []byte("\xf4\x90\x80\x80"))),
			wantClose: []int{1007},
		},
		{
			name:      "6 text ending inside a code point",
			send:      confFrames(confData(ws.OpText, false, []byte(confKosme)), confData(ws.OpContinuation, true, []byte("\xce"))),
			wantClose: []int{1007},
		},
		{
			name:      "6 invalid text after a valid one",
			send:      confFrames(confText(confKosme)),
			echo:      []confMsg{confT(confKosme)},
			after:     confFrames(confText("\xc0\xaf")),
			wantClose: []int{1007},
		},
		{
			name:      "6 overlong encoding",
			send:      confFrames(confText("\xc0\xaf")),
			wantClose: []int{1007},
		},
		{
			name:      "6 lone continuation byte",
			send:      confFrames(confText("\x80")),
			wantClose: []int{1007},
		},
		{
			name:      "6 0xff",
			send:      confFrames(confText("a\xffb")),
			wantClose: []int{1007},
		},
		{
			name:      "6.3.2 invalid text with a ping between its fragments",
			send:      confFrames(confData(ws.OpText, false, []byte(confSurrog[:12])), confPing([]byte("p")), confData(ws.OpContinuation, true, []byte(confSurrog[12:]))),
			pongs:     [][]byte{[]byte("p")},
			wantClose: []int{1007},
		},
		{
			name:      "7.5.1 invalid UTF-8 in the close reason",
			send:      confFrames(confClose(1000, confSurrog)),
			wantClose: []int{1007},
			errCode:   wsasync.StatusInvalidFramePayloadData,
			errIs:     wsasync.ErrInvalidUTF8,
		},
		{
			name:      "7 valid UTF-8 close reason",
			send:      confFrames(confClose(1000, confKosme)),
			wantClose: []int{1000},
			errCode:   wsasync.StatusNormalClosure,
		},
	}
	runConfCases(t, cases)
}

func TestConformanceClose(t *testing.T) { // group 7
	discard := slog.New(slog.DiscardHandler)
	cases := []confCase{
		{
			name:      "7.1.1 text, then close",
			send:      confFrames(confText("Hello World!")),
			echo:      []confMsg{confT("Hello World!")},
			after:     confFrames(confClose(1000, "")),
			wantClose: []int{1000},
		},
		{
			name:      "7.1.2 close twice",
			send:      confFrames(confClose(1000, ""), confClose(1000, "")),
			wantClose: []int{1000},
		},
		{
			name:      "7.1.3 ping after close is not answered",
			send:      confFrames(confClose(1000, ""), confPing([]byte("Hello World!"))),
			wantClose: []int{1000},
		},
		{
			name:      "7.1.4 text after close is ignored",
			send:      confFrames(confClose(1000, ""), confText("Hello World!")),
			wantClose: []int{1000},
		},
		{
			name:      "7.1.5 close between fragments",
			send:      confFrames(confData(ws.OpText, false, []byte("fragment1")), confClose(1000, ""), confData(ws.OpContinuation, true, []byte("fragment2"))),
			wantClose: []int{1000},
		},
		{
			name:      "7.3.1 close without payload",
			send:      confFrames(confData(ws.OpClose, true, nil)),
			wantClose: []int{confEmpty, 1000},
			errCode:   wsasync.StatusNoStatusReceived,
		},
		{
			name:      "7.3.2 close with a 1-byte payload",
			send:      confFrames(confData(ws.OpClose, true, []byte{0x03})),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		},
		{
			name:      "7.3.3 close with code only",
			send:      confFrames(confClose(1000, "")),
			wantClose: []int{1000},
		},
		{
			name:      "7.3.5 close with a 123-byte reason",
			send:      confFrames(confClose(1000, confStr(123))),
			wantClose: []int{1000},
		},
		{
			name:      "7.3.6 close with a 124-byte reason",
			send:      confFrames(confClose(1000, confStr(124))),
			wantClose: []int{1002},
		},
		{
			name:      "7.1.6 close while the server echoes",
			send:      confFrames(slices.Repeat([][]byte{confText(confStr(1000))}, 50), confClose(1000, "")),
			echo:      slices.Repeat([]confMsg{confT(confStr(1000))}, 50),
			wantClose: []int{1000},
			// The server may close before it has echoed everything.
			echoPrefix: true,
			errCode:    wsasync.StatusNormalClosure,
		},
		{
			name:       "7 close 4000 while the server echoes",
			send:       confFrames(slices.Repeat([][]byte{confText(confStr(1000))}, 50), confClose(4000, "bye")),
			echo:       slices.Repeat([]confMsg{confT(confStr(1000))}, 50),
			echoPrefix: true,
			wantClose:  []int{4000},
			errCode:    4000,
		},
		{
			name:       "7 protocol error while the server echoes",
			send:       confFrames(slices.Repeat([][]byte{confText(confStr(1000))}, 50), confData(ws.OpContinuation, true, nil)),
			echo:       slices.Repeat([]confMsg{confT(confStr(1000))}, 50),
			echoPrefix: true,
			wantClose:  []int{1002},
			errCode:    wsasync.StatusProtocolError,
		},
		{
			name:       "7 invalid UTF-8 while the server echoes",
			send:       confFrames(slices.Repeat([][]byte{confText(confStr(1000))}, 50), confText("\xff")),
			echo:       slices.Repeat([]confMsg{confT(confStr(1000))}, 50),
			echoPrefix: true,
			wantClose:  []int{1007},
			errCode:    wsasync.StatusInvalidFramePayloadData,
		},
		// The reader ends while the writer is busy writing a big echo, so
		// that the handler's close(out) (it has seen in closed) is ready
		// in the writer's select together with the reader's close request.
		{
			name:       "7 close 4000 behind a big message",
			opts:       wsasync.Options{ReadLimit: 16 << 20},
			send:       confFrames(confBinary(confBytes(4<<20)), confClose(4000, "")),
			echo:       []confMsg{confB(confBytes(4 << 20))},
			echoPrefix: true,
			wantClose:  []int{4000},
			errCode:    4000,
		},
		{
			name:       "7 empty close behind a big message",
			opts:       wsasync.Options{ReadLimit: 16 << 20},
			send:       confFrames(confBinary(confBytes(4<<20)), confData(ws.OpClose, true, nil)),
			echo:       []confMsg{confB(confBytes(4 << 20))},
			echoPrefix: true,
			wantClose:  []int{confEmpty},
			errCode:    wsasync.StatusNoStatusReceived,
		},
		{
			name:       "7 protocol error behind a big message",
			opts:       wsasync.Options{ReadLimit: 16 << 20},
			send:       confFrames(confBinary(confBytes(4<<20)), confData(5, true, nil)),
			echo:       []confMsg{confB(confBytes(4 << 20))},
			echoPrefix: true,
			wantClose:  []int{1002},
			errCode:    wsasync.StatusProtocolError,
		},
		{
			name:       "7 invalid UTF-8 behind a big message",
			opts:       wsasync.Options{ReadLimit: 16 << 20},
			send:       confFrames(confBinary(confBytes(4<<20)), confText("\xff")),
			echo:       []confMsg{confB(confBytes(4 << 20))},
			echoPrefix: true,
			wantClose:  []int{1007},
			errCode:    wsasync.StatusInvalidFramePayloadData,
		},
		{
			name:       "7 message over the limit behind a big message",
			opts:       wsasync.Options{ReadLimit: 4 << 20},
			send:       confFrames(confBinary(confBytes(4<<20)), confBinary(confBytes(4<<20 + 1))[:14]),
			echo:       []confMsg{confB(confBytes(4 << 20))},
			echoPrefix: true,
			wantClose:  []int{1009},
			errCode:    wsasync.StatusMessageTooBig,
		},
		{
			name: "7 close 4000 behind a big message, handler returns without closing out",
			opts: wsasync.Options{ReadLimit: 16 << 20},
			handler: func(errc chan<- error) wsasync.Handler {
				return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
					go func() { errc <- <-errs }()
					for m := range in {
						out <- m
					}
				}
			},
			send:       confFrames(confBinary(confBytes(4<<20)), confClose(4000, "")),
			echo:       []confMsg{confB(confBytes(4 << 20))},
			echoPrefix: true,
			wantClose:  []int{4000},
			errCode:    4000,
		},
		// The server closes.
		{
			name:    "7 handler sends first, the client closes",
			handler: confSends(wsasync.Text("hi")),
			echo:    []confMsg{confT("hi")},
			errCode: wsasync.StatusNormalClosure,
		},
		{
			name: "7 handler closes out",
			handler: func(errc chan<- error) wsasync.Handler {
				return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
					defer func() { errc <- <-errs }()
					close(out)
					for range in {
					}
				}
			},
			wantClose: []int{1000},
			errCode:   wsasync.StatusNormalClosure,
		},
		{
			name: "7 handler returns",
			handler: func(errc chan<- error) wsasync.Handler {
				return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
					go func() { errc <- <-errs }()
				}
			},
			wantClose: []int{1000},
			errCode:   wsasync.StatusNormalClosure,
		},
		{
			name: "7 handler panics",
			opts: wsasync.Options{Logger: discard},
			handler: func(errc chan<- error) wsasync.Handler {
				return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
					go func() { errc <- <-errs }()
					panic("conformance test panic")
				}
			},
			wantClose: []int{1011},
			errCode:   wsasync.StatusInternalError,
			errIs:     wsasync.ErrHandlerPanic,
		},
		{
			name:      "7 handler sends Closed(4000, bye)",
			handler:   confSends(wsasync.Closed(4000, "bye")),
			wantClose: []int{4000},
			reason:    "bye",
			errCode:   4000,
		},
		{
			name:      "7 handler sends Closed(1006) -> 1011",
			handler:   confSends(wsasync.Closed(wsasync.StatusAbnormalClosure, "x")),
			wantClose: []int{1011},
			errCode:   wsasync.StatusInternalError,
			errIs:     wsasync.ErrInvalidMessage,
		},
		{
			name:      "7 handler sends Closed(1015) -> 1011",
			handler:   confSends(wsasync.Closed(wsasync.StatusTLSHandshake, "")),
			wantClose: []int{1011},
			errIs:     wsasync.ErrInvalidMessage,
		},
		{
			name:      "7 handler sends Closed(999) -> 1011",
			handler:   confSends(wsasync.Closed(999, "")),
			wantClose: []int{1011},
			errIs:     wsasync.ErrInvalidMessage,
		},
		{
			name:      "7 handler sends Closed(1005) -> empty close",
			handler:   confSends(wsasync.Closed(wsasync.StatusNoStatusReceived, "")),
			wantClose: []int{confEmpty},
		},
		{
			name:      "7 handler sends a long reason -> cut at a character",
			handler:   confSends(wsasync.Closed(1000, strings.Repeat("é", 100))),
			wantClose: []int{1000},
			reason:    strings.Repeat("é", 61),
		},
		{
			name:      "7 handler sends an invalid UTF-8 reason -> replaced",
			handler:   confSends(wsasync.Closed(1000, "bad \xff")),
			wantClose: []int{1000},
			reason:    "bad \uFFFD",
		},
		{
			name:      "7 handler sends an unknown message type -> 1011",
			handler:   confSends(wsasync.Message{Type: 7, Data: []byte("x")}),
			wantClose: []int{1011},
			errIs:     wsasync.ErrInvalidMessage,
		},
	}
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, confCase{
			name:      fmt.Sprintf("7.7 close with valid code %d", code),
			send:      confFrames(confClose(uint16(code), "reason")),
			wantClose: []int{code},
			errCode:   wsasync.StatusCode(code),
		})
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, confCase{
			name:      fmt.Sprintf("7.9 close with invalid code %d", code),
			send:      confFrames(confClose(uint16(code), "")),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		})
	}
	runConfCases(t, cases)
}

func TestConformanceLimits(t *testing.T) { // group 9 and the read limit
	big := wsasync.Options{ReadLimit: 16 << 20}
	m4 := confBytes(4 << 20)
	t4 := confStr(4 << 20)
	cases := []confCase{
		{
			name: "9.1 text 4 MiB",
			opts: big,
			send: confFrames(confText(t4)),
			echo: []confMsg{confT(t4)},
		},
		{
			name: "9.2 binary 4 MiB",
			opts: big,
			send: confFrames(confBinary(m4)),
			echo: []confMsg{confB(m4)},
		},
		{
			name: "9.2 binary 4 MiB in chops of 64 KiB",
			opts: big,
			send: confFrames(confBinary(m4)),
			chop: 64 << 10,
			echo: []confMsg{confB(m4)},
		},
		{
			name: "9.3 text 4 MiB in 64 KiB fragments",
			opts: big,
			send: confFragments(ws.OpText, []byte(t4), 64<<10),
			echo: []confMsg{confT(t4)},
		},
		{
			name: "9.4 binary 4 MiB in 4 KiB fragments",
			opts: big,
			send: confFragments(ws.OpBinary, m4, 4<<10),
			echo: []confMsg{confB(m4)},
		},
		{
			name: "9 binary of exactly the raised limit",
			opts: wsasync.Options{ReadLimit: 2 << 20},
			send: confFrames(confBinary(confBytes(2 << 20))),
			echo: []confMsg{confB(confBytes(2 << 20))},
		},
		{
			name:      "9 binary one byte over the default limit",
			send:      confFrames(confBinary(confBytes(1<<20 + 1))),
			wantClose: []int{1009},
			errCode:   wsasync.StatusMessageTooBig,
			errIs:     wsasync.ErrReadLimit,
		},
		{
			name:      "9 text over the default limit, only the header sent",
			send:      confFrames(confText(confStr(2 << 20))[:14]),
			wantClose: []int{1009},
			errCode:   wsasync.StatusMessageTooBig,
		},
		{
			name:      "9 fragments over the default limit summed",
			send:      confFragments(ws.OpBinary, confBytes(3*400<<10), 400<<10),
			wantClose: []int{1009},
			errCode:   wsasync.StatusMessageTooBig,
			errIs:     wsasync.ErrReadLimit,
		},
		{
			name:      "9 fragments over a small limit summed",
			opts:      wsasync.Options{ReadLimit: 100},
			send:      confFragments(ws.OpText, []byte(confStr(101)), 10),
			wantClose: []int{1009},
			errCode:   wsasync.StatusMessageTooBig,
		},
		{
			name:      "9 small limit: messages below it pass, one over it closes",
			opts:      wsasync.Options{ReadLimit: 100},
			send:      confFrames(confText(confStr(100)), confFragments(ws.OpBinary, confBytes(100), 30)),
			echo:      []confMsg{confT(confStr(100)), confB(confBytes(100))},
			after:     confFrames(confText(confStr(101))),
			wantClose: []int{1009},
		},
		{
			name:      "9 64-bit length with the most significant bit set",
			send:      confFrames([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}),
			wantClose: []int{1002},
			errIs:     wsasync.ErrProtocol,
		},
		{
			name:      "unmasked client text",
			send:      confFrames(confFrame(true, 0, ws.OpText, false, []byte("Hello, world!"))),
			wantClose: []int{1002},
			errCode:   wsasync.StatusProtocolError,
			errIs:     wsasync.ErrProtocol,
		},
		{
			name:      "unmasked client ping",
			send:      confFrames(confFrame(true, 0, ws.OpPing, false, nil)),
			wantClose: []int{1002},
		},
		{
			name:      "unmasked client close",
			send:      confFrames(confFrame(true, 0, ws.OpClose, false, []byte{0x03, 0xe8})),
			wantClose: []int{1002},
		},
	}
	runConfCases(t, cases)
}

// TestConformancePipelinedHandshake sends frames in the same write as the
// handshake request: the server must read them from what net/http buffered.
func TestConformancePipelinedHandshake(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(wsasync.GoWebsocket(confEcho(errc)))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(confTimeout))
	req := "GET / HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	frames := bytes.Join(confFrames(confText("one"), confFragments(ws.OpBinary, []byte("two"), 1), confPing([]byte("p")), confClose(4001, "")), nil)
	if _, err := nc.Write(append([]byte(req), frames...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s", resp.Status)
	}
	p := &confPeer{t: t, nc: nc, br: br}
	var got []string
	for {
		m, err := p.next()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, fmt.Sprintf("%s:%q", confOpName[m.op], m.data))
		if m.op == ws.OpClose {
			break
		}
	}
	// The close may overtake the echoes; it must echo 4001.
	all := []string{`text:"one"`, `binary:"two"`, `pong:"p"`}
	last := got[len(got)-1]
	if last != `close:"\x0f\xa1"` {
		t.Errorf("close %s, want 4001", last)
	}
	for _, g := range got[:len(got)-1] {
		if !slices.Contains(all, g) {
			t.Errorf("unexpected %s", g)
		}
	}
	if err := <-errc; wsasync.CloseStatus(err) != 4001 {
		t.Errorf("errs: %v", err)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server did not close TCP: %v", err)
	}
}

// The 1005/1006/1015 codes never reach the wire from the server: checked in
// every case by confCheckCloseFrame, and here for the doc's promise that a
// dropped connection reports 1006 without sending it.
func TestConformanceAbnormalNotOnWire(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(wsasync.GoWebsocket(confEcho(errc)))
	defer srv.Close()
	p := confDial(t, srv)
	defer p.nc.Close()
	// Half a frame, then the client's end of the TCP connection closes.
	if _, err := p.nc.Write(confText("Hello")[:4]); err != nil {
		t.Fatal(err)
	}
	p.nc.(*net.TCPConn).CloseWrite()
	if m, err := p.next(); err == nil {
		t.Fatalf("server sent %v %q to a peer that vanished", m.op, m.data)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("read: %v", err)
	}
	err := <-errc
	var ce *wsasync.CloseError
	if !errors.As(err, &ce) || ce.Code != wsasync.StatusAbnormalClosure || ce.Remote {
		t.Fatalf("errs: %#v, want local 1006", err)
	}
}

// confSmallBuffers makes the server's sockets' send buffers small, so that a
// big echo keeps the server's writer blocked until the client reads.
type confSmallBuffers struct{ net.Listener }

func (l confSmallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// TestConformanceCloseWhileWriting checks the close code the server sends
// when the reader ends the connection (the peer's close, a protocol error)
// while the writer is blocked writing an echo and the handler, having seen in
// closed, closes out meanwhile. The writer then finds the reader's close
// request, out closed, the handler's return and the reader's end all ready at
// once; the close it sends must still be the reader's, not 1000.
func TestConformanceCloseWhileWriting(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		want  int
	}{
		{
			name:  "peer close 4000",
			frame: confClose(4000, ""),
			want:  4000,
		},
		{
			name:  "peer close without payload",
			frame: confData(ws.OpClose, true, nil),
			want:  confEmpty,
		},
		{
			name:  "reserved opcode",
			frame: confData(5, true, nil),
			want:  1002,
		},
		{
			name:  "invalid UTF-8",
			frame: confText("\xff"),
			want:  1007,
		},
	}
	const rounds = 20
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range rounds {
				if !confCloseWhileWriting(t, tc.frame, tc.want) {
					return
				}
			}
		})
	}
}

func confCloseWhileWriting(t *testing.T, frame []byte, want int) bool {
	done := make(chan struct{})
	errc := make(chan error, 1)
	h := func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		go func() { errc <- <-errs }()
		defer close(done)
		defer close(out)
		for m := range in {
			out <- m
		}
	}
	// The raw peer never answers a close: a short close timeout keeps
	// the cases that wait for that answer (1007) quick.
	u := wsasync.Upgrader{Options: wsasync.Options{CloseTimeout: 50 * time.Millisecond}}
	srv := httptest.NewUnstartedServer(u.GoWebsocket(h))
	srv.Listener = confSmallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()

	su, _ := url.Parse(confURL(srv))
	nc, err := net.Dial("tcp", su.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(confTimeout))
	br, _, err := ws.Dialer{}.Upgrade(nc, su)
	if err != nil {
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 4096)
	}
	p := &confPeer{t: t, nc: nc, br: br}
	var wg sync.WaitGroup
	defer wg.Wait()

	big := confBytes(1 << 20)
	p.write(&wg, confFrames(confBinary(big)), 0)
	// The echo has started: the server's writer is now blocked on a socket
	// the client does not read.
	h1, err := ws.ReadHeader(p.br)
	if err != nil || h1.OpCode != ws.OpBinary || h1.Length != int64(len(big)) {
		t.Fatalf("echo header %+v, %v", h1, err)
	}
	wg.Wait()
	p.write(&wg, [][]byte{frame}, 0)
	// The handler has seen in closed and closed out.
	select {
	case <-done:
	case <-time.After(confTimeout):
		t.Fatal("handler did not return")
	}
	if _, err := io.CopyN(io.Discard, p.br, h1.Length); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	m, err := p.next()
	if err != nil {
		t.Fatalf("waiting for the close frame: %v", err)
	}
	if m.op != ws.OpClose {
		t.Fatalf("got %s, want close", confOpName[m.op])
	}
	code := confCheckCloseFrame(t, m.data)
	if code != want {
		t.Errorf("close code on the wire %s (errs: %v), want %s", confCodes([]int{code}), <-errc, confCodes([]int{want}))
		return false
	}
	<-errc
	return true
}
