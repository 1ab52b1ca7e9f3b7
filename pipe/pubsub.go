package pipe

import "context"

// PubSub delivers each value of its input to the subscribers of the
// value's topic. Make one with [NewPubSub].
type PubSub[K comparable, T any] struct {
	h hub[K, T]
}

// NewPubSub starts delivering in by topic: topic(v) picks the topic of v,
// and v goes to every subscriber of that topic. A value whose topic has no
// subscribers is dropped and counted in [PubSub.Dropped]. topic runs on
// the PubSub's goroutine, once per value.
//
// Backpressure: as for [NewBroadcast], among the subscribers of a topic: a
// full [Blocking] subscriber makes the PubSub wait, and so holds back every
// topic. Give a subscriber whose reader may be slow a [Sliding] or
// [Dropping] policy.
//
// When in closes or ctx ends, every subscription's channel is closed
// (after the values already in its buffer).
func NewPubSub[K comparable, T any](ctx context.Context, in <-chan T, topic func(T) K) *PubSub[K, T] {
	ps := &PubSub[K, T]{}
	ps.h.start(ctx, in, topic)
	return ps
}

// Subscribe adds a subscriber to topic with buffer policy p. It receives
// every value of that topic the PubSub reads after Subscribe returns.
// Close it to unsubscribe. If the PubSub has stopped, its channel is
// already closed. To follow several topics, subscribe to each and [Merge]
// the taps' channels.
func (ps *PubSub[K, T]) Subscribe(topic K, p Policy) *Tap[T] { return ps.h.tap(topic, p) }

// Dropped is how many values arrived while their topic had no subscribers.
func (ps *PubSub[K, T]) Dropped() uint64 { return ps.h.dropped.Load() }

// Done is closed once the PubSub has stopped and closed its subscriptions.
func (ps *PubSub[K, T]) Done() <-chan struct{} { return ps.h.exited }
