package redis

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// A proxy forwards TCP connections to Redis until it is cut: then it closes
// them, and closes new ones at once, until it is restored.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// redisHost is the address of the Redis server the tests use.
func redisHost(t *testing.T) string {
	u, err := url.Parse(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// via returns the Redis URL with the proxy's address.
func (p *proxy) via(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

// A node cut off from Redis fails its calls but remembers its clients; once
// Redis is back it records them again (reporting users that open then),
// removes those it could not disconnect, and delivers the pushes it missed,
// in order, none twice.
func TestOutage(t *testing.T) {
	rdb := needRedis(t)
	px := newProxy(t, redisHost(t))
	var logs logBuffer
	opts := Options{Prefix: testPrefix(t, rdb), NodeTTL: time.Minute} // no node expires here
	a := newNode(t, redisURL(), opts)
	opts.Logger = logs.logger()
	b := newNode(t, px.via(t, redisURL()), opts)
	ca, _, _ := subscribe(t, a)
	cb, _, _ := subscribe(t, b)
	ctx := context.Background()

	publish := func(n *Broker, what string) {
		t.Helper()
		if err := n.Publish(ctx, push("u", what)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		publish(a, fmt.Sprint("before ", i))
	}
	publish(b, "from b")
	cb.waitPushes(t, 6)
	if opened, err := b.Connect(ctx, "u1", "c1"); err != nil || !opened {
		t.Fatalf("connect c1: %v, %v", opened, err)
	}
	if opened, err := b.Connect(ctx, "u4", "c5"); err != nil || !opened {
		t.Fatalf("connect c5: %v, %v", opened, err)
	}
	if opened, err := a.Connect(ctx, "u5", "c7"); err != nil || !opened {
		t.Fatalf("connect c7: %v, %v", opened, err)
	}

	px.cut()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Publish(tctx, push("u", "lost")); err == nil || tctx.Err() != nil || !strings.Contains(err.Error(), "redis broker: publish") {
		t.Errorf("Publish during the outage: %v (ctx: %v)", err, tctx.Err())
	}
	// u1's last client leaves, u2 and u3 arrive (u3 on a as well).
	if _, err := b.Disconnect(tctx, "u1", "c1"); err == nil {
		t.Error("Disconnect during the outage succeeded")
	}
	if _, err := b.Connect(tctx, "u2", "c2"); err == nil {
		t.Error("Connect during the outage succeeded")
	}
	if opened, err := a.Connect(ctx, "u3", "c3"); err != nil || !opened {
		t.Fatalf("a connects c3: %v, %v", opened, err)
	}
	if _, err := b.Connect(tctx, "u3", "c4"); err == nil {
		t.Error("Connect during the outage succeeded")
	}
	if _, err := b.Connect(tctx, "u5", "c7"); err == nil { // c7 moves to b
		t.Error("Connect during the outage succeeded")
	}
	if _, err := b.Users(tctx); err == nil {
		t.Error("Users during the outage succeeded")
	}
	if _, err := b.Replay(tctx, sente.Position{Epoch: "x", Seq: 1}, sente.Position{Epoch: "x", Seq: 2}, func(sente.Push) {}); err == nil {
		t.Error("Replay during the outage succeeded")
	}
	for i := range 20 {
		publish(a, fmt.Sprint("during ", i))
	}
	want := ca.waitPushes(t, 26)
	px.restore()

	// b catches up, in order.
	got := cb.waitPushes(t, 26)
	if len(got) != 26 {
		t.Fatalf("b got %d pushes, want 26", len(got))
	}
	for i := range got {
		if got[i].Pos != want[i].Pos || string(got[i].Event) != string(want[i].Event) {
			t.Fatalf("push %d: b got %v %q, a got %v %q", i, got[i].Pos, got[i].Event, want[i].Pos, want[i].Event)
		}
	}
	// b records its clients again: u2 opens (reported by b), u3 was open
	// already (a's), u1's failed disconnect is done now.
	cb.wait(t, 10*time.Second, "b's presence reports", func(_ []sente.Push, p []sente.Presence) bool { return len(p) >= 2 })
	reports := cb.presences()
	slices.SortFunc(reports, func(x, y sente.Presence) int { return int(x.Kind) - int(y.Kind) })
	if want := []sente.Presence{
		{Kind: sente.ClientGone, UserID: "u1", ClientID: "c1", UserClosed: true},
		{Kind: sente.UserOpened, UserID: "u2"},
	}; !slices.Equal(reports, want) {
		t.Errorf("b reported %+v, want %+v", reports, want)
	}
	if u, err := a.Users(ctx); err != nil || !slices.Equal(u, []string{"u2", "u3", "u4", "u5"}) {
		t.Errorf("users: %q, %v", u, err)
	}
	if owner := rdb.HGet(ctx, a.keys.clients, member("u5", "c7")).Val(); owner != b.NodeID() {
		t.Errorf("c7 is %q's, want b's (it connected there last)", owner)
	}
	if opened, err := b.Connect(ctx, "u2", "c6"); err != nil || opened {
		t.Errorf("connect after the outage: %v, %v", opened, err)
	}
	publish(b, "after")
	if got := ca.waitPushes(t, 27); string(got[26].Event) != "after" {
		t.Errorf("a got %q", got[26].Event)
	}
	if got := cb.waitPushes(t, 27); string(got[26].Event) != "after" {
		t.Errorf("b got %q", got[26].Event)
	}
	if out := logs.String(); !strings.Contains(out, "reading the log again") {
		t.Errorf("b did not log its reconnection:\n%s", out)
	}
	if len(ca.presences()) != 0 {
		t.Errorf("a reported %+v", ca.presences())
	}
}

// Redis loses presence (a restart without persistence) while a client moves
// from a to b, whose Connect fails: a restores the client it still holds
// (its connection is closing) before b records its Connect. b's Connect is
// the later one and wins; a's Disconnect then does nothing, and the user
// stays present.
func TestRestoreLosesToLaterConnect(t *testing.T) {
	rdb := needRedis(t)
	px := newProxy(t, redisHost(t))
	opts := Options{Prefix: testPrefix(t, rdb), NodeTTL: time.Minute} // no node expires here
	a := newNode(t, redisURL(), opts)
	b := newNode(t, px.via(t, redisURL()), opts)
	subscribe(t, a)
	subscribe(t, b)
	ctx := context.Background()
	if opened, err := a.Connect(ctx, "u", "c"); err != nil || !opened {
		t.Fatalf("a connects c: %v, %v", opened, err)
	}
	m := member("u", "c")
	owner := func() string { return rdb.HGet(ctx, a.keys.clients, m).Val() }
	// Wait until a condition holds, polling Redis (no hook tells when a
	// node's upkeep loop has run).
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	px.cut()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.Connect(tctx, "u", "c"); err == nil {
		t.Fatal("Connect during the outage succeeded")
	}
	bAt := time.Now().UnixMilli()
	rdb.Del(ctx, a.keys.clients, a.keys.users, a.keys.since, a.keys.self, b.keys.self)
	// a restores strictly after b's Connect, in the milliseconds that the
	// records carry: the restore must not count as a later Connect.
	until("a millisecond to pass", func() bool { return time.Now().UnixMilli() > bAt })
	a.resyncLater()
	until("a to restore c", func() bool { return owner() == a.NodeID() })
	px.restore()
	until("b to record its Connect of c", func() bool { return owner() == b.NodeID() })
	if closed, err := a.Disconnect(ctx, "u", "c"); err != nil || closed {
		t.Errorf("a's Disconnect of the client b took: closed %v, %v", closed, err)
	}
	if users, err := a.Users(ctx); err != nil || !slices.Equal(users, []string{"u"}) {
		t.Errorf("users: %q, %v; want u, whose client is b's", users, err)
	}
}
