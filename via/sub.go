package via

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// Errors of remote subscriptions.
var (
	// ErrInvalidSubscription: the peer refused a subscription because it
	// does not publish that id (not exported, or no publisher). The error
	// Subscribe returns also wraps the reply's [*StatusError].
	ErrInvalidSubscription = errors.New("via: invalid subscription")
	// ErrUnsubscribed: the subscription was ended by [Remote.Close].
	ErrUnsubscribed = errors.New("via: unsubscribed")
	// errSequenceGap: a value or patch came out of sequence.
	errSequenceGap = errors.New("via: subscription sequence gap")
)

// Publisher makes the [Source] a peer subscribes to: c.ID is the
// subscription id, c.Body its arguments, c.Peer() the subscriber. ctx ends
// when the subscription does (the peer unsubscribes, its connection ends,
// the endpoint closes), so a publisher that starts work for one subscriber
// stops it then.
//
// Errors answer the subscriber as a [Handler]'s do: a [*StatusError] its
// status, another error 500. A nil Source with a nil error answers 400
// unknown subscription.
type Publisher func(ctx context.Context, c *Call) (Source, error)

// Shared returns a Publisher that gives every subscriber src, whatever its
// arguments.
func Shared(src Source) Publisher {
	return func(context.Context, *Call) (Source, error) { return src, nil }
}

// Publish registers f, wrapped in Options.Interceptors, for subscription
// id; a nil f removes it. Only exported ids (as for [Endpoint.Handle]) can
// be subscribed to: a peer that subscribes to anything else is refused with
// 400 unknown subscription. Ids under "via/" are reserved: Publish panics
// on them.
//
// The interceptors see a subscription as a call whose
// [Call.IsSubscription] is true: one that answers in its place (403)
// refuses the subscription. When f has returned a Source, the subscriber
// gets a 200 reply, then the whole value (sn 1), then one message per
// change: a JSON merge patch (RFC 7386) when the old and new values are
// both JSON objects and the patch can express the change in fewer bytes,
// the whole value otherwise.
//
// Slow subscribers: each subscription has at most one message in the
// making. While the connection is backed up (its outgoing buffer full),
// changes are not queued: the next message carries the value that is
// current when the connection has room again, so a slow subscriber skips
// intermediate values and the memory held per subscription stays bounded.
func (e *Endpoint) Publish(id string, f Publisher) {
	if strings.HasPrefix(id, reservedPrefix) || id == "" {
		panic("via: reserved or empty subscription id " + id)
	}
	e.hmu.Lock()
	defer e.hmu.Unlock()
	if f == nil {
		delete(e.publishers, id)
		return
	}
	e.publishers[id] = Chain(e.subscribeHandler(f), e.opts.Interceptors...)
}

// lookupPub returns the subscription handler a peer may call for id, or nil.
func (e *Endpoint) lookupPub(id string) Handler {
	e.hmu.RLock()
	defer e.hmu.RUnlock()
	h := e.publishers[id]
	if h == nil || !e.exported(id) {
		return nil
	}
	return h
}

// routeSub takes a sub from the read loop: refused here, or queued for the
// peer's worker like a call.
func (e *Endpoint) routeSub(l *link, env envelope, raw []byte) {
	p := l.p
	h := e.lookupPub(env.ID)
	if h == nil {
		ev := p.event(UnknownSubscription)
		ev.Key, ev.ID, ev.Message = env.Key, env.ID, raw
		e.emit(ev)
		l.replyError(env.RID, http.StatusBadRequest, errorBody{Error: errUnknownSub, ID: env.ID})
		return
	}
	p.enqueue(l, &Call{ID: env.ID, Body: env.Body, Headers: env.Headers, h: h, peer: p, link: l, rid: env.RID, key: env.Key, sub: true})
}

// routeUnsub queues an unsub for the peer's worker, so that it is handled
// in order with the subs before it.
func (e *Endpoint) routeUnsub(l *link, env envelope) {
	p := l.p
	p.enqueue(l, &Call{ID: env.ID, Body: env.Body, h: unsubscribeHandler, peer: p, link: l, rid: env.RID, key: env.Key})
}

func unsubscribeHandler(ctx context.Context, c *Call) error {
	c.link.endSub(c.key)
	return nil // answers 200 if a reply was asked for
}

// subscribeHandler is the innermost handler of a published id.
func (e *Endpoint) subscribeHandler(f Publisher) Handler {
	return func(ctx context.Context, c *Call) error {
		l := c.link
		// A sub for a key in use replaces that subscription (a resync):
		// its pusher has stopped before the new one starts, so nothing of
		// the old stream follows the new reply.
		l.endSub(c.key)
		sctx, cancel := context.WithCancel(ctx)
		started := false
		defer func() {
			if !started {
				cancel()
			}
		}()
		src, err := f(sctx, c)
		if err != nil {
			return err
		}
		if src == nil {
			return &StatusError{Status: http.StatusBadRequest, Body: mustJSON(errorBody{Error: errUnknownSub, ID: c.ID})}
		}
		if err := c.Reply(http.StatusOK, nil); err != nil {
			return nil
		}
		s := &inSub{key: c.key, id: c.ID, l: l, src: src, ctx: sctx, cancel: cancel, done: make(chan struct{})}
		if !l.addSub(s) {
			return nil // the connection has ended
		}
		started = true
		e.wg.Add(1) // the worker calling us is counted: never from zero
		go s.push()
		return nil
	}
}

// inSub is a subscription a peer made to this endpoint, on one connection.
type inSub struct {
	key, id string
	l       *link
	src     Source
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when push has returned
	sn      atomic.Uint64 // the last sn sent (or being sent)
}

// addSub puts s in the connection's table; false once the connection has
// ended.
func (l *link) addSub(s *inSub) bool {
	l.smu.Lock()
	defer l.smu.Unlock()
	if l.ctx.Err() != nil {
		return false
	}
	if l.subs == nil {
		l.subs = make(map[string]*inSub)
	}
	l.subs[s.key] = s
	return true
}

// endSub ends the subscription with key, if any, and waits for its pusher
// to stop. Called by the worker only.
func (l *link) endSub(key string) {
	l.smu.Lock()
	s := l.subs[key]
	delete(l.subs, key)
	l.smu.Unlock()
	if s != nil {
		s.cancel()
		<-s.done
	}
}

// dropSubs ends every subscription of a connection that has ended.
func (l *link) dropSubs() {
	l.smu.Lock()
	subs := l.subs
	l.subs = nil
	l.smu.Unlock()
	for _, s := range subs {
		s.cancel()
	}
}

// push sends the value, then its changes, until the subscription ends.
func (s *inSub) push() {
	e := s.l.p.e
	defer e.wg.Done()
	defer close(s.done)
	defer func() {
		s.l.smu.Lock()
		if s.l.subs[s.key] == s {
			delete(s.l.subs, s.key)
		}
		s.l.smu.Unlock()
	}()
	defer s.cancel()
	var last json.RawMessage // what the subscriber has
	for {
		v, changed := s.src.Current()
		data, err := json.Marshal(v)
		switch {
		case err != nil:
			e.log.Warn("via: cannot encode a published value", "peer", s.l.p.id, "subscription", s.id, "err", err)
		case last == nil || !bytes.Equal(data, last):
			typ, body := typeValue, json.RawMessage(data)
			if last != nil {
				typ, body = pushBody(last, data)
			}
			if body == nil {
				last = data // the same value, encoded differently
				break
			}
			sn := s.sn.Load() + 1
			msg, err := encodePush(typ, s.key, sn, body)
			if err != nil {
				e.log.Warn("via: cannot encode a published value", "peer", s.l.p.id, "subscription", s.id, "err", err)
				break
			}
			if s.l.limit > 0 && int64(len(msg)) > s.l.limit {
				e.log.Warn("via: a published value exceeds the read limit; skipped", "peer", s.l.p.id, "subscription", s.id, "size", len(msg))
				break
			}
			s.sn.Store(sn)
			last = data
			if err := s.l.send(s.ctx, msg); err != nil {
				return // the connection or the subscription has ended
			}
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return
		}
	}
}

// pushBody chooses how to send a change from old to new (both JSON): a
// merge patch when both are objects, the patch can express the change (no
// member of the new value is null: a null in a merge patch deletes) and it
// is smaller than the value; the whole value otherwise. A nil body means
// there is nothing to send.
func pushBody(old, new json.RawMessage) (string, json.RawMessage) {
	if isObject(old) && isObject(new) && !hasNullMember(new) {
		patch, err := jsonpatch.CreateMergePatch(old, new)
		if err == nil && len(patch) < len(new) {
			if string(patch) == "{}" {
				return typePatch, nil
			}
			return typePatch, patch
		}
	}
	return typeValue, new
}

func isObject(data []byte) bool { return len(data) > 0 && data[0] == '{' }

// hasNullMember reports whether a JSON value (as json.Marshal makes it)
// holds an object member whose value is null, at any depth, arrays
// included (the patch library drops those too).
func hasNullMember(data []byte) bool {
	if !bytes.Contains(data, []byte("null")) {
		return false
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return true // be safe: send the whole value
	}
	return nullMember(v)
}

func nullMember(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for _, m := range x {
			if m == nil || nullMember(m) {
				return true
			}
		}
	case []any:
		for _, m := range x {
			if nullMember(m) {
				return true
			}
		}
	}
	return false
}

// ---- the subscriber's side ----

// outSub is a subscription this endpoint made to a peer. It outlives
// connections: an originator's subscriptions are sent again on every new
// connection.
type outSub struct {
	p    *Peer
	key  string
	id   string
	args json.RawMessage
	set  func(doc json.RawMessage) error

	// ctx ends when the subscription does; its cause says why.
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   func() bool   // stops the watch on the peer's context
	done   chan struct{} // closed once it has ended

	mu       sync.Mutex
	link     *link // the connection it was last subscribed on
	sn       uint64
	awaiting bool // a value with sn 1 is the only thing accepted
	doc      json.RawMessage
	accepted bool // the peer has accepted it once
}

// subscribe subscribes to id on the peer: the core of [Subscribe].
func (p *Peer) subscribe(ctx context.Context, id string, args any, set func(json.RawMessage) error, done chan struct{}) (*outSub, error) {
	if id == "" || len(id) > maxIDLen {
		return nil, fmt.Errorf("via: subscription id must have 1 to %d bytes", maxIDLen)
	}
	body, err := marshalBody(args)
	if err != nil {
		return nil, err
	}
	l, err := p.linkFor(ctx)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := p.e
	s := &outSub{p: p, key: "s" + formatRID(p.skey.Add(1)), id: id, args: body, set: set, done: done}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		s.cancel(ErrEndpointClosed)
		return nil, ErrEndpointClosed
	}
	e.wg.Add(1) // until finish
	e.mu.Unlock()
	p.omu.Lock()
	if p.outs == nil {
		p.outs = make(map[string]*outSub)
	}
	p.outs[s.key] = s
	p.omu.Unlock()
	s.stop = context.AfterFunc(p.ctx, func() {
		if e.ctx.Err() != nil {
			s.cancel(ErrEndpointClosed)
		} else {
			s.cancel(ErrUnknownPeer)
		}
	})
	context.AfterFunc(s.ctx, s.finish)
	if err := s.subscribeOn(l); err != nil {
		s.cancel(err)
		<-s.done
		return nil, err
	}
	return s, nil
}

// subscribeOn sends the sub on connection l and waits for the reply.
func (s *outSub) subscribeOn(l *link) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return context.Cause(s.ctx)
	}
	s.link, s.sn, s.awaiting = l, 0, true
	s.mu.Unlock()
	p := s.p
	rid := formatRID(p.rid.Add(1))
	data, err := encodeSub(rid, s.key, s.id, s.args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, p.e.opts.RequestTimeout)
	defer cancel()
	err = l.invoke(ctx, rid, data, nil)
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	if err == nil {
		s.mu.Lock()
		s.accepted = true
		s.mu.Unlock()
		ev := p.event(Subscribed)
		ev.Key, ev.ID = s.key, s.id
		p.e.emit(ev)
		return nil
	}
	if errors.Is(err, ErrClosed) {
		return err
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusBadRequest {
		var b errorBody
		if json.Unmarshal(se.Body, &b) == nil && b.Error == errUnknownSub {
			err = fmt.Errorf("%w %q: %w", ErrInvalidSubscription, s.id, se)
		}
	}
	ev := p.event(SubscribeFailed)
	ev.Key, ev.ID, ev.Err = s.key, s.id, err
	p.e.emit(ev)
	return err
}

// resubscribe subscribes again on l, after a reconnect or a gap: a refusal
// ends the subscription; a dropped connection or a timeout leaves it for
// the next connection (or a late value).
func (s *outSub) resubscribe(l *link, unsubFirst bool) {
	defer s.p.e.wg.Done()
	if unsubFirst {
		if data, err := encodeUnsub(s.key); err == nil {
			if l.send(s.ctx, data) != nil {
				return
			}
		}
	}
	err := s.subscribeOn(l)
	var se *StatusError
	if errors.As(err, &se) {
		s.cancel(err)
	}
}

// receive applies a value or patch from connection l, in sn order; a gap
// starts a resync. Called by l's read loop.
func (s *outSub) receive(l *link, env envelope) {
	s.mu.Lock()
	if s.link != l || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	var gap error
	if s.awaiting {
		// Until the new stream starts, what comes is what the publisher
		// sent before it saw our sub: skip it.
		if env.Type != typeValue || env.SN != 1 {
			s.mu.Unlock()
			return
		}
		s.awaiting = false
	} else if env.SN != s.sn+1 {
		gap = fmt.Errorf("%w: %s with sn %d after %d", errSequenceGap, env.Type, env.SN, s.sn)
	}
	doc := env.Body
	if gap == nil && env.Type == typePatch {
		d, err := jsonpatch.MergePatch(s.doc, env.Body)
		if err != nil {
			gap = fmt.Errorf("via: applying a merge patch: %w", err)
		}
		doc = d
	}
	if gap != nil {
		s.awaiting, s.sn = true, 0
		s.mu.Unlock()
		ev := s.p.event(BadMessage)
		ev.Key, ev.ID, ev.Err = s.key, s.id, gap
		s.p.e.emit(ev)
		s.p.e.wg.Add(1) // the read loop calling us is counted
		go s.resubscribe(l, true)
		return
	}
	s.sn, s.doc = env.SN, doc
	s.mu.Unlock()
	if err := s.set(doc); err != nil {
		ev := s.p.event(BadMessage)
		ev.Key, ev.ID, ev.Err = s.key, s.id, fmt.Errorf("via: decoding subscription value: %w", err)
		s.p.e.emit(ev)
	}
}

// finish runs once the subscription has ended: it leaves the table, tells
// the publisher (unless the peer is gone), and reports.
func (s *outSub) finish() {
	p := s.p
	defer p.e.wg.Done()
	s.stop()
	cause := context.Cause(s.ctx)
	p.omu.Lock()
	if p.outs[s.key] == s {
		delete(p.outs, s.key)
	}
	p.omu.Unlock()
	s.mu.Lock()
	l, accepted := s.link, s.accepted
	s.link = nil
	s.mu.Unlock()
	if l != nil && !errors.Is(cause, ErrUnknownPeer) && !errors.Is(cause, ErrEndpointClosed) {
		if data, err := encodeUnsub(s.key); err == nil {
			l.send(context.Background(), data) // bounded by the connection
		}
	}
	close(s.done)
	if accepted {
		ev := p.event(Unsubscribed)
		ev.Key, ev.ID, ev.Err = s.key, s.id, cause
		p.e.emit(ev)
	}
}

// receive hands a value or patch to the subscription with its key.
func (p *Peer) receive(l *link, env envelope, raw []byte) {
	p.omu.Lock()
	s := p.outs[env.Key]
	p.omu.Unlock()
	if s == nil {
		ev := p.event(UnknownSubscription)
		ev.Key, ev.Message = env.Key, raw
		p.e.emit(ev)
		return
	}
	s.receive(l, env)
}

// resubscribeAll sends the peer's subscriptions on a connection that has
// just become ready (after OnReconnect). Called by the goroutine that made
// l ready, which is counted in the endpoint's WaitGroup.
func (p *Peer) resubscribeAll(l *link) {
	p.omu.Lock()
	var subs []*outSub
	for _, s := range p.outs {
		subs = append(subs, s)
	}
	p.omu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		again := s.link != l && s.ctx.Err() == nil
		s.mu.Unlock()
		if again {
			p.e.wg.Add(1)
			go s.resubscribe(l, false)
		}
	}
}

// detachSubs forgets the connection of every subscription made on l.
func (p *Peer) detachSubs(l *link) {
	p.omu.Lock()
	defer p.omu.Unlock()
	for _, s := range p.outs {
		s.mu.Lock()
		if s.link == l {
			s.link, s.awaiting = nil, true
		}
		s.mu.Unlock()
	}
}

// endSubs ends every subscription made to the peer, which is being
// removed, and waits until they have.
func (p *Peer) endSubs() {
	p.omu.Lock()
	subs := p.outs
	p.outs = nil
	p.omu.Unlock()
	for _, s := range subs {
		<-s.done // p.ctx has ended: their watch ends them
	}
}

// ---- introspection ----

// SubscriptionInfo describes a subscription at one moment.
type SubscriptionInfo struct {
	PeerID string
	// Key is the subscription's key on its connection, chosen by the
	// subscriber.
	Key string
	// ID is the subscription id.
	ID string
	// Inbound is true for a subscription the peer made to this endpoint
	// (which publishes), false for one this endpoint made to the peer (a
	// [Remote]).
	Inbound bool
	// SN is the sequence number of the last message sent or being sent
	// (inbound) or applied (outbound), 0 before the first.
	SN uint64
}

// Subscriptions describes the peer's subscriptions in both directions,
// sorted by direction (outbound first) and key.
func (p *Peer) Subscriptions() []SubscriptionInfo {
	var infos []SubscriptionInfo
	p.omu.Lock()
	outs := make([]*outSub, 0, len(p.outs))
	for _, s := range p.outs {
		outs = append(outs, s)
	}
	p.omu.Unlock()
	for _, s := range outs {
		s.mu.Lock()
		infos = append(infos, SubscriptionInfo{PeerID: p.id, Key: s.key, ID: s.id, SN: s.sn})
		s.mu.Unlock()
	}
	p.mu.Lock()
	l := p.link
	p.mu.Unlock()
	if l != nil {
		l.smu.Lock()
		for _, s := range l.subs {
			infos = append(infos, SubscriptionInfo{PeerID: p.id, Key: s.key, ID: s.id, Inbound: true, SN: s.sn.Load()})
		}
		l.smu.Unlock()
	}
	slices.SortFunc(infos, compareSubs)
	return infos
}

// Subscriptions describes the subscriptions of every peer, in both
// directions, sorted by peer id, direction and key.
func (e *Endpoint) Subscriptions() []SubscriptionInfo {
	var infos []SubscriptionInfo
	for _, p := range e.snapshot() {
		infos = append(infos, p.Subscriptions()...)
	}
	slices.SortFunc(infos, compareSubs)
	return infos
}

func compareSubs(a, b SubscriptionInfo) int {
	if c := strings.Compare(a.PeerID, b.PeerID); c != 0 {
		return c
	}
	if a.Inbound != b.Inbound {
		if a.Inbound {
			return 1
		}
		return -1
	}
	return strings.Compare(a.Key, b.Key)
}
