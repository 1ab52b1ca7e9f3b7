package sente_test

// Benchmarks of the sente layer against the core it is built on:
//
//   - BenchmarkRequestReply: a sente.Client.Request answered by a Router
//     handler with its data, over loopback, one request in flight;
//   - BenchmarkCoreEcho: the same payload echoed by a bare wsasync handler to
//     a wsasync.Dial client, one message in flight. The aim: RequestReply
//     costs at most 1.5x CoreEcho;
//   - BenchmarkPushUsers: Push throughput to 1,000 users, each a Go client of
//     its own, until every client has received its pushes.
//
// Round trips report their median and 99th percentile latencies (p50-ns,
// p99-ns) beside the mean ns/op.

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// benchPayload is a small JSON object of 64 bytes, sent as it is (Raw) so
// that the benchmarks measure the protocol, not encoding/json.
var benchPayload = sente.Raw(`{"id":1234567,"user":"alice","text":"hello, world!!!","ts":17e8}`)

var benchQuiet = slog.New(slog.DiscardHandler)

// benchWait bounds the waits of the benchmarks' setup and teardown.
const benchWait = 30 * time.Second

// reportLatency reports the median and 99th percentile of lat.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[min(len(lat)*99/100, len(lat)-1)].Nanoseconds()), "p99-ns")
}

func wsURLOf(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

// benchOpen waits until c is open.
func benchOpen(b *testing.B, c *sente.Client, deadline <-chan time.Time) {
	b.Helper()
	if c.State().Open {
		return
	}
	for {
		select {
		case s, ok := <-c.StateChanges():
			if !ok {
				b.Fatalf("client %s stopped: %+v", c.ID(), c.State().LastClose)
			}
			if s.Open {
				return
			}
		case <-deadline:
			b.Fatalf("client %s not open within %v: %+v", c.ID(), benchWait, c.State().LastClose)
		}
	}
}

func BenchmarkRequestReply(b *testing.B) {
	s := sente.NewServer(sente.Options{Logger: benchQuiet})
	r := sente.Router{Logger: benchQuiet}
	r.Handle("bench/echo", func(_ context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
	routed := make(chan struct{})
	go func() { r.Run(context.Background(), s.Events()); close(routed) }()
	srv := httptest.NewServer(s)
	c := sente.NewClient(wsURLOf(srv), sente.ClientOptions{Logger: benchQuiet})
	defer func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), benchWait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
		<-routed
		srv.Close()
	}()
	benchOpen(b, c, time.After(benchWait))

	ctx := context.Background() // as an application would: RequestTimeout applies
	var reply sente.Raw
	if err := c.Request(ctx, "bench/echo", benchPayload, &reply); err != nil || string(reply) != string(benchPayload) {
		b.Fatalf("Request: %v, reply %s", err, reply)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.SetBytes(int64(len(benchPayload)))
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if err := c.Request(ctx, "bench/echo", benchPayload, &reply); err != nil {
			b.Fatalf("Request: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportLatency(b, lat)
}

func BenchmarkCoreEcho(b *testing.B) {
	srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for m := range in {
			out <- m
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	conn, err := wsasync.Dial(ctx, wsURLOf(srv))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		close(conn.Out)
		for range conn.In {
		}
		<-conn.Errs
		srv.Close()
	}()

	msg := wsasync.Text(string(benchPayload))
	lat := make([]time.Duration, 0, 1<<16)
	b.SetBytes(int64(len(benchPayload)))
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		conn.Out <- msg
		if _, ok := <-conn.In; !ok {
			b.Fatalf("connection ended: %v", <-conn.Errs)
		}
		lat = append(lat, time.Since(t0))
	}
	reportLatency(b, lat)
}

// BenchmarkPushUsers pushes round-robin to 1,000 users, one Go client each,
// and counts until every client has received every push meant for it. The
// 1,000 connections are made once; the sub-benchmark runs on them for every
// b.N and -count.
func BenchmarkPushUsers(b *testing.B) {
	const users = 1000
	s := sente.NewServer(sente.Options{
		Logger: benchQuiet,
		UserID: func(r *http.Request, _ string) string { return r.URL.Query().Get("u") },
	})
	drained := make(chan struct{})
	go func() { // presence events, until Shutdown closes Events
		for range s.Events() {
		}
		close(drained)
	}()
	srv := httptest.NewServer(s)

	var (
		got, want atomic.Int64
		done      = make(chan struct{}, 1)
		readers   sync.WaitGroup
	)
	uids := make([]string, users)
	clients := make([]*sente.Client, users)
	for i := range users {
		uids[i] = "user-" + strconv.Itoa(i)
		c := sente.NewClient(wsURLOf(srv), sente.ClientOptions{
			Logger: benchQuiet,
			Params: url.Values{"u": {uids[i]}},
		})
		clients[i] = c
		readers.Go(func() {
			for range c.Events() {
				if got.Add(1) == want.Load() {
					done <- struct{}{}
				}
			}
		})
	}
	defer func() {
		var closing sync.WaitGroup
		for _, c := range clients {
			closing.Go(func() { c.Close() })
		}
		closing.Wait()
		readers.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), benchWait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
		<-drained
		srv.Close()
	}()
	deadline := time.After(benchWait)
	for _, c := range clients {
		benchOpen(b, c, deadline)
	}

	b.Run("users=1000", func(b *testing.B) {
		got.Store(0)
		want.Store(int64(b.N))
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := s.Push(uids[i%users], "bench/push", benchPayload); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-done:
		case <-time.After(benchWait):
			b.Fatalf("%d of %d pushes received within %v", got.Load(), b.N, benchWait)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
	})
}
