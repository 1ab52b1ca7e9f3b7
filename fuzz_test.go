package wsasync_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
)

// fuzzReadLimit is the fuzzed server's read limit: small, so that inputs
// reach it.
const fuzzReadLimit = 64 << 10

// fuzzTimeout bounds one fuzz iteration's connection: a server that neither
// answers nor closes within it has hung.
const fuzzTimeout = 5 * time.Second

// FuzzServerRead writes arbitrary bytes to a server connection right after a
// successful handshake, then closes the client's sending side. The server must
// not panic or hang, must send only well-formed unmasked frames, and must end
// as a reference reading of the same bytes says: echoing (a prefix of) the
// messages in them and answering their pings, then closing with the code due
// (the peer's close echoed, 1002, 1007 or 1009), or, when the bytes end
// without a close or an error, closing TCP without a close frame. The handler
// must see the same ending on errs. TestMain's goleak check covers leaks.
func FuzzServerRead(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	fs := newFuzzServer()
	f.Cleanup(fs.srv.Close)
	f.Fuzz(func(t *testing.T, data []byte) {
		fs.run(t, data)
	})
}

// fuzzSeeds are frames that reach each way the reader can end.
func fuzzSeeds() [][]byte {
	join := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	return [][]byte{
		nil,
		join(confText("hello"), confBinary([]byte{0, 1, 2, 0xff})),
		join(confPing([]byte("ping")), confClose(1000, "bye")),
		join(bytes.Join(confFragments(ws.OpText, []byte(confKosme), 1), nil), confPing(nil), confClose(4000, "")),
		confFrame(true, 0, ws.OpText, false, []byte("unmasked")),
		confFrame(true, 3, ws.OpText, true, []byte("rsv")),
		confData(11, true, []byte("reserved opcode")),
		confPing(confBytes(126)),
		join(confData(ws.OpText, false, []byte(confKosme[:3])), confData(ws.OpContinuation, true, []byte("\xed\xa0\x80"))),
		confData(ws.OpClose, true, []byte{3}),
		confClose(1005, ""),
		confClose(1000, "\xff"),
		confBinary(confBytes(fuzzReadLimit + 1))[:14],
		join(confData(ws.OpBinary, false, confBytes(fuzzReadLimit/2)), confData(ws.OpContinuation, true, confBytes(fuzzReadLimit/2+1))[:14]),
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		confText("truncated")[:8],
		confData(ws.OpContinuation, true, []byte("no start")),
		join(confData(ws.OpText, false, []byte("a")), confData(ws.OpBinary, true, []byte("b"))),
		join(confClose(1000, ""), confText("after close")),
	}
}

type fuzzServer struct {
	srv  *httptest.Server
	next atomic.Int64
	mu   sync.Mutex
	errc map[string]chan error // by the id in the request's query
}

func newFuzzServer() *fuzzServer {
	fs := &fuzzServer{errc: make(map[string]chan error)}
	u := wsasync.Upgrader{Options: wsasync.Options{
		ReadLimit:    fuzzReadLimit,
		PingInterval: -1, // the client closes its side; no keepalive needed
		Logger:       slog.New(slog.DiscardHandler),
	}}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		errc := fs.errc[r.URL.Query().Get("id")]
		fs.mu.Unlock()
		if errc == nil {
			http.Error(w, "unknown id", http.StatusNotFound)
			return
		}
		u.GoWebsocket(confEcho(errc)).ServeHTTP(w, r)
	}))
	return fs
}

const fuzzNoClose = -2

// fuzzWant is how the server must end for some input.
type fuzzWant struct {
	msgs   []confMsg
	pings  [][]byte
	close  int  // the code due, confEmpty, or fuzzNoClose
	remote bool // close echoes the client's
}

func fuzzIsSendable(code uint16) bool {
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
}

// fuzzModel reads data as RFC 6455 says a server must: the reference the
// server is compared with.
func fuzzModel(data []byte) fuzzWant {
	var w fuzzWant
	r := bytes.NewReader(data)
	fail := func(code int) fuzzWant { w.close = code; return w }
	var (
		frag bool
		op   ws.OpCode
		msg  []byte
	)
	for {
		h, err := ws.ReadHeader(r)
		switch {
		case errors.Is(err, ws.ErrHeaderLengthMSB):
			return fail(1002)
		case err != nil:
			return fail(fuzzNoClose)
		}
		// Reserved opcodes, oversized or fragmented control frames, RSV
		// bits, unmasked frames, and continuations that do not continue.
		switch {
		case h.OpCode > ws.OpBinary && h.OpCode < ws.OpClose, h.OpCode > ws.OpPong,
			h.OpCode.IsControl() && (h.Length > 125 || !h.Fin),
			h.Rsv != 0,
			!h.Masked,
			frag && h.OpCode.IsData() && h.OpCode != ws.OpContinuation,
			!frag && h.OpCode == ws.OpContinuation:
			return fail(1002)
		}
		if h.OpCode.IsData() && h.Length > int64(fuzzReadLimit-len(msg)) {
			return fail(1009)
		}
		if h.Length > int64(r.Len()) {
			return fail(fuzzNoClose)
		}
		p := make([]byte, h.Length)
		r.Read(p)
		ws.Cipher(p, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			w.pings = append(w.pings, p)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			switch {
			case len(p) == 0:
				w.remote = true
				return fail(confEmpty)
			case len(p) == 1, !fuzzIsSendable(binary.BigEndian.Uint16(p)):
				return fail(1002)
			case !utf8.Valid(p[2:]):
				return fail(1007)
			}
			w.remote = true
			return fail(int(binary.BigEndian.Uint16(p)))
		}
		if h.OpCode != ws.OpContinuation {
			op = h.OpCode
		}
		msg = append(msg, p...)
		if frag = !h.Fin; frag {
			continue
		}
		if op == ws.OpText && !utf8.Valid(msg) {
			return fail(1007)
		}
		w.msgs = append(w.msgs, confMsg{op, msg})
		msg = nil
	}
}

func (fs *fuzzServer) run(t *testing.T, data []byte) {
	want := fuzzModel(data)

	id := strconv.FormatInt(fs.next.Add(1), 10)
	errc := make(chan error, 1)
	fs.mu.Lock()
	fs.errc[id] = errc
	fs.mu.Unlock()
	defer func() {
		fs.mu.Lock()
		delete(fs.errc, id)
		fs.mu.Unlock()
	}()

	u, err := url.Parse(confURL(fs.srv) + "/?id=" + id)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(fuzzTimeout))
	br, _, err := ws.Dialer{}.Upgrade(nc, u)
	if err != nil {
		t.Fatal(err)
	}
	r := &fuzzCounter{r: nc}
	if br != nil {
		r.r = br
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// The server may close while this still writes.
		nc.Write(data)
		nc.(*net.TCPConn).CloseWrite()
	})

	// Everything the server sends, until it closes TCP.
	var (
		msgs      []confMsg
		pongs     [][]byte
		closeData []byte
		gotClose  bool
		cur       *confMsg
	)
	for {
		at := r.n
		h, err := ws.ReadHeader(r)
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("the server did not close within %v", fuzzTimeout)
			case r.n != at || cur != nil:
				t.Fatalf("the server's stream ends in the middle of a frame or message: %v", err)
			case !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("reading: %v", err)
			}
			break
		}
		switch {
		case h.Masked || h.Rsv != 0:
			t.Fatalf("bad server frame header %+v", h)
		case gotClose:
			t.Fatalf("server frame %+v after its close frame", h)
		case h.OpCode.IsControl() && (!h.Fin || h.Length > 125):
			t.Fatalf("bad server control frame %+v", h)
		case h.Length > fuzzReadLimit:
			t.Fatalf("server frame of %d bytes: echoes at most %d", h.Length, fuzzReadLimit)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(r, p); err != nil {
			t.Fatalf("reading a server frame's payload: %v", err)
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			if (h.OpCode == ws.OpContinuation) != (cur != nil) {
				t.Fatalf("server frame %+v out of sequence", h)
			}
			if cur == nil {
				cur = &confMsg{op: h.OpCode}
			}
			cur.data = append(cur.data, p...)
			if h.Fin {
				msgs = append(msgs, *cur)
				cur = nil
			}
		case ws.OpPong:
			pongs = append(pongs, p)
		case ws.OpClose:
			closeData, gotClose = p, true
		default:
			t.Fatalf("server sent opcode %v", h.OpCode)
		}
	}

	// The echoes are those the reference reading found, maybe cut short by
	// the end of the connection, and pongs answer pings.
	if len(msgs) > len(want.msgs) {
		t.Fatalf("server echoed %d messages, the input holds %d", len(msgs), len(want.msgs))
	}
	for i, m := range msgs {
		if m.op != want.msgs[i].op || !bytes.Equal(m.data, want.msgs[i].data) {
			t.Fatalf("echo %d: got %v, want %v", i, m, want.msgs[i])
		}
	}
	for _, p := range pongs {
		if !slices.ContainsFunc(want.pings, func(q []byte) bool { return bytes.Equal(p, q) }) {
			t.Fatalf("pong %q answers no ping", p)
		}
	}

	// The close frame.
	got := fuzzNoClose
	if gotClose {
		switch len(closeData) {
		case 0:
			got = confEmpty
		case 1:
			t.Fatalf("1-byte close payload %q", closeData)
		default:
			got = int(binary.BigEndian.Uint16(closeData))
			if !utf8.Valid(closeData[2:]) {
				t.Errorf("close reason %q is not UTF-8", closeData[2:])
			}
		}
		if !want.remote && !slices.Contains([]int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011}, got) {
			t.Errorf("server closed with %d", got)
		}
	}
	if got != want.close {
		t.Errorf("close %s, want %s (remote: %v)", fuzzCode(got), fuzzCode(want.close), want.remote)
	}

	// What the handler saw.
	var end error
	select {
	case end = <-errc:
	case <-time.After(fuzzTimeout):
		t.Fatal("the handler received nothing on errs")
	}
	var ce *wsasync.CloseError
	if !errors.As(end, &ce) {
		t.Fatalf("errs delivered %T %v", end, end)
	}
	wantCode := wsasync.StatusCode(want.close)
	switch want.close {
	case confEmpty:
		wantCode = wsasync.StatusNoStatusReceived
	case fuzzNoClose:
		wantCode = wsasync.StatusAbnormalClosure
	}
	if ce.Code != wantCode || ce.Remote != want.remote {
		t.Errorf("errs: %v (Remote %v), want code %v (Remote %v)", end, ce.Remote, wantCode, want.remote)
	}
}

// fuzzCounter counts the bytes read through it.
type fuzzCounter struct {
	r io.Reader
	n int64
}

func (c *fuzzCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func fuzzCode(c int) string {
	switch c {
	case fuzzNoClose:
		return "none (TCP close)"
	case confEmpty:
		return "empty"
	}
	return strconv.Itoa(c)
}
