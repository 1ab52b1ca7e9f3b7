package via

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/wsasync/wsasync"
)

// link is one connection of a peer. An originator's peer has a new link
// after every reconnect; everything bound to a connection (outstanding
// Invokes, handler contexts, heartbeats, which the core runs per connection)
// is bound to its link and ends with it.
type link struct {
	p      *Peer
	out    chan<- wsasync.Message
	dialed *wsasync.Conn // the connection, whose Out the link closes
	limit  int64         // largest message the peer accepts; <= 0: none

	// ctx is cancelled when the connection ends or this end stops it.
	ctx    context.Context
	cancel context.CancelFunc
	// ready is closed once the link may carry calls: at once, or after
	// OnReconnect has succeeded.
	ready chan struct{}

	hmu     sync.Mutex
	hookErr error // why OnReconnect failed, if it did

	// sendMu guards out: senders hold it shared; closing takes it alone,
	// after cancel has released every sender that waits.
	sendMu     sync.RWMutex
	sendClosed bool

	pmu     sync.Mutex
	pending map[string]chan envelope

	// subs are the subscriptions the peer made to this endpoint on this
	// connection, by key.
	smu  sync.Mutex
	subs map[string]*inSub
}

func (p *Peer) newLink(out chan<- wsasync.Message, dialed *wsasync.Conn, limit int64) *link {
	l := &link{p: p, out: out, dialed: dialed, limit: limit, ready: make(chan struct{}), pending: make(map[string]chan envelope)}
	l.ctx, l.cancel = context.WithCancel(p.ctx)
	return l
}

func (l *link) failedHook() error {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	return l.hookErr
}

func (l *link) isReady() bool {
	select {
	case <-l.ready:
		return true
	default:
		return false
	}
}

// send queues one encoded message for the connection's writer.
func (l *link) send(ctx context.Context, data []byte) error {
	if l.limit > 0 && int64(len(data)) > l.limit {
		return ErrTooLarge
	}
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	if l.sendClosed || l.ctx.Err() != nil {
		return ErrClosed
	}
	m := wsasync.Message{Type: wsasync.TextMessage, Data: data}
	select {
	case l.out <- m:
		return nil
	default:
	}
	select {
	case l.out <- m:
		return nil
	case <-l.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// closeSends stops every sender. When the connection is still up (this end
// stops it), the close frame with code goes after what is queued.
func (l *link) closeSends(code wsasync.StatusCode, reason string) {
	l.cancel()
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.sendClosed {
		return
	}
	l.sendClosed = true
	if code != 0 {
		// The core's writer takes it, or discards it once the connection
		// is dead, so this send is bounded by the write timeout.
		l.out <- wsasync.Closed(code, reason)
	}
	if l.dialed != nil {
		close(l.dialed.Out)
	}
}

// run is the connection's read loop. It returns when the connection has
// ended, with why: nil when this end closed it.
func (l *link) run(in <-chan wsasync.Message, errs <-chan error) error {
	for {
		select {
		case m, ok := <-in:
			if !ok {
				local := l.ctx.Err() != nil
				l.closeSends(0, "")
				err := <-errs
				if local {
					return l.failedHook()
				}
				return err
			}
			l.handle(m)
		case <-l.ctx.Done():
			code, reason := wsasync.StatusNormalClosure, "disconnect"
			if l.p.e.ctx.Err() != nil {
				code, reason = wsasync.StatusGoingAway, "going away"
			}
			l.closeSends(code, reason)
			if l.dialed != nil {
				// Wait for the peer's close (bounded by the close
				// timeout); what still arrives is discarded.
				for range in {
				}
				<-errs
			}
			return l.failedHook()
		}
	}
}

// handle takes one received message. Replies are resolved here, at once;
// calls go to the peer's worker.
func (l *link) handle(m wsasync.Message) {
	p := l.p
	env, err := decode(m)
	if err != nil {
		ev := p.event(BadMessage)
		ev.Err, ev.Message = err, m.Data
		p.e.emit(ev)
		if env.RID != "" && env.Type != typeReply {
			l.replyError(env.RID, http.StatusBadRequest, errorBody{Error: errBadMessage, Reason: reason(err)})
		}
		return
	}
	switch env.Type {
	case typeReply:
		l.resolve(env, m.Data)
	case typeEvent:
		p.e.route(l, env, m.Data)
	case typeSub:
		p.e.routeSub(l, env, m.Data)
	case typeUnsub:
		p.e.routeUnsub(l, env)
	case typeValue, typePatch:
		p.receive(l, env, m.Data)
	}
}

func reason(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// replyError answers a request id from the read loop.
func (l *link) replyError(rid string, status int, body errorBody) {
	if rid == "" {
		return
	}
	data, err := encodeReply(rid, status, body)
	if err != nil {
		return
	}
	l.send(l.ctx, data)
}

// resolve hands a reply to the Invoke waiting for it.
func (l *link) resolve(env envelope, raw []byte) {
	l.pmu.Lock()
	ch, ok := l.pending[env.RID]
	delete(l.pending, env.RID)
	l.pmu.Unlock()
	if !ok {
		ev := l.p.event(UnhandledReply)
		ev.Message = raw
		l.p.e.emit(ev)
		return
	}
	ch <- env // buffered: never waits
}

// invoke sends a request and waits for its reply.
func (l *link) invoke(ctx context.Context, rid string, data []byte, reply any) error {
	ch := make(chan envelope, 1)
	l.pmu.Lock()
	l.pending[rid] = ch
	l.pmu.Unlock()
	defer func() {
		l.pmu.Lock()
		delete(l.pending, rid)
		l.pmu.Unlock()
	}()
	if err := l.send(ctx, data); err != nil {
		return err
	}
	select {
	case env := <-ch:
		return replyResult(env, reply)
	case <-l.ctx.Done():
		select {
		case env := <-ch:
			return replyResult(env, reply)
		default:
		}
		return ErrClosed
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

func replyResult(env envelope, reply any) error {
	if env.Status != http.StatusOK {
		return &StatusError{Status: env.Status, Body: env.Body}
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(env.Body, reply); err != nil {
		return errors.Join(errors.New("via: decoding reply"), err)
	}
	return nil
}
