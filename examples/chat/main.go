// Command chat serves the sente chat demo (package app): sign in with a name,
// a room, private messages to all of a user's tabs, the users online, and a
// panel showing the connection's state and transport (WebSocket, or Ajax
// long-polling with ?transport=ajax or where WebSocket cannot open).
//
//	go run ./examples/chat                       # then open http://localhost:8090
//	go run ./examples/chat -addr localhost:9000
//
// Several servers share one room through a broker:
//
//	go run ./examples/chat -addr localhost:8090 -broker redis://127.0.0.1:6379
//	go run ./examples/chat -addr localhost:8091 -broker redis://127.0.0.1:6379
//	go run ./examples/chat -addr localhost:8092 -broker nats://127.0.0.1:4222
//
// It is a module of its own (run it from the repository root, whose go.work
// names it) so that the library does not depend on the brokers' drivers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wsasync/wsasync/broker/nats"
	"github.com/wsasync/wsasync/broker/redis"
	"github.com/wsasync/wsasync/examples/chatapp"
	"github.com/wsasync/wsasync/sente"
)

func main() {
	addr := flag.String("addr", "localhost:8090", "address to listen on")
	brokerURL := flag.String("broker", "", "share the room with other servers through redis://host:port or nats://host:port")
	flag.Parse()

	broker, closeBroker, err := openBroker(*brokerURL)
	if err != nil {
		slog.Error("broker", "err", err)
		os.Exit(1)
	}
	defer closeBroker()
	chat := chatapp.New(chatapp.Options{Broker: broker})
	srv := &http.Server{Addr: *addr, Handler: chat}

	// On Ctrl-C, close every connection with 1012 ("restarting": pages
	// reconnect once a server is back), then stop serving.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := chat.Shutdown(sctx); err != nil {
			slog.Warn("chat shutdown", "err", err)
		}
		if err := srv.Shutdown(sctx); err != nil {
			slog.Warn("http shutdown", "err", err)
		}
	}()

	slog.Info("serving", "url", "http://"+*addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
	<-stopped
}

// openBroker connects to the broker url names; "" means none (this server
// alone).
func openBroker(url string) (sente.Broker, func() error, error) {
	switch {
	case url == "":
		return nil, func() error { return nil }, nil
	case strings.HasPrefix(url, "redis://"):
		b, err := redis.New(url, redis.Options{})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	case strings.HasPrefix(url, "nats://"):
		b, err := nats.New(url, nats.Options{})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown broker %q: want redis://… or nats://…", url)
}
