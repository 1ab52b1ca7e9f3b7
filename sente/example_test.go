package sente_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// waitOpen waits for a client's first open state.
func waitOpen(c *sente.Client) bool {
	for s := range c.StateChanges() {
		if s.Open {
			return true
		}
	}
	return false
}

// A server whose router answers "demo/echo" and pushes to the user, and a Go
// client that requests and receives the push.
func Example() {
	s := sente.NewServer(sente.Options{
		// The user of a connection: here from a query parameter; in an
		// application, from its session.
		UserID: func(r *http.Request, clientID string) string { return r.URL.Query().Get("user") },
	})
	srv := httptest.NewServer(s) // or mux.Handle("/chsk", s)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var router sente.Router
	router.Handle("demo/echo", func(ctx context.Context, ev *sente.Event) {
		var text string
		ev.Decode(&text)
		ev.Reply(strings.ToUpper(text))
		s.Push(ev.UserID, "demo/note", "echoed "+text)
	})
	routed := make(chan struct{})
	go func() {
		router.Run(ctx, s.Events())
		close(routed)
	}()

	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	c := sente.NewClient(url, sente.ClientOptions{Params: map[string][]string{"user": {"ada"}}})
	if !waitOpen(c) {
		fmt.Println("never opened")
		return
	}
	fmt.Println("user:", c.State().UserID)

	var reply string
	if err := c.Request(ctx, "demo/echo", "hello", &reply); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("reply:", reply)

	ev := <-c.Events()
	var note string
	ev.Decode(&note)
	fmt.Println("push:", ev.ID, note)

	c.Close()
	shutdown, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	s.Shutdown(shutdown)
	<-routed
	// Output:
	// user: ada
	// reply: HELLO
	// push: demo/note echoed hello
}
