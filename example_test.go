package wsasync_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/wsasync/wsasync"
)

// wsURL turns an httptest server's address into a WebSocket URL.
func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") }

// An echo server: every message goes back as it came. Closing out on return
// closes the connection with 1000 once the echoes are written.
func ExampleGoWebsocket() {
	echo := wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for m := range in {
			out <- m
		}
	})
	srv := httptest.NewServer(echo)
	defer srv.Close()

	c, err := wsasync.Dial(context.Background(), wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Out <- wsasync.Text("hello")
	m := <-c.In
	fmt.Println(m.Type, string(m.Data))
	close(c.Out)
	fmt.Println(<-c.Errs)
	// Output:
	// text hello
	// wsasync: closed with 1000 (normal closure)
}

// An echo that hands each payload back once it is written: the next read of
// a message of about its size fills the same buffer, so the echo allocates
// nothing per message. A handler that only reads its messages releases each
// one when it is done with it.
func ExampleMessage_Recycled() {
	echo := wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for m := range in {
			out <- m.Recycled()
		}
	})
	srv := httptest.NewServer(echo)
	defer srv.Close()

	c, err := wsasync.Dial(context.Background(), wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer close(c.Out)
	for _, s := range []string{"one", "two"} {
		c.Out <- wsasync.Text(s)
		m := <-c.In
		fmt.Println(string(m.Data))
		m.Release() // nothing keeps m.Data
	}
	// Output:
	// one
	// two
}

// Sending Closed closes the connection with that code and reason, after the
// messages queued before it.
func ExampleClosed() {
	srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		out <- wsasync.Text("last words")
		out <- wsasync.Closed(wsasync.StatusGoingAway, "Gone Away")
		<-errs // wait for the connection to end
	}))
	defer srv.Close()

	c, err := wsasync.Dial(context.Background(), wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer close(c.Out)
	for m := range c.In {
		fmt.Println(string(m.Data))
	}
	var ce *wsasync.CloseError
	if errors.As(<-c.Errs, &ce) {
		fmt.Println(ce.Code, ce.Reason, ce.Remote)
	}
	// Output:
	// last words
	// 1001 (going away) Gone Away true
}

// Listener connects the socket to channels the caller made, with the buffers
// the caller chose. Here one request's connection is served from inside a
// handler, closing over the request.
func ExampleListener() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := make(chan wsasync.Message, 64)
		out := make(chan wsasync.Message, 64)
		errs := make(chan error, 1)
		go func() {
			defer close(out)
			out <- wsasync.Text("hello " + r.URL.Query().Get("name"))
			for m := range in {
				out <- wsasync.Text(strings.ToUpper(string(m.Data)))
			}
		}()
		wsasync.Listener(in, out, errs).ServeHTTP(w, r)
	}))
	defer srv.Close()

	c, err := wsasync.Dial(context.Background(), wsURL(srv)+"/?name=ada")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string((<-c.In).Data))
	c.Out <- wsasync.Text("shout")
	fmt.Println(string((<-c.In).Data))
	close(c.Out)
	<-c.Errs
	// Output:
	// hello ada
	// SHOUT
}

// A handler that selects over its channels and a timer: it answers messages,
// sends a tick every so often, and stops when the connection ends.
func ExampleHandler_select() {
	ticks := func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		n := 0
		for {
			select {
			case m, ok := <-in:
				if !ok {
					return // the peer is gone; errs says why
				}
				out <- wsasync.Text("got " + string(m.Data))
			case <-t.C:
				n++
				out <- wsasync.Text(fmt.Sprint("tick ", n))
				if n == 2 {
					out <- wsasync.Closed(wsasync.StatusNormalClosure, "done")
				}
			case err := <-errs:
				fmt.Println("server:", err)
				return
			}
		}
	}
	srv := httptest.NewServer(wsasync.GoWebsocket(ticks))
	defer srv.Close()

	c, err := wsasync.Dial(context.Background(), wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer close(c.Out)
	for m := range c.In {
		fmt.Println(string(m.Data))
	}
	fmt.Println("client:", <-c.Errs)
	// Output:
	// tick 1
	// tick 2
	// client: wsasync: peer closed with 1000 (normal closure): "done"
}

// Accept hands the connection's channels to the caller, who runs its own
// goroutine and knows whether the upgrade succeeded: here, to count live
// connections.
func ExampleUpgrader_Accept() {
	var u wsasync.Upgrader
	var live sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Accept(w, r)
		if err != nil {
			return // refused with an HTTP status already
		}
		live.Add(1)
		go func() {
			defer live.Done()
			defer close(c.Out)
			for m := range c.In {
				c.Out <- m
			}
		}()
	}))
	defer srv.Close()

	c, err := wsasync.Dial(context.Background(), wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Out <- wsasync.Text("ping")
	fmt.Println(string((<-c.In).Data))
	close(c.Out)
	<-c.Done
	live.Wait()
	fmt.Println("all connections done")
	// Output:
	// ping
	// all connections done
}
