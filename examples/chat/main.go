// Command chat serves the sente chat demo (package app): sign in with a name,
// a room, private messages to all of a user's tabs, the users online, and a
// panel showing the connection's state and transport (WebSocket, or Ajax
// long-polling with ?transport=ajax or where WebSocket cannot open).
//
//	go run ./examples/chat                       # then open http://localhost:8090
//	go run ./examples/chat -addr localhost:9000
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsasync/wsasync/examples/chat/app"
)

func main() {
	addr := flag.String("addr", "localhost:8090", "address to listen on")
	flag.Parse()

	chat := app.New(app.Options{})
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
