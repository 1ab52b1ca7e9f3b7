package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/wsasync/wsasync/via"
)

// runPeer is the Go peer: it connects to the server at url, subscribes to
// the board, adds a note, then calls board/incr every tick, printing each
// new board to out until ctx ends. It keeps going across server restarts:
// the endpoint reconnects and sends the subscription again.
func runPeer(ctx context.Context, url string, tick time.Duration, out io.Writer, log *slog.Logger) error {
	e := via.New(via.Options{Logger: log})
	defer e.Close()
	id, err := e.Connect(ctx, url)
	if err != nil {
		return err
	}
	p := e.Peer(id)

	// The remote board starts from the zero Board, then follows the server.
	board, err := via.Subscribe(ctx, p, "board", nil, Board{})
	if err != nil {
		return err
	}
	hctx := via.WithHeaders(ctx, map[string]string{"agent": "go"})
	if err := p.Dispatch(hctx, "board/add", "hello from a Go peer"); err != nil {
		return err
	}

	t := time.NewTicker(tick)
	defer t.Stop()
	updates := board.Watch(ctx) // latest wins: never a backlog
	for {
		select {
		case b, ok := <-updates:
			if !ok {
				return board.Err() // the subscription ended
			}
			fmt.Fprintf(out, "count %d, %d notes, %d peers\n", b.Count, len(b.Notes), b.Peers)
		case <-t.C:
			var n int
			if err := p.Invoke(ctx, "board/incr", nil, &n); err != nil {
				log.Warn("board/incr", "err", err) // e.g. reconnecting: try at the next tick
			}
		case <-ctx.Done():
			return nil
		}
	}
}
