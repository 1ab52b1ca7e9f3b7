package pipe

import (
	"context"
	"sync/atomic"
)

// Policy says how big a buffer is and what happens when it is full. The
// zero Policy is Blocking(0): an unbuffered channel.
type Policy struct {
	mode mode
	size int
}

type mode uint8

const (
	block mode = iota
	slide
	drop
)

// Blocking is a buffer of n values (n < 0 counts as 0) that makes the
// sender wait while it is full. Nothing is dropped.
func Blocking(n int) Policy { return Policy{block, max(n, 0)} }

// Sliding is a buffer of n values (n < 1 counts as 1) that, when full,
// drops its oldest value to make room for the new one. The sender never
// waits.
func Sliding(n int) Policy { return Policy{slide, max(n, 1)} }

// Dropping is a buffer of n values (n < 0 counts as 0) that, when full,
// drops the new value. The sender never waits. Dropping(0) delivers a
// value only if a receiver is already waiting for it.
func Dropping(n int) Policy { return Policy{drop, max(n, 0)} }

// sink is a channel with a policy. Exactly one goroutine sends on ch.
type sink[T any] struct {
	ch      chan T
	mode    mode
	dropped atomic.Uint64
}

func (s *sink[T]) init(p Policy) {
	s.mode = p.mode
	s.ch = make(chan T, p.size)
}

// offer delivers v as the policy says without waiting. It reports false
// only for a blocking policy whose channel is full: the caller then waits.
func (s *sink[T]) offer(v T) bool {
	switch s.mode {
	case drop:
		select {
		case s.ch <- v:
		default:
			s.dropped.Add(1)
		}
		return true
	case slide:
		for {
			select {
			case s.ch <- v:
				return true
			default:
			}
			// Full: take out the oldest value. A receiver may beat us
			// to it, in which case there is room now anyway.
			select {
			case <-s.ch:
				s.dropped.Add(1)
			default:
			}
		}
	default:
		select {
		case s.ch <- v:
			return true
		default:
			return false
		}
	}
}

// Buffered is the output of [Buffer].
type Buffered[T any] struct {
	sink[T]
	done chan struct{}
}

// Buffer reads in into a buffer with policy p and delivers from it on Out.
//
// Backpressure: with [Blocking], a full buffer stops Buffer reading in (it
// holds one more value in hand). With [Sliding] or [Dropping], Buffer
// always reads in at once and drops values, counting them in Dropped.
//
// Out is closed, after the values still buffered, when in closes; it is
// closed at once when ctx ends.
func Buffer[T any](ctx context.Context, in <-chan T, p Policy) *Buffered[T] {
	b := &Buffered[T]{done: make(chan struct{})}
	b.init(p)
	go b.run(ctx.Done(), in)
	return b
}

func (b *Buffered[T]) run(done <-chan struct{}, in <-chan T) {
	defer close(b.done)
	defer close(b.ch)
	for {
		select {
		case v, ok := <-in:
			if !ok {
				return
			}
			if !b.offer(v) && !send(done, b.ch, v) {
				return
			}
		case <-done:
			return
		}
	}
}

// Out is the buffered channel.
func (b *Buffered[T]) Out() <-chan T { return b.ch }

// Dropped is how many values the policy has dropped so far.
func (b *Buffered[T]) Dropped() uint64 { return b.dropped.Load() }

// Done is closed once Buffer has stopped (in closed or ctx ended): Out is
// closed and Dropped is final by then, but values may still be buffered in
// Out.
func (b *Buffered[T]) Done() <-chan struct{} { return b.done }
