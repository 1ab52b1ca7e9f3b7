package main

import (
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

// gorilla/websocket: the read loop + WriteMessage echo of its examples, and a
// hub that writes a PreparedMessage to each connection under the connection's
// write mutex.
func init() {
	register("gorilla", func() contender {
		var up websocket.Upgrader // default buffers: reuses net/http's 4 KiB ones
		type client struct {
			mu sync.Mutex // one writer at a time
			c  *websocket.Conn
		}
		var (
			mu      sync.Mutex
			clients = map[*client]struct{}{}
		)
		mux := http.NewServeMux()
		mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			echoConns.Add(1)
			defer echoConns.Add(-1)
			for {
				mt, p, err := c.ReadMessage()
				if err != nil {
					return
				}
				if err := c.WriteMessage(mt, p); err != nil {
					return
				}
			}
		})
		mux.HandleFunc("/bcast", func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			cl := &client{c: c}
			mu.Lock()
			clients[cl] = struct{}{}
			mu.Unlock()
			conns.Add(1)
			defer func() {
				mu.Lock()
				delete(clients, cl)
				mu.Unlock()
				conns.Add(-1)
				c.Close()
			}()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
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
				pm, err := websocket.NewPreparedMessage(websocket.BinaryMessage, p)
				if err != nil {
					panic(err)
				}
				mu.Lock()
				defer mu.Unlock()
				for cl := range clients {
					cl.mu.Lock()
					cl.c.WritePreparedMessage(pm)
					cl.mu.Unlock()
				}
			},
		}
	})
}
