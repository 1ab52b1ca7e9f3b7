package via_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/wsasync/wsasync/via"
)

// Two endpoints: one accepts peers on an HTTP route and exports "math/";
// the other connects to it and calls it.
func Example() {
	server := via.New(via.Options{Exports: []string{"math/"}})
	defer server.Close()
	server.Handle("math/add", func(ctx context.Context, c *via.Call) error {
		var xs []int
		if err := c.Decode(&xs); err != nil {
			return err // answers 400
		}
		sum := 0
		for _, x := range xs {
			sum += x
		}
		return c.Reply(200, sum)
	})
	srv := httptest.NewServer(server) // or mux.Handle("/via", server)
	defer srv.Close()

	client := via.New(via.Options{})
	defer client.Close()
	ctx := context.Background()
	peer, err := client.Connect(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		fmt.Println(err)
		return
	}
	var sum int
	err = client.Invoke(ctx, peer, "math/add", []int{2, 3, 4}, &sum)
	fmt.Println(sum, err)
	err = client.Invoke(ctx, peer, "math/mul", []int{2, 3}, &sum)
	fmt.Println(err)
	// Output:
	// 9 <nil>
	// via: status 400 Bad Request: {"error":"unknown event","id":"math/mul"}
}

type userKey struct{}

// An interceptor that lets a call through only when the peer's session
// context holds a valid token. The peer proposes its session context with
// SyncSession; AcceptSession keeps the token alone, and the interceptor
// verifies it on every call, since a proposed value is a claim, not a fact.
func ExampleInterceptor() {
	// The tokens the server issued; a real server would check a signature.
	issued := map[string]string{"t0k3n": "alice"}
	requireToken := func(next via.Handler) via.Handler {
		return func(ctx context.Context, c *via.Call) error {
			token, _ := c.Peer().Session()["token"].(string)
			user, ok := issued[token]
			if !ok {
				// Short-circuit: the handler never runs.
				return c.Reply(403, map[string]string{"error": "invalid token"})
			}
			return next(context.WithValue(ctx, userKey{}, user), c)
		}
	}
	server := via.New(via.Options{
		Exports:      []string{"app/"},
		Interceptors: []via.Interceptor{requireToken},
		AcceptSession: func(p *via.Peer, proposed map[string]any) (map[string]any, bool) {
			token, ok := proposed["token"].(string)
			return map[string]any{"token": token}, ok
		},
	})
	defer server.Close()
	server.Handle("app/hello", func(ctx context.Context, c *via.Call) error {
		return c.Reply(200, "hello "+ctx.Value(userKey{}).(string))
	})
	srv := httptest.NewServer(server)
	defer srv.Close()

	client := via.New(via.Options{})
	defer client.Close()
	ctx := context.Background()
	id, err := client.Connect(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		fmt.Println(err)
		return
	}
	var greeting string
	err = client.Invoke(ctx, id, "app/hello", nil, &greeting)
	fmt.Println(err)

	peer := client.Peer(id)
	peer.SetSession(map[string]any{"token": "t0k3n"})
	if err := peer.SyncSession(ctx); err != nil {
		fmt.Println(err)
		return
	}
	err = client.Invoke(ctx, id, "app/hello", nil, &greeting)
	fmt.Println(greeting, err)
	// Output:
	// via: status 403 Forbidden: {"error":"invalid token"}
	// hello alice <nil>
}

// A server publishes a counter; a client subscribes and follows it. Each
// change the client sees makes the server count one more.
func ExampleSubscribe() {
	counter := via.NewValue(0)
	server := via.New(via.Options{Exports: []string{"counter"}})
	defer server.Close()
	server.Publish("counter", via.Shared(counter))
	srv := httptest.NewServer(server)
	defer srv.Close()

	client := via.New(via.Options{})
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the subscription (and the watch)
	id, err := client.Connect(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		fmt.Println(err)
		return
	}
	n, err := via.Subscribe(ctx, client.Peer(id), "counter", nil, -1)
	if err != nil {
		fmt.Println(err)
		return
	}
	for v := range n.Watch(ctx) {
		if v < 0 {
			continue // the default, until the first value arrives
		}
		fmt.Println("counter", v)
		if v == 3 {
			break
		}
		counter.Update(func(n int) int { return n + 1 })
	}
	_, err = via.Subscribe(ctx, client.Peer(id), "secret", nil, 0)
	fmt.Println(errors.Is(err, via.ErrInvalidSubscription))
	// Output:
	// counter 0
	// counter 1
	// counter 2
	// counter 3
	// true
}
