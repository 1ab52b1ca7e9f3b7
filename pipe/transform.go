package pipe

import "context"

// Map sends f(v) for each value v of in, in order.
//
// Backpressure: Map holds one value while the consumer is slow and stops
// reading in. The output is closed when in closes or ctx ends.
func Map[T, U any](ctx context.Context, in <-chan T, f func(T) U) <-chan U {
	out := make(chan U)
	go func() {
		defer close(out)
		done := ctx.Done()
		for {
			v, ok := recv(done, in)
			if !ok || !send(done, out, f(v)) {
				return
			}
		}
	}()
	return out
}

// Filter sends the values v of in for which keep(v) is true, in order.
//
// Backpressure: Filter holds one value while the consumer is slow and
// stops reading in. The output is closed when in closes or ctx ends.
func Filter[T any](ctx context.Context, in <-chan T, keep func(T) bool) <-chan T {
	out := make(chan T)
	go func() {
		defer close(out)
		done := ctx.Done()
		for {
			v, ok := recv(done, in)
			if !ok {
				return
			}
			if keep(v) && !send(done, out, v) {
				return
			}
		}
	}()
	return out
}

// Split sends the values v of in for which pred(v) is true on yes and the
// others on no, each in order.
//
// Backpressure: Split waits for the consumer of the output a value goes
// to, so a slow or absent reader of one output stalls the other as well;
// read both, or put a [Buffer] behind the slow one. Both outputs are
// closed when in closes or ctx ends.
func Split[T any](ctx context.Context, in <-chan T, pred func(T) bool) (yes, no <-chan T) {
	y, n := make(chan T), make(chan T)
	go func() {
		defer close(y)
		defer close(n)
		done := ctx.Done()
		for {
			v, ok := recv(done, in)
			if !ok {
				return
			}
			out := n
			if pred(v) {
				out = y
			}
			if !send(done, out, v) {
				return
			}
		}
	}()
	return y, n
}

// Take sends the first n values of in, then closes its output and stops
// reading in; the rest of in is left to whoever else reads it.
//
// Backpressure: Take holds one value while the consumer is slow and stops
// reading in. The output is closed early when in closes or ctx ends.
func Take[T any](ctx context.Context, in <-chan T, n int) <-chan T {
	out := make(chan T)
	go func() {
		defer close(out)
		done := ctx.Done()
		for range n {
			v, ok := recv(done, in)
			if !ok || !send(done, out, v) {
				return
			}
		}
	}()
	return out
}

// Into appends the values of in to dst until in closes and returns the
// result. If ctx ends first, it returns what it has with ctx.Err(). Into
// runs on the caller's goroutine: it is the end of a pipeline.
func Into[T any](ctx context.Context, in <-chan T, dst []T) ([]T, error) {
	done := ctx.Done()
	for {
		select {
		case v, ok := <-in:
			if !ok {
				return dst, nil
			}
			dst = append(dst, v)
		case <-done:
			return dst, ctx.Err()
		}
	}
}
