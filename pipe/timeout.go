package pipe

import (
	"context"
	"errors"
	"time"
)

// ErrClosed is returned by [Recv] when the channel is closed.
var ErrClosed = errors.New("pipe: channel closed")

// Send sends v on ch. It waits until a receiver takes v (nil) or ctx ends
// (ctx.Err()). If ctx has already ended, Send does not send. For a send
// with a time limit, give it a ctx from [context.WithTimeout].
func Send[T any](ctx context.Context, ch chan<- T, v T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !send(ctx.Done(), ch, v) {
		return ctx.Err()
	}
	return nil
}

// Recv receives a value from ch, waiting until one comes, ch closes
// ([ErrClosed]) or ctx ends (ctx.Err()). If ctx has already ended, Recv
// does not receive. For a receive with a time limit, give it a ctx from
// [context.WithTimeout].
func Recv[T any](ctx context.Context, ch <-chan T) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	select {
	case v, ok := <-ch:
		if !ok {
			return zero, ErrClosed
		}
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Timeout returns a channel that is closed when d has passed or ctx has
// ended, whichever comes first, for use as one case of a select. Call stop
// when done waiting: it releases the timer (and closes the channel too).
//
//	timeout, stop := pipe.Timeout(ctx, 5*time.Second)
//	defer stop()
//	select {
//	case reply := <-replies:
//		// ...
//	case <-timeout:
//		// timed out, or ctx ended: ctx.Err() tells which
//	}
func Timeout(ctx context.Context, d time.Duration) (timeout <-chan struct{}, stop func()) {
	c, cancel := context.WithTimeout(ctx, d)
	return c.Done(), cancel
}

// Tick sends v every d until ctx ends, then closes the channel. It is a
// [time.Ticker] that stops with ctx and carries a value of your type, so it
// can be merged with other channels (a heartbeat, a flush signal).
//
// Backpressure: like a [time.Ticker], Tick drops ticks while the consumer
// is slow; it never queues more than the one it is offering.
func Tick[T any](ctx context.Context, d time.Duration, v T) <-chan T {
	out := make(chan T)
	go func() {
		defer close(out)
		t := time.NewTicker(d)
		defer t.Stop()
		done := ctx.Done()
		for {
			select {
			case <-t.C:
				if !send(done, out, v) {
					return
				}
			case <-done:
				return
			}
		}
	}()
	return out
}

// send sends v on out unless done is closed first. It tries a send that
// does not wait first, which is cheaper when a receiver is ready.
func send[T any](done <-chan struct{}, out chan<- T, v T) bool {
	select {
	case out <- v:
		return true
	default:
	}
	select {
	case out <- v:
		return true
	case <-done:
		return false
	}
}

// recv receives from in unless done is closed first (or was already
// closed). ok is false if in is closed or done is closed.
func recv[T any](done <-chan struct{}, in <-chan T) (v T, ok bool) {
	select {
	case <-done:
		return v, false
	default:
	}
	select {
	case v, ok = <-in:
		return v, ok
	default:
	}
	select {
	case v, ok = <-in:
	case <-done:
	}
	return v, ok
}
