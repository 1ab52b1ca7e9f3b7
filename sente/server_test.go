package sente_test

// End-to-end tests of sente.Server over loopback, speaking the wire protocol
// of PROTOCOL.md by hand (protocol_helpers_test.go), so that they check the
// server against the document and not against the package's own client.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// ---- handshake ----

func TestHandshake(t *testing.T) {
	t.Parallel()
	gotClientID := make(chan string, 1)
	ts := startServer(t, sente.Options{
		UserID: func(r *http.Request, clientID string) string {
			gotClientID <- clientID
			return r.Header.Get("X-User")
		},
		HandshakeData: func(r *http.Request) any {
			return map[string]string{"greeting": "hi " + r.Header.Get("X-User")}
		},
	})

	c, err := ts.dialWith(t, query("tab-1", ""), dialOpts{Header: http.Header{"X-User": {"alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	if id := <-gotClientID; id != "tab-1" {
		t.Errorf("UserID got client id %q, want tab-1", id)
	}
	if c.UID != "alice" {
		t.Errorf("handshake uid %q, want alice", c.UID)
	}
	var data map[string]string
	if err := json.Unmarshal(c.HandshakeData, &data); err != nil || data["greeting"] != "hi alice" {
		t.Errorf("handshake data %s, want {\"greeting\":\"hi alice\"}", c.HandshakeData)
	}
	if c.Subprotocol != proto {
		t.Errorf("subprotocol %q, want %q", c.Subprotocol, proto)
	}
	c.ping("p")

	t.Run("anonymous", func(t *testing.T) {
		ts := startServer(t, sente.Options{})
		c := ts.dial(t, "anon", "")
		if c.UID != "" || string(c.HandshakeData) != "null" {
			t.Errorf("handshake [%q, null, %s], want [\"\", null, null]", c.UID, c.HandshakeData)
		}
	})

	t.Run("no subprotocol offered", func(t *testing.T) {
		c, err := ts.dialWith(t, query("plain", ""), dialOpts{Protocols: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		<-gotClientID
		if c.Subprotocol != "" {
			t.Errorf("subprotocol %q chosen though none was offered", c.Subprotocol)
		}
		c.ping("p") // JSON all the same
	})

	t.Run("client-id", func(t *testing.T) {
		ok := strings.Repeat("a", 64)
		c, err := ts.dialWith(t, query(ok, ""), dialOpts{})
		if err != nil {
			t.Fatalf("64-character client id refused: %v", err)
		}
		<-gotClientID
		c.ping("p")
		for _, q := range []url.Values{
			{},
			{"client-id": {""}},
			{"client-id": {"has space"}},
			{"client-id": {"dot.ted"}},
			{"client-id": {"sl/ash"}},
			{"client-id": {"é"}},
			{"client-id": {strings.Repeat("a", 65)}},
			{"clientid": {"abc"}},
		} {
			_, err := ts.dialWith(t, q, dialOpts{})
			if got := dialStatus(err); got != http.StatusBadRequest {
				t.Errorf("client id %q: status %d (%v), want 400", q.Get("client-id"), got, err)
			}
		}
		if !strings.Contains(ts.Logs.String(), "client-id") {
			t.Error("refusals of bad client ids were not logged")
		}
	})
}

// ---- events and replies ----

func TestEvents(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	events := ts.Events()
	c, err := ts.dialWith(t, query("a1", "alice"), dialOpts{Header: http.Header{"X-Test": {"yes"}}})
	if err != nil {
		t.Fatal(err)
	}
	evs := expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")
	if r := evs[0].Request; r == nil || r.Header.Get("X-Test") != "yes" {
		t.Errorf("client-connect Request %v, want the handshake request", r)
	}

	c.send(`[["chat/msg",{"x":1}],null]`)
	ev := expectEvents(t, events, "chat/msg alice a1")[0]
	if string(ev.Data) != `{"x":1}` {
		t.Errorf("Data %s, want {\"x\":1}", ev.Data)
	}
	var v struct{ X int }
	if err := ev.Decode(&v); err != nil || v.X != 1 {
		t.Errorf("Decode: %v, %+v", err, v)
	}
	if ev.Request == nil || ev.Request.Header.Get("X-Test") != "yes" || ev.Request.URL.Query().Get("client-id") != "a1" {
		t.Errorf("Request %v, want the handshake request", ev.Request)
	}
	if ev.WantsReply() {
		t.Error("WantsReply for an event without cb")
	}
	if err := ev.Reply("x"); !errors.Is(err, sente.ErrNoReply) {
		t.Errorf("Reply to an event without cb: %v, want ErrNoReply", err)
	}

	c.send(`[["chat/bare"],null]`)
	c.send(`[["chat/null",null],null]`)
	for _, ev := range expectEvents(t, events, "chat/bare alice a1", "chat/null alice a1") {
		if ev.Data != nil {
			t.Errorf("%s: Data %q, want nil", ev.ID, ev.Data)
		}
		n := 7
		if err := ev.Decode(&n); err != nil || n != 7 {
			t.Errorf("%s: Decode of absent data: %v, changed to %d", ev.ID, err, n)
		}
	}

	c.send(`[["chat/ask",[1,2]],"cb-1"]`)
	ev = expectEvents(t, events, "chat/ask alice a1")[0]
	if !ev.WantsReply() {
		t.Fatal("WantsReply false for an event with cb")
	}
	if err := ev.Reply(map[string]bool{"ok": true}); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if err := ev.Reply("again"); !errors.Is(err, sente.ErrReplied) {
		t.Errorf("second Reply: %v, want ErrReplied", err)
	}
	if got := c.reply("cb-1"); string(got) != `{"ok":true}` {
		t.Errorf("reply %s, want {\"ok\":true}", got)
	}

	// Protocol events never reach the application; the ping is answered
	// with "pong" and the same cb, and nothing else is sent.
	c.send(`[["chsk/ws-ping"],null]`)
	c.send(`[["chsk/ws-pong"],null]`)
	c.ping("ping-7")
	c.send(`[["chat/sentinel"],null]`)
	expectEvents(t, events, "chat/sentinel alice a1")
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

func TestReplyWhenGone(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{CloseGrace: 50 * time.Millisecond})
	events := ts.Events()
	c := ts.dial(t, "a1", "alice")
	c.event("chat/ask", nil, "q")
	ev, _ := awaitEvent(t, events, "chat/ask", "a1")
	c.close()
	awaitEvent(t, events, sente.EventClientGone, "a1")
	if err := ev.Reply("late"); !errors.Is(err, sente.ErrGone) {
		t.Errorf("Reply after the client left: %v, want ErrGone", err)
	}
}

// ---- router ----

func TestRouter(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	defaults := make(chan *sente.Event, 16)
	r := sente.Router{Logger: ts.Log}
	r.Handle("t/echo", func(ctx context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
	r.Handle("t/panic", func(ctx context.Context, ev *sente.Event) { panic("boom-42") })
	r.Default = func(ctx context.Context, ev *sente.Event) {
		if !strings.HasPrefix(ev.ID, "chsk/") {
			defaults <- ev
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx, ts.Events()); close(done) }()

	c := ts.dial(t, "a1", "alice")
	c.event("t/echo", map[string]int{"n": 1}, "e1")
	if got := c.reply("e1"); string(got) != `{"n":1}` {
		t.Errorf("echo reply %s", got)
	}
	c.event("t/panic", 1, "p1")
	var perr map[string]string
	if err := json.Unmarshal(c.reply("p1"), &perr); err != nil || perr["error"] == "" {
		t.Errorf("reply to a request whose handler panicked: %v (%v), want {\"error\": ...}", perr, err)
	}
	c.event("t/panic", 2, "") // no cb: nothing is sent
	c.event("t/echo", "still here", "e2")
	if got := c.reply("e2"); string(got) != `"still here"` {
		t.Errorf("echo reply after panics %s", got)
	}
	c.event("t/other", 3, "")
	select {
	case ev := <-defaults:
		if ev.ID != "t/other" || ev.ClientID != "a1" || string(ev.Data) != "3" {
			t.Errorf("Default got %s %s", describe(ev), ev.Data)
		}
	case <-time.After(waitFor):
		t.Fatal("Default handler not called")
	}
	if logs := ts.Logs.String(); !strings.Contains(logs, "boom-42") || !strings.Contains(logs, "t/panic") {
		t.Errorf("panic not logged:\n%s", logs)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Router.Run did not return after its context ended")
	}

	t.Run("stops when Events closes", func(t *testing.T) {
		ts := startServer(t, sente.Options{})
		var r sente.Router
		done := make(chan struct{})
		go func() { r.Run(context.Background(), ts.Events()); close(done) }()
		ts.dial(t, "a1", "alice").ping("p")
		shutdown(t, ts)
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Fatal("Router.Run did not return after Events closed")
		}
	})
}

func shutdown(t *testing.T, ts *testServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// ---- pushes ----

func TestPushTargets(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	a1, a2, a3 := ts.dial(t, "a1", "alice"), ts.dial(t, "a2", "alice"), ts.dial(t, "a3", "alice")
	b1 := ts.dial(t, "b1", "bob")

	if err := ts.Push("alice", "t/user", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawClient{a1, a2, a3} {
		if got := c.pushes(1); got[0].ID != "t/user" || string(got[0].Data) != "1" {
			t.Errorf("%s got %v", c.ClientID, got)
		}
	}
	if err := ts.PushClient("a2", "t/client", 2); err != nil {
		t.Fatal(err)
	}
	if err := ts.Broadcast("t/all", 3); err != nil {
		t.Fatal(err)
	}
	want := map[*rawClient]string{a1: "t/all=3", a2: "t/client=2 t/all=3", a3: "t/all=3", b1: "t/all=3"}
	for c, w := range want {
		if got := summary(c.pushes(strings.Count(w, " ") + 1)); got != w {
			t.Errorf("%s got %q, want %q", c.ClientID, got, w)
		}
	}
	// [id] without data is sent as [id].
	if err := ts.PushClient("b1", "t/nodata", nil); err != nil {
		t.Fatal(err)
	}
	if got := b1.pushes(1)[0]; got.ID != "t/nodata" || got.Data != nil {
		t.Errorf("push without data arrived as %+v", got)
	}

	// Nobody there: no error, nothing sent.
	if err := ts.Push("nobody", "t/x", 1); err != nil {
		t.Errorf("Push to an absent user: %v", err)
	}
	if err := ts.PushClient("nobody", "t/x", 1); err != nil {
		t.Errorf("PushClient to an absent client: %v", err)
	}
	for _, id := range []string{"bad", "/x", "x/", "", "t/" + strings.Repeat("x", 127)} {
		if err := ts.Push("alice", id, 1); !errors.Is(err, sente.ErrBadEventID) {
			t.Errorf("Push with id %q: %v, want ErrBadEventID", id, err)
		}
	}
	if err := ts.Broadcast("chsk/handshake", 1); !errors.Is(err, sente.ErrReservedEventID) {
		t.Errorf("Broadcast of a chsk/ id: %v, want ErrReservedEventID", err)
	}
	for _, c := range []*rawClient{a1, a2, a3, b1} {
		c.ping("after") // the next frame is the pong: nothing else was sent
	}
}

func summary(evs []pushed) string {
	s := make([]string, len(evs))
	for i, e := range evs {
		s[i] = e.ID + "=" + string(e.Data)
	}
	return strings.Join(s, " ")
}

// TestPushOrder mixes Push, PushNow, PushClient and replies to one
// connection and checks that they arrive in the order they were made.
func TestPushOrder(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	events := ts.Events()
	c := ts.dial(t, "a1", "alice")
	const n = 200
	var asks []*sente.Event
	for i := range n / 10 {
		c.event("t/ask", i, "cb"+strconv.Itoa(i))
	}
	for len(asks) < n/10 {
		ev, _ := awaitEvent(t, events, "t/ask", "a1")
		asks = append(asks, ev)
	}
	for i := range n {
		var err error
		switch {
		case i%10 == 5:
			err = asks[0].Reply(i)
			asks = asks[1:]
		case i%3 == 0:
			err = ts.PushNow("alice", "t/seq", i)
		case i%7 == 0:
			err = ts.PushClient("a1", "t/seq", i)
		default:
			err = ts.Push("alice", "t/seq", i)
		}
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	var got []int
	replies, batches := 0, 0
	for len(got) < n {
		f := c.next()
		var vals []json.RawMessage
		if f.CB != nil {
			if want := "cb" + strconv.Itoa(replies); *f.CB != want {
				t.Fatalf("reply to %q, want %q", *f.CB, want)
			}
			replies++
			vals = []json.RawMessage{f.Payload}
		} else {
			batches++
			for _, e := range f.events(t) {
				if e.ID != "t/seq" {
					t.Fatalf("unexpected event %s", e.ID)
				}
				vals = append(vals, e.Data)
			}
		}
		for _, v := range vals {
			i, err := strconv.Atoi(string(v))
			if err != nil {
				t.Fatalf("value %s", v)
			}
			got = append(got, i)
		}
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("out of order at %d: got %v", i, got)
		}
	}
	t.Logf("%d values in %d batch frames and %d replies", len(got), batches, replies)
	c.ping("end")
}

func TestPushBatching(t *testing.T) {
	t.Parallel()
	const window = 500 * time.Millisecond // the three pushes must fall in it
	ts := startServer(t, sente.Options{SendWindow: window})
	c := ts.dial(t, "a1", "alice")
	start := time.Now()
	for i := range 3 {
		if err := ts.Push("alice", "t/b", i); err != nil {
			t.Fatal(err)
		}
	}
	f := c.next()
	if elapsed := time.Since(start); elapsed < window {
		t.Errorf("batch sent after %v, before the %v window ended", elapsed, window)
	}
	if got := summary(f.events(t)); got != "t/b=0 t/b=1 t/b=2" {
		t.Errorf("first frame %s, want the three pushes in one batch", f.Raw)
	}
}

func TestPushNowFlushes(t *testing.T) {
	t.Parallel()
	// A window no test waits for: only PushNow and replies can send.
	ts := startServer(t, sente.Options{SendWindow: time.Hour})
	events := ts.Events()
	c := ts.dial(t, "a1", "alice")
	ts.Push("alice", "t/a", 1)
	ts.Push("alice", "t/b", 2)
	ts.PushNow("alice", "t/c", 3)
	if got := summary(c.next().events(t)); got != "t/a=1 t/b=2 t/c=3" {
		t.Errorf("PushNow sent %q, want the waiting pushes and itself in one batch", got)
	}
	// A reply flushes too, after what waits.
	ts.Push("alice", "t/d", 4)
	c.event("t/ask", nil, "r1")
	ev, _ := awaitEvent(t, events, "t/ask", "a1")
	if err := ev.Reply("ok"); err != nil {
		t.Fatal(err)
	}
	if got := summary(c.next().events(t)); got != "t/d=4" {
		t.Errorf("before the reply: %q, want t/d=4", got)
	}
	if got := c.reply("r1"); string(got) != `"ok"` {
		t.Errorf("reply %s", got)
	}
}

// ---- presence ----

func TestPresence(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{CloseGrace: 100 * time.Millisecond})
	events := ts.Events()
	a1 := ts.dial(t, "a1", "alice")
	evs := expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")
	if evs[0].Request == nil || evs[1].Request != nil {
		t.Errorf("Request of client-connect %v, of uidport-open %v; want the handshake, nil", evs[0].Request, evs[1].Request)
	}
	a2 := ts.dial(t, "a2", "alice")
	a2.event("t/sentinel", nil, "")
	// The second client of a user opens nothing.
	expectEvents(t, events, "chsk/client-connect alice a2", "t/sentinel alice a2")
	ts.dial(t, "b1", "bob")
	expectEvents(t, events, "chsk/client-connect bob b1", "chsk/uidport-open bob ")

	users, err := ts.ConnectedUsers(context.Background())
	if err != nil || !slices.Equal(users, []string{"alice", "bob"}) {
		t.Errorf("ConnectedUsers %q, %v; want [alice bob]", users, err)
	}
	if got := sorted(ts.Clients("alice")); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("Clients(alice) %q", got)
	}

	// One tab of two closes: the user stays open. Both closed: it closes,
	// once.
	a1.close()
	expectEvents(t, events, "chsk/client-disconnect alice a1")
	a2.close()
	expectEvents(t, events, "chsk/client-disconnect alice a2", "chsk/uidport-close alice ")
	users, _ = ts.ConnectedUsers(context.Background())
	if !slices.Equal(users, []string{"bob"}) {
		t.Errorf("ConnectedUsers %q, want [bob]", users)
	}
	if got := ts.Clients("alice"); len(got) != 0 {
		t.Errorf("Clients(alice) %q after both left", got)
	}
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

// detached waits until the server is done with the connection whose
// handshake request is r: net/http cancels a request's context once its
// handler has returned, hijacked or not.
func detached(t *testing.T, r *http.Request) {
	t.Helper()
	select {
	case <-r.Context().Done():
	case <-time.After(waitFor):
		t.Fatal("the server did not end the connection")
	}
}

func TestGraceReconnect(t *testing.T) {
	t.Parallel()
	// The reconnect must land within the grace: leave room for a dial on a
	// loaded machine.
	ts := startServer(t, sente.Options{CloseGrace: 500 * time.Millisecond})
	events := ts.Events()
	a1 := ts.dial(t, "a1", "alice")
	req1 := expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")[0].Request
	z1 := ts.dial(t, "z1", "zed")
	expectEvents(t, events, "chsk/client-connect zed z1", "chsk/uidport-open zed ")
	a1.event("t/ask", nil, "q1")
	ask := expectEvents(t, events, "t/ask alice a1")[0]

	a1.close()
	detached(t, req1)
	// Within the grace period: the client counts as connected, and what is
	// sent to it waits for its return.
	if got := ts.Clients("alice"); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("Clients(alice) within the grace: %q", got)
	}
	ts.Push("alice", "t/gone", 1)
	ts.PushClient("a1", "t/gone", 2)
	if err := ask.Reply("later"); err != nil {
		t.Errorf("Reply within the grace: %v", err)
	}
	a1 = ts.dial(t, "a1", "alice") // the handshake comes first
	if got := summary(a1.pushes(2)); got != "t/gone=1 t/gone=2" {
		t.Errorf("after reconnecting: %q", got)
	}
	if got := a1.reply("q1"); string(got) != `"later"` {
		t.Errorf("reply after reconnecting: %s", got)
	}
	a1.event("t/sentinel", nil, "")
	expectEvents(t, events, "t/sentinel alice a1") // no disconnect, no new connect

	// z1's grace starts after a1's would have: once z1 has expired, so
	// would have a1.
	z1.close()
	expectEvents(t, events, "chsk/client-disconnect zed z1", "chsk/uidport-close zed ")
	if got := ts.Clients("alice"); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("Clients(alice) after reconnecting: %q", got)
	}
	if users, _ := ts.ConnectedUsers(context.Background()); !slices.Equal(users, []string{"alice"}) {
		t.Errorf("ConnectedUsers %q, want [alice]", users)
	}

	a1.close()
	expectEvents(t, events, "chsk/client-disconnect alice a1", "chsk/uidport-close alice ")
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

// connectBroker is a MemoryBroker that reports its Connect calls.
type connectBroker struct {
	sente.MemoryBroker
	connects chan string
}

func (b *connectBroker) Connect(ctx context.Context, uid, clientID string) (bool, error) {
	b.connects <- uid + " " + clientID
	return b.MemoryBroker.Connect(ctx, uid, clientID)
}

// A client that returns within its grace period is recorded with the broker
// again: in a cluster, another node may have taken it meanwhile, and that
// node's Disconnect must not remove it. The second Connect opens no user.
func TestGraceReturnConnectsAgain(t *testing.T) {
	t.Parallel()
	b := &connectBroker{connects: make(chan string, 4)}
	ts := startServer(t, sente.Options{Broker: b, CloseGrace: 500 * time.Millisecond})
	events := ts.Events()
	connect := func(what string) {
		t.Helper()
		select {
		case got := <-b.connects:
			if got != "alice a1" {
				t.Fatalf("%s: Connect(%s), want alice a1", what, got)
			}
		case <-time.After(waitFor):
			t.Fatalf("%s: no Connect", what)
		}
	}
	a1 := ts.dial(t, "a1", "alice")
	req := expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")[0].Request
	connect("first connection")
	a1.close()
	detached(t, req)
	a1 = ts.dial(t, "a1", "alice")
	connect("return within the grace")
	a1.event("t/sentinel", nil, "")
	expectEvents(t, events, "t/sentinel alice a1") // no second open
	a1.close()
	expectEvents(t, events, "chsk/client-disconnect alice a1", "chsk/uidport-close alice ")
}

// gateBroker is a MemoryBroker whose Disconnect waits for release, and
// which reports its Connect calls and Disconnect's start.
type gateBroker struct {
	sente.MemoryBroker
	connects      chan string
	disconnecting chan string
	release       chan struct{}
}

func (b *gateBroker) Connect(ctx context.Context, uid, clientID string) (bool, error) {
	b.connects <- uid + " " + clientID
	return b.MemoryBroker.Connect(ctx, uid, clientID)
}

func (b *gateBroker) Disconnect(ctx context.Context, uid, clientID string) (bool, error) {
	b.disconnecting <- uid + " " + clientID
	<-b.release
	return b.MemoryBroker.Disconnect(ctx, uid, clientID)
}

// A client that comes back after its grace period, while the broker is
// still removing it, is connected again only once that removal is done:
// the other way round, the Disconnect would remove the client that is
// connected.
func TestReturnWaitsForDeparture(t *testing.T) {
	t.Parallel()
	b := &gateBroker{connects: make(chan string, 4), disconnecting: make(chan string, 4), release: make(chan struct{})}
	ts := startServer(t, sente.Options{Broker: b, CloseGrace: 10 * time.Millisecond})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(b.release) }) }
	t.Cleanup(release) // before the server's Shutdown, which waits for departures
	events := ts.Events()
	recv := func(ch chan string, what string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != "alice a1" {
				t.Fatalf("%s: %s, want alice a1", what, got)
			}
		case <-time.After(waitFor):
			t.Fatalf("no %s", what)
		}
	}
	a1 := ts.dial(t, "a1", "alice")
	expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")
	recv(b.connects, "first Connect")
	a1.close()
	expectEvents(t, events, "chsk/client-disconnect alice a1")
	recv(b.disconnecting, "Disconnect after the grace")

	dialed := make(chan error, 1)
	go func() {
		_, err := ts.dialWith(t, query("a1", "alice"), dialOpts{})
		dialed <- err
	}()
	// Nothing tells when the new connection's attach has run; a Connect
	// within this time would be the bug.
	select {
	case got := <-b.connects:
		t.Fatalf("Connect(%s) while the Disconnect was still on its way", got)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	expectEvents(t, events, "chsk/uidport-close alice ", "chsk/client-connect alice a1", "chsk/uidport-open alice ")
	recv(b.connects, "Connect of the returning client")
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	if users, _ := ts.ConnectedUsers(context.Background()); !slices.Equal(users, []string{"alice"}) {
		t.Errorf("ConnectedUsers %q, want [alice]", users)
	}
}

// refusingBroker is a MemoryBroker whose Publish fails while refuse is set.
type refusingBroker struct {
	sente.MemoryBroker
	refuse atomic.Bool
}

func (b *refusingBroker) Publish(ctx context.Context, p sente.Push) error {
	if b.refuse.Load() {
		return errors.New("broker away")
	}
	return b.MemoryBroker.Publish(ctx, p)
}

// A push the broker refuses reaches no connection: delivered here at once,
// it would overtake the pushes the broker took before it went away and has
// not delivered yet.
func TestRefusedPushNotDelivered(t *testing.T) {
	t.Parallel()
	b := &refusingBroker{}
	ts := startServer(t, sente.Options{Broker: b, SendWindow: -1})
	a1 := ts.dial(t, "a1", "alice")
	b.refuse.Store(true)
	if err := ts.Push("alice", "t/n", 1); !errors.Is(err, sente.ErrBroker) {
		t.Fatalf("Push while the broker is away: %v, want ErrBroker", err)
	}
	b.refuse.Store(false)
	if err := ts.Push("alice", "t/n", 2); err != nil {
		t.Fatal(err)
	}
	if got := summary(a1.pushes(1)); got != "t/n=2" {
		t.Errorf("got %q, want only the push the broker took", got)
	}
}

// ---- security ----

func TestSecurity(t *testing.T) {
	t.Parallel()

	// refused checks that q and h are refused with status, that the body
	// does not tell why and that the log does.
	refused := func(t *testing.T, ts *testServer, q url.Values, h http.Header, status int, reason string) {
		t.Helper()
		_, err := ts.dialWith(t, q, dialOpts{Header: h})
		if got := dialStatus(err); got != status {
			t.Errorf("dial: status %d (%v), want %d", got, err, status)
		}
		got, body := ts.handshakeResponse(t, q, h)
		if got != status {
			t.Errorf("handshake: status %d, want %d", got, status)
		}
		if reason != "" && strings.Contains(body, reason) {
			t.Errorf("response body tells the reason %q: %q", reason, body)
		}
		if reason != "" && !strings.Contains(ts.Logs.String(), reason) {
			t.Errorf("log does not hold the reason %q:\n%s", reason, ts.Logs.String())
		}
	}

	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, sente.Options{Reject: func(r *http.Request) error {
			switch r.URL.Query().Get("uid") {
			case "flood":
				return wsasync.Refuse(http.StatusTooManyRequests, "rate-limit-secret")
			case "banned":
				return errors.New("banned-secret")
			}
			return nil
		}})
		refused(t, ts, query("c1", "flood"), nil, http.StatusTooManyRequests, "rate-limit-secret")
		refused(t, ts, query("c1", "banned"), nil, http.StatusForbidden, "banned-secret")
		ts.dial(t, "c1", "alice").ping("p")
	})

	t.Run("csrf", func(t *testing.T) {
		t.Parallel()
		const token = "tok_Abc-123"
		ts := startServer(t, sente.Options{CSRFToken: func(r *http.Request) string {
			if r.URL.Query().Get("uid") == "nosession" {
				return ""
			}
			return token
		}})
		c, err := ts.dialWith(t, query("h1", "alice"), dialOpts{Header: http.Header{"X-CSRF-Token": {token}}})
		if err != nil {
			t.Fatalf("token in X-CSRF-Token refused: %v", err)
		}
		c.ping("p")
		c, err = ts.dialWith(t, query("s1", "alice"), dialOpts{Protocols: []string{proto, "csrf." + token}})
		if err != nil {
			t.Fatalf("token as subprotocol csrf.<token> refused: %v", err)
		}
		if c.Subprotocol != proto {
			t.Errorf("subprotocol %q chosen, want %q", c.Subprotocol, proto)
		}
		c.ping("p")
		c, err = ts.dialWith(t, query("s2", "alice"), dialOpts{Protocols: []string{"csrf." + token, proto}})
		if err != nil || c.Subprotocol != proto {
			t.Fatalf("csrf.<token> offered first: %v, subprotocol %q", err, c.Subprotocol)
		}

		const reason = "bad CSRF token"
		refused(t, ts, query("c1", "alice"), nil, http.StatusForbidden, reason)
		refused(t, ts, query("c1", "alice"), http.Header{"X-CSRF-Token": {"wrong"}}, http.StatusForbidden, reason)
		refused(t, ts, query("c1", "alice"), http.Header{"X-CSRF-Token": {token + "x"}}, http.StatusForbidden, reason)
		refused(t, ts, query("c1", "alice"), http.Header{"Sec-WebSocket-Protocol": {proto + ", csrf.wrong"}}, http.StatusForbidden, reason)
		// An empty reference token (no session) refuses even an empty one.
		refused(t, ts, query("c1", "nosession"), http.Header{"X-CSRF-Token": {""}}, http.StatusForbidden, reason)
		refused(t, ts, query("c1", "nosession"), http.Header{"X-CSRF-Token": {token}}, http.StatusForbidden, reason)
		// Never from the URL.
		for _, name := range []string{"csrf-token", "csrf", "X-CSRF-Token", "x-csrf-token", "_csrf"} {
			refused(t, ts, query("c1", "alice", name, token), nil, http.StatusForbidden, reason)
		}
		if strings.Contains(ts.Logs.String(), token) {
			t.Errorf("the token is in the log:\n%s", ts.Logs.String())
		}
	})

	t.Run("origin", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, sente.Options{Origins: []string{"*.trusted.example"}})
		refused(t, ts, query("c1", "alice"), http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden, "evil.example")
		refused(t, ts, query("c1", "alice"), http.Header{"Origin": {"https://trusted.example.evil.example"}}, http.StatusForbidden, "")
		refused(t, ts, query("c1", "alice"), http.Header{"Origin": {"null"}}, http.StatusForbidden, "")
		host := strings.TrimPrefix(ts.srv.URL, "http://")
		for i, origin := range []string{"https://app.trusted.example", "http://" + host, ""} {
			h := http.Header{}
			if origin != "" {
				h.Set("Origin", origin)
			}
			c, err := ts.dialWith(t, query("ok"+strconv.Itoa(i), "alice"), dialOpts{Header: h})
			if err != nil {
				t.Fatalf("origin %q refused: %v", origin, err)
			}
			c.ping("p")
		}
	})

	t.Run("authorize", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, sente.Options{Authorize: func(r *http.Request) error {
			switch r.Header.Get("Authorization") {
			case "Bearer good":
				return nil
			case "Bearer poor":
				return wsasync.Refuse(http.StatusPaymentRequired, "quota-secret")
			}
			return errors.New("expired-token-secret")
		}})
		refused(t, ts, query("c1", "alice"), nil, http.StatusUnauthorized, "expired-token-secret")
		refused(t, ts, query("c1", "alice"), http.Header{"Authorization": {"Bearer poor"}}, http.StatusPaymentRequired, "quota-secret")
		c, err := ts.dialWith(t, query("c1", "alice"), dialOpts{Header: http.Header{"Authorization": {"Bearer good"}}})
		if err != nil {
			t.Fatal(err)
		}
		c.ping("p")
	})
}

// ---- kick and replacement ----

func TestKick(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	a1, a2, a3 := ts.dial(t, "a1", "alice"), ts.dial(t, "a2", "alice"), ts.dial(t, "a3", "alice")
	b1 := ts.dial(t, "b1", "bob")

	ts.KickClient("a3", "go away a3")
	err := a3.waitClosed()
	if code := wsasync.CloseStatus(err); code != sente.CodeKicked {
		t.Errorf("a3 closed with %v, want 4000", err)
	}
	var ce *wsasync.CloseError
	if errors.As(err, &ce) && ce.Reason != "go away a3" {
		t.Errorf("close reason %q", ce.Reason)
	}
	a1.ping("p")
	a2.ping("p")

	ts.Kick("alice", "bye")
	for _, c := range []*rawClient{a1, a2} {
		if code := c.closeCode(); code != sente.CodeKicked {
			t.Errorf("%s closed with %v, want 4000", c.ClientID, code)
		}
	}
	b1.ping("p")
}

func TestReplaced(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{CloseGrace: 100 * time.Millisecond})
	events := ts.Events()
	old := ts.dial(t, "a1", "alice")
	expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")
	c := ts.dial(t, "a1", "alice")
	if code := old.closeCode(); code != sente.CodeReplaced {
		t.Errorf("replaced connection closed with %v, want 4002", code)
	}
	ts.Push("alice", "t/x", 1)
	if got := summary(c.pushes(1)); got != "t/x=1" {
		t.Errorf("new connection got %q", got)
	}
	c.ping("p")
	if got := ts.Clients("alice"); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("Clients(alice) %q", got)
	}

	// The same client id under another user (a login): the old one is
	// replaced and its user leaves.
	b := ts.dial(t, "a1", "bob")
	if code := c.closeCode(); code != sente.CodeReplaced {
		t.Errorf("connection replaced by another user's closed with %v, want 4002", code)
	}
	b.ping("p")
	expectEvents(t, events,
		"chsk/client-disconnect alice a1", "chsk/uidport-close alice ",
		"chsk/client-connect bob a1", "chsk/uidport-open bob ")
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

// ---- slow clients ----

// dialSilent opens a connection that completes the handshake and then never
// reads, with a small receive buffer.
func dialSilent(t *testing.T, ts *testServer, q url.Values) net.Conn {
	t.Helper()
	d := ws.Dialer{
		Protocols: []string{proto},
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			nc, err := nd.DialContext(ctx, network, addr)
			if tc, ok := nc.(*net.TCPConn); ok {
				tc.SetReadBuffer(4096)
			}
			return nc, err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, ts.URL+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if br != nil {
		ws.PutReader(br)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func TestSlowClient(t *testing.T) {
	t.Parallel()
	opts := sente.Options{SendQueue: 16, SendWindow: -1, CloseGrace: 50 * time.Millisecond}
	opts.WebSocket.WriteTimeout = 200 * time.Millisecond
	// Small socket send buffers and out channels make the slow client's
	// pipe fill after a few pushes. The fast clients' receive buffers are
	// the system's, which hold a push whether or not their reader has been
	// scheduled, so the write timeout never catches them.
	opts.WebSocket.OutBuffer = 1
	ts := startServerOn(t, opts, 16<<10)
	events := ts.Events()
	dialSilent(t, ts, query("slow", "u"))
	var fast []*rawClient
	for _, id := range []string{"f1", "f2", "g1"} {
		uid := "u"
		if id == "g1" {
			uid = "v"
		}
		c, err := ts.dialWith(t, query(id, uid), dialOpts{ReadLimit: -1, InBuffer: 64})
		if err != nil {
			t.Fatal(err)
		}
		fast = append(fast, c)
	}

	big := bigString(16 << 10)
	gone, rounds := -1, 0
	for ; gone < 0 || rounds < gone+10; rounds++ {
		if rounds == 2000 {
			t.Fatalf("the slow client was not disconnected after %d pushes of 16 KiB", rounds)
		}
		data := sente.Raw(fmt.Sprintf(`[%d,%s]`, rounds, big))
		if err := ts.Push("u", "t/big", data); err != nil {
			t.Fatal(err)
		}
		if err := ts.Push("v", "t/big", data); err != nil {
			t.Fatal(err)
		}
		for _, c := range fast {
			ev := c.pushes(1)[0]
			var got []json.RawMessage
			if err := json.Unmarshal(ev.Data, &got); err != nil || len(got) != 2 || string(got[0]) != strconv.Itoa(rounds) {
				t.Fatalf("%s: round %d got %.40s", c.ClientID, rounds, ev.Data)
			}
		}
	drain:
		for {
			select {
			case ev := <-events:
				switch ev.ID {
				case sente.EventClientGone:
					if ev.ClientID != "slow" {
						t.Fatalf("%s disconnected", ev.ClientID)
					}
					if gone >= 0 {
						t.Fatal("the slow client disconnected twice")
					}
					gone = rounds
				case sente.EventUserClose:
					t.Fatalf("user %q closed", ev.UserID)
				}
			default:
				break drain
			}
		}
	}
	how := "write timeout, then grace"
	if strings.Contains(ts.Logs.String(), "too slow") {
		how = "send queue overflow"
	}
	t.Logf("slow client disconnected after %d pushes (%s)", gone+1, how)
	if got := sorted(ts.Clients("u")); !slices.Equal(got, []string{"f1", "f2"}) {
		t.Errorf("Clients(u) %q, want [f1 f2]", got)
	}
	if users, _ := ts.ConnectedUsers(context.Background()); !slices.Equal(users, []string{"u", "v"}) {
		t.Errorf("ConnectedUsers %q, want [u v]", users)
	}
	for _, c := range fast {
		c.ping("p")
	}
}

// ---- bad packages and events ----

func TestBadPackages(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	events := ts.Events()
	c := ts.dial(t, "a1", "alice")
	expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")

	long := strings.Repeat("c", 33)
	for _, tc := range []struct{ frame, id string }{
		{`garbage`, sente.EventBadPackage},
		{`{"a":1}`, sente.EventBadPackage},
		{`"str"`, sente.EventBadPackage},
		{`[]`, sente.EventBadPackage},
		{`[["t/x",1]]`, sente.EventBadPackage},
		{`[["t/x",1],null,null]`, sente.EventBadPackage},
		{`[["t/x",1],5]`, sente.EventBadPackage},
		{`[["t/x",1],true]`, sente.EventBadPackage},
		{`[["t/x",1],["cb"]]`, sente.EventBadPackage},
		{`[["t/x",1],""]`, sente.EventBadPackage},
		{`[["t/x",1],"` + long + `"]`, sente.EventBadPackage},
		{`[["t/x",1],null`, sente.EventBadPackage},
		{`["t/x",null]`, sente.EventBadEvent},
		{`[{"id":"t/x"},null]`, sente.EventBadEvent},
		{`[[],null]`, sente.EventBadEvent},
		{`[["t/x",1,2],null]`, sente.EventBadEvent},
		{`[[5],null]`, sente.EventBadEvent},
		{`[["bad"],null]`, sente.EventBadEvent},
		{`[["/x"],null]`, sente.EventBadEvent},
		{`[["x/"],null]`, sente.EventBadEvent},
		{`[["t/` + strings.Repeat("x", 127) + `"],null]`, sente.EventBadEvent},
		{`[["chsk/handshake"],null]`, sente.EventBadEvent},
		{`[["chsk/uidport-open"],null]`, sente.EventBadEvent},
		{`[["chsk/anything",1],"cb"]`, sente.EventBadEvent},
	} {
		c.send(tc.frame)
		ev := nextEvent(t, events)
		if ev.ID != tc.id || ev.UserID != "alice" || ev.ClientID != "a1" || ev.Request == nil {
			t.Errorf("%s: got %q (Request %v), want %s", tc.frame, describe(ev), ev.Request != nil, tc.id)
			continue
		}
		var raw string
		if err := ev.Decode(&raw); err != nil || raw == "" {
			t.Errorf("%s: %s data %s, want the frame as a string", tc.frame, ev.ID, ev.Data)
		}
		if ev.WantsReply() {
			t.Errorf("%s: %s wants a reply", tc.frame, ev.ID)
		}
	}
	c.c.Out <- wsasync.Binary([]byte("\x00\xff"))
	expectEvents(t, events, "chsk/bad-package alice a1")

	// The connection is still open and working, and nothing was sent.
	c.event("t/ok", map[string]int{"n": 1}, "ok1")
	ev := expectEvents(t, events, "t/ok alice a1")[0]
	if err := ev.Reply("fine"); err != nil {
		t.Fatal(err)
	}
	if got := c.reply("ok1"); string(got) != `"fine"` {
		t.Errorf("reply %s", got)
	}
	logs := ts.Logs.String()
	if !strings.Contains(logs, sente.EventBadPackage) || !strings.Contains(logs, sente.EventBadEvent) {
		t.Errorf("bad packages and events not logged:\n%s", logs)
	}
}

// ---- shutdown ----

func TestShutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{})
	var r sente.Router
	routed := make(chan struct{})
	go func() { r.Run(context.Background(), ts.Events()); close(routed) }()
	a1, a2, b1 := ts.dial(t, "a1", "alice"), ts.dial(t, "a2", "alice"), ts.dial(t, "b1", "bob")

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	for _, c := range []*rawClient{a1, a2, b1} {
		if code := c.closeCode(); code != sente.CodeRestart {
			t.Errorf("%s closed with %v, want 1012", c.ClientID, code)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Shutdown did not return")
	}
	select {
	case <-routed:
	case <-time.After(waitFor):
		t.Fatal("Events not closed")
	}
	if _, err := ts.dialWith(t, query("a1", "alice"), dialOpts{}); dialStatus(err) != http.StatusServiceUnavailable {
		t.Errorf("dial after Shutdown: %v, want 503", err)
	}
	if got := ts.Clients("alice"); len(got) != 0 {
		t.Errorf("Clients(alice) after Shutdown: %q", got)
	}
	if users, _ := ts.ConnectedUsers(context.Background()); len(users) != 0 {
		t.Errorf("ConnectedUsers after Shutdown: %q", users)
	}
	if err := ts.Push("alice", "t/x", 1); err != nil {
		t.Errorf("Push after Shutdown: %v", err)
	}

	t.Run("returns with ctx", func(t *testing.T) {
		ts := startServer(t, sente.Options{})
		ts.dial(t, "a1", "alice").ping("p")
		dialSilent(t, ts, query("mute", "alice")) // never answers the close
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want DeadlineExceeded", err)
		}
	})
}

// ---- regressions: server bugs ----

// watchBroker is a MemoryBroker that hands out the server's subscription
// context, which Shutdown cancels once it has begun.
type watchBroker struct {
	sente.MemoryBroker
	subscribed chan context.Context
}

func (b *watchBroker) Subscribe(ctx context.Context, deliver sente.Handler) (sente.Position, error) {
	b.subscribed <- ctx
	return b.MemoryBroker.Subscribe(ctx, deliver)
}

func within(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("%s: not within %v", what, waitFor)
	}
}

// TestShutdownClosesLateConnection: a handshake that passed Shutdown's
// closing check but attaches after Shutdown took its snapshot of the
// connections must be closed too (or refused), and Shutdown must return.
func TestShutdownClosesLateConnection(t *testing.T) {
	t.Parallel()
	broker := &watchBroker{subscribed: make(chan context.Context, 1)}
	entered, gate := make(chan struct{}), make(chan struct{})
	ts := startServer(t, sente.Options{Broker: broker, UserID: func(r *http.Request, clientID string) string {
		close(entered) // UserID runs after the closing check, before attach
		<-gate
		return "alice"
	}})
	serverCtx := <-broker.subscribed

	type dialed struct {
		c   *wsasync.Conn
		err error
	}
	dc := make(chan dialed, 1)
	go func() {
		d := wsasync.Dialer{Subprotocols: []string{proto}}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := d.Dial(ctx, ts.URL+"?client-id=late")
		dc <- dialed{c, err}
	}()
	within(t, "UserID called", entered)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(ctx) }()
	within(t, "Shutdown begun", serverCtx.Done())
	close(gate)

	var d dialed
	select {
	case d = <-dc:
	case <-time.After(waitFor):
		t.Fatal("dial did not return")
	}
	var rc *rawClient
	if d.err == nil {
		rc = &rawClient{t: t, c: d.c, ClientID: "late"}
		t.Cleanup(rc.close)
	} else if dialStatus(d.err) != http.StatusServiceUnavailable {
		t.Fatalf("dial: %v, want 503 or a connection closed with 1012", d.err)
	}
	var err error
	select {
	case err = <-shut:
	case <-time.After(waitFor):
		t.Fatal("Shutdown did not return")
	}
	if err != nil {
		t.Errorf("Shutdown: %v: the connection accepted as it began was never closed", err)
	}
	if got := ts.Clients("alice"); len(got) != 0 {
		t.Errorf("Clients(alice) after Shutdown: %q", got)
	}
	if users, _ := ts.ConnectedUsers(context.Background()); len(users) != 0 {
		t.Errorf("ConnectedUsers after Shutdown: %q (stale presence in the broker)", users)
	}
	if rc != nil {
		if err != nil {
			rc.close() // let the server end it
		} else if code := rc.closeCode(); code != sente.CodeRestart {
			t.Errorf("late connection closed with %v, want 1012", code)
		}
	}
}

// TestShutdownNotDelayedByRemovedClients: a client removed while it was
// connected (its id taken by another user's login) or while within its grace
// period (its queue overflowed) must leave no grace timer running, which
// Shutdown can no longer stop and then waits for.
func TestShutdownNotDelayedByRemovedClients(t *testing.T) {
	t.Parallel()
	shutdownWithin := func(t *testing.T, ts *testServer) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		if err := ts.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v after %v: it waits for the grace timer of a removed client", err, time.Since(start))
		}
	}
	t.Run("login", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, sente.Options{CloseGrace: 2 * time.Second})
		events := ts.Events()
		ts.dial(t, "a1", "alice")
		req := expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")[0].Request
		ts.dial(t, "a1", "bob").ping("p") // a login on the same tab
		detached(t, req)
		shutdownWithin(t, ts)
	})
	t.Run("overflow in grace", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, sente.Options{CloseGrace: 2 * time.Second, SendQueue: 1})
		events := ts.Events()
		c := ts.dial(t, "a1", "alice")
		req := expectEvents(t, events, "chsk/client-connect alice a1", "chsk/uidport-open alice ")[0].Request
		c.close()
		detached(t, req)
		ts.Push("alice", "t/x", 1)
		ts.Push("alice", "t/x", 2) // overflows: a1 is removed
		expectEvents(t, events, "chsk/client-disconnect alice a1", "chsk/uidport-close alice ")
		shutdownWithin(t, ts)
	})
}

// TestPushDoesNotBlockOnFullEvents: Push from the application's event loop
// (a Router handler) must not wait for room in Events, which only that loop
// makes. Here a client in its grace period overflows its queue, and the
// departure Push reports through Events blocks Push while Events is full.
func TestPushDoesNotBlockOnFullEvents(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{RecvBuffer: 1, SendQueue: 2, CloseGrace: 2 * time.Second})
	got := make(chan *sente.Event, 1024)
	pause := make(chan chan struct{})
	go func() { // the application's loop, which the test can hold
		for {
			select {
			case ev, ok := <-ts.Events():
				if !ok {
					return
				}
				got <- ev
			case resume := <-pause:
				<-resume
			}
		}
	}()

	g := ts.dial(t, "g1", "u")
	req := expectEvents(t, got, "chsk/client-connect u g1", "chsk/uidport-open u ")[0].Request
	g.close()
	detached(t, req) // g1 is within its grace, with nobody taking its queue
	c := ts.dial(t, "c1", "w")
	expectEvents(t, got, "chsk/client-connect w c1", "chsk/uidport-open w ")

	resume := make(chan struct{})
	pause <- resume // the loop is busy, as in a handler
	release := sync.OnceFunc(func() { close(resume) })
	t.Cleanup(release)
	c.event("t/filler", nil, "")
	c.ping("p") // the filler has been emitted: Events (capacity 1) is full

	pushed := make(chan error, 1)
	go func() {
		var err error
		for i := range 3 { // the third overflows g1's queue of 2
			if err = ts.Push("u", "t/x", i); err != nil {
				break
			}
		}
		pushed <- err
	}()
	select {
	case err := <-pushed:
		if err != nil {
			t.Errorf("Push: %v", err)
		}
		release()
	case <-time.After(time.Second):
		t.Errorf("Push blocked while Events was full: a handler that pushes deadlocks the router")
		release()
		select {
		case <-pushed:
		case <-time.After(waitFor):
			t.Fatal("Push still blocked after Events was drained")
		}
	}
	expectEvents(t, got, "t/filler w c1")
	awaitEvent(t, got, sente.EventClientGone, "g1")
}
