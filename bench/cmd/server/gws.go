package main

import (
	"net/http"
	"sync"

	"github.com/lxzan/gws"
)

// lxzan/gws: an event handler whose OnMessage writes the message back, as in
// its echo example, and a Broadcaster (the frame is built once and queued on
// each connection's write queue) for fan-out.
type gwsEcho struct{ gws.BuiltinEventHandler }

func (gwsEcho) OnOpen(*gws.Conn)         { echoConns.Add(1) }
func (gwsEcho) OnClose(*gws.Conn, error) { echoConns.Add(-1) }
func (gwsEcho) OnPing(s *gws.Conn, p []byte) {
	_ = s.WritePong(p)
}
func (gwsEcho) OnMessage(s *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = s.WriteMessage(m.Opcode, m.Bytes())
}

type gwsHub struct {
	gws.BuiltinEventHandler
	mu    sync.Mutex
	conns map[*gws.Conn]struct{}
}

func (h *gwsHub) OnOpen(s *gws.Conn) {
	h.mu.Lock()
	h.conns[s] = struct{}{}
	h.mu.Unlock()
	conns.Add(1)
}

func (h *gwsHub) OnClose(s *gws.Conn, _ error) {
	h.mu.Lock()
	delete(h.conns, s)
	h.mu.Unlock()
	conns.Add(-1)
}

func (h *gwsHub) OnPing(s *gws.Conn, p []byte) { _ = s.WritePong(p) }

func (h *gwsHub) OnMessage(s *gws.Conn, m *gws.Message) { m.Close() }

func init() {
	register("gws", func() contender {
		hub := &gwsHub{conns: map[*gws.Conn]struct{}{}}
		echoUp := gws.NewUpgrader(gwsEcho{}, &gws.ServerOption{Recovery: gws.Recovery})
		hubUp := gws.NewUpgrader(hub, &gws.ServerOption{Recovery: gws.Recovery})
		mux := http.NewServeMux()
		mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
			s, err := echoUp.Upgrade(w, r)
			if err != nil {
				return
			}
			go s.ReadLoop()
		})
		mux.HandleFunc("/bcast", func(w http.ResponseWriter, r *http.Request) {
			s, err := hubUp.Upgrade(w, r)
			if err != nil {
				return
			}
			go s.ReadLoop()
		})
		return contender{
			start: func() (string, string, error) {
				base, err := serveHTTP(mux)
				return base + "/echo", base + "/bcast", err
			},
			broadcast: func(p []byte) {
				b := gws.NewBroadcaster(gws.OpcodeBinary, p)
				defer b.Close()
				hub.mu.Lock()
				defer hub.mu.Unlock()
				for s := range hub.conns {
					_ = b.Broadcast(s)
				}
			},
		}
	})
}
