package nats

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// BenchmarkPublish: publishers (goroutines) on one node push to 1,000
// users; another node counts the deliveries. pushes/s runs from the first
// publish to the last delivery. Each Publish waits for its ack, so the
// throughput grows with the publishers in flight: they share messages and
// round trips.
func BenchmarkPublish(b *testing.B) {
	for _, publishers := range []int{1, 16, 128, 512} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) { benchPublish(b, publishers) })
	}
}

func benchPublish(b *testing.B, publishers int) {
	url := serverURL(b)
	prefix := testPrefix(b, url)
	pub := newNode(b, url, Options{Prefix: prefix})
	sub := newNode(b, url, Options{Prefix: prefix})
	var delivered atomic.Int64
	all := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := int64(b.N)
	if _, err := sub.Subscribe(ctx, sente.Handler{Push: func(sente.Push) {
		if delivered.Add(1) == n {
			close(all)
		}
	}}); err != nil {
		b.Fatal(err)
	}
	event := []byte(`[["chat/msg",{"from":"ada","text":"hello, world","n":12345}]]`)
	users := make([]string, 1000)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range publishers {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				if err := pub.Publish(ctx, sente.Push{Target: sente.ToUser, To: users[i%1000], Event: event}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d pushes delivered", delivered.Load(), n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pushes/s")
}
