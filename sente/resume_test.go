package sente_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// resumeAt dials with query q.
func (ts *testServer) resumeAt(t *testing.T, q url.Values) *rawClient {
	t.Helper()
	c, err := ts.dialWith(t, q, dialOpts{})
	if err != nil {
		t.Fatalf("dial %v: %v", q, err)
	}
	return c
}

// batch reads the pushes of the next frame and the position it carries.
func (c *rawClient) batch() (string, string) {
	c.t.Helper()
	f := c.next()
	if f.Pos == "" {
		c.t.Fatalf("%s: batch without a position: %s", c.ClientID, f.Raw)
	}
	return summary(f.events(c.t)), f.Pos
}

// TestResume: a client that comes back with the position of the last push
// it received gets every push it missed, in order, once, however many times
// it comes back from the same position; past the node's history it is told.
func TestResume(t *testing.T) {
	ts := startServer(t, sente.Options{SendWindow: -1, Resume: 4})
	a := ts.dial(t, "a1", "alice")
	if a.Pos == "" || a.Lost {
		t.Fatalf("fresh handshake: pos %q lost %v", a.Pos, a.Lost)
	}
	ts.Push("alice", "t/n", 1)
	got, p1 := a.batch()
	if got != "t/n=1" {
		t.Fatalf("first push: %q", got)
	}
	a.close()

	// Away: two pushes for alice, one for someone else.
	ts.Push("alice", "t/n", 2)
	ts.Push("bob", "t/n", 0)
	ts.PushClient("a1", "t/n", 3)

	for round := range 2 { // the second time as if the first replay was lost on the way
		a = ts.resumeAt(t, query("a1", "alice", "pos", p1))
		if a.Lost || a.Pos != p1 {
			t.Fatalf("round %d: resumed at %q lost %v, want at %q", round, a.Pos, a.Lost, p1)
		}
		if got, _ := a.batch(); got != "t/n=2 t/n=3" {
			t.Fatalf("round %d: replayed %q, want t/n=2 t/n=3", round, got)
		}
		a.close()
	}

	// Caught up: nothing is replayed, the client is at the last position.
	a = ts.resumeAt(t, query("a1", "alice", "pos", p1))
	_, p3 := a.batch()
	a.close()
	a = ts.resumeAt(t, query("a1", "alice", "pos", p3))
	if a.Lost || a.Pos != p3 {
		t.Fatalf("caught up: at %q lost %v, want %q", a.Pos, a.Lost, p3)
	}
	ts.Push("alice", "t/n", 4)
	if got, _ := a.batch(); got != "t/n=4" {
		t.Fatalf("live after resume: %q", got)
	}
	a.close()

	// Past the history (the node keeps 4 pushes; the broker none).
	for i := range 6 {
		ts.Push("bob", "t/n", i)
	}
	ts.Push("alice", "t/n", 5)
	a = ts.resumeAt(t, query("a1", "alice", "pos", p3))
	if !a.Lost {
		t.Fatalf("resumed past the history without being told: at %q", a.Pos)
	}
	if got, _ := a.batch(); got != "t/n=5" {
		t.Fatalf("what the node still holds: %q, want t/n=5", got)
	}
	a.close()

	// Another history (a broker that lost its log), and a malformed
	// position, which counts as none.
	if a = ts.resumeAt(t, query("a1", "alice", "pos", "other.3")); !a.Lost {
		t.Errorf("position of another epoch: not told lost")
	}
	a.close()
	if a = ts.resumeAt(t, query("a1", "alice", "pos", "nonsense")); a.Lost {
		t.Errorf("malformed position: told lost")
	}
}

// TestResumeAhead: a client that got further on another node than this node
// has delivered yet is not given those pushes again.
func TestResumeAhead(t *testing.T) {
	ts := startServer(t, sente.Options{SendWindow: -1})
	a := ts.dial(t, "a1", "alice")
	pos, err := sente.ParsePosition(a.Pos)
	if err != nil {
		t.Fatal(err)
	}
	a.close()
	ahead := sente.Position{Epoch: pos.Epoch, Seq: pos.Seq + 1}
	a = ts.resumeAt(t, query("a1", "alice", "pos", ahead.String()))
	if a.Lost || a.Pos != ahead.String() {
		t.Fatalf("ahead: at %q lost %v", a.Pos, a.Lost)
	}
	ts.Push("alice", "t/n", 1) // the push the client has already
	ts.Push("alice", "t/n", 2)
	if got, _ := a.batch(); got != "t/n=2" {
		t.Fatalf("after resuming ahead: %q, want t/n=2 only", got)
	}
}

func TestPositionString(t *testing.T) {
	for _, s := range []string{"abc.0", "a.b.18446744073709551615"} {
		p, err := sente.ParsePosition(s)
		if err != nil || p.String() != s {
			t.Errorf("ParsePosition(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", ".1", "abc", "abc.", "abc.-1", "abc.x"} {
		if _, err := sente.ParsePosition(s); err == nil {
			t.Errorf("ParsePosition(%q) accepted", s)
		}
	}
}

// TestClientResumes: pushes made while the Go client reconnects, again and
// again, reach it all, in order, once; frames written into a connection that
// was dropping are given again from the client's position.
func TestClientResumes(t *testing.T) {
	s := clStart(t, sente.Options{SendWindow: time.Millisecond}, nil, nil)
	p := startProxy(t, s.addr)
	c := clClient(t, "ws://"+p.addr+"/chsk", sente.ClientOptions{Params: clUser("bob")})
	clWaitState(t, c, "open", clOpen)

	const n = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := s.Push("bob", "t/n", i); err != nil {
				t.Errorf("Push: %v", err)
				return
			}
			if i%500 == 250 {
				p.cut() // what is in flight is lost with the connection
			}
		}
	}()
	for want := range n {
		ev := clEvent(t, c)
		var got int
		if ev.Decode(&got) != nil || got != want {
			t.Fatalf("push %d: got %s", want, ev.Data)
		}
	}
	<-done
	if st := c.State(); st.Lost {
		t.Errorf("client told lost: %+v", st)
	}
	select {
	case ev := <-c.Events():
		t.Errorf("extra event after all pushes: %s %s", ev.ID, ev.Data)
	default:
	}
}

// proxy relays TCP connections to a server until cut drops them all at once,
// as a failing network or node would.
type proxy struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// cut drops every relayed connection.
func (p *proxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset: what is buffered is lost
		}
		c.Close()
	}
}

// TestResumeFromOutbox: pushes still waiting for their batch when the
// connection dropped are in the outbox, not lost, however short the node's
// history.
func TestResumeFromOutbox(t *testing.T) {
	ts := startServer(t, sente.Options{SendWindow: time.Hour, Resume: 4})
	a := ts.dial(t, "a1", "alice")
	p0 := a.Pos
	for i := range 10 {
		ts.Push("alice", "t/n", i)
	}
	a.close()
	a = ts.resumeAt(t, query("a1", "alice", "pos", p0))
	if a.Lost {
		t.Fatalf("told lost, though every push waits in the outbox")
	}
	ts.PushNow("alice", "t/n", 10) // flushes what waits
	got := summary(a.pushes(11))
	if want := "t/n=0 t/n=1 t/n=2 t/n=3 t/n=4 t/n=5 t/n=6 t/n=7 t/n=8 t/n=9 t/n=10"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// gapBroker is a MemoryBroker whose node can be made to miss one push, as
// a node that fell behind a broker's history does.
type gapBroker struct {
	sente.MemoryBroker
	miss atomic.Bool
}

func (b *gapBroker) Subscribe(ctx context.Context, h sente.Handler) (sente.Position, error) {
	var gap bool
	push := h.Push
	h.Push = func(p sente.Push) {
		if b.miss.Swap(false) {
			gap = true
			return
		}
		p.Gap, gap = gap, false
		push(p)
	}
	return b.MemoryBroker.Subscribe(ctx, h)
}

// TestGap: a node that missed pushes makes its clients resume, and they are
// told pushes were lost.
func TestGap(t *testing.T) {
	b := &gapBroker{}
	ts := startServer(t, sente.Options{SendWindow: -1, Broker: b})
	a := ts.dial(t, "a1", "alice")
	ts.Push("alice", "t/n", 1)
	_, p1 := a.batch()
	b.miss.Store(true)
	ts.Push("alice", "t/n", 2) // missed by the node
	ts.Push("alice", "t/n", 3)
	if code := a.closeCode(); code != sente.CodeRestart {
		t.Fatalf("close code %d, want %d (resume)", code, sente.CodeRestart)
	}
	a = ts.resumeAt(t, query("a1", "alice", "pos", p1))
	if !a.Lost {
		t.Fatalf("resumed across the gap without being told")
	}
	if got, _ := a.batch(); got != "t/n=3" {
		t.Fatalf("after the gap: %q", got)
	}
}
