package via

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/pipe"
)

// Defaults used where an [Options] field is zero.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultReconnectMin   = 50 * time.Millisecond
	DefaultReconnectMax   = 5 * time.Second
	DefaultQueueSize      = 64
	DefaultEventBuffer    = 256
)

// Options configure an [Endpoint]. The zero value is a working endpoint that
// exports nothing and accepts no session context from its peers.
type Options struct {
	// Peers are URLs (ws:// or wss://) to connect to at start, in the
	// background; each is retried with backoff until it connects, then kept
	// connected as by Connect.
	Peers []string

	// Exports lists what peers may call: an event id, or a prefix ending
	// in "/" that exports every id under it ("chat/" exports "chat/send"
	// and "chat/room/join"). Anything else is answered 400 unknown event.
	// More can be added with [Endpoint.Export].
	Exports []string

	// Interceptors wrap every handler registered with Handle, the first
	// one outermost.
	Interceptors []Interceptor

	// RequestTimeout bounds an Invoke whose context has no deadline, and
	// each connection attempt. Zero means DefaultRequestTimeout (10 s).
	RequestTimeout time.Duration

	// HeartbeatInterval is how often each connection is pinged, and
	// HeartbeatTimeout how much longer a silent peer is given: a peer that
	// sends nothing, not even a pong, for their sum is dropped, reported as
	// HeartbeatFailed, and (an originator) reconnected. Zero means the
	// wsasync defaults (30 s and 10 s); a negative interval disables
	// heartbeats. When non-zero they override PingInterval and PongTimeout
	// in Upgrader and Dialer. Heartbeats are the core's WebSocket pings,
	// per connection: one can never outlive its connection.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration

	// ReconnectMin and ReconnectMax bound the wait between an originator's
	// reconnect attempts, which doubles from ReconnectMin to ReconnectMax
	// with jitter (see [Backoff]). Zero means DefaultReconnectMin (50 ms)
	// and DefaultReconnectMax (5 s). A negative ReconnectMin disables
	// reconnecting: a dropped originator is removed.
	ReconnectMin time.Duration
	ReconnectMax time.Duration

	// OnReconnect, when set, runs after each reconnect of an originator
	// (not its first connection), before the connection carries anything
	// else: calls to the peer made with its ctx go through, other calls get
	// ErrNotConnected, and calls from the peer wait. Use it to
	// re-authenticate, for example with [Peer.SyncSession]. The peer's
	// subscriptions ([Subscribe]) are sent again once it has returned. If
	// it fails, the connection is dropped and the reconnect attempt counts
	// as failed.
	OnReconnect func(ctx context.Context, p *Peer) error

	// AcceptSession decides what a peer may put in its own session context
	// on this endpoint ([Peer.SyncSession] on the other side): it gets the
	// whole context the peer proposes and returns the one to keep and
	// true, or false to refuse (403). Nil refuses every proposal as an
	// unknown event (400).
	//
	// Security: whatever it returns becomes the session context that
	// handlers and interceptors see for that peer, and a peer can propose
	// anything, at any time, as often as it likes. Never keep a proposed
	// value that grants anything (a user id, a role, "authenticated")
	// unless it can be verified, such as a signed token that the
	// interceptor checks on every call; drop or overwrite keys the
	// application sets itself.
	AcceptSession func(p *Peer, proposed map[string]any) (map[string]any, bool)

	// QueueSize bounds the calls received from one peer and not yet
	// handled; when it is reached, the peer's connection stops being read
	// (backpressure) until the handler catches up. Meanwhile replies to
	// this end's Invokes wait behind those calls, and the peer's pings go
	// unanswered: a peer that keeps the queue full for longer than its
	// heartbeat interval plus timeout drops the connection. Zero means
	// DefaultQueueSize (64).
	QueueSize int

	// EventBuffer is the size of the sliding buffer behind Events. Zero
	// means DefaultEventBuffer (256).
	EventBuffer int

	// Upgrader configures accepted connections (origins, BeforeUpgrade,
	// read limit, timeouts) and Dialer the connections this endpoint
	// makes (headers, TLS). Their zero values are fine. Their
	// Subprotocols are replaced with [Subprotocol].
	Upgrader wsasync.Upgrader
	Dialer   wsasync.Dialer

	// Logger receives handler failures and connection trouble. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Endpoint is one end of via connections: it accepts peers (it is an
// http.Handler) and connects to peers by URL; once connected both ends are
// equal and either may call the other.
type Endpoint struct {
	opts      Options
	up        wsasync.Upgrader
	dl        wsasync.Dialer
	dialLimit int64
	upLimit   int64
	log       *slog.Logger

	ctx    context.Context // ends when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the endpoint runs or serves

	mu     sync.Mutex
	closed bool
	peers  map[string]*Peer

	hmu        sync.RWMutex
	handlers   map[string]Handler
	publishers map[string]Handler // subscription ids
	exact      map[string]bool
	prefixes   []string

	lmu       sync.Mutex
	listeners []*listener

	emu      sync.RWMutex
	evClosed bool
	evIn     chan Event
	events   *pipe.Buffered[Event]

	closeOnce sync.Once
}

// New makes an endpoint and starts connecting to opts.Peers in the
// background.
func New(opts Options) *Endpoint {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.ReconnectMin == 0 {
		opts.ReconnectMin = DefaultReconnectMin
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = DefaultReconnectMax
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = DefaultEventBuffer
	}
	e := &Endpoint{
		opts:       opts,
		up:         opts.Upgrader,
		dl:         opts.Dialer,
		log:        opts.Logger,
		peers:      make(map[string]*Peer),
		handlers:   make(map[string]Handler),
		publishers: make(map[string]Handler),
		exact:      make(map[string]bool),
		evIn:       make(chan Event),
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	for _, o := range []*wsasync.Options{&e.up.Options, &e.dl.Options} {
		if opts.HeartbeatInterval != 0 {
			o.PingInterval = opts.HeartbeatInterval
		}
		if opts.HeartbeatTimeout != 0 {
			o.PongTimeout = opts.HeartbeatTimeout
		}
		if o.Logger == nil {
			o.Logger = e.log
		}
	}
	e.up.Subprotocols = []string{Subprotocol}
	e.dl.Subprotocols = []string{Subprotocol}
	e.upLimit = readLimit(e.up.ReadLimit)
	e.dialLimit = readLimit(e.dl.ReadLimit)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.events = pipe.Buffer(context.Background(), e.evIn, pipe.Sliding(opts.EventBuffer))
	e.Export(opts.Exports...)
	for _, url := range opts.Peers {
		if p := e.newPeer(Originator, url, nil); p != nil {
			e.wg.Add(1)
			go p.maintain(nil, nil)
		}
	}
	return e
}

func readLimit(n int64) int64 {
	if n == 0 {
		return wsasync.DefaultReadLimit
	}
	return n
}

// newPeer adds a peer to the table; nil once the endpoint is closed.
func (e *Endpoint) newPeer(role Role, url string, r *http.Request) *Peer {
	p := &Peer{e: e, id: rand.Text(), role: role, url: url, req: r, status: StatusConnecting, sem: make(chan struct{}, e.opts.QueueSize)}
	p.ctx, p.cancel = context.WithCancel(e.ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		p.cancel()
		return nil
	}
	e.peers[p.id] = p
	return p
}

// ---- registration ----

// Handle registers h, wrapped in Options.Interceptors, for event id; a nil h
// removes it. Only exported ids can be called by peers. Ids under "via/"
// are reserved: Handle panics on them.
func (e *Endpoint) Handle(id string, h Handler) {
	if strings.HasPrefix(id, reservedPrefix) || id == "" {
		panic("via: reserved or empty event id " + id)
	}
	e.hmu.Lock()
	defer e.hmu.Unlock()
	if h == nil {
		delete(e.handlers, id)
		return
	}
	e.handlers[id] = Chain(h, e.opts.Interceptors...)
}

// Export lets peers call event ids: each pattern is an id, or a prefix
// ending in "/" (see Options.Exports).
func (e *Endpoint) Export(patterns ...string) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	for _, s := range patterns {
		switch {
		case s == "":
		case strings.HasSuffix(s, "/"):
			if !slices.Contains(e.prefixes, s) {
				e.prefixes = append(e.prefixes, s)
			}
		default:
			e.exact[s] = true
		}
	}
}

// lookup returns the handler a peer may call for id, or nil.
func (e *Endpoint) lookup(id string) Handler {
	e.hmu.RLock()
	defer e.hmu.RUnlock()
	h := e.handlers[id]
	if h == nil || !e.exported(id) {
		return nil
	}
	return h
}

// exported reports whether peers may call or subscribe to id; e.hmu is
// held.
func (e *Endpoint) exported(id string) bool {
	if e.exact[id] {
		return true
	}
	for _, p := range e.prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// route takes an event from the read loop: unknown ones are answered here,
// the others go to the peer's worker.
func (e *Endpoint) route(l *link, env envelope, raw []byte) {
	p := l.p
	var h Handler
	if env.ID == sessionID {
		if e.opts.AcceptSession != nil {
			h = p.handleSession
		}
	} else {
		h = e.lookup(env.ID)
	}
	if h == nil {
		ev := p.event(UnknownEvent)
		ev.ID, ev.Message = env.ID, raw
		e.emit(ev)
		l.replyError(env.RID, http.StatusBadRequest, errorBody{Error: errUnknownEvent, ID: env.ID})
		return
	}
	p.enqueue(l, &Call{ID: env.ID, Body: env.Body, Headers: env.Headers, h: h, peer: p, link: l, rid: env.RID})
}

// ---- accepting ----

// ServeHTTP accepts a peer: it upgrades the request to a WebSocket with
// subprotocol via.v1 (a client that offers subprotocols must offer it; one
// that offers none is served v1) and serves the connection until it ends.
// Mount it on any route. Once the endpoint is closed it answers 503.
//
// A GET that is not an upgrade and whose path ends in /via.js or /via.d.ts
// gets the browser client (an ES module) or its TypeScript declarations:
// mounted on "/via" and "/via/", the endpoint serves /via/via.js.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if serveClient(w, r) {
		return
	}
	if offered := wsasync.OfferedSubprotocols(r); len(offered) > 0 && !slices.Contains(offered, Subprotocol) {
		http.Error(w, "via: subprotocol "+Subprotocol+" required", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	c, err := e.up.Accept(w, r)
	if err != nil {
		return // answered with an HTTP status by the core
	}
	e.wg.Add(1) // Close waits for the connection, not just this request
	go func() {
		defer e.wg.Done()
		defer func() { <-c.Done }()
		p := e.newPeer(Terminator, "", r)
		if p == nil {
			c.Out <- wsasync.Closed(wsasync.StatusGoingAway, "going away")
			close(c.Out)
			return
		}
		defer p.remove()
		l := p.newLink(c.Out, c, e.upLimit)
		p.attach(l)
		p.markReady(l)
		err := l.run(c.In, c.Errs)
		p.detach(l, err)
	}()
}

// ---- connecting ----

// Connect connects to the endpoint at url (ws:// or wss://) and returns the
// new peer's id. ctx bounds the connection attempt, which is not retried;
// once connected, the peer is reconnected whenever its connection drops,
// keeping its id, session context and tags, until it is disconnected, the
// other end disconnects it on purpose (close code 1000), or the endpoint
// closes.
func (e *Endpoint) Connect(ctx context.Context, url string) (string, error) {
	p := e.newPeer(Originator, url, nil)
	if p == nil {
		return "", ErrEndpointClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	c, err := e.dial(ctx, url)
	stop()
	cancel()
	if err != nil {
		p.remove()
		if e.ctx.Err() != nil {
			return "", ErrEndpointClosed
		}
		return "", err
	}
	l := p.newLink(c.Out, c, e.dialLimit)
	e.mu.Lock()
	if e.closed {
		// Close has started: it no longer waits for new goroutines.
		e.mu.Unlock()
		l.closeSends(wsasync.StatusGoingAway, "going away")
		for range c.In {
		}
		<-c.Errs
		p.remove()
		return "", ErrEndpointClosed
	}
	e.wg.Add(1)
	e.mu.Unlock()
	p.attach(l)
	p.markReady(l)
	go p.maintain(c, l)
	return p.id, nil
}

// dial opens one connection that speaks via.v1.
func (e *Endpoint) dial(ctx context.Context, url string) (*wsasync.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.RequestTimeout)
	defer cancel()
	c, err := e.dl.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if c.Subprotocol != Subprotocol {
		close(c.Out)
		for range c.In {
		}
		<-c.Errs
		return nil, fmt.Errorf("via: %s did not select subprotocol %s", url, Subprotocol)
	}
	return c, nil
}

// Disconnect disconnects peer id (see [Peer.Disconnect]).
func (e *Endpoint) Disconnect(id string) error {
	p := e.Peer(id)
	if p == nil {
		return ErrUnknownPeer
	}
	p.Disconnect()
	return nil
}

// ---- peers ----

// Peer returns the peer with id, or nil.
func (e *Endpoint) Peer(id string) *Peer {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.peers[id]
}

// Peers describes every peer in the table, sorted by id.
func (e *Endpoint) Peers() []PeerInfo {
	e.mu.Lock()
	ps := make([]*Peer, 0, len(e.peers))
	for _, p := range e.peers {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	infos := make([]PeerInfo, len(ps))
	for i, p := range ps {
		infos[i] = p.Info()
	}
	slices.SortFunc(infos, func(a, b PeerInfo) int { return strings.Compare(a.ID, b.ID) })
	return infos
}

func (e *Endpoint) snapshot() []*Peer {
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := make([]*Peer, 0, len(e.peers))
	for _, p := range e.peers {
		ps = append(ps, p)
	}
	return ps
}

// ---- calls ----

// Dispatch sends event id to peer peerID, fire and forget (see
// [Peer.Dispatch]).
func (e *Endpoint) Dispatch(ctx context.Context, peerID, id string, body any) error {
	p := e.Peer(peerID)
	if p == nil {
		return ErrUnknownPeer
	}
	return p.Dispatch(ctx, id, body)
}

// Invoke calls event id on peer peerID and waits for the reply (see
// [Peer.Invoke]).
func (e *Endpoint) Invoke(ctx context.Context, peerID, id string, body any, reply any) error {
	p := e.Peer(peerID)
	if p == nil {
		return ErrUnknownPeer
	}
	return p.Invoke(ctx, id, body, reply)
}

// SendToTag dispatches event id to every connected peer that has tag, one
// after another, and returns the errors of those it failed to reach,
// joined. Peers that are not connected are skipped.
func (e *Endpoint) SendToTag(ctx context.Context, tag, id string, body any) error {
	return e.sendAll(ctx, func(p *Peer) bool { return p.HasTag(tag) }, id, body)
}

// Broadcast dispatches event id to every connected peer (see SendToTag).
func (e *Endpoint) Broadcast(ctx context.Context, id string, body any) error {
	return e.sendAll(ctx, func(*Peer) bool { return true }, id, body)
}

func (e *Endpoint) sendAll(ctx context.Context, match func(*Peer) bool, id string, body any) error {
	data, err := encodeEvent(id, body, headersFrom(ctx), "")
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range e.snapshot() {
		if !match(p) {
			continue
		}
		l, err := p.linkFor(ctx)
		if err != nil {
			continue
		}
		if err := l.send(ctx, data); err != nil {
			errs = append(errs, fmt.Errorf("via: peer %s: %w", p.id, err))
		}
	}
	return errors.Join(errs...)
}

// ---- closing ----

// Close disconnects every peer (close code 1001), stops reconnecting and
// accepting, and returns once every goroutine of the endpoint has exited,
// running handlers included (their contexts are cancelled), and the event
// stream is closed. It must not be called from a handler or a listener.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.cancel()
		e.wg.Wait()
		e.emu.Lock()
		e.evClosed = true
		close(e.evIn)
		e.emu.Unlock()
		<-e.events.Done()
	})
	return nil
}
