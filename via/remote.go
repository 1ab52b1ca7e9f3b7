package via

import (
	"context"
	"encoding/json"
)

// Remote is a local copy of a value a peer publishes: it starts from a
// default and follows the publisher's changes. Read it with Get, or watch it
// with Watch (latest wins: a slow reader skips to the newest value). Make
// one with [Subscribe].
type Remote[T any] struct {
	s   *outSub
	val Value[T]
}

// Subscribe subscribes to id on peer p with args (encoded as JSON) and
// returns the remote value, which holds def until the publisher's first
// value arrives. It returns once p has accepted: a subscription that p
// does not publish fails with an error matching [ErrInvalidSubscription]
// (and wrapping the reply's [*StatusError]); one an interceptor refused
// fails with the *StatusError (403); a peer without a ready connection
// fails with [ErrNotConnected]. The wait is bounded by
// [Options.RequestTimeout].
//
// ctx is the subscription's lifetime, not just the call's: when it ends
// (or [Remote.Close] is called) the subscription ends and the publisher is
// told. It also ends when the peer is removed. While an originator is
// reconnecting, the value stays as it was; on each new connection,
// after [Options.OnReconnect] has run, the subscription is sent again and
// the publisher's current value replaces it. A publisher that refuses it
// then ends it ([Remote.Err] says why).
//
// Values arrive in order: each push has a sequence number, and a gap (a
// publisher bug) is never applied: it is reported as BadMessage and the
// subscription starts over from a whole value. Each value is decoded into a
// new T; one that does not decode is reported as BadMessage and skipped.
func Subscribe[T any](ctx context.Context, p *Peer, id string, args any, def T) (*Remote[T], error) {
	r := &Remote[T]{}
	r.val.v = def
	r.val.changed = make(chan struct{})
	done := make(chan struct{})
	r.val.ended = done
	s, err := p.subscribe(ctx, id, args, r.setJSON, done)
	if err != nil {
		return nil, err
	}
	r.s = s
	return r, nil
}

func (r *Remote[T]) setJSON(doc json.RawMessage) error {
	var v T
	if err := json.Unmarshal(doc, &v); err != nil {
		return err
	}
	r.val.Set(v)
	return nil
}

// Get returns the current value.
func (r *Remote[T]) Get() T { return r.val.Get() }

// Observe returns the current value and a channel closed at its next
// change (see [Value.Observe]).
func (r *Remote[T]) Observe() (T, <-chan struct{}) { return r.val.Observe() }

// Current implements [Source], so that a remote value can be published
// again (to fan one upstream subscription out to many peers).
func (r *Remote[T]) Current() (any, <-chan struct{}) { return r.val.Current() }

// Watch returns a channel that delivers the current value at once, then
// every later value, latest wins. It is closed when ctx ends or the
// subscription ends (see [Value.Watch]).
func (r *Remote[T]) Watch(ctx context.Context) <-chan T { return r.val.Watch(ctx) }

// Close ends the subscription, tells the publisher if the connection is
// up, and returns once it has ended. Calling it again does nothing.
func (r *Remote[T]) Close() error {
	r.s.cancel(ErrUnsubscribed)
	<-r.s.done
	return nil
}

// Done is closed when the subscription has ended.
func (r *Remote[T]) Done() <-chan struct{} { return r.s.done }

// Err returns nil while the subscription is live, then why it ended:
// ErrUnsubscribed after Close, the context's error when ctx ended,
// ErrUnknownPeer when the peer was removed, ErrEndpointClosed when the
// endpoint closed, or the refusal of a resubscription after a reconnect.
func (r *Remote[T]) Err() error {
	select {
	case <-r.s.done:
		return context.Cause(r.s.ctx)
	default:
		return nil
	}
}

// ID returns the subscription id.
func (r *Remote[T]) ID() string { return r.s.id }

// Key returns the subscription's key, as events report it.
func (r *Remote[T]) Key() string { return r.s.key }

// Peer returns the publisher.
func (r *Remote[T]) Peer() *Peer { return r.s.p }
