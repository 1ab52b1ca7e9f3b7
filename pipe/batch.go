package pipe

import (
	"context"
	"time"
)

// BatchOptions says when a batch is complete. The zero value has no
// limits: one batch with everything, when the input closes.
type BatchOptions struct {
	// Size is the most values in a batch; a batch that reaches it leaves
	// at once. 0 means no limit.
	Size int

	// Window is how long a batch may wait for more values, counted from
	// its first value. 0 means no limit.
	Window time.Duration

	// Reuse makes Batch alternate between two slices instead of making a
	// fresh one per batch, so that it allocates nothing once warm. A batch
	// then stays valid only until the consumer receives the next one
	// (like bufio.Scanner's Bytes); copy what you keep longer. Only for a
	// single consumer that is done with a batch when it asks for the next.
	Reuse bool
}

// Batch groups the values of in into slices. A batch leaves when it has
// opt.Size values or when opt.Window has passed since its first value,
// whichever comes first; when in closes, the last partial batch leaves too.
// A batch is never empty. Unless opt.Reuse is set, each batch is a fresh
// slice the consumer owns: one allocation per batch (with capacity
// opt.Size when set), none per value.
//
// Backpressure: while a complete batch waits for the consumer, Batch stops
// reading in, so a batch may leave later than its window.
//
// When ctx ends the output is closed and a partial batch is discarded.
func Batch[T any](ctx context.Context, in <-chan T, opt BatchOptions) <-chan []T {
	out := make(chan []T) // unbuffered: Reuse relies on it
	go batch(ctx.Done(), in, out, opt)
	return out
}

func batch[T any](done <-chan struct{}, in <-chan T, out chan<- []T, opt BatchOptions) {
	defer close(out)
	var (
		cur, spare []T
		timer      *time.Timer
		due        <-chan time.Time // nil while no window is running
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// flush sends cur and starts the next batch.
	flush := func() bool {
		if due != nil {
			timer.Stop()
			due = nil
		}
		if !send(done, out, cur) {
			return false
		}
		if opt.Reuse {
			cur, spare = spare[:0], cur
		} else {
			cur = nil
		}
		return true
	}
	for {
		// Wait for a value, the end of the window or the end of ctx. The
		// three selects that do not wait are a fast path: unlike the one
		// that waits, they do not lock every channel for each value.
		var (
			v  T
			ok bool
		)
		select {
		case <-done:
			return
		default:
		}
		select {
		case <-due:
			if !flush() {
				return
			}
			continue
		default:
		}
		select {
		case v, ok = <-in:
		default:
			select {
			case v, ok = <-in:
			case <-due:
				if !flush() {
					return
				}
				continue
			case <-done:
				return
			}
		}

		if !ok {
			if len(cur) > 0 {
				flush()
			}
			return
		}
		if cur == nil && opt.Size > 0 {
			cur = make([]T, 0, opt.Size)
		}
		cur = append(cur, v)
		if len(cur) == 1 && opt.Window > 0 {
			if timer == nil {
				timer = time.NewTimer(opt.Window)
			} else {
				timer.Reset(opt.Window)
			}
			due = timer.C
		}
		if len(cur) == opt.Size && !flush() {
			return
		}
	}
}
