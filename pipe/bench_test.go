package pipe_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/wsasync/wsasync/pipe"
)

// Each benchmark moves b.N values through a helper and through a
// hand-written loop doing the same thing (same channels, same buffer
// sizes, same ctx checks), so ns/op and allocs/op are per value.

const (
	benchInputs = 4
	benchTaps   = 4
	benchBuf    = 64
)

// produce sends n values spread over ins, then closes them.
func produce(n int, ins []chan int) {
	for i, in := range ins {
		go func() {
			defer close(in)
			for v := i; v < n; v += len(ins) {
				in <- v
			}
		}()
	}
}

func benchChans(k int) ([]chan int, []<-chan int) {
	ins := make([]chan int, k)
	ros := make([]<-chan int, k)
	for i := range ins {
		ins[i] = make(chan int, benchBuf)
		ros[i] = ins[i]
	}
	return ins, ros
}

func BenchmarkMerge(b *testing.B) {
	run := func(b *testing.B, merge func(ctx context.Context, ins []<-chan int) <-chan int) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ins, ros := benchChans(benchInputs)
		b.ReportAllocs()
		b.ResetTimer()
		produce(b.N, ins)
		n := 0
		for range merge(ctx, ros) {
			n++
		}
		if n != b.N {
			b.Fatalf("got %d values, want %d", n, b.N)
		}
	}
	b.Run("impl=handwritten", func(b *testing.B) {
		run(b, func(ctx context.Context, ins []<-chan int) <-chan int {
			out := make(chan int)
			var wg sync.WaitGroup
			for _, in := range ins {
				wg.Go(func() {
					for {
						select {
						case v, ok := <-in:
							if !ok {
								return
							}
							select {
							case out <- v:
							case <-ctx.Done():
								return
							}
						case <-ctx.Done():
							return
						}
					}
				})
			}
			go func() {
				wg.Wait()
				close(out)
			}()
			return out
		})
	})
	b.Run("impl=helper", func(b *testing.B) {
		run(b, func(ctx context.Context, ins []<-chan int) <-chan int { return pipe.Merge(ctx, ins...) })
	})
}

func BenchmarkBroadcast(b *testing.B) {
	run := func(b *testing.B, broadcast func(ctx context.Context, in <-chan int) []<-chan int) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ins, ros := benchChans(1)
		outs := broadcast(ctx, ros[0])
		b.ReportAllocs()
		b.ResetTimer()
		produce(b.N, ins)
		var wg sync.WaitGroup
		for _, out := range outs {
			wg.Go(func() {
				n := 0
				for range out {
					n++
				}
				if n != b.N {
					b.Errorf("got %d values, want %d", n, b.N)
				}
			})
		}
		wg.Wait()
	}
	b.Run("impl=handwritten", func(b *testing.B) {
		run(b, func(ctx context.Context, in <-chan int) []<-chan int {
			outs := make([]chan int, benchTaps)
			ros := make([]<-chan int, benchTaps)
			for i := range outs {
				outs[i] = make(chan int, benchBuf)
				ros[i] = outs[i]
			}
			go func() {
				defer func() {
					for _, out := range outs {
						close(out)
					}
				}()
				for {
					select {
					case v, ok := <-in:
						if !ok {
							return
						}
						for _, out := range outs {
							select {
							case out <- v:
							case <-ctx.Done():
								return
							}
						}
					case <-ctx.Done():
						return
					}
				}
			}()
			return ros
		})
	})
	b.Run("impl=helper", func(b *testing.B) {
		run(b, func(ctx context.Context, in <-chan int) []<-chan int {
			m := pipe.NewBroadcast(ctx, in)
			var outs []<-chan int
			for range benchTaps {
				outs = append(outs, m.Tap(pipe.Blocking(benchBuf)).Out())
			}
			return outs
		})
	})
}

func BenchmarkBatch(b *testing.B) {
	const size, window = 64, 30 * time.Millisecond
	run := func(b *testing.B, batch func(ctx context.Context, in <-chan int) <-chan []int) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ins, ros := benchChans(1)
		b.ReportAllocs()
		b.ResetTimer()
		produce(b.N, ins)
		n := 0
		for batch := range batch(ctx, ros[0]) {
			n += len(batch)
		}
		if n != b.N {
			b.Fatalf("got %d values, want %d", n, b.N)
		}
	}
	b.Run("impl=handwritten", func(b *testing.B) {
		run(b, func(ctx context.Context, in <-chan int) <-chan []int {
			out := make(chan []int)
			go func() {
				defer close(out)
				timer := time.NewTimer(window)
				timer.Stop()
				defer timer.Stop()
				var due <-chan time.Time
				var batch []int
				for {
					select {
					case v, ok := <-in:
						if !ok {
							if len(batch) > 0 {
								select {
								case out <- batch:
								case <-ctx.Done():
								}
							}
							return
						}
						if batch == nil {
							batch = make([]int, 0, size)
						}
						batch = append(batch, v)
						if len(batch) == 1 {
							timer.Reset(window)
							due = timer.C
						}
						if len(batch) < size {
							continue
						}
						timer.Stop()
						due = nil
					case <-due:
						due = nil
					case <-ctx.Done():
						return
					}
					select {
					case out <- batch:
						batch = nil
					case <-ctx.Done():
						return
					}
				}
			}()
			return out
		})
	})
	b.Run("impl=helper", func(b *testing.B) {
		run(b, func(ctx context.Context, in <-chan int) <-chan []int {
			return pipe.Batch(ctx, in, pipe.BatchOptions{Size: size, Window: window})
		})
	})
	b.Run("impl=helper-reuse", func(b *testing.B) {
		run(b, func(ctx context.Context, in <-chan int) <-chan []int {
			return pipe.Batch(ctx, in, pipe.BatchOptions{Size: size, Window: window, Reuse: true})
		})
	})
}
