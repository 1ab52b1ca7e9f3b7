package wsasync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/wsasync/wsasync"
)

// ---- helpers shared by lifecycle_test.go, backpressure_test.go and
// security_test.go (prefix lc) ----

// lcWait bounds every wait in these tests: long enough for a loaded 2-core
// machine under the race detector, short enough that a bug fails, not hangs.
const lcWait = 5 * time.Second

// lcServer is an httptest server that reports each return of ServeHTTP.
type lcServer struct {
	*httptest.Server
	WS     string        // ws:// URL
	served chan struct{} // one value per ServeHTTP return
}

func lcServe(t testing.TB, h http.Handler) *lcServer {
	s := &lcServer{served: make(chan struct{}, 4096)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { s.served <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	s.WS = "ws" + strings.TrimPrefix(s.Server.URL, "http")
	t.Cleanup(s.Server.Close)
	return s
}

// waitServed waits until ServeHTTP has returned n times.
func (s *lcServer) waitServed(t testing.TB, n int, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for i := range n {
		select {
		case <-s.served:
		case <-timer.C:
			t.Fatalf("ServeHTTP returned %d times of %d within %v", i, n, d)
		}
	}
}

// lcLog is a goroutine-safe buffer for a slog handler.
type lcLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lcLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lcLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lcLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lcRecv receives from ch within d; ok is false when ch was closed.
func lcRecv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (v T, ok bool) {
	t.Helper()
	select {
	case v, ok = <-ch:
		return v, ok
	case <-time.After(d):
		t.Fatalf("%s: nothing within %v", what, d)
	}
	return v, false
}

// lcRecvErr is lcRecv for goroutines other than the test's: it reports
// instead of stopping.
func lcRecvErr[T any](ch <-chan T, d time.Duration) (v T, ok bool, timedOut bool) {
	select {
	case v, ok = <-ch:
		return v, ok, false
	case <-time.After(d):
		return v, false, true
	}
}

// lcSend sends m on out within d, reporting a panic (send on a closed
// channel) or a timeout as an error.
func lcSend(out chan<- wsasync.Message, m wsasync.Message, d time.Duration) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("send on out panicked: %v", v)
		}
	}()
	select {
	case out <- m:
		return nil
	case <-time.After(d):
		return fmt.Errorf("send on out blocked for %v", d)
	}
}

// lcEnd checks that errs yields exactly one *CloseError with code (and
// remote, and reason unless reason is "-", and cause unless nil) and is then
// closed. It returns "" or what is wrong.
func lcEnd(errs <-chan error, code wsasync.StatusCode, remote bool, reason string, cause error) string {
	err, ok, timedOut := lcRecvErr(errs, lcWait)
	switch {
	case timedOut:
		return "no error on errs"
	case !ok:
		return "errs closed without an error"
	}
	var ce *wsasync.CloseError
	if !errors.As(err, &ce) {
		return fmt.Sprintf("errs: %T %v, want *CloseError", err, err)
	}
	if ce.Code != code || ce.Remote != remote || (reason != "-" && ce.Reason != reason) {
		return fmt.Sprintf("errs: %v (code %d remote %v reason %q), want code %d remote %v reason %q",
			err, ce.Code, ce.Remote, ce.Reason, code, remote, reason)
	}
	if cause != nil && !errors.Is(err, cause) {
		return fmt.Sprintf("errs: %v, want errors.Is %v", err, cause)
	}
	if extra, ok, timedOut := lcRecvErr(errs, lcWait); timedOut || ok {
		return fmt.Sprintf("errs not closed after its one error (second receive: %v, ok %v, timed out %v)", extra, ok, timedOut)
	}
	return ""
}

// lcDrain receives from in until it is closed, within d.
func lcDrain(in <-chan wsasync.Message, d time.Duration) (n int, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-in:
			if !ok {
				return n, nil
			}
			n++
		case <-timer.C:
			return n, fmt.Errorf("in not closed within %v (%d messages)", d, n)
		}
	}
}

// lcDial opens a gorilla client connection.
func lcDial(url string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: lcWait}
	ctx, cancel := context.WithTimeout(context.Background(), lcWait)
	defer cancel()
	return d.DialContext(ctx, url, hdr)
}

// lcReadClose reads from c until an error and returns the peer's close code,
// or -1 and the error if it was not a close frame.
func lcReadClose(c *websocket.Conn) (int, string, error) {
	c.SetReadDeadline(time.Now().Add(lcWait))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text, nil
			}
			return -1, "", err
		}
	}
}

// lcRawDial opens a raw client connection with gobwas/ws for a peer that
// writes frames by hand and reads nothing.
func lcRawDial(t testing.TB, url string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lcWait)
	defer cancel()
	nc, br, _, err := ws.Dialer{Timeout: lcWait}.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if br != nil {
		// The server wrote right behind its handshake response; the
		// callers of lcRawDial never read, so these bytes do not matter.
		ws.PutReader(br)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// lcFail collects failures from many goroutines, counted per kind, so that a
// bug hit by hundreds of connections reports once per kind.
type lcFail struct {
	mu    sync.Mutex
	count map[string]int
	first map[string]string
}

func (f *lcFail) add(kind, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count == nil {
		f.count, f.first = map[string]int{}, map[string]string{}
	}
	if f.count[kind] == 0 {
		f.first[kind] = fmt.Sprintf(format, args...)
	}
	f.count[kind]++
}

func (f *lcFail) report(t *testing.T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for kind, n := range f.count {
		t.Errorf("%s: %d failures, first: %s", kind, n, f.first[kind])
	}
}

// ---- tests ----

// lcPaths are the ways a connection can end.
var lcPaths = []string{"closeout", "closed", "return", "panic", "peerclose", "peerdrop", "violation"}

// TestLifecycleCloseAllPaths runs 1,000 connections, 50 at a time, through
// every way a connection can end, and checks what each side sees and that
// every ServeHTTP returns (goleak in TestMain checks the goroutines).
func TestLifecycleCloseAllPaths(t *testing.T) {
	const (
		conns = 1000
		batch = 50
	)
	var logBuf lcLog
	var fails lcFail
	var panics atomic.Int64
	u := wsasync.Upgrader{Options: wsasync.Options{Logger: logBuf.logger()}}
	srv := lcServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Query().Get("p")
		id := r.URL.Query().Get("id")
		u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			check := func(code wsasync.StatusCode, remote bool, reason string, cause error) {
				if n, err := lcDrain(in, lcWait); err != nil {
					fails.add(path+": server in", "%s: %v", id, err)
				} else if n != 0 {
					fails.add(path+": server in", "%s: %d unexpected messages", id, n)
				}
				if s := lcEnd(errs, code, remote, reason, cause); s != "" {
					fails.add(path+": server errs", "%s: %s", id, s)
				}
			}
			switch path {
			case "closeout":
				close(out)
				check(wsasync.StatusNormalClosure, false, "", nil)
			case "closed":
				out <- wsasync.Closed(4001, "bye")
				check(4001, false, "bye", nil)
			case "return":
			case "panic":
				panics.Add(1)
				panic("lc-boom-" + id)
			case "peerclose":
				check(4002, true, "client bye", nil)
			case "peerdrop":
				check(wsasync.StatusAbnormalClosure, false, "-", nil)
			case "violation":
				check(wsasync.StatusProtocolError, false, "-", wsasync.ErrProtocol)
			default:
				fails.add("bad path", "%q", path)
			}
		}).ServeHTTP(w, r)
	}))

	client := func(i int) {
		path := lcPaths[i%len(lcPaths)]
		id := fmt.Sprint(i)
		c, _, err := lcDial(srv.WS+"/?p="+path+"&id="+id, nil)
		if err != nil {
			fails.add(path+": dial", "%s: %v", id, err)
			return
		}
		defer c.Close()
		want, wantText := 0, ""
		switch path {
		case "closeout", "return":
			want = websocket.CloseNormalClosure
		case "closed":
			want, wantText = 4001, "bye"
		case "panic":
			want, wantText = websocket.CloseInternalServerErr, "-"
		case "peerclose":
			if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "client bye"), time.Now().Add(lcWait)); err != nil {
				fails.add(path+": client write", "%s: %v", id, err)
				return
			}
			want = 4002 // echoed, without the reason
		case "peerdrop":
			c.NetConn().Close()
			return
		case "violation":
			// A frame with the reserved opcode 3, masked, empty.
			if _, err := c.NetConn().Write([]byte{0x83, 0x80, 0, 0, 0, 0}); err != nil {
				fails.add(path+": client write", "%s: %v", id, err)
				return
			}
			want, wantText = websocket.CloseProtocolError, "-"
		}
		code, text, err := lcReadClose(c)
		if err != nil || code != want || (wantText != "-" && text != wantText) {
			fails.add(path+": client close", "%s: got code %d %q (err %v), want %d %q", id, code, text, err, want, wantText)
		}
	}

	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	for range batch {
		wg.Go(func() {
			for i := range next {
				client(i)
			}
		})
	}
	for i := range conns {
		next <- i
	}
	close(next)
	wg.Wait()
	srv.waitServed(t, conns, 2*lcWait)
	t.Logf("%d connections through %d close paths in %v", conns, len(lcPaths), time.Since(start).Round(time.Millisecond))
	fails.report(t)

	log := logBuf.String()
	if got, want := int64(strings.Count(log, "handler panicked")), panics.Load(); got != want {
		t.Errorf("log has %d handler panics, want %d", got, want)
	}
	if !strings.Contains(log, "lc-boom-") {
		t.Errorf("log lacks the panic value: %.500s", log)
	}
}

// TestLifecycleSendAfterEnd: sends on out after the connection ended are
// discarded, never panic and never block, while a GoWebsocket handler runs or
// until a Listener's caller closes out.
func TestLifecycleSendAfterEnd(t *testing.T) {
	t.Run("GoWebsocket/peer dropped", func(t *testing.T) {
		result := make(chan string, 1)
		srv := lcServe(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			if _, err := lcDrain(in, lcWait); err != nil {
				result <- err.Error()
				return
			}
			if s := lcEnd(errs, wsasync.StatusAbnormalClosure, false, "-", nil); s != "" {
				result <- s
				return
			}
			for i := range 100 {
				m := wsasync.Text("late")
				if i%10 == 9 {
					m = wsasync.Closed(4000, "late close")
				}
				if err := lcSend(out, m, lcWait); err != nil {
					result <- fmt.Sprintf("send %d: %v", i, err)
					return
				}
			}
			result <- ""
		}))
		c, _, err := lcDial(srv.WS, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if s, _ := lcRecv(t, result, 3*lcWait, "handler"); s != "" {
			t.Fatal(s)
		}
		srv.waitServed(t, 1, lcWait)
	})

	t.Run("GoWebsocket/after own close", func(t *testing.T) {
		result := make(chan string, 1)
		srv := lcServe(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			out <- wsasync.Closed(4000, "done")
			// Right behind the close, while it is in flight, and after.
			for i := range 200 {
				if err := lcSend(out, wsasync.Text("late"), lcWait); err != nil {
					result <- fmt.Sprintf("send %d: %v", i, err)
					return
				}
				if i == 100 {
					if _, err := lcDrain(in, lcWait); err != nil {
						result <- err.Error()
						return
					}
				}
			}
			result <- lcEnd(errs, 4000, false, "done", nil)
		}))
		c, _, err := lcDial(srv.WS, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code, text, err := lcReadClose(c); code != 4000 || text != "done" {
			t.Errorf("client: close %d %q, err %v; want 4000 done (late sends must be discarded)", code, text, err)
		}
		if s, _ := lcRecv(t, result, 3*lcWait, "handler"); s != "" {
			t.Fatal(s)
		}
		srv.waitServed(t, 1, lcWait)
	})

	t.Run("Listener/unbuffered out", func(t *testing.T) {
		in := make(chan wsasync.Message)
		out := make(chan wsasync.Message)
		errs := make(chan error, 1)
		returned := make(chan struct{})
		srv := lcServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			wsasync.Listener(in, out, errs).ServeHTTP(w, r)
		}))
		outClosed := false
		defer func() {
			if !outClosed {
				close(out) // a failed check left ServeHTTP waiting
			}
		}()
		c, _, err := lcDial(srv.WS, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if n, err := lcDrain(in, lcWait); err != nil || n != 0 {
			t.Fatalf("in: %d messages, %v", n, err)
		}
		if s := lcEnd(errs, wsasync.StatusAbnormalClosure, false, "-", nil); s != "" {
			t.Fatal(s)
		}
		for i := range 100 {
			if err := lcSend(out, wsasync.Text("late"), lcWait); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		// Closing out lets the connection's last goroutine go (goleak
		// in TestMain checks it); ServeHTTP returned after the upgrade.
		close(out)
		outClosed = true
		lcRecv(t, returned, lcWait, "ServeHTTP return")
		srv.waitServed(t, 1, lcWait)
	})
}

// TestLifecyclePeerCloseDeliversAll: the messages a peer sends before its
// close are all delivered, in order, then in is closed, then errs yields
// exactly one error and is closed.
func TestLifecyclePeerCloseDeliversAll(t *testing.T) {
	const n = 1000
	gate := make(chan struct{})
	result := make(chan string, 1)
	srv := lcServe(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		// Read nothing until the peer has sent everything and its close.
		if _, _, timedOut := lcRecvErr(gate, 3*lcWait); timedOut {
			result <- "gate never opened"
			return
		}
		for i := range n {
			m, ok, timedOut := lcRecvErr(in, lcWait)
			if want := fmt.Sprint("m-", i); !ok || timedOut || m.Type != wsasync.TextMessage || string(m.Data) != want {
				result <- fmt.Sprintf("message %d: got %v %q ok %v timed out %v, want %q", i, m.Type, m.Data, ok, timedOut, want)
				return
			}
		}
		if k, err := lcDrain(in, lcWait); err != nil || k != 0 {
			result <- fmt.Sprintf("after %d messages: %d more, %v", n, k, err)
			return
		}
		result <- lcEnd(errs, 4003, true, "done", nil)
	}))
	c, _, err := lcDial(srv.WS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(lcWait))
	for i := range n {
		if err := c.WriteMessage(websocket.TextMessage, fmt.Append(nil, "m-", i)); err != nil {
			close(gate)
			t.Fatal(err)
		}
	}
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4003, "done"), time.Now().Add(lcWait)); err != nil {
		close(gate)
		t.Fatal(err)
	}
	close(gate)
	if s, _ := lcRecv(t, result, 3*lcWait, "handler"); s != "" {
		t.Error(s)
	}
	if code, _, err := lcReadClose(c); code != 4003 {
		t.Errorf("client: close %d, err %v; want the echo of 4003", code, err)
	}
	srv.waitServed(t, 1, lcWait)
}

// TestLifecycleListener: the caller's own channels, as the caller made them.
func TestLifecycleListener(t *testing.T) {
	t.Run("unbuffered echo", func(t *testing.T) {
		in := make(chan wsasync.Message)
		out := make(chan wsasync.Message)
		errs := make(chan error, 1)
		srv := lcServe(t, wsasync.Listener(in, out, errs))
		result := make(chan string, 1)
		go func() {
			defer close(out)
			for {
				m, ok, timedOut := lcRecvErr(in, 2*lcWait)
				if timedOut {
					result <- "in not closed"
					return
				}
				if !ok {
					break
				}
				if err := lcSend(out, m, lcWait); err != nil {
					result <- err.Error()
					return
				}
			}
			result <- lcEnd(errs, 4005, true, "bye", nil)
		}()
		c, _, err := lcDial(srv.WS, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(lcWait))
		for i := range 50 {
			want := fmt.Sprint("echo-", i)
			if err := c.WriteMessage(websocket.TextMessage, []byte(want)); err != nil {
				t.Fatal(err)
			}
			if typ, p, err := c.ReadMessage(); err != nil || typ != websocket.TextMessage || string(p) != want {
				t.Fatalf("echo %d: %d %q %v", i, typ, p, err)
			}
		}
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4005, "bye"), time.Now().Add(lcWait))
		if code, _, err := lcReadClose(c); code != 4005 {
			t.Errorf("client: close %d, err %v; want 4005", code, err)
		}
		if s, _ := lcRecv(t, result, 3*lcWait, "caller"); s != "" {
			t.Error(s)
		}
		srv.waitServed(t, 1, lcWait)
	})

	t.Run("handshake refused", func(t *testing.T) {
		in := make(chan wsasync.Message)
		out := make(chan wsasync.Message)
		errs := make(chan error, 1)
		var logBuf lcLog
		u := wsasync.Upgrader{Options: wsasync.Options{Logger: logBuf.logger()}}
		srv := lcServe(t, u.Listener(in, out, errs))
		// A sender that, like any caller's, started before the handshake.
		sent := make(chan error, 1)
		go func() { sent <- lcSend(out, wsasync.Text("early"), 2*time.Second) }()
		defer close(out)

		_, resp, err := lcDial(srv.WS, http.Header{"Origin": {"http://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial: %v, response %v; want 403", err, resp)
		}
		srv.waitServed(t, 1, lcWait)
		if _, ok := lcRecv(t, in, lcWait, "in"); ok {
			t.Error("in delivered a message")
		}
		e, ok := lcRecv(t, errs, lcWait, "errs")
		var re *wsasync.RefusedError
		if !ok || !errors.As(e, &re) || re.Status != http.StatusForbidden {
			t.Errorf("errs: %v (ok %v), want the *RefusedError with 403", e, ok)
		}
		if _, ok := lcRecv(t, errs, lcWait, "errs"); ok {
			t.Error("errs not closed after the refusal")
		}
		// The documented promise "after the connection ends, sends on out
		// are discarded until the caller closes it, so that no sender
		// blocks forever" holds for a refused handshake too.
		if err, _ := lcRecv(t, sent, lcWait, "send on out"); err != nil {
			t.Errorf("after a refused handshake: %v", err)
		}
	})
}

// TestLifecycleDial: the client side of the same semantics.
func TestLifecycleDial(t *testing.T) {
	t.Run("close Out", func(t *testing.T) {
		result := make(chan string, 1)
		srv := lcServe(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			defer close(out)
			n, err := lcDrain(in, lcWait)
			if err != nil || n != 10 {
				result <- fmt.Sprintf("server got %d messages, %v; want 10", n, err)
				return
			}
			result <- lcEnd(errs, wsasync.StatusNormalClosure, true, "", nil)
		}))
		ctx, cancel := context.WithTimeout(context.Background(), lcWait)
		defer cancel()
		c, err := wsasync.Dial(ctx, srv.WS)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if err := lcSend(c.Out, wsasync.Text("x"), lcWait); err != nil {
				close(c.Out)
				t.Fatal(err)
			}
		}
		close(c.Out)
		if n, err := lcDrain(c.In, lcWait); err != nil || n != 0 {
			t.Errorf("client In: %d messages, %v", n, err)
		}
		if s := lcEnd(c.Errs, wsasync.StatusNormalClosure, false, "", nil); s != "" {
			t.Error("client:", s)
		}
		if s, _ := lcRecv(t, result, 2*lcWait, "server"); s != "" {
			t.Error(s)
		}
		srv.waitServed(t, 1, lcWait)
	})

	t.Run("server going away", func(t *testing.T) {
		srv := lcServe(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			for i := range 3 {
				out <- wsasync.Text(fmt.Sprint("before-", i))
			}
			out <- wsasync.Closed(wsasync.StatusGoingAway, "going away")
			lcDrain(in, lcWait)
		}))
		ctx, cancel := context.WithTimeout(context.Background(), lcWait)
		defer cancel()
		c, err := wsasync.Dial(ctx, srv.WS)
		if err != nil {
			t.Fatal(err)
		}
		defer close(c.Out)
		for i := range 3 {
			m, ok := lcRecv(t, c.In, lcWait, "client In")
			if want := fmt.Sprint("before-", i); !ok || string(m.Data) != want {
				t.Fatalf("client In: %q ok %v, want %q", m.Data, ok, want)
			}
		}
		if n, err := lcDrain(c.In, lcWait); err != nil || n != 0 {
			t.Errorf("client In: %d more messages, %v", n, err)
		}
		if s := lcEnd(c.Errs, wsasync.StatusGoingAway, true, "going away", nil); s != "" {
			t.Error("client:", s)
		}
		// Out is drained until it is closed.
		for i := range 50 {
			if err := lcSend(c.Out, wsasync.Text("late"), lcWait); err != nil {
				t.Fatalf("client send %d after the end: %v", i, err)
			}
		}
		srv.waitServed(t, 1, lcWait)
	})
}
