package main

import (
	"io"
	"net"
	"sync"

	"github.com/gobwas/ws"
)

// tcp is the ceiling of the machine: no WebSocket at all. The echo listener
// copies the bytes it reads back (io.Copy, the client's masked frames come
// back as they were); the broadcast listener writes one pre-built unmasked
// frame to each connection in turn. The client skips the handshake.
func init() {
	register("tcp", func() contender {
		var (
			mu    sync.Mutex
			peers = map[net.Conn]struct{}{}
		)
		return contender{
			start: func() (string, string, error) {
				eln, err := listen()
				if err != nil {
					return "", "", err
				}
				bln, err := listen()
				if err != nil {
					return "", "", err
				}
				go accept(eln, func(c net.Conn) {
					defer c.Close()
					echoConns.Add(1)
					defer echoConns.Add(-1)
					io.Copy(c, c)
				})
				go accept(bln, func(c net.Conn) {
					mu.Lock()
					peers[c] = struct{}{}
					mu.Unlock()
					conns.Add(1)
					defer func() {
						mu.Lock()
						delete(peers, c)
						mu.Unlock()
						conns.Add(-1)
						c.Close()
					}()
					io.Copy(io.Discard, c)
				})
				return "tcp://" + eln.Addr().String(), "tcp://" + bln.Addr().String(), nil
			},
			broadcast: func(p []byte) {
				frame, err := ws.CompileFrame(ws.NewBinaryFrame(p))
				if err != nil {
					panic(err)
				}
				mu.Lock()
				defer mu.Unlock()
				for c := range peers {
					c.Write(frame)
				}
			},
		}
	})
}

func accept(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}
