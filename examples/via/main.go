// Command via is the demo of package via: a shared board (a counter and a
// list of notes) that every browser tab and every Go peer sees live, and
// that any of them can change.
//
//	go run ./examples/via                                  # open http://localhost:8091 in a few tabs
//	go run ./examples/via -peer ws://localhost:8091/via    # a Go peer on the same board
//
// The page (index.html) imports the browser client the endpoint serves at
// /via/via.js, subscribes to "board" and calls "board/incr", "board/add" and
// "board/clear". The Go peer (peer.go) subscribes with via.Subscribe and
// calls the same ids. Stop the server and start it again: the tabs and the
// peer reconnect and resubscribe on their own.
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
)

func main() {
	addr := flag.String("addr", "localhost:8091", "address to listen on")
	peer := flag.String("peer", "", "run as a Go peer of the server at this URL (ws://host:port/via) instead")
	tick := flag.Duration("tick", 3*time.Second, "with -peer: how often to call board/incr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.Default()

	if *peer != "" {
		if err := runPeer(ctx, *peer, *tick, os.Stdout, log); err != nil {
			log.Error("peer", "err", err)
			os.Exit(1)
		}
		return
	}

	s := newServer(log)
	srv := &http.Server{Addr: *addr, Handler: s}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		s.Close() // every peer gets 1001 and will reconnect to the next server
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", "err", err)
		}
	}()
	log.Info("serving", "url", "http://"+*addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	<-stopped
}
