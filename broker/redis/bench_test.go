package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// BenchmarkPublish: many goroutines publish on one node, other nodes count
// the deliveries; pushes/s is the rate at which the pushes reach them all.
// It also reports the CPU each push costs, which the machine's load blurs
// less: this process (all the nodes) and Redis.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{1, 3} {
		b.Run(fmt.Sprint("subscribers=", subs), func(b *testing.B) { benchPublish(b, subs) })
	}
}

func benchPublish(b *testing.B, subs int) {
	rdb := needRedis(b)
	opts := Options{Prefix: testPrefix(b, rdb)}
	pub := newNode(b, redisURL(), opts)
	// Each subscriber node closes its done once it has every push.
	type sub struct {
		got  atomic.Int64
		once sync.Once
		done chan struct{}
	}
	var want atomic.Int64 // -1 while publishing
	want.Store(-1)
	check := func(s *sub) {
		if w := want.Load(); w >= 0 && s.got.Load() >= w {
			s.once.Do(func() { close(s.done) })
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	var nodes []*sub
	for range subs {
		s := &sub{done: make(chan struct{})}
		nodes = append(nodes, s)
		_, err := newNode(b, redisURL(), opts).Subscribe(ctx, sente.Handler{Push: func(sente.Push) {
			s.got.Add(1)
			check(s)
		}})
		if err != nil {
			b.Fatal(err)
		}
	}
	redisCPU := func() float64 {
		var sum float64
		for line := range strings.SplitSeq(rdb.Info(context.Background(), "cpu").Val(), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_sys" || k == "used_cpu_user" {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
		return sum
	}
	goCPU := func() float64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	event := []byte(`["chat/message",{"text":"hello, world","from":"someone"}]`)
	var n atomic.Int64
	r0, g0 := redisCPU(), goCPU()
	b.SetParallelism(64)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			p := sente.Push{Target: sente.ToUser, To: "u" + strconv.Itoa(int(i%1000)), Event: event}
			if err := pub.Publish(context.Background(), p); err != nil {
				b.Error(err)
				return
			}
		}
	})
	total := n.Load()
	want.Store(total)
	timeout := time.After(time.Minute)
	for _, s := range nodes {
		check(s)
		select {
		case <-s.done:
		case <-timeout:
			b.Fatalf("%d of %d pushes delivered", s.got.Load(), total)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "pushes/s")
	b.ReportMetric((goCPU()-g0)*1e6/float64(total), "go-cpu-µs/push")
	b.ReportMetric((redisCPU()-r0)*1e6/float64(total), "redis-cpu-µs/push")
}
