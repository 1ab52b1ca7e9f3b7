//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it; .ci/run runs this file on its own.

package wsasync_test

import (
	"net/http/httptest"
	"testing"

	"github.com/wsasync/wsasync"
)

// TestHotPathAllocs fails when the server allocates more per echoed message
// than the received payload itself, anything when the echo recycles the
// payload, or anything on the send path.
func TestHotPathAllocs(t *testing.T) {
	for _, e := range echoHandlers {
		want := 1.0 // the payload
		if e.name == "recycled" {
			want = 0
		}
		for _, size := range benchSizes {
			echoAllocs(t, e.name, e.h, size, want)
		}
	}

	payload := make([]byte, 64)
	start := make(chan int)
	srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for n := range start {
			for range n {
				out <- wsasync.Binary(payload)
			}
		}
	}))
	defer srv.Close()
	c := dialRaw(t, srv, 64)
	defer c.close()
	defer close(start)
	const batch = 100
	sendBatch := func() {
		start <- batch
		for range batch {
			if err := c.readFrame(); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendBatch()
	if n := testing.AllocsPerRun(50, sendBatch); n > 0 {
		t.Errorf("send path: %v allocations per %d messages, want 0", n, batch)
	}
}

// echoAllocs fails t when an echo of size bytes through h allocates more
// than want per message on the server.
func echoAllocs(t *testing.T, name string, h wsasync.Handler, size int, want float64) {
	t.Helper()
	srv := httptest.NewServer(wsasync.GoWebsocket(h))
	defer srv.Close()
	c := dialRaw(t, srv, size)
	defer c.close()
	echoOnce := func() {
		if err := c.echo(); err != nil {
			t.Fatal(err)
		}
	}
	echoOnce() // warm the pools
	if n := testing.AllocsPerRun(2000, echoOnce); n > want {
		t.Errorf("%s echo of %d bytes: %v allocations per message on the server, want at most %v", name, size, n, want)
	}
}
