package wsasync_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsasync/wsasync"
)

// recycleSizes cross the pooled classes and the largest of them.
var recycleSizes = []int{1, 64, 100, 4096, 5000, 32 << 10, 40 << 10}

// recyclePayload is message i of connection conn: its size and bytes differ
// from its neighbours', so that a buffer reused too early shows as a wrong
// echo.
func recyclePayload(conn, i int) []byte {
	p := make([]byte, recycleSizes[(conn+i)%len(recycleSizes)])
	for j := range p {
		p[j] = byte(conn*31 + i*7 + j)
	}
	return p
}

// TestRecycledEchoIntact runs several gorilla clients with many messages in
// flight through an echo that recycles every payload: each must come back
// whole and in order, while the same buffers serve reads and writes of other
// connections.
func TestRecycledEchoIntact(t *testing.T) {
	srv := httptest.NewServer(wsasync.GoWebsocket(recycleEchoHandler))
	defer srv.Close()
	const conns, msgs = 8, 300
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- recycleClient(wsURL(srv), k, msgs)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
}

func recycleClient(url string, k, msgs int) error {
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		for i := range msgs {
			if err := c.WriteMessage(websocket.BinaryMessage, recyclePayload(k, i)); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	for i := range msgs {
		_, p, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("conn %d: reading echo %d: %v", k, i, err)
		}
		if want := recyclePayload(k, i); !bytes.Equal(p, want) {
			return fmt.Errorf("conn %d: echo %d differs from what was sent (%d bytes, want %d)", k, i, len(p), len(want))
		}
	}
	return <-werr
}

// TestRecycledClient recycles on the client side: Dial's Out takes recycled
// messages and the caller releases what In delivers once checked.
func TestRecycledClient(t *testing.T) {
	srv := httptest.NewServer(wsasync.GoWebsocket(echoHandler))
	defer srv.Close()
	c, err := wsasync.Dial(context.Background(), wsURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	const msgs = 500
	go func() {
		for i := range msgs {
			c.Out <- wsasync.Binary(recyclePayload(1, i)).Recycled()
		}
	}()
	for i := range msgs {
		m, ok := <-c.In
		if !ok {
			t.Fatalf("in closed after %d echoes: %v", i, <-c.Errs)
		}
		if want := recyclePayload(1, i); !bytes.Equal(m.Data, want) {
			t.Fatalf("echo %d differs from what was sent (%d bytes, want %d)", i, len(m.Data), len(want))
		}
		m.Release()
	}
	close(c.Out)
	if err := <-c.Errs; wsasync.CloseStatus(err) != wsasync.StatusNormalClosure {
		t.Fatalf("end: %v", err)
	}
	<-c.Done
}

// TestRecycledAfterClose sends recycled messages after the connection has
// begun to close: the writer discards and releases them, and nobody blocks.
func TestRecycledAfterClose(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(done)
		defer close(out)
		out <- wsasync.Closed(4001, "bye")
		for i := range 100 {
			out <- wsasync.Binary(recyclePayload(2, i)).Recycled()
		}
		<-errs
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, 4001) {
		t.Fatalf("read: %v, want close 4001", err)
	}
	<-done
}
