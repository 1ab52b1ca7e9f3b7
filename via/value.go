package via

import (
	"context"
	"sync"
)

// Source is what a subscription publishes: a value that changes over time.
// [*Value] is one, and so is [*Remote] (a remote value can be published
// again); anything else that can say what its value is now, and when that
// changes, can be one too.
type Source interface {
	// Current returns the value now, which the publisher encodes as JSON,
	// and a channel that is closed when the value changes (or the source
	// ends). The returned value must not be changed afterwards.
	Current() (value any, changed <-chan struct{})
}

// Value is an observable value: a current value that goroutines can read,
// replace and watch. It is the [Source] a publisher usually publishes. The
// zero Value holds T's zero value and is ready to use; a Value must not be
// copied after first use.
//
// Values are replaced, never changed in place: a map or slice passed to Set
// (or returned by Update's function) must not be modified afterwards, since
// watchers and publishers may still be reading it.
type Value[T any] struct {
	mu      sync.Mutex
	v       T
	changed chan struct{} // closed and replaced on every Set
	ended   chan struct{} // closed when a remote value's subscription ends; nil otherwise
}

// NewValue returns a Value holding v.
func NewValue[T any](v T) *Value[T] {
	return &Value[T]{v: v, changed: make(chan struct{})}
}

// Get returns the current value.
func (x *Value[T]) Get() T {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.v
}

// Set replaces the value and wakes every watcher. It never waits: a
// watcher that is behind sees only the latest value.
func (x *Value[T]) Set(v T) {
	x.mu.Lock()
	x.v = v
	x.bump()
	x.mu.Unlock()
}

// Update replaces the value with f(current value), atomically with respect
// to other Sets and Updates, and returns the new value. f runs with the
// Value locked: it must be quick and must not call the Value's methods.
func (x *Value[T]) Update(f func(T) T) T {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.v = f(x.v)
	x.bump()
	return x.v
}

// bump wakes the watchers; x.mu is held.
func (x *Value[T]) bump() {
	if x.changed != nil {
		close(x.changed)
	}
	x.changed = make(chan struct{})
}

// Observe returns the current value and a channel that is closed when it
// next changes: the building block of Watch, for loops that select on
// other things too.
func (x *Value[T]) Observe() (T, <-chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.changed == nil {
		x.changed = make(chan struct{})
	}
	return x.v, x.changed
}

// Current implements [Source].
func (x *Value[T]) Current() (any, <-chan struct{}) {
	v, ch := x.Observe()
	return v, ch
}

// Watch returns a channel that delivers the current value at once, then
// every later value, latest wins: a reader that falls behind skips to the
// newest value, and nothing queues up. The channel is closed when ctx ends
// (and, for a [Remote], when its subscription ends). Each Watch runs a
// goroutine until then.
func (x *Value[T]) Watch(ctx context.Context) <-chan T {
	out := make(chan T)
	go func() {
		defer close(out)
		v, ch := x.Observe()
		pending := true
		for {
			var send chan<- T
			if pending {
				send = out
			}
			select {
			case send <- v:
				pending = false
			case <-ch:
				v, ch = x.Observe()
				pending = true
			case <-ctx.Done():
				return
			case <-x.ended: // nil, so never, for a plain Value
				return
			}
		}
	}()
	return out
}
