package nats

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wsasync/wsasync/sente"
)

// requireVar turns a missing NATS server from a skip into a failure (CI
// sets it), as the main module's internal/testenv does.
const requireVar = "WSASYNC_REQUIRE_ALL"

// need skips t (or fails it under requireVar=1) when ok is false.
func need(t testing.TB, ok bool, what, how string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(requireVar) == "1" {
		t.Fatalf("%s is missing (%s=1 makes that a failure): %s", what, requireVar, how)
	}
	t.Skipf("skipped: %s is missing: %s", what, how)
}

// serverURL returns the URL of the test NATS server (WSASYNC_NATS_URL,
// default nats://127.0.0.1:4222) after checking it answers with JetStream.
func serverURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("WSASYNC_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	need(t, err == nil, "a NATS server at "+url, "install nats-server and run it with JetStream: nats-server -js (or set WSASYNC_NATS_URL)")
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = js.AccountInfo(ctx)
		cancel()
	}
	need(t, err == nil, "JetStream on the NATS server at "+url, "run nats-server with -js")
	return url
}

// admin is a plain connection for tests to inspect and tamper with the
// broker's streams.
func admin(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

// testPrefix returns a prefix of the test's own, and deletes its stream and
// buckets when the test ends (after the brokers, closed by cleanups
// registered later).
func testPrefix(t testing.TB, url string) string {
	t.Helper()
	var r [4]byte
	rand.Read(r[:])
	name := nonWord.ReplaceAllString(t.Name(), "")
	if len(name) > 24 {
		name = name[:24]
	}
	prefix := "t" + name + "_" + hex.EncodeToString(r[:])
	_, js := admin(t, url)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		js.DeleteStream(ctx, prefix+"_LOG")
		for _, b := range []string{"_USERS", "_ALIVE", "_NODES"} {
			js.DeleteKeyValue(ctx, prefix+b)
		}
	})
	return prefix
}

// testLogger logs to stderr under -v, else nowhere.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// logBuffer collects log lines, for tests that check what was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// node is a broker under test with what its handler received.
type node struct {
	*Broker
	t      testing.TB
	start  sente.Position
	cancel context.CancelFunc

	mu       sync.Mutex
	pushes   []sente.Push
	presence []sente.Presence
	changed  chan struct{} // poked when pushes or presence grow
}

// newNode makes a broker with opts (Prefix and Logger filled in when
// empty), closed when the test ends.
func newNode(t testing.TB, url string, opts Options) *node {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	b, err := New(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Broker: b, t: t, changed: make(chan struct{}, 1), cancel: func() {}}
	t.Cleanup(func() { n.cancel(); b.Close() })
	return n
}

// subscribe starts delivery to n's recorder.
func (n *node) subscribe() *node {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	start, err := n.Subscribe(ctx, sente.Handler{
		Push: func(p sente.Push) {
			n.mu.Lock()
			n.pushes = append(n.pushes, p)
			n.mu.Unlock()
			n.poke()
		},
		Presence: func(p sente.Presence) {
			n.mu.Lock()
			n.presence = append(n.presence, p)
			n.mu.Unlock()
			n.poke()
		},
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.start = start
	return n
}

func (n *node) poke() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds on what n received, failing t after
// timeout.
func (n *node) waitFor(timeout time.Duration, what string, cond func(pushes []sente.Push, presence []sente.Presence) bool) {
	n.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		n.mu.Lock()
		ok := cond(n.pushes, n.presence)
		n.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-n.changed:
		case <-deadline.C:
			n.mu.Lock()
			defer n.mu.Unlock()
			n.t.Fatalf("node %s: timed out waiting for %s (has %d pushes, presence %+v)", n.node, what, len(n.pushes), n.presence)
		}
	}
}

// waitPushes waits until n received count pushes and returns them.
func (n *node) waitPushes(count int) []sente.Push {
	n.t.Helper()
	n.waitFor(20*time.Second, "pushes", func(p []sente.Push, _ []sente.Presence) bool { return len(p) >= count })
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]sente.Push(nil), n.pushes...)
}

// presences returns what presence changes n received.
func (n *node) presences() []sente.Presence {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]sente.Presence(nil), n.presence...)
}

// publish publishes a push to everyone with event ev, failing t on error.
func (n *node) publish(ev string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Publish(ctx, sente.Push{Target: sente.ToAll, Event: []byte(ev)}); err != nil {
		n.t.Fatal(err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func events(pushes []sente.Push) []string {
	out := make([]string, len(pushes))
	for i, p := range pushes {
		out[i] = string(p.Event)
	}
	return out
}

// proxy forwards TCP connections to target until cut; while cut, it drops
// the connections it has and refuses new ones (accepting and closing them).
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(target, "nats://"), conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
		p.mu.Unlock()
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// setCut cuts (true) or restores (false) the link.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}
