package pipe

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Parallel applies f to the values of in on workers goroutines (at least
// one) and sends the results in input order.
//
// The first error f returns cancels the stage: the ctx given to f is
// cancelled, the output is closed (results not yet sent are discarded),
// and wait returns that error. wait blocks until every goroutine of the
// stage has returned; it returns nil when in closed and every result was
// sent, ctx.Err() when ctx ended first, and may be called any number of
// times. f should return soon after its ctx ends.
//
// Backpressure: at most 2*workers values are in flight (being worked on,
// or done and waiting for an earlier one to finish); when the consumer or
// an early slow value holds them up, Parallel stops reading in. A consumer
// that stops reading must cancel ctx.
func Parallel[T, U any](ctx context.Context, in <-chan T, workers int, f func(context.Context, T) (U, error)) (out <-chan U, wait func() error) {
	workers = max(workers, 1)
	slots := 2 * workers
	g, gctx := errgroup.WithContext(ctx)
	done := gctx.Done()

	// A slot carries one value through the stage and is reused, so the
	// stage allocates nothing per value. The dispatcher takes a free slot,
	// queues it on order (which keeps input order) and hands it to a
	// worker; the collector waits for the slots in order.
	type slot struct {
		in    T
		out   U
		ready chan struct{}
	}
	free := make(chan *slot, slots)
	for range slots {
		free <- &slot{ready: make(chan struct{}, 1)}
	}
	order := make(chan *slot, slots)
	jobs := make(chan *slot)
	results := make(chan U)

	g.Go(func() error {
		defer close(order)
		defer close(jobs)
		for {
			v, ok := recv(done, in)
			if !ok {
				return gctx.Err()
			}
			var s *slot
			select {
			case s = <-free:
			case <-done:
				return gctx.Err()
			}
			s.in = v
			order <- s // never waits: at most slots slots exist
			if !send(done, jobs, s) {
				return gctx.Err()
			}
		}
	})
	for range workers {
		g.Go(func() error {
			var zero T
			for s := range jobs {
				u, err := f(gctx, s.in)
				if err != nil {
					return err
				}
				s.in, s.out = zero, u
				s.ready <- struct{}{}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(results)
		var zero U
		for s := range order {
			select {
			case <-s.ready:
			case <-done:
				return gctx.Err()
			}
			u := s.out
			s.out = zero
			free <- s // never waits
			if !send(done, results, u) {
				return gctx.Err()
			}
		}
		return nil
	})

	// Wait here rather than in wait, so that gctx is released even if the
	// caller never calls wait.
	var err error
	finished := make(chan struct{})
	go func() {
		err = g.Wait()
		close(finished)
	}()
	return results, func() error {
		<-finished
		return err
	}
}
