package sente_test

// End-to-end tests of the Go client against a real sente.Server on a local
// listener. Every wait is bounded by clWait; nothing sleeps to synchronise.
// Helpers are prefixed "cl" to keep clear of the other test files' names.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
	"github.com/wsasync/wsasync/sente/msgpack"
)

// clWait bounds every wait in these tests.
const clWait = 5 * time.Second

var clQuiet = slog.New(slog.DiscardHandler)

// clServer is a sente.Server on its own httptest server, with a Router
// running on its events. It counts the WebSocket handshake requests of each
// client id, refused or not.
type clServer struct {
	*sente.Server
	srv  *httptest.Server
	url  string // ws://127.0.0.1:port/chsk
	addr string

	mu   sync.Mutex
	hits map[string]int

	routed   chan struct{}
	stopOnce sync.Once
}

// clStart starts a server with opts on ln (a new local listener when nil),
// routing events with the handlers route registers. A nil UserID takes the
// user id from the "u" query parameter. It is stopped when the test ends.
func clStart(t *testing.T, opts sente.Options, ln net.Listener, route func(r *sente.Router)) *clServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = clQuiet
	}
	if opts.UserID == nil {
		opts.UserID = func(r *http.Request, _ string) string { return r.URL.Query().Get("u") }
	}
	if opts.WebSocket.CloseTimeout == 0 {
		opts.WebSocket.CloseTimeout = time.Second
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &clServer{Server: sente.NewServer(opts), hits: make(map[string]int), routed: make(chan struct{})}
	var r sente.Router
	r.Logger = clQuiet
	if route != nil {
		route(&r)
	}
	go func() {
		defer close(s.routed)
		r.Run(context.Background(), s.Events()) // until Shutdown closes Events
	}()
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.hits[req.URL.Query().Get("client-id")]++
		s.mu.Unlock()
		s.ServeHTTP(w, req)
	})
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	s.srv.Start()
	s.addr = ln.Addr().String()
	s.url = "ws://" + s.addr + "/chsk"
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the sente server down (connections close with 1012), closes the
// listener, and waits for the router.
func (s *clServer) stop(t *testing.T) {
	t.Helper()
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clWait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		s.srv.Close()
		<-s.routed
	})
}

func (s *clServer) hitsOf(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[clientID]
}

// clClient makes a client with small backoffs and closes it when the test
// ends (before the server stops).
func clClient(t *testing.T, url string, opts sente.ClientOptions) *sente.Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = clQuiet
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 20 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 200 * time.Millisecond
	}
	if opts.WebSocket.CloseTimeout == 0 {
		opts.WebSocket.CloseTimeout = time.Second
	}
	c := sente.NewClient(url, opts)
	t.Cleanup(func() { clClose(t, c) })
	return c
}

// clClose closes c and fails the test if that takes too long.
func clClose(t *testing.T, c *sente.Client) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(clWait):
		t.Fatalf("Close did not return within %v", clWait)
	}
}

func clUser(uid string) url.Values { return url.Values{"u": {uid}} }

// clWait waits for a state satisfying ok: the current one, or one from the
// client's state stream (which it consumes).
func clWaitState(t *testing.T, c *sente.Client, what string, ok func(sente.State) bool) sente.State {
	t.Helper()
	if s := c.State(); ok(s) {
		return s
	}
	timer := time.NewTimer(clWait)
	defer timer.Stop()
	for {
		select {
		case s, open := <-c.StateChanges():
			if !open {
				if s = c.State(); ok(s) {
					return s
				}
				t.Fatalf("client stopped while waiting for %s: %s", what, clDescribe(s))
			}
			if ok(s) {
				return s
			}
		case <-timer.C:
			t.Fatalf("no %s within %v: %s", what, clWait, clDescribe(c.State()))
		}
	}
}

func clOpen(s sente.State) bool { return s.Open }

func clDescribe(s sente.State) string {
	d := fmt.Sprintf("open=%v ever=%v first=%v uid=%q attempt=%d stopped=%v", s.Open, s.EverOpened, s.FirstOpen, s.UserID, s.Attempt, s.Stopped)
	if s.LastClose != nil {
		d += fmt.Sprintf(" last=%v %q %v", s.LastClose.Code, s.LastClose.Reason, s.LastClose.Err)
	}
	return d
}

// clEvent receives one push, bounded.
func clEvent(t *testing.T, c *sente.Client) *sente.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("Events closed: %s", clDescribe(c.State()))
		}
		return ev
	case <-time.After(clWait):
		t.Fatalf("no event within %v", clWait)
	}
	return nil
}

func clClosed[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if ok {
			// Drain what is left; the channel must close.
			for range ch {
			}
		}
	case <-time.After(clWait):
		t.Fatalf("%s not closed within %v", what, clWait)
	}
}

// clRequest runs Request in a goroutine so that a hung one fails the test
// instead of hanging it.
func clRequest(ctx context.Context, c *sente.Client, id string, data, reply any) <-chan error {
	res := make(chan error, 1)
	go func() { res <- c.Request(ctx, id, data, reply) }()
	return res
}

func clResult(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(clWait):
		t.Fatalf("request did not return within %v", clWait)
	}
	return nil
}

func TestClientRequestReply(t *testing.T) {
	notes := make(chan *sente.Event, 1)
	s := clStart(t, sente.Options{
		HandshakeData: func(r *http.Request) any { return map[string]string{"motd": "hi " + r.URL.Query().Get("u")} },
	}, nil, func(r *sente.Router) {
		r.Handle("test/echo", func(ctx context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
		r.Handle("test/who", func(ctx context.Context, ev *sente.Event) {
			ev.Reply(map[string]string{"uid": ev.UserID, "client": ev.ClientID})
		})
		r.Handle("test/note", func(ctx context.Context, ev *sente.Event) { notes <- ev })
	})
	c := clClient(t, s.url, sente.ClientOptions{Params: clUser("alice")})
	if len(c.ID()) != 22 {
		t.Errorf("random client id %q: want 22 characters", c.ID())
	}
	st := clWaitState(t, c, "open", clOpen)
	if st.UserID != "alice" || !st.EverOpened || !st.FirstOpen || st.Attempt != 0 || st.Stopped {
		t.Errorf("open state: %s", clDescribe(st))
	}
	var hd struct{ Motd string }
	if err := json.Unmarshal(st.HandshakeData, &hd); err != nil || hd.Motd != "hi alice" {
		t.Errorf("handshake data %s: %v", st.HandshakeData, err)
	}
	ctx := context.Background()

	type point struct{ X, Y int }
	var got point
	if err := c.Request(ctx, "test/echo", point{1, 2}, &got); err != nil || got != (point{1, 2}) {
		t.Errorf("echo: %v %+v", err, got)
	}
	var who map[string]string
	if err := c.Request(ctx, "test/who", nil, &who); err != nil || who["uid"] != "alice" || who["client"] != c.ID() {
		t.Errorf("who: %v %v (client id %s)", err, who, c.ID())
	}
	var raw sente.Raw
	if err := c.Request(ctx, "test/echo", sente.Raw(`{"a":[1,2]}`), &raw); err != nil || string(raw) != `{"a":[1,2]}` {
		t.Errorf("raw echo: %v %s", err, raw)
	}
	if err := c.Request(ctx, "test/echo", "ignored", nil); err != nil {
		t.Errorf("nil reply: %v", err)
	}
	var n int
	if err := c.Request(ctx, "test/echo", "not a number", &n); err == nil || errors.Is(err, sente.ErrClosed) {
		t.Errorf("unpacking a string into an int: %v", err)
	}
	// Concurrent requests each get their own reply.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			var back int
			if err := c.Request(ctx, "test/echo", i, &back); err != nil || back != i {
				t.Errorf("concurrent request %d: %v %d", i, err, back)
			}
		})
	}
	wg.Wait()

	if err := c.Send(ctx, "test/note", []string{"x"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case ev := <-notes:
		var data []string
		if err := ev.Decode(&data); err != nil || len(data) != 1 || data[0] != "x" || ev.UserID != "alice" || ev.ClientID != c.ID() {
			t.Errorf("note: %v %v %q %q", err, data, ev.UserID, ev.ClientID)
		}
	case <-time.After(clWait):
		t.Fatal("the server got no note")
	}

	if err := c.Send(ctx, "nonamespace", nil); !errors.Is(err, sente.ErrBadEventID) {
		t.Errorf("bad id: %v", err)
	}
	if err := c.Request(ctx, "chsk/ws-ping", nil, nil); !errors.Is(err, sente.ErrReservedEventID) {
		t.Errorf("reserved id: %v", err)
	}
}

func TestClientRequestTimeout(t *testing.T) {
	hung := make(chan struct{}, 4)
	s := clStart(t, sente.Options{}, nil, func(r *sente.Router) {
		r.Handle("test/never", func(ctx context.Context, ev *sente.Event) { hung <- struct{}{} })
	})
	c := clClient(t, s.url, sente.ClientOptions{RequestTimeout: 100 * time.Millisecond})
	clWaitState(t, c, "open", clOpen)

	// A deadline from the context.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := clResult(t, clRequest(ctx, c, "test/never", nil, nil))
	if took := time.Since(start); !errors.Is(err, sente.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("Request with a 100 ms context: %v after %v; want ErrTimeout after about 100 ms", err, took)
	}
	// RequestTimeout when the context has none.
	start = time.Now()
	err = clResult(t, clRequest(context.Background(), c, "test/never", nil, nil))
	if took := time.Since(start); !errors.Is(err, sente.ErrTimeout) || took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("Request under RequestTimeout 100 ms: %v after %v", err, took)
	}
	// Cancel, once the server holds the request.
	for len(hung) > 0 {
		<-hung
	}
	ctx, cancel = context.WithCancel(context.Background())
	res := clRequest(ctx, c, "test/never", nil, nil)
	select {
	case <-hung:
	case <-time.After(clWait):
		t.Fatal("the server got no request")
	}
	cancel()
	if err := clResult(t, res); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Request: %v", err)
	}
	// The connection is still fine.
	if st := c.State(); !st.Open {
		t.Errorf("state after timeouts: %s", clDescribe(st))
	}
}

func TestClientPendingRequestsFailOnDrop(t *testing.T) {
	for _, how := range []string{"shutdown", "kick", "close", "reconnect"} {
		t.Run(how, func(t *testing.T) {
			hung := make(chan struct{}, 1)
			s := clStart(t, sente.Options{}, nil, func(r *sente.Router) {
				r.Handle("test/hang", func(ctx context.Context, ev *sente.Event) { hung <- struct{}{} })
			})
			c := clClient(t, s.url, sente.ClientOptions{Params: clUser("alice"), RequestTimeout: 10 * time.Second})
			clWaitState(t, c, "open", clOpen)
			start := time.Now()
			res := clRequest(context.Background(), c, "test/hang", nil, nil)
			select {
			case <-hung:
			case <-time.After(clWait):
				t.Fatal("the server got no request")
			}
			switch how {
			case "shutdown":
				s.stop(t)
			case "kick":
				s.Kick("alice", "bye")
			case "close":
				clClose(t, c)
			case "reconnect":
				c.Reconnect()
			}
			err := clResult(t, res)
			if took := time.Since(start); !errors.Is(err, sente.ErrClosed) || took > 2*time.Second {
				t.Errorf("pending request after %s: %v after %v; want ErrClosed at once", how, err, took)
			}
			switch how {
			case "shutdown":
				// Then it reconnects (to nothing) rather than stopping.
				st := clWaitState(t, c, "a failed reconnect", func(s sente.State) bool { return s.Attempt >= 1 })
				if st.Stopped {
					t.Errorf("stopped after a shutdown: %s", clDescribe(st))
				}
			case "reconnect":
				clWaitState(t, c, "open again", func(s sente.State) bool {
					return s.Open && s.LastClose != nil && s.LastClose.Code == wsasync.StatusNormalClosure
				})
				if n := s.hitsOf(c.ID()); n != 2 {
					t.Errorf("%d handshakes after Reconnect, want 2", n)
				}
			}
		})
	}
}

func TestClientSendNotOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := clClient(t, "ws://"+addr+"/chsk", sente.ClientOptions{})
	ctx := context.Background()
	if err := c.Send(ctx, "test/x", 1); !errors.Is(err, sente.ErrClosed) {
		t.Errorf("Send while connecting: %v", err)
	}
	st := clWaitState(t, c, "two failed attempts", func(s sente.State) bool { return s.Attempt >= 2 })
	if st.Open || st.EverOpened || st.Stopped || st.LastClose == nil || st.LastClose.Err == nil || st.LastClose.Code != wsasync.StatusAbnormalClosure {
		t.Errorf("state after failed attempts: %s", clDescribe(st))
	}
	if err := c.Send(ctx, "test/x", 1); !errors.Is(err, sente.ErrClosed) {
		t.Errorf("Send while backing off: %v", err)
	}
	start := time.Now()
	if err := c.Request(ctx, "test/x", 1, nil); !errors.Is(err, sente.ErrClosed) || time.Since(start) > time.Second {
		t.Errorf("Request while backing off: %v", err)
	}
	clClose(t, c)
	if err := c.Send(ctx, "test/x", 1); !errors.Is(err, sente.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if st := c.State(); !st.Stopped || st.Open {
		t.Errorf("state after Close: %s", clDescribe(st))
	}
	clClosed(t, c.Done(), "Done")
	clClosed(t, c.Events(), "Events")
	clClosed(t, c.StateChanges(), "StateChanges")
	c.Reconnect() // ignored
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestClientBadConfigStops(t *testing.T) {
	for name, c := range map[string]*sente.Client{
		"scheme":    sente.NewClient("ftp://example.com/chsk", sente.ClientOptions{Logger: clQuiet}),
		"client id": sente.NewClient("ws://127.0.0.1:1/chsk", sente.ClientOptions{ClientID: "no spaces", Logger: clQuiet}),
	} {
		clClosed(t, c.Done(), name+": Done")
		if st := c.State(); !st.Stopped || st.LastClose == nil || st.LastClose.Err == nil {
			t.Errorf("%s: %s", name, clDescribe(st))
		}
		clClose(t, c)
	}
}

func TestClientPushOrder(t *testing.T) {
	s := clStart(t, sente.Options{}, nil, nil)
	c := clClient(t, s.url, sente.ClientOptions{Params: clUser("alice")})
	clWaitState(t, c, "open", clOpen)
	// More than Events holds (256), pushed while nobody reads: the client
	// stops reading the socket and loses nothing.
	const n = 600
	for i := range n {
		if err := s.Push("alice", "test/n", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		ev := clEvent(t, c)
		var got int
		if err := ev.Decode(&got); err != nil || ev.ID != "test/n" || got != i {
			t.Fatalf("push %d: %s %s (%v)", i, ev.ID, ev.Data, err)
		}
		if ev.UserID != "alice" || ev.ClientID != c.ID() || ev.Request != nil || ev.WantsReply() {
			t.Fatalf("push %d: uid %q client %q request %v", i, ev.UserID, ev.ClientID, ev.Request)
		}
	}
	// An event without data.
	s.PushNow("alice", "test/empty", nil)
	if ev := clEvent(t, c); ev.ID != "test/empty" || ev.Data != nil {
		t.Errorf("empty push: %s %s", ev.ID, ev.Data)
	}
}

func TestClientPushBatch(t *testing.T) {
	s := clStart(t, sente.Options{SendWindow: 200 * time.Millisecond}, nil, nil)
	c := clClient(t, s.url, sente.ClientOptions{Params: clUser("bob")})
	clWaitState(t, c, "open", clOpen)

	// A raw connection of the same user shows the batching on the wire.
	d := wsasync.Dialer{Subprotocols: []string{"sente.v1.json"}}
	d.CloseTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	raw, err := d.Dial(ctx, s.url+"?client-id=raw&u=bob")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(raw.Out)
		for range raw.In {
		}
	}()
	recv := func() []byte {
		select {
		case m, ok := <-raw.In:
			if !ok {
				t.Fatalf("raw connection ended: %v", <-raw.Errs)
			}
			return m.Data
		case <-ctx.Done():
			t.Fatal("raw connection: nothing received")
		}
		return nil
	}
	if hs := recv(); !strings.Contains(string(hs), "chsk/handshake") {
		t.Fatalf("raw handshake: %s", hs)
	}
	for i := range 3 {
		s.Push("bob", "test/b", i)
	}
	if f := string(recv()); !strings.HasPrefix(f, `[[["test/b",0],["test/b",1],["test/b",2]],null,"`) {
		t.Errorf("raw frame: %s; want the three pushes in one batch, with a position", f)
	}
	for i := range 3 {
		var got int
		if ev := clEvent(t, c); ev.Decode(&got) != nil || got != i {
			t.Errorf("client push %d: %s", i, ev.Data)
		}
	}
}

func TestClientReconnectsAfterRestart(t *testing.T) {
	echo := func(r *sente.Router) {
		r.Handle("test/echo", func(ctx context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
	}
	s1 := clStart(t, sente.Options{}, nil, echo)
	c := clClient(t, s1.url, sente.ClientOptions{Params: clUser("alice"), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	clWaitState(t, c, "open", clOpen)

	s1.stop(t) // every connection closed with 1012, the listener closed
	st := clWaitState(t, c, "the 1012 close", func(s sente.State) bool {
		return !s.Open && s.LastClose != nil && s.LastClose.Code == sente.CodeRestart
	})
	if st.Stopped || !st.EverOpened {
		t.Errorf("after the restart close: %s", clDescribe(st))
	}
	// It keeps trying, with backoff, while nothing listens.
	clWaitState(t, c, "failed attempts", func(s sente.State) bool { return s.Attempt >= 2 })

	ln, err := net.Listen("tcp", s1.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", s1.addr, err)
	}
	s2 := clStart(t, sente.Options{}, ln, echo)
	st = clWaitState(t, c, "open again", clOpen)
	if !st.EverOpened || st.FirstOpen || st.Attempt != 0 || st.Stopped || st.UserID != "alice" {
		t.Errorf("reopened: %s", clDescribe(st))
	}
	var back string
	if err := c.Request(context.Background(), "test/echo", "again", &back); err != nil || back != "again" {
		t.Errorf("request after the restart: %v %q", err, back)
	}
	if n := s2.hitsOf(c.ID()); n != 1 {
		t.Errorf("new server saw %d handshakes of the client, want 1", n)
	}
}

func TestClientKicked(t *testing.T) {
	s := clStart(t, sente.Options{}, nil, nil)
	c := clClient(t, s.url, sente.ClientOptions{Params: clUser("alice")})
	clWaitState(t, c, "open", clOpen)
	s.Kick("alice", "go away")
	clClosed(t, c.Done(), "Done")
	st := c.State()
	if !st.Stopped || st.Open || st.LastClose == nil || st.LastClose.Code != sente.CodeKicked || st.LastClose.Reason != "go away" {
		t.Errorf("kicked: %s", clDescribe(st))
	}
	clClosed(t, c.Events(), "Events")
	clClosed(t, c.StateChanges(), "StateChanges")
	c.Reconnect() // a stopped client stays stopped
	if err := c.Send(context.Background(), "test/x", nil); !errors.Is(err, sente.ErrClosed) {
		t.Errorf("Send after a kick: %v", err)
	}
	// Done means the client's loop is over; it made exactly one handshake.
	clClose(t, c)
	if n := s.hitsOf(c.ID()); n != 1 {
		t.Errorf("the server saw %d handshakes of the kicked client, want 1", n)
	}
}

func TestClientReplaced(t *testing.T) {
	s := clStart(t, sente.Options{}, nil, nil)
	c1 := clClient(t, s.url, sente.ClientOptions{ClientID: "same-id"})
	clWaitState(t, c1, "first open", clOpen)
	c2 := clClient(t, s.url, sente.ClientOptions{ClientID: "same-id"})
	clClosed(t, c1.Done(), "replaced client's Done")
	if st := c1.State(); !st.Stopped || st.LastClose == nil || st.LastClose.Code != sente.CodeReplaced {
		t.Errorf("replaced: %s", clDescribe(st))
	}
	if st := clWaitState(t, c2, "second open", clOpen); st.Stopped {
		t.Errorf("replacing client: %s", clDescribe(st))
	}
	if n := s.hitsOf("same-id"); n != 2 {
		t.Errorf("%d handshakes of same-id, want 2", n)
	}
}

func TestClientStateStream(t *testing.T) {
	s := clStart(t, sente.Options{}, nil, nil)
	c := clClient(t, s.url, sente.ClientOptions{ClientID: "stream"})
	var states []sente.State
	next := func() (sente.State, bool) {
		t.Helper()
		select {
		case st, ok := <-c.StateChanges():
			if ok {
				states = append(states, st)
			}
			return st, ok
		case <-time.After(clWait):
			t.Fatalf("no state change within %v; so far %d", clWait, len(states))
		}
		return sente.State{}, false
	}
	for st, _ := next(); !st.Open; st, _ = next() {
	}
	c.Reconnect()
	for st, _ := next(); !st.Open; st, _ = next() {
	}
	clClose(t, c)
	for _, ok := next(); ok; _, ok = next() {
	}

	first, opens := 0, 0
	for _, st := range states {
		if st.FirstOpen {
			first++
		}
		if st.Open {
			opens++
		}
	}
	if first != 1 || opens != 2 || !states[0].FirstOpen {
		for _, st := range states {
			t.Log(clDescribe(st))
		}
		t.Errorf("%d states with FirstOpen and %d open; want 1 and 2, the first state first", first, opens)
	}
	if last := states[len(states)-1]; !last.Stopped || last.Open || last.LastClose == nil || last.LastClose.Code != wsasync.StatusNormalClosure {
		t.Errorf("last state: %s", clDescribe(last))
	}
	if n := s.hitsOf("stream"); n != 2 {
		t.Errorf("%d handshakes after one Reconnect, want 2", n)
	}
}

func TestClientCSRF(t *testing.T) {
	s := clStart(t, sente.Options{CSRFToken: func(r *http.Request) string { return "s3cret" }}, nil, nil)

	good := clClient(t, s.url, sente.ClientOptions{CSRFToken: func() string { return "s3cret" }})
	clWaitState(t, good, "open with the right token", clOpen)

	for name, token := range map[string]func() string{
		"wrong":   func() string { return "guess" },
		"missing": nil,
	} {
		bad := clClient(t, s.url, sente.ClientOptions{CSRFToken: token})
		st := clWaitState(t, bad, name+" token refused twice", func(s sente.State) bool { return s.Attempt >= 2 })
		var se ws.StatusError
		if st.Open || st.EverOpened || st.Stopped || st.LastClose == nil || !errors.As(st.LastClose.Err, &se) || se != http.StatusForbidden {
			t.Errorf("%s token: %s", name, clDescribe(st))
		}
		clClose(t, bad)
	}
	if st := good.State(); !st.Open {
		t.Errorf("good client: %s", clDescribe(st))
	}
}

// TestClientBadFrames runs the client against a hand-written server that
// sends frames a sente server never would: the client logs and drops them
// and goes on, and refuses a connection whose first frame is no handshake.
func TestClientBadFrames(t *testing.T) {
	var conns atomic.Int32
	closeFirst := make(chan struct{})
	up := wsasync.Upgrader{Subprotocols: []string{"sente.v1.json"}}
	up.Logger = clQuiet
	up.CloseTimeout = time.Second
	srv := httptest.NewServer(up.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		if conns.Add(1) > 1 {
			out <- wsasync.Text(`[["test/early",1],null]`) // not a handshake
			for range in {
			}
			return
		}
		for _, f := range []string{
			`[["chsk/handshake",["carol",null,null]],null]`,
			`not json`,
			`[1,2,3]`,
			`[["bad"],null]`,
			`[[["test/a",1],["bad"],42,["test/b",2]],null]`,
			`[42,"nobody-waits"]`,
			`[["chsk/handshake",["mallory",null,null]],null]`,
			`[["test/c",3],null]`,
		} {
			out <- wsasync.Text(f)
		}
		select {
		case <-closeFirst:
			out <- wsasync.Closed(wsasync.StatusInternalError, "boom")
		case <-in: // the client closed
		}
		for range in {
		}
	}))
	defer srv.Close()

	c := clClient(t, "ws"+strings.TrimPrefix(srv.URL, "http"), sente.ClientOptions{})
	st := clWaitState(t, c, "open", clOpen)
	if st.UserID != "carol" || st.HandshakeData != nil {
		t.Errorf("handshake: %s data %s", clDescribe(st), st.HandshakeData)
	}
	for _, want := range []string{"test/a", "test/b", "test/c"} {
		if ev := clEvent(t, c); ev.ID != want || ev.UserID != "carol" {
			t.Errorf("got %s of %q, want %s", ev.ID, ev.UserID, want)
		}
	}
	close(closeFirst)
	st = clWaitState(t, c, "a refused second connection", func(s sente.State) bool {
		return s.Attempt >= 1 && s.LastClose != nil && s.LastClose.Code == wsasync.StatusProtocolError
	})
	if st.Open || st.Stopped || st.LastClose.Err == nil {
		t.Errorf("after a connection without handshake: %s", clDescribe(st))
	}
	clClose(t, c)
}

func TestClientMsgpack(t *testing.T) {
	s := clStart(t, sente.Options{Packer: msgpack.Packer{}}, nil, func(r *sente.Router) {
		r.Handle("test/echo", func(ctx context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
	})
	c := clClient(t, s.url, sente.ClientOptions{Packer: msgpack.Packer{}, Params: clUser("dave")})
	clWaitState(t, c, "open", clOpen)
	type point struct{ X, Y int }
	var got point
	if err := c.Request(context.Background(), "test/echo", point{3, 4}, &got); err != nil || got != (point{3, 4}) {
		t.Errorf("echo: %v %+v", err, got)
	}
	s.Push("dave", "test/p", "hi")
	var hi string
	if ev := clEvent(t, c); ev.ID != "test/p" || ev.Decode(&hi) != nil || hi != "hi" {
		t.Errorf("push: %s %x", ev.ID, ev.Data)
	}

	// A JSON client of a msgpack server never opens.
	j := clClient(t, s.url, sente.ClientOptions{})
	st := clWaitState(t, j, "a refused attempt", func(s sente.State) bool { return s.Attempt >= 1 })
	if st.EverOpened || st.LastClose == nil || st.LastClose.Err == nil {
		t.Errorf("JSON client of a msgpack server: %s", clDescribe(st))
	}
}

// TestClientDeadServer: a server that completes the handshake and then
// answers nothing, not even pings, is dropped after PingInterval+PongTimeout
// and reconnected to.
func TestClientDeadServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == "sente.v1.json" }}
				if _, err := u.Upgrade(nc); err != nil {
					return
				}
				ws.WriteFrame(nc, ws.NewTextFrame([]byte(`[["chsk/handshake",["ghost",null,null]],null]`)))
				io.Copy(io.Discard, nc) // silent from here on
			})
		}
	})

	c := clClient(t, "ws://"+ln.Addr().String()+"/chsk", sente.ClientOptions{
		WebSocket: wsasync.Options{PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond},
	})
	clWaitState(t, c, "open", clOpen)
	start := time.Now()
	st := clWaitState(t, c, "the drop", func(s sente.State) bool { return !s.Open && s.LastClose != nil })
	if took := time.Since(start); !errors.Is(st.LastClose.Err, wsasync.ErrPingTimeout) || took > 2*time.Second {
		t.Errorf("dead server: %s after %v; want ErrPingTimeout after about 100 ms", clDescribe(st), took)
	}
	// It reconnects (to the same dead server).
	clWaitState(t, c, "open again", clOpen)
	clClose(t, c)
}
