package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// coder/websocket: the Reader/Writer echo of its own echo test server
// (io.CopyBuffer with a reused buffer), and the subscriber pattern of its chat
// example for broadcast: a buffered channel per subscriber, a non-blocking
// send to each, and the handler goroutine writing with a timeout.
func init() {
	register("coder", func() contender {
		type subscriber struct{ msgs chan []byte }
		var (
			mu   sync.Mutex
			subs = map[*subscriber]struct{}{}
		)
		opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
		mux := http.NewServeMux()
		mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			defer c.CloseNow()
			echoConns.Add(1)
			defer echoConns.Add(-1)
			ctx := context.Background() // its README advises against r.Context() once hijacked
			buf := make([]byte, 32<<10)
			for {
				typ, rd, err := c.Reader(ctx)
				if err != nil {
					return
				}
				wr, err := c.Writer(ctx, typ)
				if err != nil {
					return
				}
				if _, err := io.CopyBuffer(wr, rd, buf); err != nil {
					return
				}
				if err := wr.Close(); err != nil {
					return
				}
			}
		})
		mux.HandleFunc("/bcast", func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			defer c.CloseNow()
			ctx := c.CloseRead(r.Context()) // write-only: reads only control frames
			s := &subscriber{msgs: make(chan []byte, 16)}
			mu.Lock()
			subs[s] = struct{}{}
			mu.Unlock()
			conns.Add(1)
			defer func() {
				mu.Lock()
				delete(subs, s)
				mu.Unlock()
				conns.Add(-1)
			}()
			for {
				select {
				case msg := <-s.msgs:
					wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := c.Write(wctx, websocket.MessageBinary, msg)
					cancel()
					if err != nil {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		})
		return contender{
			start: func() (string, string, error) {
				base, err := serveHTTP(mux)
				return base + "/echo", base + "/bcast", err
			},
			broadcast: func(p []byte) {
				mu.Lock()
				defer mu.Unlock()
				for s := range subs {
					select {
					case s.msgs <- p:
					default: // the chat example closes a slow subscriber
					}
				}
			},
		}
	})
}
