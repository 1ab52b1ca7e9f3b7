package redis_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/wsasync/wsasync/broker/redis"
	"github.com/wsasync/wsasync/sente"
)

// A node of a cluster: every node runs this with the same Redis URL and
// prefix, and users connected to any node get the pushes of every node.
func Example() {
	b, err := redis.New("redis://127.0.0.1:6379/0?prefix=chat&node_ttl=10s", redis.Options{})
	if err != nil {
		log.Fatal(err)
	}
	s := sente.NewServer(sente.Options{Broker: b})
	mux := http.NewServeMux()
	mux.Handle("/chsk", s)
	hs := &http.Server{Addr: ":8080", Handler: mux}
	go hs.ListenAndServe()

	// Reaches user ada's connections on whichever node they are.
	if err := s.Push("ada", "chat/message", "hello"); err != nil {
		log.Print(err) // Redis away: the push was not taken (sente.ErrBroker)
	}

	// On the way out: the server first, then the broker.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(ctx)
	s.Shutdown(ctx)
	b.Close()
}
