package pipe_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsasync/wsasync/pipe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// guard bounds how long a test waits for something that must happen; it
// is a hang detector, not a synchronisation.
const guard = 10 * time.Second

// collect reads ch until it closes.
func collect[T any](t *testing.T, ch <-chan T) []T {
	t.Helper()
	var got []T
	deadline := time.NewTimer(guard)
	defer deadline.Stop()
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, v)
		case <-deadline.C:
			t.Fatalf("channel not closed after %v; got %v", guard, got)
		}
	}
}

// next receives one value from ch, failing if ch is closed.
func next[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-time.After(guard):
		t.Fatalf("no value after %v", guard)
	}
	panic("unreachable")
}

func wait(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatalf("not done after %v", guard)
	}
}

// source sends vs on a fresh channel, then closes it. It stops early when
// ctx ends.
func source[T any](ctx context.Context, vs ...T) <-chan T {
	ch := make(chan T)
	go func() {
		defer close(ch)
		for _, v := range vs {
			select {
			case ch <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// filled returns a closed channel holding vs.
func filled[T any](vs ...T) <-chan T {
	ch := make(chan T, len(vs))
	for _, v := range vs {
		ch <- v
	}
	close(ch)
	return ch
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestMerge(t *testing.T) {
	ctx := t.Context()
	a, b, c := source(ctx, seq(1, 50)...), source(ctx, seq(101, 150)...), source(ctx, seq(201, 250)...)
	got := collect(t, pipe.Merge(ctx, a, nil, b, c))
	if len(got) != 150 {
		t.Fatalf("got %d values, want 150", len(got))
	}
	// Each input's values keep their order.
	var last [3]int
	for _, v := range got {
		i := v / 100
		if v <= last[i] {
			t.Fatalf("%d after %d: input order lost", v, last[i])
		}
		last[i] = v
	}
	if last != [3]int{50, 150, 250} {
		t.Fatalf("last values %v", last)
	}
}

func TestMergeNoInputs(t *testing.T) {
	if got := collect(t, pipe.Merge[int](t.Context())); len(got) != 0 {
		t.Fatal(got)
	}
	if got := collect(t, pipe.Merge[int](t.Context(), nil)); len(got) != 0 {
		t.Fatal(got)
	}
}

// outs starts a helper on in and returns its outputs.
type outs func(ctx context.Context, in <-chan int) []<-chan int

func one(ch <-chan int) []<-chan int { return []<-chan int{ch} }

// TestCancelClosesOutputs checks that every helper closes its outputs when
// ctx ends, both while waiting for input and while holding values nobody
// reads.
func TestCancelClosesOutputs(t *testing.T) {
	id := func(v int) int { return v }
	even := func(v int) bool { return v%2 == 0 }
	tests := []struct {
		name  string
		start outs
	}{
		{"Merge", func(ctx context.Context, in <-chan int) []<-chan int { return one(pipe.Merge(ctx, in, in)) }},
		{"Map", func(ctx context.Context, in <-chan int) []<-chan int { return one(pipe.Map(ctx, in, id)) }},
		{"Filter", func(ctx context.Context, in <-chan int) []<-chan int { return one(pipe.Filter(ctx, in, even)) }},
		{"Split", func(ctx context.Context, in <-chan int) []<-chan int {
			y, n := pipe.Split(ctx, in, even)
			return []<-chan int{y, n}
		}},
		{"Take", func(ctx context.Context, in <-chan int) []<-chan int { return one(pipe.Take(ctx, in, 10)) }},
		{"Batch", func(ctx context.Context, in <-chan int) []<-chan int {
			batches := pipe.Batch(ctx, in, pipe.BatchOptions{Size: 1})
			return one(pipe.Map(ctx, batches, func(b []int) int { return b[0] }))
		}},
		{"Buffer", func(ctx context.Context, in <-chan int) []<-chan int {
			return one(pipe.Buffer(ctx, in, pipe.Blocking(1)).Out())
		}},
		{"Tick", func(ctx context.Context, in <-chan int) []<-chan int { return one(pipe.Tick(ctx, time.Millisecond, 1)) }},
		{"Parallel", parallelOut},
		{"Broadcast", func(ctx context.Context, in <-chan int) []<-chan int {
			b := pipe.NewBroadcast(ctx, in)
			return []<-chan int{b.Tap(pipe.Blocking(0)).Out(), b.Tap(pipe.Sliding(1)).Out()}
		}},
		{"PubSub", func(ctx context.Context, in <-chan int) []<-chan int {
			ps := pipe.NewPubSub(ctx, in, func(v int) int { return v % 2 })
			return []<-chan int{ps.Subscribe(0, pipe.Blocking(0)).Out(), ps.Subscribe(1, pipe.Dropping(1)).Out()}
		}},
	}
	for _, tt := range tests {
		for _, busy := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/busy=%v", tt.name, busy), func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				in := make(chan int) // never closed
				outs := tt.start(ctx, in)
				if busy {
					// Hand over values nobody reads, so the helper is
					// stuck sending when ctx ends.
					for v := range 4 {
						select {
						case in <- v:
						case <-time.After(10 * time.Millisecond):
							// The helper stopped reading: that's the point.
						}
					}
				}
				cancel()
				for _, out := range outs {
					collect(t, out)
				}
			})
		}
	}
}

func parallelOut(ctx context.Context, in <-chan int) []<-chan int {
	out, wait := pipe.Parallel(ctx, in, 2, func(ctx context.Context, v int) (int, error) { return v, nil })
	// Check wait's error in the background: it must be ctx's.
	res := make(chan int)
	go func() {
		defer close(res)
		for v := range out {
			res <- v
		}
		if err := wait(); !errors.Is(err, context.Canceled) {
			panic(err)
		}
	}()
	return []<-chan int{res}
}

func TestTransforms(t *testing.T) {
	ctx := t.Context()
	even := func(v int) bool { return v%2 == 0 }

	if got, want := collect(t, pipe.Map(ctx, source(ctx, 1, 2, 3), func(v int) string { return string(rune('a' + v - 1)) })), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("Map: %v, want %v", got, want)
	}
	if got, want := collect(t, pipe.Filter(ctx, source(ctx, seq(1, 7)...), even)), []int{2, 4, 6}; !slices.Equal(got, want) {
		t.Errorf("Filter: %v, want %v", got, want)
	}

	yes, no := pipe.Split(ctx, source(ctx, seq(1, 7)...), even)
	var odd []int
	readNo := make(chan struct{})
	go func() {
		defer close(readNo)
		for v := range no {
			odd = append(odd, v)
		}
	}()
	evens := collect(t, yes)
	wait(t, readNo)
	if !slices.Equal(evens, []int{2, 4, 6}) || !slices.Equal(odd, []int{1, 3, 5, 7}) {
		t.Errorf("Split: %v %v", evens, odd)
	}
}

func TestTake(t *testing.T) {
	ctx := t.Context()
	in := source(ctx, seq(1, 10)...)
	if got := collect(t, pipe.Take(ctx, in, 3)); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("Take: %v", got)
	}
	// Take left the rest of in alone.
	if v := next(t, in); v != 4 {
		t.Fatalf("after Take, in gave %d, want 4", v)
	}
	if got := collect(t, pipe.Take(ctx, source(ctx, 1, 2), 5)); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("Take past the end: %v", got)
	}
	if got := collect(t, pipe.Take(ctx, in, 0)); len(got) != 0 {
		t.Fatalf("Take 0: %v", got)
	}
}

func TestInto(t *testing.T) {
	got, err := pipe.Into(t.Context(), source(t.Context(), 2, 3), []int{1})
	if err != nil || !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("Into: %v, %v", got, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	got, err = pipe.Into(ctx, make(chan int), nil)
	if !errors.Is(err, context.Canceled) || len(got) != 0 {
		t.Fatalf("Into after cancel: %v, %v", got, err)
	}
}

func TestBufferPolicies(t *testing.T) {
	tests := []struct {
		name        string
		policy      pipe.Policy
		want        []int
		wantDropped uint64
	}{
		{"sliding", pipe.Sliding(2), []int{4, 5}, 3},
		{"dropping", pipe.Dropping(2), []int{1, 2}, 3},
		{"sliding0", pipe.Sliding(0), []int{5}, 4},
		{"dropping0", pipe.Dropping(0), nil, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := pipe.Buffer(t.Context(), filled(seq(1, 5)...), tt.policy)
			wait(t, b.Done()) // every value handled before anyone reads
			if got := collect(t, b.Out()); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if got := b.Dropped(); got != tt.wantDropped {
				t.Errorf("Dropped() = %d, want %d", got, tt.wantDropped)
			}
		})
	}
}

func TestBufferBlocking(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	b := pipe.Buffer(ctx, in, pipe.Blocking(2))
	// Nobody reads yet: the buffer takes 2 values plus one in hand, then
	// stops reading in.
	for v := range 3 {
		in <- v
	}
	select {
	case in <- 3:
		t.Fatal("a full blocking buffer kept reading")
	case <-time.After(20 * time.Millisecond):
	}
	go func() {
		in <- 3
		close(in)
	}()
	if got := collect(t, b.Out()); !slices.Equal(got, []int{0, 1, 2, 3}) || b.Dropped() != 0 {
		t.Fatalf("got %v, dropped %d", got, b.Dropped())
	}
}

func TestBroadcast(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	b := pipe.NewBroadcast(ctx, in)
	in <- 0 // no taps yet
	t1, t2 := b.Tap(pipe.Policy{}), b.Tap(pipe.Blocking(4))
	go func() {
		for _, v := range seq(1, 20) {
			in <- v
		}
		close(in)
	}()
	var got2 []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := range t2.Out() {
			got2 = append(got2, v)
		}
	}()
	got1 := collect(t, t1.Out())
	wait(t, done)
	if !slices.Equal(got1, seq(1, 20)) || !slices.Equal(got2, seq(1, 20)) {
		t.Fatalf("taps got %v and %v", got1, got2)
	}
	if b.Dropped() != 1 || t1.Dropped() != 0 || t2.Dropped() != 0 {
		t.Fatalf("dropped %d %d %d, want 1 0 0", b.Dropped(), t1.Dropped(), t2.Dropped())
	}
	wait(t, b.Done())
	// A tap added after the broadcast stopped is closed.
	if got := collect(t, b.Tap(pipe.Policy{}).Out()); len(got) != 0 {
		t.Fatal(got)
	}
}

func TestBroadcastTapPolicies(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	b := pipe.NewBroadcast(ctx, in)
	fast := b.Tap(pipe.Policy{})
	sliding, dropping := b.Tap(pipe.Sliding(2)), b.Tap(pipe.Dropping(2))
	// sliding and dropping are never read while the values flow: they
	// must not hold back fast.
	go func() {
		for _, v := range seq(1, 100) {
			in <- v
		}
		close(in)
	}()
	if got := collect(t, fast.Out()); !slices.Equal(got, seq(1, 100)) {
		t.Fatalf("fast tap got %v", got)
	}
	wait(t, b.Done())
	if got := collect(t, sliding.Out()); !slices.Equal(got, []int{99, 100}) || sliding.Dropped() != 98 {
		t.Errorf("sliding tap got %v, dropped %d", got, sliding.Dropped())
	}
	if got := collect(t, dropping.Out()); !slices.Equal(got, []int{1, 2}) || dropping.Dropped() != 98 {
		t.Errorf("dropping tap got %v, dropped %d", got, dropping.Dropped())
	}
}

// TestBroadcastTapCloseWhileStuck closes a blocking tap nobody reads while
// the broadcast waits on it, and adds a tap meanwhile.
func TestBroadcastTapCloseWhileStuck(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	b := pipe.NewBroadcast(ctx, in)
	stuck := b.Tap(pipe.Policy{})
	other := b.Tap(pipe.Blocking(10))
	in <- 1 // the broadcast now waits on stuck
	late := b.Tap(pipe.Blocking(10))
	stuck.Close()
	stuck.Close()
	if got := collect(t, stuck.Out()); len(got) != 0 {
		t.Fatalf("closed tap got %v", got)
	}
	in <- 2
	close(in)
	if got := collect(t, other.Out()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("other tap got %v", got)
	}
	if got := collect(t, late.Out()); !slices.Equal(got, []int{2}) {
		t.Errorf("late tap got %v", got)
	}
}

func TestBroadcastUntap(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	b := pipe.NewBroadcast(ctx, in)
	taps := []*pipe.Tap[int]{b.Tap(pipe.Blocking(10)), b.Tap(pipe.Blocking(10)), b.Tap(pipe.Blocking(10))}
	in <- 1
	taps[0].Close()
	in <- 2
	taps[2].Close()
	in <- 3
	taps[1].Close()
	in <- 4 // no taps left
	close(in)
	wait(t, b.Done())
	want := [][]int{{1}, {1, 2, 3}, {1, 2}}
	for i, tap := range taps {
		if got := collect(t, tap.Out()); !slices.Equal(got, want[i]) {
			t.Errorf("tap %d got %v, want %v", i, got, want[i])
		}
	}
	if b.Dropped() != 1 {
		t.Errorf("Dropped() = %d, want 1", b.Dropped())
	}
}

func TestPubSub(t *testing.T) {
	ctx := t.Context()
	in := make(chan string)
	ps := pipe.NewPubSub(ctx, in, func(s string) byte { return s[0] })
	a1, a2, b := ps.Subscribe('a', pipe.Blocking(10)), ps.Subscribe('a', pipe.Blocking(10)), ps.Subscribe('b', pipe.Blocking(10))
	for _, s := range []string{"a1", "b1", "c1", "a2"} {
		in <- s
	}
	a2.Close()
	b.Close()
	for _, s := range []string{"a3", "b2"} {
		in <- s
	}
	b2 := ps.Subscribe('b', pipe.Sliding(1))
	for _, s := range []string{"b3", "b4"} {
		in <- s
	}
	close(in)
	wait(t, ps.Done())
	for _, c := range []struct {
		tap     *pipe.Tap[string]
		want    []string
		dropped uint64
	}{
		{a1, []string{"a1", "a2", "a3"}, 0},
		{a2, []string{"a1", "a2"}, 0},
		{b, []string{"b1"}, 0},
		{b2, []string{"b4"}, 1},
	} {
		if got := collect(t, c.tap.Out()); !slices.Equal(got, c.want) || c.tap.Dropped() != c.dropped {
			t.Errorf("got %v, dropped %d; want %v, %d", got, c.tap.Dropped(), c.want, c.dropped)
		}
	}
	if ps.Dropped() != 2 { // c1, b2
		t.Errorf("Dropped() = %d, want 2", ps.Dropped())
	}
}

func TestBatchSize(t *testing.T) {
	ctx := t.Context()
	for _, reuse := range []bool{false, true} {
		var got [][]int
		for b := range pipe.Batch(ctx, source(ctx, seq(1, 7)...), pipe.BatchOptions{Size: 3, Reuse: reuse}) {
			got = append(got, slices.Clone(b))
		}
		want := [][]int{{1, 2, 3}, {4, 5, 6}, {7}}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("reuse=%v: got %v, want %v", reuse, got, want)
		}
	}
	// No limits: one batch when in closes.
	if got := collect(t, pipe.Batch(ctx, source(ctx, 1, 2, 3), pipe.BatchOptions{})); len(got) != 1 || !slices.Equal(got[0], []int{1, 2, 3}) {
		t.Errorf("no limits: %v", got)
	}
	if got := collect(t, pipe.Batch(ctx, source[int](ctx), pipe.BatchOptions{Size: 2, Window: time.Millisecond})); len(got) != 0 {
		t.Errorf("empty input: %v", got)
	}
}

func TestBatchReuse(t *testing.T) {
	ctx := t.Context()
	out := pipe.Batch(ctx, source(ctx, seq(1, 8)...), pipe.BatchOptions{Size: 2, Reuse: true})
	var got [][]int
	var first []*int
	for b := range out {
		got = append(got, slices.Clone(b))
		first = append(first, &b[0])
	}
	if !slices.EqualFunc(got, [][]int{{1, 2}, {3, 4}, {5, 6}, {7, 8}}, slices.Equal) {
		t.Fatalf("got %v", got)
	}
	if first[0] != first[2] || first[1] != first[3] || first[0] == first[1] {
		t.Fatal("Reuse does not alternate two slices")
	}
}

// TestBatchWindow: a batch that does not fill up leaves when its window,
// counted from its first value, ends; not before.
func TestBatchWindow(t *testing.T) {
	ctx := t.Context()
	const window = 20 * time.Millisecond
	in := make(chan int)
	out := pipe.Batch(ctx, in, pipe.BatchOptions{Size: 100, Window: window})
	for round := range 3 {
		start := time.Now()
		in <- round
		b := next(t, out)
		if elapsed := time.Since(start); elapsed < window {
			t.Errorf("round %d: batch left after %v, before its window", round, elapsed)
		}
		if !slices.Equal(b, []int{round}) {
			t.Errorf("round %d: got %v", round, b)
		}
	}
	close(in)
	if got := collect(t, out); len(got) != 0 {
		t.Fatalf("extra batches %v", got)
	}
}

// TestBatchFullBeforeWindow: a full batch does not wait for its window.
func TestBatchFullBeforeWindow(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	in := make(chan int)
	out := pipe.Batch(ctx, in, pipe.BatchOptions{Size: 2, Window: time.Hour})
	in <- 1
	in <- 2
	if b := next(t, out); !slices.Equal(b, []int{1, 2}) {
		t.Fatalf("got %v", b)
	}
	in <- 3
	cancel() // the partial batch [3] is discarded
	if got := collect(t, out); len(got) != 0 {
		t.Fatalf("got %v after cancel", got)
	}
}

// TestBatchStructure: whatever the timing, batches are non-empty, no larger
// than Size, and hold the input in order.
func TestBatchStructure(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	go func() {
		defer close(in)
		for i := range 2000 {
			in <- i
		}
	}()
	var all []int
	for b := range pipe.Batch(ctx, in, pipe.BatchOptions{Size: 7, Window: 50 * time.Microsecond}) {
		if len(b) == 0 || len(b) > 7 {
			t.Fatalf("batch of %d", len(b))
		}
		all = append(all, b...)
	}
	if !slices.Equal(all, seq(0, 1999)) {
		t.Fatal("values lost or reordered")
	}
}

func TestParallelOrder(t *testing.T) {
	ctx := t.Context()
	// Value 0 finishes only after value 3 has, so results complete out of
	// order; they must still leave in order.
	threeDone := make(chan struct{})
	out, wait := pipe.Parallel(ctx, source(ctx, seq(0, 20)...), 4, func(ctx context.Context, v int) (int, error) {
		switch v {
		case 0:
			<-threeDone
		case 3:
			close(threeDone)
		}
		return v * 10, nil
	})
	got := collect(t, out)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	want := make([]int, 21)
	for i := range want {
		want[i] = i * 10
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	if err := wait(); err != nil {
		t.Fatal("second wait:", err)
	}
}

func TestParallelFirstErrorCancels(t *testing.T) {
	ctx := t.Context()
	boom := errors.New("boom")
	var cancelled sync.WaitGroup
	cancelled.Add(2)
	out, wait := pipe.Parallel(ctx, source(ctx, seq(0, 100)...), 3, func(ctx context.Context, v int) (int, error) {
		switch v {
		case 0, 1:
			// Only the error can end these.
			<-ctx.Done()
			cancelled.Done()
			return 0, ctx.Err()
		case 2:
			return 0, boom
		}
		return v, nil
	})
	if got := collect(t, out); len(got) != 0 {
		t.Fatalf("results before the failed ones: %v", got)
	}
	if err := wait(); !errors.Is(err, boom) {
		t.Fatalf("wait() = %v, want boom", err)
	}
	cancelled.Wait()
}

func TestParallelCtxCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	in := make(chan int)
	out, wait := pipe.Parallel(ctx, in, 2, func(ctx context.Context, v int) (int, error) { return v, nil })
	in <- 1
	if v := next(t, out); v != 1 {
		t.Fatal(v)
	}
	cancel()
	collect(t, out)
	if err := wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait() = %v", err)
	}
}

func TestSendRecv(t *testing.T) {
	ctx := t.Context()
	ch := make(chan int, 1)
	if err := pipe.Send(ctx, ch, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := pipe.Recv(ctx, ch); v != 1 || err != nil {
		t.Fatal(v, err)
	}
	close(ch)
	if _, err := pipe.Recv(ctx, ch); !errors.Is(err, pipe.ErrClosed) {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := pipe.Send(short, make(chan int), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if _, err := pipe.Recv(short, make(chan int)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// An ended ctx wins even over a ready channel.
	ready := make(chan int, 1)
	if err := pipe.Send(short, ready, 1); err == nil || len(ready) != 0 {
		t.Fatal("sent after ctx ended")
	}
}

func TestTimeout(t *testing.T) {
	ctx := t.Context()
	start := time.Now()
	timeout, stop := pipe.Timeout(ctx, 5*time.Millisecond)
	defer stop()
	wait(t, timeout)
	if time.Since(start) < 5*time.Millisecond {
		t.Fatal("timed out early")
	}

	timeout, stop = pipe.Timeout(ctx, time.Hour)
	stop()
	wait(t, timeout)

	cctx, cancel := context.WithCancel(ctx)
	timeout, stop = pipe.Timeout(cctx, time.Hour)
	defer stop()
	cancel()
	wait(t, timeout)
}

func TestTick(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ticks := pipe.Tick(ctx, time.Millisecond, "tick")
	for range 3 {
		if v := next(t, ticks); v != "tick" {
			t.Fatal(v)
		}
	}
	cancel()
	collect(t, ticks)
}

// TestBroadcastChurn adds and removes taps while values flow. A blocking
// tap must see consecutive values (nothing lost between the first and the
// last it gets), a sliding one increasing values.
func TestBroadcastChurn(t *testing.T) {
	ctx := t.Context()
	in := make(chan int)
	b := pipe.NewBroadcast(ctx, in)
	go func() {
		defer close(in)
		for v := range 20000 {
			in <- v
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := 0; ; round++ {
				policy := pipe.Blocking(round % 3)
				if w%2 == 1 {
					policy = pipe.Sliding(1 + round%3)
				}
				tap := b.Tap(policy)
				last, n := -1, 0
				for v := range tap.Out() {
					if last >= 0 && (v <= last || w%2 == 0 && v != last+1) {
						t.Errorf("tap %d: %d after %d", w, v, last)
						return
					}
					last = v
					if n++; n == 10+round%20 {
						tap.Close() // keep reading until Out closes
					}
				}
				select {
				case <-b.Done():
					return
				default:
				}
			}
		})
	}
	wg.Wait()
}
