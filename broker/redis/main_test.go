package redis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/wsasync/wsasync/sente"
)

// Every test ends with no goroutine left behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requireVar turns a missing Redis from a skip into a failure (as the main
// module's internal/testenv does).
const requireVar = "WSASYNC_REQUIRE_ALL"

// redisURL is the server the tests use: WSASYNC_REDIS_URL or the local one.
func redisURL() string {
	if u := os.Getenv("WSASYNC_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// needRedis skips t (fails it under WSASYNC_REQUIRE_ALL=1) when Redis does
// not answer, and returns a client for the test's own checks.
func needRedis(t testing.TB) *goredis.Client {
	t.Helper()
	o, err := goredis.ParseURL(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	o.MaxRetries = -1
	o.DialerRetries = 1
	rdb := goredis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		how := "start redis-server on 127.0.0.1:6379 or set WSASYNC_REDIS_URL"
		if os.Getenv(requireVar) == "1" {
			t.Fatalf("Redis at %s is missing (%s=1 makes that a failure): %v; %s", redisURL(), requireVar, err, how)
		}
		t.Skipf("skipped: Redis at %s is missing: %v; %s", redisURL(), err, how)
	}
	return rdb
}

// testPrefix returns a prefix of the test's own, whose keys are deleted
// when the test ends.
func testPrefix(t testing.TB, rdb *goredis.Client) string {
	var r [4]byte
	rand.Read(r[:])
	p := "wsasync-test:" + strings.ReplaceAll(t.Name(), "/", ".") + ":" + hex.EncodeToString(r[:])
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, p+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return p
}

// newNode returns a broker closed when the test ends.
func newNode(t testing.TB, url string, opts Options) *Broker {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := New(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A collector records what a broker delivers to a node.
type collector struct {
	mu       sync.Mutex
	pushes   []sente.Push
	presence []sente.Presence
	changed  chan struct{} // a token after every delivery
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) handler() sente.Handler {
	return sente.Handler{
		Push: func(p sente.Push) {
			c.mu.Lock()
			c.pushes = append(c.pushes, p)
			c.mu.Unlock()
			c.signal()
		},
		Presence: func(p sente.Presence) {
			c.mu.Lock()
			c.presence = append(c.presence, p)
			c.mu.Unlock()
			c.signal()
		},
	}
}

func (c *collector) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// wait waits until ok holds of what was delivered, failing t after timeout.
func (c *collector) wait(t testing.TB, timeout time.Duration, what string, ok func(pushes []sente.Push, presence []sente.Presence) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		done := ok(c.pushes, c.presence)
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("timeout waiting for %s: %d pushes, presence %+v", what, len(c.pushes), c.presence)
		}
	}
}

// waitPushes waits for n pushes and returns them.
func (c *collector) waitPushes(t testing.TB, n int) []sente.Push {
	t.Helper()
	c.wait(t, 10*time.Second, "pushes", func(p []sente.Push, _ []sente.Presence) bool { return len(p) >= n })
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sente.Push(nil), c.pushes...)
}

func (c *collector) presences() []sente.Presence {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sente.Presence(nil), c.presence...)
}

// subscribe subscribes b to a new collector until the test ends.
func subscribe(t testing.TB, b *Broker) (*collector, sente.Position, context.CancelFunc) {
	t.Helper()
	c := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pos, err := b.Subscribe(ctx, c.handler())
	if err != nil {
		t.Fatal(err)
	}
	return c, pos, cancel
}

// logBuffer is a slog handler's output, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func push(to, ev string) sente.Push {
	return sente.Push{Target: sente.ToUser, To: to, Event: []byte(ev)}
}
