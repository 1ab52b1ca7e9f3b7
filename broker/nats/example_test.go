package nats_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/wsasync/wsasync/broker/nats"
	"github.com/wsasync/wsasync/sente"
)

// A sente server whose pushes and presence are shared with the other nodes
// through NATS. (Without an output comment: it is compiled, not run, since
// it needs a NATS server.)
func Example() {
	b, err := nats.New("nats://127.0.0.1:4222?prefix=myapp&node_ttl=10s", nats.Options{})
	if err != nil {
		log.Print(err) // no NATS server, or no JetStream
		return
	}
	defer b.Close()
	s := sente.NewServer(sente.Options{Broker: b})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	mux := http.NewServeMux()
	mux.Handle("/chsk", s)
	// A push from any node reaches the user's connections on every node.
	s.Push("ada", "chat/note", "hello from this node")
	// http.ListenAndServe(":8080", mux)
}
