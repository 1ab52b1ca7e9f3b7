package wsasync_test

// Interoperability tests: wsasync against WebSocket implementations written
// elsewhere — gorilla/websocket (client and server), the npm ws package run
// by node (client and server) and Python's websockets (client); the scripts
// are in testdata/interop. The node tests skip when node or node_modules/ws is
// missing (`npm ci` at the repo root installs it), the Python test when no
// python3 imports websockets (apt-get install python3-websockets); both fail
// instead under WSASYNC_REQUIRE_ALL=1.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/internal/testenv"
)

// interopWait bounds every wait in these tests, so that a bug fails a test
// rather than hanging it.
const interopWait = 15 * time.Second

// interopPingOptions ping every 10 ms and give up on a peer silent for
// 10 ms + 1 s. The pong timeout leaves room for a loaded CI machine to stall
// a goroutine; interopPings pings take longer than it, so a side that never
// answered or never took the pongs would end the connection before the count.
var interopPingOptions = wsasync.Options{PingInterval: 10 * time.Millisecond, PongTimeout: time.Second}

const interopPings = 150

// interopBig returns n bytes of the pattern the node scripts also build:
// byte i is i % 251.
func interopBig(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// interopCase is a message echoed in both directions, named as
// ws_client.mjs names it.
type interopCase struct {
	name string
	msg  wsasync.Message
}

// interopCaseList is the messages ws_client.mjs sends, in its order: texts
// (one non-ASCII), binaries, empty ones, and both kinds at exactly the
// default read limit, which is inclusive.
func interopCaseList() []interopCase {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return []interopCase{
		{"text", wsasync.Text("hello")},
		{"utf8", wsasync.Text("héllo wörld ✓ 🌍")},
		{"empty-text", wsasync.Text("")},
		{"binary", wsasync.Binary(b)},
		{"empty-binary", wsasync.Binary(nil)},
		{"big-binary", wsasync.Binary(interopBig(wsasync.DefaultReadLimit))},
		{"big-text", wsasync.Text(strings.Repeat("a", wsasync.DefaultReadLimit))},
	}
}

// interopRecv receives from ch within interopWait. ok is false when ch was
// closed.
func interopRecv[T any](t *testing.T, ch <-chan T, what string) (v T, ok bool) {
	t.Helper()
	timer := time.NewTimer(interopWait)
	defer timer.Stop()
	select {
	case v, ok = <-ch:
		return v, ok
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", interopWait, what)
	}
	return v, false
}

// interopMust receives a value from ch within interopWait and fails if ch is
// closed instead.
func interopMust[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	v, ok := interopRecv(t, ch, what)
	if !ok {
		t.Fatalf("%s: channel closed", what)
	}
	return v
}

func interopSend(t *testing.T, out chan<- wsasync.Message, m wsasync.Message) {
	t.Helper()
	timer := time.NewTimer(interopWait)
	defer timer.Stop()
	select {
	case out <- m:
	case <-timer.C:
		t.Fatalf("timed out sending a %v message", m.Type)
	}
}

// interopServer serves h on a test server and returns its ws:// URL. Cleanup
// closes the server and waits for every request's ServeHTTP to return, so
// that no connection goroutine outlives the test.
func interopServer(t *testing.T, h http.Handler) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		// Close waits for the requests not yet hijacked, so every wg.Add
		// has happened when it returns.
		srv.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(interopWait):
			t.Errorf("a server connection did not end within %v", interopWait)
		}
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// interopSeen is what a wsasync handler saw: the messages on in, in order,
// and the one error on errs.
type interopSeen struct {
	msgs []wsasync.Message
	err  error
}

// interopDrain reads in until it is closed, then errs, and reports both.
func interopDrain(in <-chan wsasync.Message, errs <-chan error, msgs []wsasync.Message) interopSeen {
	for m := range in {
		msgs = append(msgs, m)
	}
	return interopSeen{msgs: msgs, err: <-errs}
}

// interopCloseErr checks that err is a *wsasync.CloseError with code, reason
// and remote.
func interopCloseErr(t *testing.T, err error, code wsasync.StatusCode, reason string, remote bool) *wsasync.CloseError {
	t.Helper()
	var ce *wsasync.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("errs gave %T %v, want a *wsasync.CloseError", err, err)
	}
	if ce.Code != code || ce.Reason != reason || ce.Remote != remote {
		t.Errorf("errs gave {Code: %v, Reason: %q, Remote: %v} (%v), want {Code: %v, Reason: %q, Remote: %v}",
			ce.Code, ce.Reason, ce.Remote, err, code, reason, remote)
	}
	return ce
}

func interopSameMsg(t *testing.T, what string, got, want wsasync.Message) {
	t.Helper()
	if got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("%s: got %v message of %d bytes, want %v of %d bytes (equal: %v)",
			what, got.Type, len(got.Data), want.Type, len(want.Data), bytes.Equal(got.Data, want.Data))
	}
}

// ---- wsasync server, gorilla/websocket client ----

func interopGorillaDial(t *testing.T, d *websocket.Dialer, url string) *websocket.Conn {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{}
	}
	d.HandshakeTimeout = interopWait
	ctx, cancel := context.WithTimeout(context.Background(), interopWait)
	defer cancel()
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatalf("gorilla dial %s: %v", url, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(interopWait))
	c.SetWriteDeadline(time.Now().Add(interopWait))
	return c
}

// interopGorillaCloseErr reads until an error and checks that it is the
// close with code and text.
func interopGorillaCloseErr(t *testing.T, c *websocket.Conn, code int, text string) {
	t.Helper()
	for {
		typ, p, err := c.ReadMessage()
		if err == nil {
			t.Errorf("gorilla read an unexpected %d message of %d bytes before the close", typ, len(p))
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("gorilla read %T %v, want *websocket.CloseError %d %q", err, err, code, text)
		}
		if ce.Code != code || ce.Text != text {
			t.Fatalf("gorilla got close %d %q, want %d %q", ce.Code, ce.Text, code, text)
		}
		return
	}
}

func interopGorillaType(m wsasync.Message) int {
	if m.Type == wsasync.BinaryMessage {
		return websocket.BinaryMessage
	}
	return websocket.TextMessage
}

// interopEchoHandler echoes every message and reports what it saw.
func interopEchoHandler(seen chan<- interopSeen) wsasync.Handler {
	return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		var msgs []wsasync.Message
		for m := range in {
			msgs = append(msgs, m)
			out <- m
		}
		seen <- interopSeen{msgs: msgs, err: <-errs}
	}
}

func TestInteropGorillaClient(t *testing.T) {
	t.Run("echo", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		c := interopGorillaDial(t, nil, interopServer(t, wsasync.GoWebsocket(interopEchoHandler(seen))))
		cases := interopCaseList()
		for _, tc := range cases {
			if err := c.WriteMessage(interopGorillaType(tc.msg), tc.msg.Data); err != nil {
				t.Fatalf("%s: write: %v", tc.name, err)
			}
			typ, p, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("%s: read the echo: %v", tc.name, err)
			}
			if typ != interopGorillaType(tc.msg) || !bytes.Equal(p, tc.msg.Data) {
				t.Errorf("%s: echo is a %d message of %d bytes, want %d of %d", tc.name, typ, len(p), interopGorillaType(tc.msg), len(tc.msg.Data))
			}
		}
		if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
			t.Fatal(err)
		}
		interopGorillaCloseErr(t, c, websocket.CloseNormalClosure, "")
		s := interopMust(t, seen, "the handler")
		if len(s.msgs) != len(cases) {
			t.Fatalf("handler got %d messages, want %d", len(s.msgs), len(cases))
		}
		for i, tc := range cases {
			interopSameMsg(t, "handler got "+tc.name, s.msgs[i], tc.msg)
		}
		interopCloseErr(t, s.err, wsasync.StatusNormalClosure, "", true)
	})

	t.Run("read limit exceeded", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		c := interopGorillaDial(t, nil, interopServer(t, wsasync.GoWebsocket(interopEchoHandler(seen))))
		// The write may fail when the server closes before reading it all.
		c.WriteMessage(websocket.BinaryMessage, interopBig(wsasync.DefaultReadLimit+1))
		interopGorillaCloseErr(t, c, websocket.CloseMessageTooBig, "message too big")
		s := interopMust(t, seen, "the handler")
		if len(s.msgs) != 0 {
			t.Errorf("handler got %d messages, want none", len(s.msgs))
		}
		interopCloseErr(t, s.err, wsasync.StatusMessageTooBig, "message too big", false)
		if !errors.Is(s.err, wsasync.ErrReadLimit) {
			t.Errorf("errs gave %v, want ErrReadLimit", s.err)
		}
	})

	t.Run("invalid UTF-8", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		c := interopGorillaDial(t, nil, interopServer(t, wsasync.GoWebsocket(interopEchoHandler(seen))))
		if err := c.WriteMessage(websocket.TextMessage, []byte("bad \xff")); err != nil {
			t.Fatal(err)
		}
		interopGorillaCloseErr(t, c, websocket.CloseInvalidFramePayloadData, "invalid UTF-8")
		s := interopMust(t, seen, "the handler")
		if !errors.Is(s.err, wsasync.ErrInvalidUTF8) {
			t.Errorf("errs gave %v, want ErrInvalidUTF8", s.err)
		}
	})

	// The client sends three messages and a close with 4001 "bye" before the
	// handler reads anything: the handler must get all three, then in
	// closed, then the peer's close on errs.
	for _, inBuf := range []int{0, -1} {
		t.Run(fmt.Sprintf("client closes 4001 InBuffer=%d", inBuf), func(t *testing.T) {
			sent := make(chan struct{})
			seen := make(chan interopSeen, 1)
			u := &wsasync.Upgrader{Options: wsasync.Options{InBuffer: inBuf}}
			url := interopServer(t, u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
				select {
				case <-sent:
				case <-time.After(interopWait):
				}
				seen <- interopDrain(in, errs, nil)
			}))
			c := interopGorillaDial(t, nil, url)
			want := []string{"one", "two", "three"}
			for _, s := range want {
				if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye")); err != nil {
				t.Fatal(err)
			}
			close(sent)
			interopGorillaCloseErr(t, c, 4001, "")
			s := interopMust(t, seen, "the handler")
			var got []string
			for _, m := range s.msgs {
				got = append(got, string(m.Data))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("handler got %q before in closed, want %q", got, want)
			}
			ce := interopCloseErr(t, s.err, 4001, "bye", true)
			if ce.Err != nil {
				t.Errorf("CloseError.Err = %v, want nil for a clean close", ce.Err)
			}
		})
	}

	// The handler sends a message and Closed: gorilla reads the message,
	// then the close with its code and text.
	for _, tc := range []struct {
		code   wsasync.StatusCode
		reason string
	}{
		{wsasync.StatusGoingAway, "Gone Away"},
		{4003, "server bye"},
	} {
		t.Run(fmt.Sprintf("server sends Closed %d", tc.code), func(t *testing.T) {
			seen := make(chan interopSeen, 1)
			url := interopServer(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
				var msgs []wsasync.Message
				if m, ok := <-in; ok {
					msgs = append(msgs, m)
					out <- wsasync.Text("last words")
					out <- wsasync.Closed(tc.code, tc.reason)
				}
				seen <- interopDrain(in, errs, msgs)
			}))
			c := interopGorillaDial(t, nil, url)
			if err := c.WriteMessage(websocket.TextMessage, []byte("go")); err != nil {
				t.Fatal(err)
			}
			typ, p, err := c.ReadMessage()
			if err != nil || typ != websocket.TextMessage || string(p) != "last words" {
				t.Fatalf("gorilla read %d %q %v, want the text \"last words\"", typ, p, err)
			}
			interopGorillaCloseErr(t, c, int(tc.code), tc.reason)
			s := interopMust(t, seen, "the handler")
			interopCloseErr(t, s.err, tc.code, tc.reason, false)
		})
	}

	t.Run("server closes out", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		url := interopServer(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			out <- wsasync.Text("bye")
			close(out)
			seen <- interopDrain(in, errs, nil)
		}))
		c := interopGorillaDial(t, nil, url)
		typ, p, err := c.ReadMessage()
		if err != nil || typ != websocket.TextMessage || string(p) != "bye" {
			t.Fatalf("gorilla read %d %q %v, want the text \"bye\"", typ, p, err)
		}
		interopGorillaCloseErr(t, c, websocket.CloseNormalClosure, "")
		interopCloseErr(t, interopMust(t, seen, "the handler").err, wsasync.StatusNormalClosure, "", false)
	})

	t.Run("handler returns", func(t *testing.T) {
		url := interopServer(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			out <- wsasync.Text("only")
		}))
		c := interopGorillaDial(t, nil, url)
		typ, p, err := c.ReadMessage()
		if err != nil || typ != websocket.TextMessage || string(p) != "only" {
			t.Fatalf("gorilla read %d %q %v, want the text \"only\"", typ, p, err)
		}
		interopGorillaCloseErr(t, c, websocket.CloseNormalClosure, "")
	})

	t.Run("client ping", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		c := interopGorillaDial(t, nil, interopServer(t, wsasync.GoWebsocket(interopEchoHandler(seen))))
		pongs := make(chan string, 1)
		c.SetPongHandler(func(s string) error {
			pongs <- s
			return nil
		})
		if err := c.WriteControl(websocket.PingMessage, []byte("gorilla-ping"), time.Now().Add(interopWait)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
			t.Fatal(err)
		}
		// The server answers the ping before it answers the close, and
		// gorilla runs the pong handler while reading up to the close.
		interopGorillaCloseErr(t, c, websocket.CloseNormalClosure, "")
		select {
		case p := <-pongs:
			if p != "gorilla-ping" {
				t.Errorf("pong payload %q, want %q", p, "gorilla-ping")
			}
		default:
			t.Error("no pong before the close")
		}
		interopMust(t, seen, "the handler")
	})

	// The server pings every 10 ms and drops a peer silent for 10 ms +
	// 1 s. gorilla answers pings while it reads: after 150 pings (well
	// past the idle limit) the connection must still echo.
	t.Run("server pings", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		u := &wsasync.Upgrader{Options: interopPingOptions}
		c := interopGorillaDial(t, nil, interopServer(t, u.GoWebsocket(interopEchoHandler(seen))))
		const want = interopPings
		enough := make(chan struct{})
		var n atomic.Int32
		c.SetPingHandler(func(s string) error {
			if n.Add(1) == want {
				close(enough)
			}
			return c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(interopWait))
		})
		reads := make(chan string, 1)
		readErr := make(chan error, 1)
		go func() {
			for {
				_, p, err := c.ReadMessage()
				if err != nil {
					readErr <- err
					return
				}
				reads <- string(p)
			}
		}()
		select {
		case <-enough:
		case err := <-readErr:
			t.Fatalf("connection ended after %d pings: %v", n.Load(), err)
		case <-time.After(interopWait):
			t.Fatalf("timed out waiting for %d pings", want)
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("alive")); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-reads:
			if p != "alive" {
				t.Errorf("echo %q, want \"alive\"", p)
			}
		case err := <-readErr:
			t.Fatalf("connection ended: %v", err)
		case <-time.After(interopWait):
			t.Fatal("timed out waiting for the echo")
		}
		if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
			t.Fatal(err)
		}
		err := interopMust(t, readErr, "gorilla's read to end")
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Errorf("gorilla read %v, want close 1000", err)
		}
		interopCloseErr(t, interopMust(t, seen, "the handler").err, wsasync.StatusNormalClosure, "", true)
	})

	t.Run("subprotocol", func(t *testing.T) {
		for _, tc := range []struct {
			name           string
			server, client []string
			want           string
		}{
			{"one in common", []string{"chat"}, []string{"superchat", "chat"}, "chat"},
			{"server preference wins", []string{"v2", "v1"}, []string{"v1", "v2"}, "v2"},
			{"none in common", []string{"chat"}, []string{"other"}, ""},
			{"server speaks none", nil, []string{"chat"}, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				seen := make(chan interopSeen, 1)
				u := &wsasync.Upgrader{Subprotocols: tc.server}
				c := interopGorillaDial(t, &websocket.Dialer{Subprotocols: tc.client}, interopServer(t, u.GoWebsocket(interopEchoHandler(seen))))
				if got := c.Subprotocol(); got != tc.want {
					t.Errorf("server %q, client %q: negotiated %q, want %q", tc.server, tc.client, got, tc.want)
				}
				c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
				interopGorillaCloseErr(t, c, websocket.CloseNormalClosure, "")
				interopMust(t, seen, "the handler")
			})
		}
	})
}

// ---- wsasync.Dial client, gorilla/websocket server ----

// interopClient is a wsasync client connection whose Out is closed once.
type interopClient struct {
	*wsasync.Conn
	once sync.Once
}

func (c *interopClient) closeOut() { c.once.Do(func() { close(c.Out) }) }

// interopDial dials url; Cleanup closes Out and waits for Errs to close, that
// is for the connection to end.
func interopDial(t *testing.T, d *wsasync.Dialer, url string) *interopClient {
	t.Helper()
	if d == nil {
		d = &wsasync.Dialer{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), interopWait)
	defer cancel()
	conn, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("wsasync.Dial %s: %v", url, err)
	}
	c := &interopClient{Conn: conn}
	t.Cleanup(func() {
		c.closeOut()
		timer := time.NewTimer(interopWait)
		defer timer.Stop()
		for {
			select {
			case _, ok := <-c.Errs:
				if !ok {
					return
				}
			case <-timer.C:
				t.Errorf("client connection to %s did not end within %v", url, interopWait)
				return
			}
		}
	})
	return c
}

// interopClientEnd checks that In closes with no further message and that
// Errs then gives the close with code, reason and remote.
func interopClientEnd(t *testing.T, c *interopClient, code wsasync.StatusCode, reason string, remote bool) *wsasync.CloseError {
	t.Helper()
	if m, ok := interopRecv(t, c.In, "In to close"); ok {
		t.Fatalf("In gave a %v message %q, want it closed", m.Type, m.Data)
	}
	return interopCloseErr(t, interopMust(t, c.Errs, "the error on Errs"), code, reason, remote)
}

// interopGorillaServer serves script on a gorilla Upgrader; the connection is
// closed when script returns.
func interopGorillaServer(t *testing.T, up *websocket.Upgrader, script func(c *websocket.Conn)) string {
	t.Helper()
	if up == nil {
		up = &websocket.Upgrader{}
	}
	return interopServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(interopWait))
		c.SetWriteDeadline(time.Now().Add(interopWait))
		script(c)
	}))
}

// interopGorillaEcho echoes until an error, which it returns.
func interopGorillaEcho(c *websocket.Conn) error {
	for {
		typ, p, err := c.ReadMessage()
		if err != nil {
			return err
		}
		if err := c.WriteMessage(typ, p); err != nil {
			return err
		}
	}
}

// interopGorillaCloseCode is the code and text of a gorilla close error, or
// -1 and the error's text.
func interopGorillaCloseCode(err error) (int, string) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text
	}
	return -1, fmt.Sprint(err)
}

func TestInteropGorillaServer(t *testing.T) {
	t.Run("echo, client closes 4002", func(t *testing.T) {
		ended := make(chan error, 1)
		c := interopDial(t, nil, interopGorillaServer(t, nil, func(c *websocket.Conn) { ended <- interopGorillaEcho(c) }))
		for _, tc := range interopCaseList() {
			interopSend(t, c.Out, tc.msg)
			interopSameMsg(t, tc.name, interopMust(t, c.In, "the echo of "+tc.name), tc.msg)
		}
		interopSend(t, c.Out, wsasync.Closed(4002, "client bye"))
		interopClientEnd(t, c, 4002, "client bye", false)
		if code, text := interopGorillaCloseCode(interopMust(t, ended, "the gorilla server")); code != 4002 || text != "client bye" {
			t.Errorf("gorilla server saw close %d %q, want 4002 \"client bye\"", code, text)
		}
	})

	t.Run("client closes Out", func(t *testing.T) {
		ended := make(chan error, 1)
		c := interopDial(t, nil, interopGorillaServer(t, nil, func(c *websocket.Conn) { ended <- interopGorillaEcho(c) }))
		c.closeOut()
		interopClientEnd(t, c, wsasync.StatusNormalClosure, "", false)
		if code, text := interopGorillaCloseCode(interopMust(t, ended, "the gorilla server")); code != 1000 {
			t.Errorf("gorilla server saw close %d %q, want 1000", code, text)
		}
	})

	for _, tc := range []struct {
		code   int
		reason string
	}{
		{websocket.CloseGoingAway, "Gone Away"},
		{4004, "server bye"},
	} {
		t.Run(fmt.Sprintf("server closes %d", tc.code), func(t *testing.T) {
			ended := make(chan error, 1)
			c := interopDial(t, nil, interopGorillaServer(t, nil, func(c *websocket.Conn) {
				if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
					ended <- err
					return
				}
				if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(tc.code, tc.reason), time.Now().Add(interopWait)); err != nil {
					ended <- err
					return
				}
				_, _, err := c.ReadMessage()
				ended <- err
			}))
			interopSameMsg(t, "first message", interopMust(t, c.In, "the message before the close"), wsasync.Text("hello"))
			ce := interopClientEnd(t, c, wsasync.StatusCode(tc.code), tc.reason, true)
			if ce.Err != nil {
				t.Errorf("CloseError.Err = %v, want nil for a clean close", ce.Err)
			}
			if code, _ := interopGorillaCloseCode(interopMust(t, ended, "the gorilla server")); code != tc.code {
				t.Errorf("gorilla server got close echo %d, want %d", code, tc.code)
			}
		})
	}

	t.Run("server ping", func(t *testing.T) {
		pongs := make(chan string, 1)
		ended := make(chan error, 1)
		c := interopDial(t, nil, interopGorillaServer(t, nil, func(c *websocket.Conn) {
			c.SetPongHandler(func(s string) error {
				select {
				case pongs <- s:
				default:
				}
				return nil
			})
			if err := c.WriteControl(websocket.PingMessage, []byte("gorilla-srv-ping"), time.Now().Add(interopWait)); err != nil {
				ended <- err
				return
			}
			ended <- interopGorillaEcho(c)
		}))
		if p := interopMust(t, pongs, "the pong"); p != "gorilla-srv-ping" {
			t.Errorf("gorilla's pong handler got %q, want %q", p, "gorilla-srv-ping")
		}
		interopSend(t, c.Out, wsasync.Text("after pong"))
		interopSameMsg(t, "echo", interopMust(t, c.In, "the echo"), wsasync.Text("after pong"))
		c.closeOut()
		interopClientEnd(t, c, wsasync.StatusNormalClosure, "", false)
		interopMust(t, ended, "the gorilla server")
	})

	// The client pings every 10 ms and drops a server silent for 1.01 s;
	// gorilla answers pings while it reads.
	t.Run("client pings", func(t *testing.T) {
		const want = interopPings
		enough := make(chan struct{})
		ended := make(chan error, 1)
		d := &wsasync.Dialer{Options: interopPingOptions}
		c := interopDial(t, d, interopGorillaServer(t, nil, func(c *websocket.Conn) {
			n := 0
			c.SetPingHandler(func(s string) error {
				if n++; n == want {
					close(enough)
				}
				return c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(interopWait))
			})
			ended <- interopGorillaEcho(c)
		}))
		interopRecv(t, enough, fmt.Sprintf("%d pings", want))
		interopSend(t, c.Out, wsasync.Text("alive"))
		interopSameMsg(t, "echo", interopMust(t, c.In, "the echo"), wsasync.Text("alive"))
		c.closeOut()
		interopClientEnd(t, c, wsasync.StatusNormalClosure, "", false)
		interopMust(t, ended, "the gorilla server")
	})

	t.Run("read limit exceeded", func(t *testing.T) {
		ended := make(chan error, 1)
		c := interopDial(t, nil, interopGorillaServer(t, nil, func(c *websocket.Conn) {
			if err := c.WriteMessage(websocket.BinaryMessage, interopBig(wsasync.DefaultReadLimit+1)); err != nil {
				ended <- err
				return
			}
			_, _, err := c.ReadMessage()
			ended <- err
		}))
		ce := interopClientEnd(t, c, wsasync.StatusMessageTooBig, "message too big", false)
		if !errors.Is(ce, wsasync.ErrReadLimit) {
			t.Errorf("Errs gave %v, want ErrReadLimit", ce)
		}
		if code, text := interopGorillaCloseCode(interopMust(t, ended, "the gorilla server")); code != websocket.CloseMessageTooBig {
			t.Errorf("gorilla server saw %d %q, want close 1009", code, text)
		}
	})

	t.Run("subprotocol", func(t *testing.T) {
		ended := make(chan error, 1)
		up := &websocket.Upgrader{Subprotocols: []string{"v2", "v1"}}
		d := &wsasync.Dialer{Subprotocols: []string{"v1", "v2"}}
		c := interopDial(t, d, interopGorillaServer(t, up, func(c *websocket.Conn) { ended <- interopGorillaEcho(c) }))
		if c.Subprotocol != "v2" {
			t.Errorf("Conn.Subprotocol = %q, want the server's choice %q", c.Subprotocol, "v2")
		}
		c.closeOut()
		interopClientEnd(t, c, wsasync.StatusNormalClosure, "", false)
		interopMust(t, ended, "the gorilla server")
	})
}

// ---- node and the npm ws package ----

// interopEvent is one JSON line printed by a node script.
type interopEvent struct {
	Event    string `json:"event"`
	Name     string `json:"name"`
	Path     string `json:"path"`
	OK       bool   `json:"ok"`
	Binary   bool   `json:"binary"`
	Len      int    `json:"len"`
	SHA256   string `json:"sha256"`
	Data     string `json:"data"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
	Message  string `json:"message"`
}

const interopNodeHow = "install Node.js >= 20 and run `npm ci` at the repo root (it installs the ws package into node_modules)"

// interopNode returns the node binary and the path of a script in
// testdata/interop, skipping (or failing under WSASYNC_REQUIRE_ALL=1) when
// node or node_modules/ws is missing.
func interopNode(t *testing.T, script string) (node, path string) {
	t.Helper()
	node = testenv.LookPath(t, "node", interopNodeHow)
	_, err := os.Stat(filepath.Join("node_modules", "ws", "package.json"))
	testenv.Need(t, err == nil, "the npm package ws (node_modules/ws)", interopNodeHow)
	path, err = filepath.Abs(filepath.Join("testdata", "interop", script))
	if err != nil {
		t.Fatal(err)
	}
	return node, path
}

func interopParse(t *testing.T, out []byte) []interopEvent {
	t.Helper()
	var evs []interopEvent
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var ev interopEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("node printed a line that is not JSON: %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// interopRunClient runs a client script (argv, then url and scenario) to its
// end and returns its events.
func interopRunClient(t *testing.T, argv []string, url, scenario string) []interopEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*interopWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], url, scenario)...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	name := filepath.Base(argv[len(argv)-1])
	evs := interopParse(t, out)
	for _, ev := range evs {
		if ev.Event == "error" || ev.Event == "wserror" {
			t.Errorf("%s %s: %s", name, scenario, ev.Message)
		}
	}
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, scenario, err, out, stderr.Bytes())
	}
	return evs
}

// interopFind returns the events named event.
func interopFind(evs []interopEvent, event string) []interopEvent {
	var r []interopEvent
	for _, ev := range evs {
		if ev.Event == event {
			r = append(r, ev)
		}
	}
	return r
}

// interopOne returns the single event named event.
func interopOne(t *testing.T, evs []interopEvent, event string) interopEvent {
	t.Helper()
	r := interopFind(evs, event)
	if len(r) != 1 {
		t.Fatalf("node printed %d %q events, want 1; all events: %+v", len(r), event, evs)
	}
	return r[0]
}

func interopSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestInteropNodeClient(t *testing.T) {
	node, script := interopNode(t, "ws_client.mjs")
	interopClientSuite(t, []string{node, script}, "node-ping", true)
}

// interopPython returns a python3 that can import websockets, skipping (or
// failing under WSASYNC_REQUIRE_ALL=1) when there is none. Debian's package
// goes into /usr/bin/python3, which may not be the python3 on PATH.
func interopPython(t *testing.T) string {
	t.Helper()
	var cands []string
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, "/usr/bin/python3")
	for _, p := range cands {
		ctx, cancel := context.WithTimeout(context.Background(), interopWait)
		err := exec.CommandContext(ctx, p, "-c", "import websockets").Run()
		cancel()
		if err == nil {
			return p
		}
	}
	testenv.Need(t, false, "python3 with the websockets package", "apt-get install python3-websockets")
	return ""
}

func TestInteropPythonClient(t *testing.T) {
	python := interopPython(t)
	script, err := filepath.Abs(filepath.Join("testdata", "interop", "websockets_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	interopClientSuite(t, []string{python, script}, "py-ping", false)
}

// interopClientSuite runs the client scripts' scenarios against wsasync
// servers. ping is the payload of the client's ping; seesPings says whether
// the client reports the server's pings.
func interopClientSuite(t *testing.T, argv []string, ping string, seesPings bool) {
	t.Run("exchange, client closes 4000", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		u := &wsasync.Upgrader{
			Subprotocols: []string{"v2"},
			Options:      wsasync.Options{PingInterval: 20 * time.Millisecond, PongTimeout: 5 * time.Second},
		}
		evs := interopRunClient(t, argv, interopServer(t, u.GoWebsocket(interopEchoHandler(seen))), "exchange")

		if p := interopOne(t, evs, "open").Protocol; p != "v2" {
			t.Errorf("node negotiated subprotocol %q, want v2", p)
		}
		cases := interopCaseList()
		echoes := interopFind(evs, "echo")
		if len(echoes) != len(cases) {
			t.Fatalf("node printed %d echoes, want %d: %+v", len(echoes), len(cases), evs)
		}
		for i, tc := range cases {
			ev := echoes[i]
			if ev.Name != tc.name || !ev.OK || ev.Binary != (tc.msg.Type == wsasync.BinaryMessage) ||
				ev.Len != len(tc.msg.Data) || ev.SHA256 != interopSHA(tc.msg.Data) {
				t.Errorf("echo %d: node saw %+v, want %s echoed as a %v message of %d bytes", i, ev, tc.name, tc.msg.Type, len(tc.msg.Data))
			}
		}
		if d := interopOne(t, evs, "pong").Data; d != ping {
			t.Errorf("the client's pong carried %q, want %q", d, ping)
		}
		if seesPings {
			if d := interopOne(t, evs, "ping").Data; d != "" {
				t.Errorf("server ping carried %q, want nothing", d)
			}
		}
		// The server echoes the code of the peer's close.
		if ev := interopOne(t, evs, "close"); ev.Code != 4000 || ev.Reason != "" {
			t.Errorf("node's close event: %d %q, want 4000 \"\"", ev.Code, ev.Reason)
		}

		s := interopMust(t, seen, "the handler")
		if len(s.msgs) != len(cases) {
			t.Fatalf("handler got %d messages, want %d", len(s.msgs), len(cases))
		}
		for i, tc := range cases {
			interopSameMsg(t, "handler got "+tc.name, s.msgs[i], tc.msg)
		}
		ce := interopCloseErr(t, s.err, 4000, "client bye", true)
		if ce.Err != nil {
			t.Errorf("CloseError.Err = %v, want nil for a clean close", ce.Err)
		}
	})

	for _, tc := range []struct {
		code   wsasync.StatusCode
		reason string
	}{
		{wsasync.StatusGoingAway, "Gone Away"},
		{4003, "server bye"},
	} {
		t.Run(fmt.Sprintf("server sends Closed %d", tc.code), func(t *testing.T) {
			seen := make(chan interopSeen, 1)
			url := interopServer(t, wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
				var msgs []wsasync.Message
				if m, ok := <-in; ok {
					msgs = append(msgs, m)
					out <- wsasync.Text("before close")
					out <- wsasync.Closed(tc.code, tc.reason)
				}
				seen <- interopDrain(in, errs, msgs)
			}))
			evs := interopRunClient(t, argv, url, "await-close")
			msgs := interopFind(evs, "message")
			if len(msgs) != 1 || msgs[0].Data != "before close" || msgs[0].Binary {
				t.Errorf("node got %+v before the close, want the text \"before close\"", msgs)
			}
			if ev := interopOne(t, evs, "close"); ev.Code != int(tc.code) || ev.Reason != tc.reason {
				t.Errorf("node's close event: %d %q, want %d %q", ev.Code, ev.Reason, tc.code, tc.reason)
			}
			s := interopMust(t, seen, "the handler")
			if len(s.msgs) != 1 || string(s.msgs[0].Data) != "ready" {
				var got []string
				for _, m := range s.msgs {
					got = append(got, string(m.Data))
				}
				t.Errorf("handler got %q, want [ready]", got)
			}
			interopCloseErr(t, s.err, tc.code, tc.reason, false)
		})
	}

	t.Run("read limit exceeded", func(t *testing.T) {
		seen := make(chan interopSeen, 1)
		evs := interopRunClient(t, argv, interopServer(t, wsasync.GoWebsocket(interopEchoHandler(seen))), "too-big")
		if ev := interopOne(t, evs, "close"); ev.Code != int(wsasync.StatusMessageTooBig) || ev.Reason != "message too big" {
			t.Errorf("node's close event: %d %q, want 1009 \"message too big\"", ev.Code, ev.Reason)
		}
		s := interopMust(t, seen, "the handler")
		if !errors.Is(s.err, wsasync.ErrReadLimit) {
			t.Errorf("errs gave %v, want ErrReadLimit", s.err)
		}
	})
}

// interopNodeServer runs ws_server.mjs; it returns the server's port and a
// channel of its events. Cleanup ends the script (by closing its stdin) and
// waits for it.
func interopNodeServer(t *testing.T) (port int, events <-chan interopEvent) {
	t.Helper()
	node, script := interopNode(t, "ws_server.mjs")
	ctx, cancel := context.WithTimeout(context.Background(), 4*interopWait)
	cmd := exec.CommandContext(ctx, node, script)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	evs := make(chan interopEvent, 1024)
	var all []interopEvent // read after evs is closed
	go func() {
		defer close(evs)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev interopEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = interopEvent{Event: "error", Message: "not JSON: " + sc.Text()}
			}
			all = append(all, ev)
			select {
			case evs <- ev:
			default: // nobody is reading; kept in all
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		defer cancel()
		stdin.Close()
		// Wait for stdout to end, then for the process.
		for range evs {
		}
		err := cmd.Wait()
		for _, ev := range all {
			if ev.Event == "error" {
				t.Errorf("ws_server.mjs: %s", ev.Message)
			}
		}
		if err != nil {
			t.Errorf("ws_server.mjs: %v\nevents: %+v\nstderr:\n%s", err, all, stderr.Bytes())
		}
	})
	for {
		ev := interopMust(t, (<-chan interopEvent)(evs), "ws_server.mjs to listen")
		if ev.Event == "listening" {
			return ev.Port, evs
		}
		if ev.Event == "error" {
			t.Fatalf("ws_server.mjs: %s", ev.Message)
		}
	}
}

// interopAwait returns the next event from events that is named event and
// whose path is path, failing on an "error" event.
func interopAwait(t *testing.T, events <-chan interopEvent, event, path string) interopEvent {
	t.Helper()
	for {
		ev := interopMust(t, events, fmt.Sprintf("ws_server.mjs to print %q for %s", event, path))
		if ev.Event == "error" {
			t.Fatalf("ws_server.mjs: %s", ev.Message)
		}
		if ev.Event == event && ev.Path == path {
			return ev
		}
	}
}

func TestInteropNodeServer(t *testing.T) {
	port, events := interopNodeServer(t)
	base := "ws://127.0.0.1:" + strconv.Itoa(port)

	// The subtests share one node server and read its events in turn, so
	// they run one after the other.
	t.Run("echo, client closes 4002", func(t *testing.T) {
		d := &wsasync.Dialer{Subprotocols: []string{"v1", "v2"}}
		c := interopDial(t, d, base+"/echo")
		if c.Subprotocol != "v2" {
			t.Errorf("Conn.Subprotocol = %q, want v2", c.Subprotocol)
		}
		if ev := interopAwait(t, events, "connection", "/echo"); ev.Protocol != "v2" {
			t.Errorf("node server chose subprotocol %q, want v2", ev.Protocol)
		}
		for _, tc := range interopCaseList() {
			interopSend(t, c.Out, tc.msg)
			interopSameMsg(t, tc.name, interopMust(t, c.In, "the echo of "+tc.name), tc.msg)
			ev := interopAwait(t, events, "message", "/echo")
			if ev.Binary != (tc.msg.Type == wsasync.BinaryMessage) || ev.Len != len(tc.msg.Data) || ev.SHA256 != interopSHA(tc.msg.Data) {
				t.Errorf("%s: node server got %+v, want a %v message of %d bytes", tc.name, ev, tc.msg.Type, len(tc.msg.Data))
			}
		}
		interopSend(t, c.Out, wsasync.Closed(4002, "client bye"))
		interopClientEnd(t, c, 4002, "client bye", false)
		if ev := interopAwait(t, events, "close", "/echo"); ev.Code != 4002 || ev.Reason != "client bye" {
			t.Errorf("node server's close event: %d %q, want 4002 \"client bye\"", ev.Code, ev.Reason)
		}
	})

	for _, tc := range []struct {
		code   wsasync.StatusCode
		reason string
	}{
		{wsasync.StatusGoingAway, "Gone Away"},
		{4004, "node bye"},
	} {
		t.Run(fmt.Sprintf("server closes %d", tc.code), func(t *testing.T) {
			c := interopDial(t, nil, fmt.Sprintf("%s/close?code=%d&reason=%s", base, tc.code, strings.ReplaceAll(tc.reason, " ", "%20")))
			interopSameMsg(t, "first message", interopMust(t, c.In, "the message before the close"), wsasync.Text("hello"))
			ce := interopClientEnd(t, c, tc.code, tc.reason, true)
			if ce.Err != nil {
				t.Errorf("CloseError.Err = %v, want nil for a clean close", ce.Err)
			}
			if ev := interopAwait(t, events, "close", "/close"); ev.Code != int(tc.code) {
				t.Errorf("node server's close event: %d %q, want the echo of %d", ev.Code, ev.Reason, tc.code)
			}
		})
	}

	t.Run("server ping", func(t *testing.T) {
		c := interopDial(t, nil, base+"/ping")
		if ev := interopAwait(t, events, "pong", "/ping"); ev.Data != "node-srv-ping" {
			t.Errorf("node server's pong event carried %q, want node-srv-ping", ev.Data)
		}
		interopSameMsg(t, "pong report", interopMust(t, c.In, "the pong report"), wsasync.Text("pong:node-srv-ping"))
		c.closeOut()
		interopClientEnd(t, c, wsasync.StatusNormalClosure, "", false)
		if ev := interopAwait(t, events, "close", "/ping"); ev.Code != 1000 {
			t.Errorf("node server's close event: %d %q, want 1000", ev.Code, ev.Reason)
		}
	})

	t.Run("client pings", func(t *testing.T) {
		d := &wsasync.Dialer{Options: interopPingOptions}
		c := interopDial(t, d, base+"/echo")
		for range interopPings {
			if ev := interopAwait(t, events, "ping", "/echo"); ev.Data != "" {
				t.Errorf("node server got a ping carrying %q, want nothing", ev.Data)
			}
		}
		interopSend(t, c.Out, wsasync.Text("alive"))
		interopSameMsg(t, "echo", interopMust(t, c.In, "the echo"), wsasync.Text("alive"))
		c.closeOut()
		interopClientEnd(t, c, wsasync.StatusNormalClosure, "", false)
		interopAwait(t, events, "close", "/echo")
	})

	t.Run("read limit exceeded", func(t *testing.T) {
		c := interopDial(t, nil, base+"/big")
		ce := interopClientEnd(t, c, wsasync.StatusMessageTooBig, "message too big", false)
		if !errors.Is(ce, wsasync.ErrReadLimit) {
			t.Errorf("Errs gave %v, want ErrReadLimit", ce)
		}
		if ev := interopAwait(t, events, "close", "/big"); ev.Code != int(wsasync.StatusMessageTooBig) {
			t.Errorf("node server's close event: %d %q, want 1009", ev.Code, ev.Reason)
		}
	})
}
