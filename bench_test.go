package wsasync_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
)

// rawClient is a client whose hot path allocates nothing: it writes
// pre-masked frames and reads the server's frames into fixed buffers, so that
// allocations counted around it are the server's.
type rawClient struct {
	nc    net.Conn
	br    *bufio.Reader
	frame []byte // one pre-masked client frame
	hdr   [ws.MaxHeaderSize]byte
	buf   []byte
}

func dialRaw(tb testing.TB, srv *httptest.Server, size int) *rawClient {
	tb.Helper()
	u, err := url.Parse(wsURL(srv))
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		tb.Fatal(err)
	}
	br, _, err := ws.Dialer{}.Upgrade(nc, u)
	if err != nil {
		tb.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 64<<10)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	f := ws.MaskFrameInPlace(ws.NewBinaryFrame(payload))
	frame, err := ws.CompileFrame(f)
	if err != nil {
		tb.Fatal(err)
	}
	return &rawClient{nc: nc, br: br, frame: frame, buf: make([]byte, size)}
}

// readFrame reads one server frame into the fixed buffer.
func (c *rawClient) readFrame() error {
	h, err := ws.ReadHeaderBuffer(c.br, c.hdr[:])
	if err != nil {
		return err
	}
	if int(h.Length) > cap(c.buf) {
		c.buf = make([]byte, h.Length)
	}
	_, err = io.ReadFull(c.br, c.buf[:h.Length])
	return err
}

// echo sends the client's frame and reads the answer.
func (c *rawClient) echo() error {
	if _, err := c.nc.Write(c.frame); err != nil {
		return err
	}
	return c.readFrame()
}

func (c *rawClient) close() { c.nc.Close() }

func echoHandler(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
	defer close(out)
	for m := range in {
		out <- m
	}
}

// recycleEchoHandler answers each message with itself, recycled: its
// buffer serves a later read once written.
func recycleEchoHandler(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
	defer close(out)
	for m := range in {
		out <- m.Recycled()
	}
}

var benchSizes = []int{64, 4096}

// echoHandlers are the two echo handlers the benchmarks compare: one that
// leaves each payload to the collector, one that recycles it.
var echoHandlers = []struct {
	name string
	h    wsasync.Handler
}{{"kept", echoHandler}, {"recycled", recycleEchoHandler}}

// forEchoes runs f for every handler and payload size, as sub-benchmarks
// named handler/size, each with a server running the handler and a raw client
// of it.
func forEchoes(b *testing.B, f func(b *testing.B, c *rawClient)) {
	for _, e := range echoHandlers {
		for _, size := range benchSizes {
			b.Run(e.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				srv := httptest.NewServer(wsasync.GoWebsocket(e.h))
				defer srv.Close()
				c := dialRaw(b, srv, size)
				defer c.close()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				f(b, c)
			})
		}
	}
}

// BenchmarkEcho measures one round trip through an echo handler with one
// message in flight; allocs/op are the server's (the client allocates none).
func BenchmarkEcho(b *testing.B) {
	forEchoes(b, func(b *testing.B, c *rawClient) {
		for b.Loop() {
			if err := c.echo(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEchoPipelined keeps 8 messages in flight, which lets the writer
// coalesce several echoes into one write.
func BenchmarkEchoPipelined(b *testing.B) {
	const depth = 8
	forEchoes(b, func(b *testing.B, c *rawClient) {
		sent, got := 0, 0
		for b.Loop() {
			for sent-got < depth {
				if _, err := c.nc.Write(c.frame); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			if err := c.readFrame(); err != nil {
				b.Fatal(err)
			}
			got++
		}
		for ; got < sent; got++ {
			if err := c.readFrame(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRead measures the server's read path alone: frames arrive in
// batches, the handler counts them.
func BenchmarkRead(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			counts := make(chan int, 1)
			want := make(chan int, 1)
			srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
				defer close(out)
				n, target := 0, -1
				for {
					select {
					case _, ok := <-in:
						if !ok {
							return
						}
						n++
					case target = <-want:
					}
					if n == target {
						counts <- n
						n, target = 0, -1
					}
				}
			}))
			defer srv.Close()
			c := dialRaw(b, srv, size)
			defer c.close()
			batch := make([]byte, 0, 64*len(c.frame))
			for range 64 {
				batch = append(batch, c.frame...)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			want <- b.N
			for left := b.N; left > 0; left -= 64 {
				n := min(left, 64)
				if _, err := c.nc.Write(batch[:n*len(c.frame)]); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-counts:
			case <-time.After(time.Minute):
				b.Fatal("handler did not receive every message")
			}
		})
	}
}

// BenchmarkWrite measures the server's write path alone: the handler sends,
// the client reads and discards.
func BenchmarkWrite(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			payload := make([]byte, size)
			start := make(chan int)
			srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
				defer close(out)
				n := <-start
				m := wsasync.Binary(payload)
				for range n {
					out <- m
				}
			}))
			defer srv.Close()
			c := dialRaw(b, srv, size)
			defer c.close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			start <- b.N
			for range b.N {
				if err := c.readFrame(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// dialEcho is shared by tests that need an echo server and a wsasync client.
func dialEcho(tb testing.TB, srv *httptest.Server) *wsasync.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := wsasync.Dial(ctx, wsURL(srv))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
