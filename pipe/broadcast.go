package pipe

import (
	"context"
	"sync"
	"sync/atomic"
)

// Broadcast delivers each value of its input to every tap (core.async's
// mult). Make one with [NewBroadcast].
type Broadcast[T any] struct {
	h hub[struct{}, T]
}

// NewBroadcast starts delivering in to the taps added with [Broadcast.Tap].
// A value that arrives while there are no taps is dropped and counted in
// [Broadcast.Dropped].
//
// Backpressure: each value is offered to the taps one after the other, as
// each tap's [Policy] says. A full [Blocking] tap makes the broadcast wait,
// and so holds back every other tap and stops reading in; give a tap whose
// reader may be slow a [Sliding] or [Dropping] policy so it never stalls
// the others.
//
// When in closes or ctx ends, every tap's channel is closed (after the
// values already in its buffer).
func NewBroadcast[T any](ctx context.Context, in <-chan T) *Broadcast[T] {
	b := &Broadcast[T]{}
	b.h.start(ctx, in, nil)
	return b
}

// Tap adds a tap with buffer policy p and returns it. It receives every
// value the broadcast reads after Tap returns. If the broadcast has
// stopped, the tap's channel is already closed.
func (b *Broadcast[T]) Tap(p Policy) *Tap[T] { return b.h.tap(struct{}{}, p) }

// Dropped is how many values arrived while there were no taps.
func (b *Broadcast[T]) Dropped() uint64 { return b.h.dropped.Load() }

// Done is closed once the broadcast has stopped and closed its taps.
func (b *Broadcast[T]) Done() <-chan struct{} { return b.h.exited }

// Tap is one output of a [Broadcast] or one subscription of a [PubSub].
type Tap[T any] struct {
	sink[T]
	ctrl   chan<- request[T]
	exited <-chan struct{}
	key    any // the topic; set before the hub sees the tap
	once   sync.Once

	// Owned by the hub goroutine.
	list *tapList[T]
	idx  int
	gone bool
}

// Out is the tap's channel. It is closed when the tap is closed or its
// broadcast stops.
func (t *Tap[T]) Out() <-chan T { return t.ch }

// Dropped is how many values the tap's policy has dropped so far.
func (t *Tap[T]) Dropped() uint64 { return t.dropped.Load() }

// Close removes the tap (untap, unsubscribe). It does not wait for the
// reader, and never blocks for long: Out is closed as soon as the value
// being delivered has been offered to the other taps. Values already
// buffered can still be read. Close may be called more than once.
func (t *Tap[T]) Close() {
	t.once.Do(func() {
		select {
		case t.ctrl <- request[T]{t: t}:
		case <-t.exited:
		}
	})
}

type request[T any] struct {
	t   *Tap[T]
	add bool
}

type tapList[T any] struct {
	taps []*Tap[T]
}

// hub is the goroutine behind Broadcast and PubSub. It alone sends on and
// closes the taps' channels; taps are added and removed through ctrl, so a
// hub waiting on a slow tap still serves Tap and Close.
type hub[K comparable, T any] struct {
	in      <-chan T
	topic   func(T) K // nil: every value goes to all
	ctrl    chan request[T]
	exited  chan struct{}
	dropped atomic.Uint64
	all     tapList[T]
	topics  map[K]*tapList[T]
	pending []*Tap[T] // closed while a value was being delivered
}

func (h *hub[K, T]) start(ctx context.Context, in <-chan T, topic func(T) K) {
	h.in = in
	h.topic = topic
	h.ctrl = make(chan request[T])
	h.exited = make(chan struct{})
	if topic != nil {
		h.topics = make(map[K]*tapList[T])
	}
	go h.run(ctx.Done())
}

func (h *hub[K, T]) tap(key K, p Policy) *Tap[T] {
	t := &Tap[T]{ctrl: h.ctrl, exited: h.exited, key: key}
	t.init(p)
	select {
	case h.ctrl <- request[T]{t: t, add: true}:
	case <-h.exited:
		close(t.ch)
	}
	return t
}

func (h *hub[K, T]) run(done <-chan struct{}) {
	defer h.stop()
	for {
		// The selects that do not wait are a fast path: unlike the one
		// that waits, they do not lock every channel for each value.
		select {
		case <-done:
			return
		default:
		}
		select {
		case r := <-h.ctrl:
			h.handle(r)
			continue
		default:
		}
		var (
			v  T
			ok bool
		)
		select {
		case v, ok = <-h.in:
		default:
			select {
			case v, ok = <-h.in:
			case r := <-h.ctrl:
				h.handle(r)
				continue
			case <-done:
				return
			}
		}
		if !ok {
			return
		}
		l := &h.all
		if h.topic != nil {
			l = h.topics[h.topic(v)]
		}
		if l == nil || len(l.taps) == 0 {
			h.dropped.Add(1)
			continue
		}
		if !h.deliver(done, l.taps, v) {
			return
		}
	}
}

func (h *hub[K, T]) handle(r request[T]) {
	if r.add {
		h.add(r.t)
	} else {
		h.remove(r.t)
	}
}

// deliver offers v to taps. Taps added meanwhile join the list after the
// ones in taps and miss v; taps closed meanwhile are skipped and removed
// at the end.
func (h *hub[K, T]) deliver(done <-chan struct{}, taps []*Tap[T], v T) bool {
	for _, t := range taps {
		if t.gone || t.offer(v) {
			continue
		}
	wait:
		for {
			select {
			case t.ch <- v:
				break wait
			case r := <-h.ctrl:
				if r.add {
					h.add(r.t)
					continue
				}
				r.t.gone = true
				h.pending = append(h.pending, r.t)
				if r.t == t {
					break wait
				}
			case <-done:
				return false
			}
		}
	}
	for i, t := range h.pending {
		h.remove(t)
		h.pending[i] = nil
	}
	h.pending = h.pending[:0]
	return true
}

func (h *hub[K, T]) add(t *Tap[T]) {
	l := &h.all
	if h.topic != nil {
		k := t.key.(K)
		l = h.topics[k]
		if l == nil {
			l = &tapList[T]{}
			h.topics[k] = l
		}
	}
	t.list, t.idx = l, len(l.taps)
	l.taps = append(l.taps, t)
}

func (h *hub[K, T]) remove(t *Tap[T]) {
	l := t.list
	last := len(l.taps) - 1
	l.taps[t.idx] = l.taps[last]
	l.taps[t.idx].idx = t.idx
	l.taps[last] = nil
	l.taps = l.taps[:last]
	t.list = nil
	close(t.ch)
	if last == 0 && h.topic != nil {
		delete(h.topics, t.key.(K))
	}
}

func (h *hub[K, T]) stop() {
	for _, t := range h.all.taps {
		close(t.ch)
	}
	for _, l := range h.topics {
		for _, t := range l.taps {
			close(t.ch)
		}
	}
	close(h.exited)
}
