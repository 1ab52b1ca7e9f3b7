package main

import (
	"net/http"
	"sync"

	"github.com/wsasync/wsasync"
)

// wsasync through its channel API: GoWebsocket runs one handler goroutine per
// connection with in, out and errs.
func init() {
	register("wsasync", func() contender {
		var (
			mu   sync.Mutex
			outs = map[chan<- wsasync.Message]struct{}{}
		)
		echo := wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			echoConns.Add(1)
			defer echoConns.Add(-1)
			defer close(out)
			// The echo hands each payload back for reuse once written,
			// as gws's echo closes each message.
			for m := range in {
				out <- m.Recycled()
			}
		})
		// A broadcast connection registers its out channel and parks in a
		// select on in and errs until the connection ends.
		bcast := wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			mu.Lock()
			outs[out] = struct{}{}
			mu.Unlock()
			conns.Add(1)
			defer func() {
				mu.Lock()
				delete(outs, out)
				mu.Unlock()
				conns.Add(-1)
			}()
			for {
				select {
				case _, ok := <-in:
					if !ok {
						return
					}
				case <-errs:
					return
				}
			}
		})
		mux := http.NewServeMux()
		mux.Handle("/echo", echo)
		mux.Handle("/bcast", bcast)
		return contender{
			start: func() (string, string, error) {
				base, err := serveHTTP(mux)
				return base + "/echo", base + "/bcast", err
			},
			// One send on each registered out; each connection's writer
			// goroutine writes it. A full out (8 queued) makes the
			// broadcast wait for that connection.
			broadcast: func(p []byte) {
				m := wsasync.Binary(p)
				mu.Lock()
				for out := range outs {
					out <- m
				}
				mu.Unlock()
			},
		}
	})
}
