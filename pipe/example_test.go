package pipe_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wsasync/wsasync/pipe"
)

// A connection's writer: messages from the connection's in channel and a
// heartbeat ticker are merged, coalesced into frames of up to 2 messages or
// 100 ms, and written to out.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan string)  // what the application sends
	out := make(chan string) // what goes on the wire

	go func() {
		msgs := pipe.Merge(ctx, in, pipe.Tick(ctx, time.Hour, "ping"))
		frames := pipe.Batch(ctx, msgs, pipe.BatchOptions{Size: 2, Window: 100 * time.Millisecond})
		for batch := range frames {
			if pipe.Send(ctx, out, strings.Join(batch, "|")) != nil {
				return
			}
		}
	}()

	in <- "hello"
	in <- "world" // a full frame leaves at once
	in <- "bye"   // leaves alone when its window ends
	fmt.Println(<-out)
	fmt.Println(<-out)
	// Output:
	// hello|world
	// bye
}

func ExampleMerge() {
	ctx := context.Background()
	a, b := make(chan int), make(chan int)
	go func() { a <- 1; close(a) }()
	go func() { b <- 2; close(b) }()
	sum := 0
	for v := range pipe.Merge(ctx, a, b) {
		sum += v
	}
	fmt.Println(sum)
	// Output: 3
}

func ExampleNewBroadcast() {
	ctx := context.Background()
	in := make(chan string)
	b := pipe.NewBroadcast(ctx, in)
	logs := b.Tap(pipe.Policy{})      // must see everything
	metrics := b.Tap(pipe.Sliding(1)) // only cares about the latest

	go func() {
		for _, ev := range []string{"login", "click", "logout"} {
			in <- ev
		}
		close(in)
	}()
	for ev := range logs.Out() {
		fmt.Println("log:", ev)
	}
	<-b.Done()
	for ev := range metrics.Out() {
		fmt.Println("latest:", ev, "dropped:", metrics.Dropped())
	}
	// Output:
	// log: login
	// log: click
	// log: logout
	// latest: logout dropped: 2
}

func ExampleTap_Close() {
	ctx := context.Background()
	in := make(chan int)
	b := pipe.NewBroadcast(ctx, in)
	all, firstTwo := b.Tap(pipe.Blocking(8)), b.Tap(pipe.Blocking(8))
	in <- 1
	in <- 2
	firstTwo.Close() // untap at run time; its channel closes
	in <- 3
	close(in)
	fmt.Println(pipe.Into(ctx, firstTwo.Out(), nil))
	fmt.Println(pipe.Into(ctx, all.Out(), nil))
	// Output:
	// [1 2] <nil>
	// [1 2 3] <nil>
}

func ExampleNewPubSub() {
	ctx := context.Background()
	in := make(chan string)
	topic := func(ev string) string { return strings.SplitN(ev, "/", 2)[0] }
	ps := pipe.NewPubSub(ctx, in, topic)
	chat := ps.Subscribe("chat", pipe.Blocking(8))

	go func() {
		for _, ev := range []string{"chat/hi", "presence/online", "chat/bye"} {
			in <- ev
		}
		close(in)
	}()
	for ev := range chat.Out() {
		fmt.Println(ev)
	}
	fmt.Println("no subscriber:", ps.Dropped())
	// Output:
	// chat/hi
	// chat/bye
	// no subscriber: 1
}

func ExampleMap() {
	ctx := context.Background()
	in := make(chan int)
	go func() { in <- 1; in <- 2; close(in) }()
	for s := range pipe.Map(ctx, in, func(v int) string { return strings.Repeat("*", v) }) {
		fmt.Println(s)
	}
	// Output:
	// *
	// **
}

func ExampleFilter() {
	ctx := context.Background()
	in := make(chan int)
	go func() {
		for v := range 6 {
			in <- v
		}
		close(in)
	}()
	evens, _ := pipe.Into(ctx, pipe.Filter(ctx, in, func(v int) bool { return v%2 == 0 }), nil)
	fmt.Println(evens)
	// Output: [0 2 4]
}

func ExampleSplit() {
	ctx := context.Background()
	in := make(chan int)
	go func() {
		for v := range 6 {
			in <- v
		}
		close(in)
	}()
	small, big := pipe.Split(ctx, in, func(v int) bool { return v < 3 })
	done := make(chan []int)
	go func() { vs, _ := pipe.Into(ctx, big, nil); done <- vs }()
	fmt.Println(pipe.Into(ctx, small, nil))
	fmt.Println(<-done)
	// Output:
	// [0 1 2] <nil>
	// [3 4 5]
}

func ExampleTake() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops Tick
	ticks := pipe.Tick(ctx, time.Millisecond, "tick")
	first, _ := pipe.Into(ctx, pipe.Take(ctx, ticks, 2), nil)
	fmt.Println(first)
	// Output: [tick tick]
}

func ExampleInto() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	in := make(chan int, 2)
	in <- 1
	in <- 2 // in is never closed: Into returns when ctx ends
	got, err := pipe.Into(ctx, in, nil)
	fmt.Println(got, err)
	// Output: [1 2] context deadline exceeded
}

func ExampleBatch() {
	ctx := context.Background()
	in := make(chan int)
	go func() {
		for v := range 7 {
			in <- v
		}
		close(in)
	}()
	for batch := range pipe.Batch(ctx, in, pipe.BatchOptions{Size: 3, Window: 30 * time.Millisecond}) {
		fmt.Println(batch)
	}
	// Output:
	// [0 1 2]
	// [3 4 5]
	// [6]
}

func ExampleBuffer() {
	ctx := context.Background()
	in := make(chan int)
	latest := pipe.Buffer(ctx, in, pipe.Sliding(2))
	for v := range 5 {
		in <- v // never waits: old values make room
	}
	close(in)
	<-latest.Done()
	for v := range latest.Out() {
		fmt.Println(v)
	}
	fmt.Println("dropped:", latest.Dropped())
	// Output:
	// 3
	// 4
	// dropped: 3
}

func ExampleParallel() {
	ctx := context.Background()
	in := make(chan int)
	go func() {
		for v := range 5 {
			in <- v
		}
		close(in)
	}()
	square := func(ctx context.Context, v int) (int, error) { return v * v, nil }
	out, wait := pipe.Parallel(ctx, in, 3, square)
	for v := range out {
		fmt.Println(v) // in input order
	}
	fmt.Println(wait())
	// Output:
	// 0
	// 1
	// 4
	// 9
	// 16
	// <nil>
}

func ExampleTimeout() {
	ctx := context.Background()
	replies := make(chan string) // nobody answers
	timeout, stop := pipe.Timeout(ctx, 10*time.Millisecond)
	defer stop()
	select {
	case r := <-replies:
		fmt.Println(r)
	case <-timeout:
		fmt.Println("timed out")
	}
	// Output: timed out
}

func ExampleTick() {
	ctx, cancel := context.WithCancel(context.Background())
	heartbeats := pipe.Tick(ctx, time.Millisecond, "ping")
	fmt.Println(<-heartbeats, <-heartbeats)
	cancel()
	_, open := <-heartbeats
	for open {
		_, open = <-heartbeats
	}
	fmt.Println("stopped")
	// Output:
	// ping ping
	// stopped
}

func ExampleSend() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	full := make(chan int) // nobody receives
	fmt.Println(pipe.Send(ctx, full, 1))
	// Output: context deadline exceeded
}

func ExampleRecv() {
	ctx := context.Background()
	ch := make(chan int, 1)
	ch <- 42
	close(ch)
	fmt.Println(pipe.Recv(ctx, ch))
	fmt.Println(pipe.Recv(ctx, ch))
	// Output:
	// 42 <nil>
	// 0 pipe: channel closed
}
