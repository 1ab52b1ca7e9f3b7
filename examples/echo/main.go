// Command echo serves a page that talks to a WebSocket echo endpoint.
//
//	go run ./examples/echo            # then open http://localhost:8080
//	go run ./examples/echo -addr :9000
package main

import (
	_ "embed"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/wsasync/wsasync"
)

//go:embed index.html
var page []byte

// echo answers each message with itself, text upper-cased so the page shows
// the round trip, and closes with 1000 when the page goes.
func echo(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
	defer close(out)
	for m := range in {
		if m.Type == wsasync.TextMessage {
			m = wsasync.Text(strings.ToUpper(string(m.Data)))
		}
		out <- m
	}
	slog.Info("connection ended", "why", <-errs)
}

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	flag.Parse()

	mux := http.NewServeMux()
	mux.Handle("GET /ws", wsasync.GoWebsocket(echo))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	slog.Info("serving", "url", "http://"+*addr)
	if err := http.ListenAndServe(*addr, mux); err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
}
