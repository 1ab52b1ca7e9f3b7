package pipe

import (
	"context"
	"sync/atomic"
)

// Merge delivers every value from every input on one channel (fan-in).
// Values from one input keep their order; values from different inputs
// interleave as they arrive. Nil inputs are ignored.
//
// The output is closed when every input has closed, or when ctx ends.
//
// Backpressure: Merge runs one goroutine per input, each holding at most
// one value; while the consumer is slow they wait, and so stop reading
// their inputs.
func Merge[T any](ctx context.Context, ins ...<-chan T) <-chan T {
	out := make(chan T)
	n := 0
	for _, in := range ins {
		if in != nil {
			n++
		}
	}
	if n == 0 {
		close(out)
		return out
	}
	done := ctx.Done()
	left := new(atomic.Int64)
	left.Store(int64(n))
	for _, in := range ins {
		if in == nil {
			continue
		}
		go func() {
			for {
				v, ok := recv(done, in)
				if !ok || !send(done, out, v) {
					break
				}
			}
			if left.Add(-1) == 0 {
				close(out)
			}
		}()
	}
	return out
}
