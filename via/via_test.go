package via_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/via"
)

func ok(ctx context.Context, c *via.Call) error { return c.Reply(200, "ok") }

// Both ends list each other with their roles; calls to unknown peers fail.
func TestPeersAndRoles(t *testing.T) {
	a := newEndpoint(t, via.Options{})
	b := newEndpoint(t, via.Options{})
	url := serve(t, b)
	bID, aID := pair(t, a, b, url)

	pa, pb := a.Peers(), b.Peers()
	if len(pa) != 1 || pa[0].ID != bID || pa[0].Role != via.Originator || pa[0].Status != via.StatusConnected || pa[0].URL != url || pa[0].ConnectedAt.IsZero() {
		t.Fatalf("a's peers: %+v", pa)
	}
	if len(pb) != 1 || pb[0].ID != aID || pb[0].Role != via.Terminator || pb[0].Status != via.StatusConnected || pb[0].ConnectedAt.IsZero() {
		t.Fatalf("b's peers: %+v", pb)
	}
	if b.Peer(aID).Request() == nil || a.Peer(bID).Request() != nil {
		t.Fatal("only a terminator has an upgrade request")
	}
	ctx := tctx(t)
	if err := a.Dispatch(ctx, "nobody", "x", nil); !errors.Is(err, via.ErrUnknownPeer) {
		t.Fatalf("dispatch to an unknown peer: %v", err)
	}
	if err := a.Invoke(ctx, "nobody", "x", nil, nil); !errors.Is(err, via.ErrUnknownPeer) {
		t.Fatalf("invoke on an unknown peer: %v", err)
	}
	if err := a.Disconnect("nobody"); !errors.Is(err, via.ErrUnknownPeer) {
		t.Fatalf("disconnect an unknown peer: %v", err)
	}
}

// Peers in Options.Peers are connected at start, retried until their server
// is up.
func TestOptionsPeersConnectAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet: the first attempts fail

	a := newEndpoint(t, via.Options{Peers: []string{"ws://" + addr}, ReconnectMax: 100 * time.Millisecond})
	ra := record(a)
	ps := a.Peers()
	if len(ps) != 1 || ps[0].Role != via.Originator || ps[0].Status == via.StatusConnected {
		t.Fatalf("peers before the server is up: %+v", ps)
	}
	id := ps[0].ID

	b := newEndpoint(t, via.Options{})
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(b)
	s.Listener = ln
	s.Start()
	t.Cleanup(func() { b.Close(); s.Close() })

	ra.first(t, kindPeer(via.PeerConnected, id))
	if p := a.Peer(id); p == nil || p.Status() != via.StatusConnected {
		t.Fatal("the peer from Options.Peers is not connected")
	}
}

// Connect fails on what is not a via endpoint and leaves no peer behind.
func TestConnectErrors(t *testing.T) {
	a := newEndpoint(t, via.Options{})
	plain := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		for range in {
		}
	}))
	defer plain.Close()
	if _, err := a.Connect(tctx(t), wsURL(plain)); err == nil || !strings.Contains(err.Error(), "subprotocol") {
		t.Fatalf("connect to a plain WebSocket: %v", err)
	}
	notWS := httptest.NewServer(http.NotFoundHandler())
	defer notWS.Close()
	if _, err := a.Connect(tctx(t), wsURL(notWS)); err == nil {
		t.Fatal("connect to a 404 succeeded")
	}
	if ps := a.Peers(); len(ps) != 0 {
		t.Fatalf("failed connects left peers: %+v", ps)
	}

	// A client that offers other subprotocols only is refused.
	b := newEndpoint(t, via.Options{})
	url := serve(t, b)
	d := wsasync.Dialer{Subprotocols: []string{"via.v9"}}
	if c, err := d.Dial(tctx(t), url); err == nil {
		close(c.Out)
		t.Fatal("a client without via.v1 was accepted")
	}
}

// Invoke fails with ErrClosed as soon as the connection drops, from either
// end, long before its timeout; the handler's context ends with the
// connection.
func TestInvokeFailsAtOnceOnDisconnect(t *testing.T) {
	for _, side := range []string{"terminator", "originator"} {
		t.Run(side, func(t *testing.T) {
			started := make(chan struct{}, 1)
			ended := make(chan error, 1)
			a := newEndpoint(t, via.Options{})
			b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
			b.Handle("t/block", func(ctx context.Context, c *via.Call) error {
				started <- struct{}{}
				<-ctx.Done()
				ended <- ctx.Err()
				return nil
			})
			bID, aID := pair(t, a, b, serve(t, b))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res := make(chan error, 1)
			go func() { res <- a.Invoke(ctx, bID, "t/block", nil, nil) }()
			recv(t, started)
			t0 := time.Now()
			if side == "terminator" {
				b.Disconnect(aID)
			} else {
				a.Disconnect(bID)
			}
			err := recv(t, res)
			if !errors.Is(err, via.ErrClosed) {
				t.Fatalf("invoke: %v, want ErrClosed", err)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Fatalf("ErrClosed after %v", d)
			}
			if err := recv(t, ended); err == nil {
				t.Fatal("the handler's context did not end")
			}
		})
	}
}

// An Invoke with no reply in time fails with ErrTimeout; the late reply is
// reported as unhandled.
func TestInvokeTimeout(t *testing.T) {
	release := make(chan struct{})
	a := newEndpoint(t, via.Options{})
	ra := record(a)
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/late", func(ctx context.Context, c *via.Call) error {
		<-release
		return nil
	})
	bID, _ := pair(t, a, b, serve(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := a.Invoke(ctx, bID, "t/late", nil, nil)
	if !errors.Is(err, via.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("invoke: %v, want ErrTimeout", err)
	}
	close(release)
	ra.first(t, kindPeer(via.UnhandledReply, bID))
}

// Panics and errors in handlers answer 500 without internals; the peer keeps
// working. A returned *StatusError and a Decode error answer their status.
func TestHandlerFailures(t *testing.T) {
	a := newEndpoint(t, via.Options{})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/panic", func(ctx context.Context, c *via.Call) error { panic("secret panic") })
	b.Handle("t/error", func(ctx context.Context, c *via.Call) error { return errors.New("secret database password") })
	b.Handle("t/teapot", func(ctx context.Context, c *via.Call) error {
		return &via.StatusError{Status: 418, Body: []byte(`{"error":"teapot"}`)}
	})
	b.Handle("t/decode", func(ctx context.Context, c *via.Call) error {
		var n int
		if err := c.Decode(&n); err != nil {
			return err
		}
		return c.Reply(200, n+1)
	})
	b.Handle("t/ok", ok)
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)

	status := func(id string, body any) *via.StatusError {
		t.Helper()
		err := a.Invoke(ctx, bID, id, body, nil)
		var se *via.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("%s: %v, want a status error", id, err)
		}
		if strings.Contains(string(se.Body), "secret") {
			t.Fatalf("%s: internals in the reply: %s", id, se.Body)
		}
		return se
	}
	for range 3 {
		if se := status("t/panic", nil); se.Status != 500 || string(se.Body) != `{"error":"internal error"}` {
			t.Fatalf("panic: %v", se)
		}
		if err := a.Dispatch(ctx, bID, "t/panic", nil); err != nil {
			t.Fatal(err)
		}
		if se := status("t/error", nil); se.Status != 500 {
			t.Fatalf("error: %v", se)
		}
		var s string
		if err := a.Invoke(ctx, bID, "t/ok", nil, &s); err != nil || s != "ok" {
			t.Fatalf("after failures: %q %v", s, err)
		}
	}
	if se := status("t/teapot", nil); se.Status != 418 || string(se.Body) != `{"error":"teapot"}` {
		t.Fatalf("teapot: %v", se)
	}
	if se := status("t/decode", "not a number"); se.Status != 400 {
		t.Fatalf("decode: %v", se)
	}
	var n int
	if err := a.Invoke(ctx, bID, "t/decode", 41, &n); err != nil || n != 42 {
		t.Fatalf("decode: %d %v", n, err)
	}
}

// The originator keeps its peer id, session context and tags when the
// terminator restarts on the same port; OnReconnect runs first and restores
// the session on the new server.
func TestReconnectKeepsIDSessionAndTags(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	accept := func(p *via.Peer, m map[string]any) (map[string]any, bool) {
		return map[string]any{"token": m["token"]}, true
	}
	whoami := func(ctx context.Context, c *via.Call) error {
		return c.Reply(200, c.Peer().Session()["token"])
	}
	start := func(ln net.Listener) (*via.Endpoint, *recorder, func()) {
		b := via.New(via.Options{Logger: quiet, Exports: []string{"t/"}, AcceptSession: accept})
		b.Handle("t/whoami", whoami)
		rb := record(b)
		s := httptest.NewUnstartedServer(b)
		s.Listener = ln
		s.Start()
		return b, rb, func() { b.Close(); s.Close() }
	}
	_, _, stop1 := start(ln)
	defer stop1()

	hooks := make(chan string, 4)
	a := newEndpoint(t, via.Options{
		ReconnectMax: 100 * time.Millisecond,
		OnReconnect: func(ctx context.Context, p *via.Peer) error {
			hooks <- p.ID()
			return p.SyncSession(ctx)
		},
	})
	ra := record(a)
	ctx := tctx(t)
	id, err := a.Connect(ctx, "ws://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	p := a.Peer(id)
	p.SetSession(map[string]any{"token": "t1", "local": true})
	p.AddTags("blue", "admin")
	if err := p.SyncSession(ctx); err != nil {
		t.Fatal(err)
	}
	var tok string
	if err := p.Invoke(ctx, "t/whoami", nil, &tok); err != nil || tok != "t1" {
		t.Fatalf("before restart: %q %v", tok, err)
	}

	// Restart the server on the same address.
	stop1()
	ra.first(t, kindPeer(via.PeerDisconnected, id))
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b2, rb2, stop2 := start(ln2)
	defer stop2()

	from := 0
	ra.next(t, &from, kindPeer(via.PeerConnected, id))
	ra.next(t, &from, kindPeer(via.PeerConnected, id)) // the reconnect
	if got := recv(t, hooks); got != id {
		t.Fatalf("hook ran for %q", got)
	}
	if ps := a.Peers(); len(ps) != 1 || ps[0].ID != id || ps[0].Status != via.StatusConnected {
		t.Fatalf("after reconnect: %+v", ps)
	}
	if s := p.Session(); s["token"] != "t1" || s["local"] != true {
		t.Fatalf("session after reconnect: %v", s)
	}
	if tags := p.Tags(); !slices.Equal(tags, []string{"admin", "blue"}) {
		t.Fatalf("tags after reconnect: %v", tags)
	}
	// The hook's sync was the first thing the new server got.
	i := 0
	conn := rb2.next(t, &i, kind(via.PeerConnected))
	if ev := rb2.next(t, &i, func(via.Event) bool { return true }); ev.Kind != via.SessionChanged || ev.PeerID != conn.PeerID {
		t.Fatalf("first event on the new server: %v", ev.Kind)
	}
	if err := p.Invoke(ctx, "t/whoami", nil, &tok); err != nil || tok != "t1" {
		t.Fatalf("after restart: %q %v", tok, err)
	}
	if ps := b2.Peers(); len(ps) != 1 {
		t.Fatalf("new server's peers: %+v", ps)
	}
}

// A peer that goes silent is dropped within interval + timeout, on both
// ends, with HeartbeatFailed; the originator reconnects with the same id.
func TestHeartbeatDropsSilentPeer(t *testing.T) {
	const interval, timeout = 100 * time.Millisecond, 150 * time.Millisecond
	opts := via.Options{HeartbeatInterval: interval, HeartbeatTimeout: timeout, ReconnectMax: 100 * time.Millisecond}
	b := newEndpoint(t, opts)
	rb := record(b)
	url := serve(t, b)
	px := newProxy(t, strings.TrimPrefix(url, "ws://"))
	a := newEndpoint(t, opts)
	ra := record(a)
	bID, aID := pair(t, a, b, "ws://"+px.addr())

	px.freeze()
	t0 := time.Now()
	evA := ra.first(t, kindPeer(via.HeartbeatFailed, bID))
	dA := time.Since(t0)
	evB := rb.first(t, kindPeer(via.HeartbeatFailed, aID))
	dB := time.Since(t0)
	limit := interval + timeout + time.Second // slack for a loaded machine
	if dA > limit || dB > limit {
		t.Fatalf("heartbeat failure noticed after %v and %v, limit %v", dA, dB, limit)
	}
	if !errors.Is(evA.Err, wsasync.ErrPingTimeout) || !errors.Is(evB.Err, wsasync.ErrPingTimeout) {
		t.Fatalf("causes: %v, %v", evA.Err, evB.Err)
	}
	t.Logf("dropped after %v (originator) and %v (terminator)", dA, dB)
	if ev := ra.first(t, kindPeer(via.PeerDisconnected, bID)); !errors.Is(ev.Err, wsasync.ErrPingTimeout) {
		t.Fatalf("disconnect cause: %v", ev.Err)
	}
	rb.first(t, kindPeer(via.PeerRemoved, aID))

	// The originator comes back through the proxy with the same id.
	from := 0
	ra.next(t, &from, kindPeer(via.PeerConnected, bID))
	ra.next(t, &from, kindPeer(via.PeerConnected, bID))
	if ps := a.Peers(); len(ps) != 1 || ps[0].ID != bID {
		t.Fatalf("after reconnect: %+v", ps)
	}
}

// An interceptor answers 403 in the handler's place until the session
// context holds a valid token; another disconnects the peer.
func TestInterceptors(t *testing.T) {
	auth := func(next via.Handler) via.Handler {
		return func(ctx context.Context, c *via.Call) error {
			if c.Peer().Session()["token"] != "valid" {
				return c.Reply(403, map[string]string{"error": "forbidden"})
			}
			return next(ctx, c)
		}
	}
	kick := func(next via.Handler) via.Handler {
		return func(ctx context.Context, c *via.Call) error {
			if c.Headers["kick"] == "yes" {
				c.Peer().Disconnect()
				return nil
			}
			return next(ctx, c)
		}
	}
	ran := make(chan string, 10)
	a := newEndpoint(t, via.Options{})
	ra := record(a)
	b := newEndpoint(t, via.Options{
		Exports:      []string{"t/"},
		Interceptors: []via.Interceptor{auth},
		AcceptSession: func(p *via.Peer, m map[string]any) (map[string]any, bool) {
			tok, _ := m["token"].(string)
			return map[string]any{"token": tok}, tok != "forged"
		},
	})
	b.Handle("t/secure", via.Chain(func(ctx context.Context, c *via.Call) error {
		ran <- c.ID
		return c.Reply(200, "secret")
	}, kick))
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)

	var se *via.StatusError
	if err := a.Invoke(ctx, bID, "t/secure", nil, nil); !errors.As(err, &se) || se.Status != 403 {
		t.Fatalf("without a token: %v", err)
	}
	p := a.Peer(bID)
	p.SetSession(map[string]any{"token": "forged"})
	if err := p.SyncSession(ctx); !errors.As(err, &se) || se.Status != 403 {
		t.Fatalf("refused session: %v", err)
	}
	p.SetSession(map[string]any{"token": "valid"})
	if err := p.SyncSession(ctx); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := a.Invoke(ctx, bID, "t/secure", nil, &s); err != nil || s != "secret" {
		t.Fatalf("with a token: %q %v", s, err)
	}
	if got := recv(t, ran); got != "t/secure" {
		t.Fatal(got)
	}

	t0 := time.Now()
	err := a.Invoke(via.WithHeaders(ctx, map[string]string{"kick": "yes"}), bID, "t/secure", nil, nil)
	if !errors.Is(err, via.ErrClosed) || time.Since(t0) > 2*time.Second {
		t.Fatalf("kicked: %v after %v", err, time.Since(t0))
	}
	// Disconnected on purpose: the originator does not come back.
	ra.first(t, kindPeer(via.PeerRemoved, bID))
	select {
	case id := <-ran:
		t.Fatalf("the handler ran after the kick: %s", id)
	default:
	}
}

// A slow handler holds back its own peer's calls only, in order; another
// peer's calls go through meanwhile.
func TestSlowHandlerBlocksOnlyItsPeer(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var log []string
	note := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	started := make(chan struct{}, 1)
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/slow", func(ctx context.Context, c *via.Call) error {
		note("slow start")
		started <- struct{}{}
		<-release
		note("slow end")
		return nil
	})
	b.Handle("t/fast", func(ctx context.Context, c *via.Call) error {
		var who string
		c.Decode(&who)
		note("fast " + who)
		return c.Reply(200, who)
	})
	url := serve(t, b)
	a1 := newEndpoint(t, via.Options{})
	a2 := newEndpoint(t, via.Options{})
	id1, _ := pair(t, a1, b, url)
	id2, _ := pair(t, a2, b, url)
	ctx := tctx(t)

	slow := make(chan error, 1)
	go func() { slow <- a1.Invoke(ctx, id1, "t/slow", nil, nil) }()
	recv(t, started)
	behind := make(chan error, 1)
	go func() { behind <- a1.Invoke(ctx, id1, "t/fast", "a1", nil) }()

	// a2 is served while a1's handler is stuck.
	var who string
	if err := a2.Invoke(ctx, id2, "t/fast", "a2", &who); err != nil || who != "a2" {
		t.Fatalf("other peer: %q %v", who, err)
	}
	close(release)
	if err := recv(t, slow); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, behind); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"slow start", "fast a2", "slow end", "fast a1"}
	if !slices.Equal(log, want) {
		t.Fatalf("order %q, want %q", log, want)
	}
}

// The calls of one connection are handled in the order they were sent.
func TestOrderPerConnection(t *testing.T) {
	const n = 200
	got := make(chan int, n)
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}, QueueSize: 4})
	b.Handle("t/seq", func(ctx context.Context, c *via.Call) error {
		var i int
		c.Decode(&i)
		got <- i
		return nil
	})
	a := newEndpoint(t, via.Options{})
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	for i := range n {
		if err := a.Dispatch(ctx, bID, "t/seq", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if j := recv(t, got); j != i {
			t.Fatalf("call %d arrived as %d", i, j)
		}
	}
}

// A handler can Invoke the peer whose call it is handling.
func TestHandlerInvokesCaller(t *testing.T) {
	a := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	a.Handle("t/name", func(ctx context.Context, c *via.Call) error { return c.Reply(200, "alice") })
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/greet", func(ctx context.Context, c *via.Call) error {
		var name string
		if err := c.Peer().Invoke(ctx, "t/name", nil, &name); err != nil {
			return err
		}
		return c.Reply(200, "hello "+name)
	})
	bID, _ := pair(t, a, b, serve(t, b))
	var s string
	if err := a.Invoke(tctx(t), bID, "t/greet", nil, &s); err != nil || s != "hello alice" {
		t.Fatalf("%q %v", s, err)
	}
}

// Session contexts: refused without AcceptSession, filtered by it, merged
// and reported locally.
func TestSessionContext(t *testing.T) {
	a := newEndpoint(t, via.Options{})
	ra := record(a)
	closedB := newEndpoint(t, via.Options{})
	rc := record(closedB)
	bID, _ := pair(t, a, closedB, serve(t, closedB))
	ctx := tctx(t)
	p := a.Peer(bID)
	p.SetSession(map[string]any{"user": "root"})
	var se *via.StatusError
	if err := p.SyncSession(ctx); !errors.As(err, &se) || se.Status != 400 {
		t.Fatalf("sync without AcceptSession: %v", err)
	}
	if ev := rc.first(t, kind(via.UnknownEvent)); ev.ID != "via/session" {
		t.Fatalf("unknown event %q", ev.ID)
	}
	if len(rc.all(kind(via.SessionChanged))) != 0 {
		t.Fatal("a session was accepted")
	}

	b := newEndpoint(t, via.Options{AcceptSession: func(p *via.Peer, m map[string]any) (map[string]any, bool) {
		// Keep the language; ignore claims.
		return map[string]any{"lang": m["lang"]}, true
	}})
	rb := record(b)
	bID, aID := pair(t, a, b, serve(t, b))
	p = a.Peer(bID)
	p.SetSession(map[string]any{"lang": "fr", "admin": true})
	p.MergeSession(map[string]any{"admin": nil, "theme": "dark"})
	if s := p.Session(); len(s) != 2 || s["lang"] != "fr" || s["theme"] != "dark" {
		t.Fatalf("merged: %v", s)
	}
	if evs := ra.all(kindPeer(via.SessionChanged, bID)); len(evs) != 2 || evs[1].Session["theme"] != "dark" {
		t.Fatalf("local changes: %+v", evs)
	}
	p.MergeSession(map[string]any{"admin": true})
	if err := p.SyncSession(ctx); err != nil {
		t.Fatal(err)
	}
	ev := rb.first(t, kindPeer(via.SessionChanged, aID))
	if len(ev.Session) != 1 || ev.Session["lang"] != "fr" {
		t.Fatalf("accepted session: %v", ev.Session)
	}
	if s := b.Peer(aID).Session(); len(s) != 1 || s["lang"] != "fr" {
		t.Fatalf("remote session: %v", s)
	}
}

// SendToTag reaches the tagged peers only; Broadcast reaches all.
func TestSendToTagAndBroadcast(t *testing.T) {
	b := newEndpoint(t, via.Options{})
	url := serve(t, b)
	type msg struct{ who, what string }
	got := make(chan msg, 10)
	var ids []string
	for _, who := range []string{"a1", "a2", "a3"} {
		a := newEndpoint(t, via.Options{Exports: []string{"news"}})
		a.Handle("news", func(ctx context.Context, c *via.Call) error {
			var s string
			c.Decode(&s)
			got <- msg{who, s}
			return nil
		})
		_, id := pair(t, a, b, url)
		ids = append(ids, id)
	}
	b.Peer(ids[0]).AddTags("red")
	b.Peer(ids[1]).SetTags("red", "blue")
	b.Peer(ids[2]).AddTags("blue")
	b.Peer(ids[2]).RemoveTags("blue")
	ctx := tctx(t)
	if err := b.SendToTag(ctx, "red", "news", "tagged"); err != nil {
		t.Fatal(err)
	}
	if err := b.Broadcast(ctx, "news", "all"); err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for range 5 {
		m := recv(t, got)
		seen[m.who] = append(seen[m.who], m.what)
	}
	want := map[string][]string{"a1": {"tagged", "all"}, "a2": {"tagged", "all"}, "a3": {"all"}}
	for k, v := range want {
		if !slices.Equal(seen[k], v) {
			t.Fatalf("%s got %q, want %q", k, seen[k], v)
		}
	}
	var infoTags []string
	for _, pi := range b.Peers() {
		if pi.ID == ids[1] {
			infoTags = pi.Tags
		}
	}
	if !slices.Equal(infoTags, []string{"blue", "red"}) {
		t.Fatalf("PeerInfo tags %q", infoTags)
	}
}

// Malformed messages are reported, answered 400 when they carry a request
// id, and never stop the connection.
func TestBadMessages(t *testing.T) {
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/echo", func(ctx context.Context, c *via.Call) error { return c.Reply(200, c.Body) })
	rb := record(b)
	url := serve(t, b)
	d := wsasync.Dialer{Subprotocols: []string{via.Subprotocol}}
	c, err := d.Dial(tctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(c.Out)
		for range c.In {
		}
	}()
	if c.Subprotocol != via.Subprotocol {
		t.Fatalf("subprotocol %q", c.Subprotocol)
	}
	send := func(s string) { c.Out <- wsasync.Text(s) }
	reply := func(rid string, status int) string {
		t.Helper()
		m := recv(t, c.In)
		var env struct {
			V      int
			Type   string
			RID    string
			Status int
		}
		if err := jsonUnmarshal(m.Data, &env); err != nil || env.V != 1 || env.Type != "reply" || env.RID != rid || env.Status != status {
			t.Fatalf("got %s, want a %d reply to %s", m.Data, status, rid)
		}
		return string(m.Data)
	}
	from := 0
	bad := func() via.Event { t.Helper(); return rb.next(t, &from, kind(via.BadMessage)) }

	send(`not json`)
	bad()
	c.Out <- wsasync.Binary([]byte(`{"v":1,"type":"event","id":"t/echo"}`))
	bad()
	send(`{"v":1,"type":"event","rid":"r1"}`) // no id
	reply("r1", 400)
	bad()
	send(`{"v":2,"type":"event","id":"t/echo","rid":"r2"}`) // another version
	reply("r2", 400)
	send(`{"type":"event","id":"t/echo","rid":"r3"}`) // no version
	reply("r3", 400)
	send(`{"v":1,"type":"bogus","rid":"r4"}`)
	if s := reply("r4", 400); !strings.Contains(s, `"error":"bad message"`) {
		t.Fatal(s)
	}
	send(`{"v":1,"type":"event","id":"t/echo","rid":7}`) // rid of the wrong type: no answer
	bad()
	send(`{"v":1,"type":"event","id":"t/echo","rid":"r5","headers":{"a":1}}`)
	reply("r5", 400)
	send(`{"v":1,"type":"reply","rid":"nobody","status":200}`)
	rb.first(t, kind(via.UnhandledReply))
	send(`{"v":1,"type":"reply","rid":"r","status":42}`)
	bad()
	send(`{"v":1,"type":"sub","rid":"r6","key":"k1","id":"prices"}`)
	reply("r6", 400)
	rb.first(t, kind(via.UnknownSubscription))
	send(`{"v":1,"type":"unsub","rid":"r7","key":"k1"}`)
	reply("r7", 200)
	send(`{"v":1,"type":"value","key":"k1","sn":1,"body":3}`)
	send(`{"v":1,"type":"patch","key":"k1","sn":2,"body":{"a":null}}`)
	send(`{"v":1,"type":"event","id":"t/echo","rid":"r8","body":{"x":[1,"two",null]},"headers":{"h":"v"}}`)
	if s := reply("r8", 200); !strings.Contains(s, `"body":{"x":[1,"two",null]}`) {
		t.Fatalf("echo: %s", s)
	}
	if len(b.Peers()) != 1 {
		t.Fatal("the peer was dropped")
	}
}

// Messages over the read limit are refused before sending.
func TestTooLarge(t *testing.T) {
	a := newEndpoint(t, via.Options{Dialer: wsasync.Dialer{Options: wsasync.Options{ReadLimit: 1024}}})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/ok", ok)
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	if err := a.Dispatch(ctx, bID, "t/ok", strings.Repeat("x", 2000)); !errors.Is(err, via.ErrTooLarge) {
		t.Fatalf("dispatch: %v", err)
	}
	if err := a.Invoke(ctx, bID, "t/ok", nil, nil); err != nil {
		t.Fatalf("after: %v", err)
	}
}

// The event stream delivers lifecycle events and never holds the endpoint
// back when nobody reads it.
func TestEventStream(t *testing.T) {
	a := newEndpoint(t, via.Options{EventBuffer: 4})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/ok", ok)
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	// Far more events than the buffer holds, with nobody reading.
	for range 50 {
		if err := a.Invoke(ctx, bID, "t/missing", nil, nil); err == nil {
			t.Fatal("unknown event answered 200")
		}
		a.Peer(bID).MergeSession(map[string]any{"n": 1})
	}
	if err := a.Invoke(ctx, bID, "t/ok", nil, nil); err != nil {
		t.Fatal(err)
	}
	a.Disconnect(bID)
	var kinds []via.EventKind
	for ev := range drain(t, a) {
		kinds = append(kinds, ev.Kind)
	}
	// The sliding buffer kept the newest four.
	if len(kinds) != 4 || kinds[2] != via.PeerDisconnected || kinds[3] != via.PeerRemoved {
		t.Fatalf("stream after Close: %v", kinds)
	}
}

// drain closes e and returns its remaining events.
func drain(t *testing.T, e *via.Endpoint) <-chan via.Event {
	e.Close()
	return e.Events()
}

// Close ends every goroutine: connections both ways, workers, handlers,
// reconnect loops.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	started := make(chan struct{}, 1)
	b := via.New(via.Options{Logger: quiet, Exports: []string{"t/"}})
	b.Handle("t/block", func(ctx context.Context, c *via.Call) error {
		started <- struct{}{}
		<-ctx.Done()
		return nil
	})
	s := httptest.NewServer(b)
	a := via.New(via.Options{Logger: quiet, Peers: []string{"ws://127.0.0.1:1"}}) // never connects
	id, err := a.Connect(tctx(t), wsURL(s))
	if err != nil {
		t.Fatal(err)
	}
	go a.Invoke(context.Background(), id, "t/block", nil, nil)
	recv(t, started)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	a.Close()
	if _, err := a.Connect(tctx(t), wsURL(s)); !errors.Is(err, via.ErrEndpointClosed) {
		t.Fatalf("connect after close: %v", err)
	}
	for range a.Events() {
	}
}

// OnReconnect runs on each new connection before it carries anything else:
// other sends get ErrNotConnected, calls from the peer wait for it, and a
// failed hook drops the connection and tries again.
func TestOnReconnectRunsFirst(t *testing.T) {
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	inHook := make(chan struct{}, 1)
	release := make(chan struct{})
	calls := 0
	b := newEndpoint(t, via.Options{AcceptSession: func(p *via.Peer, m map[string]any) (map[string]any, bool) { return m, true }})
	rb := record(b)
	px := newProxy(t, strings.TrimPrefix(serve(t, b), "ws://"))
	a := newEndpoint(t, via.Options{
		Exports:      []string{"t/"},
		ReconnectMax: 50 * time.Millisecond,
		OnReconnect: func(ctx context.Context, p *via.Peer) error {
			calls++
			if calls == 1 {
				return errors.New("auth server down")
			}
			inHook <- struct{}{}
			<-release
			err := p.SyncSession(ctx)
			note("hook done")
			return err
		},
	})
	a.Handle("t/ping", func(ctx context.Context, c *via.Call) error {
		note("handler")
		return c.Reply(200, "pong")
	})
	ra := record(a)
	bID, _ := pair(t, a, b, "ws://"+px.addr())
	a.Peer(bID).SetSession(map[string]any{"token": "x"})

	px.cut()
	recv(t, inHook)
	ctx := tctx(t)
	if err := a.Dispatch(ctx, bID, "t/anything", nil); !errors.Is(err, via.ErrNotConnected) {
		t.Fatalf("dispatch during the hook: %v", err)
	}
	if s := a.Peer(bID).Status(); s != via.StatusReconnecting {
		t.Fatalf("status during the hook: %v", s)
	}
	// The terminator calls the originator during the hook: the call waits.
	i := 0
	rb.next(t, &i, kind(via.PeerConnected)) // the first connection
	rb.next(t, &i, kind(via.PeerConnected)) // the one whose hook failed
	newID := rb.next(t, &i, kind(via.PeerConnected)).PeerID
	res := make(chan error, 1)
	go func() {
		var s string
		res <- b.Invoke(ctx, newID, "t/ping", nil, &s)
	}()
	close(release)
	if err := recv(t, res); err != nil {
		t.Fatal(err)
	}
	from := 0
	ra.next(t, &from, kindPeer(via.PeerConnected, bID))
	ra.next(t, &from, kindPeer(via.PeerConnected, bID))
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []string{"hook done", "handler"}) || calls != 2 {
		t.Fatalf("order %q after %d hook calls", order, calls)
	}
	if s := b.Peer(newID).Session(); s["token"] != "x" {
		t.Fatalf("session on the terminator: %v", s)
	}
}
