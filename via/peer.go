package via

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsasync/wsasync"
)

// Role says which end opened a peer's connection.
type Role uint8

const (
	// Originator: this endpoint connected to the peer (Connect, or
	// Options.Peers). It reconnects when the connection drops.
	Originator Role = iota + 1
	// Terminator: the peer connected to this endpoint (ServeHTTP). When the
	// connection ends the peer is removed; if it reconnects it is a new
	// peer with a new id.
	Terminator
)

func (r Role) String() string {
	switch r {
	case Originator:
		return "originator"
	case Terminator:
		return "terminator"
	}
	return "Role(?)"
}

// Status is where a peer's connection stands.
type Status uint8

const (
	// StatusConnecting: the first connection is being made.
	StatusConnecting Status = iota + 1
	// StatusConnected: the connection is ready for calls.
	StatusConnected
	// StatusReconnecting: the connection dropped and a new one is being
	// made (originators only), or OnReconnect is running.
	StatusReconnecting
	// StatusDisconnecting: the peer is being disconnected and will be
	// removed.
	StatusDisconnecting
)

func (s Status) String() string {
	switch s {
	case StatusConnecting:
		return "connecting"
	case StatusConnected:
		return "connected"
	case StatusReconnecting:
		return "reconnecting"
	case StatusDisconnecting:
		return "disconnecting"
	}
	return "Status(?)"
}

// PeerInfo describes a peer at one moment.
type PeerInfo struct {
	ID     string
	Role   Role
	Status Status
	// ConnectedAt is when the current connection became ready; zero when
	// there is none.
	ConnectedAt time.Time
	// Tags are the peer's tags, sorted.
	Tags []string
	// URL is the address an originator connects to.
	URL string
}

// Peer is the other end of a connection, as this endpoint knows it. Its id,
// session context and tags belong to this endpoint alone: the other end has
// its own. An originator's Peer, with its id, session context and tags,
// lives across reconnects until it is disconnected or the endpoint closes.
type Peer struct {
	e    *Endpoint
	id   string
	role Role
	url  string
	req  *http.Request

	// ctx ends when the peer is disconnected or the endpoint closes.
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	status      Status
	connectedAt time.Time
	link        *link // current connection, nil between connections
	removed     bool
	session     map[string]any
	tags        map[string]struct{}

	rid atomic.Uint64

	// outs are the subscriptions this endpoint made to the peer, by key;
	// they outlive connections.
	omu  sync.Mutex
	outs map[string]*outSub
	skey atomic.Uint64

	// The worker: at most one goroutine at a time takes calls from queue,
	// in order. sem bounds the calls received and not yet handled.
	sem     chan struct{}
	qmu     sync.Mutex
	queue   []*Call
	working bool
}

// ID returns the peer's id, made by this endpoint.
func (p *Peer) ID() string { return p.id }

// Role returns who opened the peer's connection.
func (p *Peer) Role() Role { return p.role }

// URL returns the address an originator connects to; "" for a terminator.
func (p *Peer) URL() string { return p.url }

// Request returns the HTTP request that opened a terminator's connection
// (its headers, cookies, remote address, URL); nil for an originator. Its
// context ends with the connection.
func (p *Peer) Request() *http.Request { return p.req }

// Endpoint returns the endpoint the peer belongs to.
func (p *Peer) Endpoint() *Endpoint { return p.e }

// Info describes the peer now.
func (p *Peer) Info() PeerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PeerInfo{ID: p.id, Role: p.role, Status: p.status, ConnectedAt: p.connectedAt, Tags: p.sortedTags(), URL: p.url}
}

// Status returns where the peer's connection stands.
func (p *Peer) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Disconnect closes the peer's connection with 1000 and removes the peer;
// an originator does not reconnect. It does not wait for the connection to
// end: PeerDisconnected and PeerRemoved follow. Calling it again does
// nothing. A handler may disconnect the peer whose call it is handling.
func (p *Peer) Disconnect() {
	p.mu.Lock()
	if !p.removed {
		p.status = StatusDisconnecting
	}
	p.mu.Unlock()
	p.cancel()
}

// Dispatch sends event id with body (encoded as JSON) to the peer, fire and
// forget. It returns once the message is queued for the connection's writer
// (waiting, at most until ctx ends, while its buffer is full). Headers come
// from [WithHeaders].
func (p *Peer) Dispatch(ctx context.Context, id string, body any) error {
	l, err := p.linkFor(ctx)
	if err != nil {
		return err
	}
	data, err := encodeEvent(id, body, headersFrom(ctx), "")
	if err != nil {
		return err
	}
	return l.send(ctx, data)
}

// Invoke calls event id on the peer with body and waits for the reply. On
// status 200 the reply's body is decoded into reply (unless reply is nil)
// and Invoke returns nil; another status returns a [*StatusError]. The wait
// is bounded by ctx's deadline, or [Options.RequestTimeout] when ctx has
// none: then the error matches ErrTimeout and context.DeadlineExceeded. If
// the connection drops first, Invoke returns ErrClosed at once. Headers come
// from [WithHeaders].
func (p *Peer) Invoke(ctx context.Context, id string, body any, reply any) error {
	l, err := p.linkFor(ctx)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.e.opts.RequestTimeout)
		defer cancel()
	}
	rid := formatRID(p.rid.Add(1))
	data, err := encodeEvent(id, body, headersFrom(ctx), rid)
	if err != nil {
		return err
	}
	return l.invoke(ctx, rid, data, reply)
}

type hookKey struct{}

// linkFor returns the connection a call to the peer goes on: the current
// one if it is ready, or, inside OnReconnect, the one being set up.
func (p *Peer) linkFor(ctx context.Context) (*link, error) {
	p.mu.Lock()
	l, removed := p.link, p.removed
	p.mu.Unlock()
	if removed {
		return nil, ErrUnknownPeer
	}
	if l == nil {
		return nil, ErrNotConnected
	}
	if l.isReady() {
		return l, nil
	}
	if hl, _ := ctx.Value(hookKey{}).(*link); hl == l {
		return l, nil
	}
	return nil, ErrNotConnected
}

// ---- session context and tags ----

// Session returns a copy of the peer's session context (nil when empty).
// The values themselves are shared: treat them as read-only.
func (p *Peer) Session() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.session)
}

// SetSession replaces the peer's session context with a copy of m, here
// only, and reports SessionChanged. Use SyncSession to send it to the peer.
func (p *Peer) SetSession(m map[string]any) {
	p.mu.Lock()
	p.session = maps.Clone(m)
	s := maps.Clone(p.session)
	p.mu.Unlock()
	p.sessionChanged(s)
}

// MergeSession sets each key of m in the peer's session context, here only,
// and reports SessionChanged; a nil value deletes its key (as a JSON merge
// patch does at the top level).
func (p *Peer) MergeSession(m map[string]any) {
	p.mu.Lock()
	if p.session == nil {
		p.session = make(map[string]any, len(m))
	}
	for k, v := range m {
		if v == nil {
			delete(p.session, k)
		} else {
			p.session[k] = v
		}
	}
	s := maps.Clone(p.session)
	p.mu.Unlock()
	p.sessionChanged(s)
}

func (p *Peer) sessionChanged(s map[string]any) {
	ev := p.event(SessionChanged)
	ev.Session = s
	p.e.emit(ev)
}

// SyncSession sends the peer's whole session context to the peer, which
// keeps what its [Options.AcceptSession] allows as its own session context
// for this endpoint. It returns nil once the peer has accepted it, a
// *StatusError when it refused (400 when the peer accepts no session
// context at all, 403 when AcceptSession said no), or a call error as
// Invoke does.
func (p *Peer) SyncSession(ctx context.Context) error {
	s := p.Session()
	if s == nil {
		s = map[string]any{}
	}
	return p.Invoke(ctx, sessionID, s, nil)
}

// Tags returns the peer's tags, sorted. Tags are local: the peer never
// sees them.
func (p *Peer) Tags() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sortedTags()
}

func (p *Peer) sortedTags() []string {
	if len(p.tags) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(p.tags))
}

// HasTag reports whether the peer has tag.
func (p *Peer) HasTag(tag string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.tags[tag]
	return ok
}

// AddTags adds tags to the peer.
func (p *Peer) AddTags(tags ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tags == nil {
		p.tags = make(map[string]struct{}, len(tags))
	}
	for _, t := range tags {
		p.tags[t] = struct{}{}
	}
}

// RemoveTags removes tags from the peer.
func (p *Peer) RemoveTags(tags ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range tags {
		delete(p.tags, t)
	}
}

// SetTags replaces the peer's tags.
func (p *Peer) SetTags(tags ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tags = make(map[string]struct{}, len(tags))
	for _, t := range tags {
		p.tags[t] = struct{}{}
	}
}

// ---- the worker ----

// enqueue hands a call to the peer's worker, waiting while QueueSize calls
// are waiting already (the read loop then stops reading the socket).
func (p *Peer) enqueue(l *link, c *Call) {
	select {
	case p.sem <- struct{}{}:
	case <-l.ctx.Done():
		return
	}
	p.qmu.Lock()
	p.queue = append(p.queue, c)
	if !p.working {
		p.working = true
		p.e.wg.Add(1) // the read loop calling us is counted: never from zero
		go p.work()
	}
	p.qmu.Unlock()
}

// work handles queued calls in order until there are none.
func (p *Peer) work() {
	defer p.e.wg.Done()
	for {
		p.qmu.Lock()
		if len(p.queue) == 0 {
			p.working = false
			p.qmu.Unlock()
			return
		}
		c := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.qmu.Unlock()

		if !c.link.isReady() {
			// Calls that came during OnReconnect wait for it.
			select {
			case <-c.link.ready:
			case <-c.link.ctx.Done():
			}
		}
		if c.link.isReady() {
			p.serve(c)
		}
		<-p.sem
	}
}

// serve runs one call's handler and answers for it as Handler says.
func (p *Peer) serve(c *Call) {
	log := p.e.log
	defer func() {
		if v := recover(); v != nil {
			log.Error("via: handler panicked", "peer", p.id, "event", c.ID, "panic", v, "stack", string(debug.Stack()))
			c.fail(http.StatusInternalServerError, mustJSON(errorBody{Error: errInternal}))
		}
	}()
	err := c.h(c.link.ctx, c)
	if err == nil {
		if c.rid != "" && !c.replied.Load() {
			c.Reply(http.StatusOK, nil)
		}
		return
	}
	var se *StatusError
	if errors.As(err, &se) {
		if c.rid != "" && !c.replied.Load() {
			c.Reply(se.Status, se.Body)
		}
		return
	}
	log.Warn("via: handler failed", "peer", p.id, "event", c.ID, "err", err)
	c.fail(http.StatusInternalServerError, mustJSON(errorBody{Error: errInternal}))
}

// handleSession is the handler of the reserved session event.
func (p *Peer) handleSession(ctx context.Context, c *Call) error {
	var proposed map[string]any
	if err := c.Decode(&proposed); err != nil || proposed == nil {
		return &StatusError{Status: http.StatusBadRequest, Body: mustJSON(errorBody{Error: errBadRequest})}
	}
	s, ok := p.e.opts.AcceptSession(p, proposed)
	if !ok {
		return &StatusError{Status: http.StatusForbidden, Body: mustJSON(errorBody{Error: errSessionRefused})}
	}
	p.SetSession(s)
	return nil
}

// ---- connection lifecycle ----

// attach makes l the peer's connection.
func (p *Peer) attach(l *link) {
	p.mu.Lock()
	p.link = l
	p.mu.Unlock()
}

// markReady opens l for calls and reports the peer connected.
func (p *Peer) markReady(l *link) {
	p.mu.Lock()
	if p.link != l || l.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	close(l.ready)
	p.status = StatusConnected
	p.connectedAt = time.Now()
	p.mu.Unlock()
	p.e.emit(p.event(PeerConnected))
	p.resubscribeAll(l)
}

// detach reports the end of l's connection. It returns whether the peer
// should be reconnected.
func (p *Peer) detach(l *link, err error) (again bool) {
	l.cancel()
	l.dropSubs()
	p.detachSubs(l)
	var ce *wsasync.CloseError
	// A peer that disconnects us on purpose (1000) is not reconnected to.
	kicked := errors.As(err, &ce) && ce.Remote && ce.Code == wsasync.StatusNormalClosure
	again = p.role == Originator && p.e.opts.ReconnectMin >= 0 && p.ctx.Err() == nil && !kicked
	p.mu.Lock()
	if p.link == l {
		p.link = nil
	}
	p.connectedAt = time.Time{}
	if again {
		p.status = StatusReconnecting
	} else {
		p.status = StatusDisconnecting
	}
	p.mu.Unlock()
	if errors.Is(err, wsasync.ErrPingTimeout) {
		ev := p.event(HeartbeatFailed)
		ev.Err = err
		p.e.emit(ev)
	}
	if l.isReady() {
		ev := p.event(PeerDisconnected)
		ev.Err = err
		p.e.emit(ev)
	}
	return again
}

// remove takes the peer out of the table for good.
func (p *Peer) remove() {
	p.cancel()
	p.mu.Lock()
	p.removed = true
	p.mu.Unlock()
	p.e.mu.Lock()
	if p.e.peers[p.id] == p {
		delete(p.e.peers, p.id)
	}
	p.e.mu.Unlock()
	p.endSubs()
	p.e.emit(p.event(PeerRemoved))
}

// maintain runs an originator: its connection, then reconnects, until it is
// disconnected or the endpoint closes. c and l are the first connection,
// attached and ready, or nil to make it here (Options.Peers).
func (p *Peer) maintain(c *wsasync.Conn, l *link) {
	defer p.e.wg.Done()
	defer p.remove()
	level := 0         // failed attempts since the last ready connection
	reconnect := false // a connection was ready before
	for {
		if c == nil {
			c = p.redial(&level, reconnect)
			if c == nil {
				return
			}
			l = p.newLink(c.Out, c, p.e.dialLimit)
			p.attach(l)
			if reconnect && p.e.opts.OnReconnect != nil {
				p.e.wg.Add(1)
				go p.runHook(l)
			} else {
				p.markReady(l)
			}
		}
		err := l.run(c.In, c.Errs)
		c = nil
		if l.isReady() {
			level = 0
			reconnect = true
		}
		if !p.detach(l, err) {
			return
		}
	}
}

// runHook runs OnReconnect on a new connection before it carries anything
// else; if it fails the connection is dropped and the attempt counts as
// failed.
func (p *Peer) runHook(l *link) {
	defer p.e.wg.Done()
	ctx := context.WithValue(l.ctx, hookKey{}, l)
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				p.e.log.Error("via: OnReconnect panicked", "peer", p.id, "panic", v, "stack", string(debug.Stack()))
				err = errors.New("via: OnReconnect panicked")
			}
		}()
		return p.e.opts.OnReconnect(ctx, p)
	}()
	if err != nil {
		if l.ctx.Err() == nil {
			p.e.log.Warn("via: OnReconnect failed; dropping the connection", "peer", p.id, "err", err)
			l.hmu.Lock()
			l.hookErr = err
			l.hmu.Unlock()
			l.cancel()
		}
		return
	}
	p.markReady(l)
}

// redial connects again after waiting out the backoff. It returns nil when
// the peer is disconnected or the endpoint closes first.
func (p *Peer) redial(level *int, reconnect bool) *wsasync.Conn {
	for {
		// Attempt n after a drop waits Backoff(n); the very first
		// connection of an Options.Peers entry is tried at once.
		n := *level + 1
		if !reconnect {
			n = *level
		}
		if n > 0 {
			d := wsasync.Backoff(n, p.e.opts.ReconnectMin, p.e.opts.ReconnectMax, rand.Float64())
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return nil
			}
		}
		*level++
		c, err := p.e.dial(p.ctx, p.url)
		if err == nil {
			return c
		}
		if p.ctx.Err() != nil {
			return nil
		}
		p.e.log.Debug("via: connect failed", "peer", p.id, "url", p.url, "attempt", *level, "err", err)
	}
}
