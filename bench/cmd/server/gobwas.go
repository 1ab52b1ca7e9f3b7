package main

import (
	"net"
	"net/http"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// gobwas/ws the common way (its README's net/http example): UpgradeHTTP, then
// a goroutine per connection looping wsutil.ReadClientData and
// wsutil.WriteServerMessage on the raw net.Conn. Broadcast writes to each
// connection in turn under its write mutex.
func init() {
	register("gobwas", func() contender {
		type client struct {
			mu sync.Mutex
			c  net.Conn
		}
		var (
			mu      sync.Mutex
			clients = map[*client]struct{}{}
		)
		mux := http.NewServeMux()
		mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
			c, _, _, err := ws.UpgradeHTTP(r, w)
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				echoConns.Add(1)
				defer echoConns.Add(-1)
				for {
					msg, op, err := wsutil.ReadClientData(c)
					if err != nil {
						return
					}
					if err := wsutil.WriteServerMessage(c, op, msg); err != nil {
						return
					}
				}
			}()
		})
		mux.HandleFunc("/bcast", func(w http.ResponseWriter, r *http.Request) {
			c, _, _, err := ws.UpgradeHTTP(r, w)
			if err != nil {
				return
			}
			cl := &client{c: c}
			mu.Lock()
			clients[cl] = struct{}{}
			mu.Unlock()
			conns.Add(1)
			go func() {
				defer func() {
					mu.Lock()
					delete(clients, cl)
					mu.Unlock()
					conns.Add(-1)
					c.Close()
				}()
				for {
					if _, _, err := wsutil.ReadClientData(c); err != nil {
						return
					}
				}
			}()
		})
		return contender{
			start: func() (string, string, error) {
				base, err := serveHTTP(mux)
				return base + "/echo", base + "/bcast", err
			},
			broadcast: func(p []byte) {
				mu.Lock()
				defer mu.Unlock()
				for cl := range clients {
					cl.mu.Lock()
					wsutil.WriteServerMessage(cl.c, ws.OpBinary, p)
					cl.mu.Unlock()
				}
			},
		}
	})
}
