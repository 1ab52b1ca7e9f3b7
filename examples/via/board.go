package main

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/wsasync/wsasync/via"
)

//go:embed index.html
var page []byte

// Board is the shared live value: every browser tab and Go peer subscribes
// to it ("board") and changes it through calls ("board/incr", "board/add",
// "board/clear"). Changes to Count and Peers go out as small merge patches;
// a change to Notes sends the whole list (merge patches replace arrays).
type Board struct {
	Count int    `json:"count"`
	Notes []Note `json:"notes"`
	Peers int    `json:"peers"` // connected right now
}

// Note is one line on the board.
type Note struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
	By   string `json:"by"`
}

const (
	maxNotes = 20
	maxText  = 200
)

// server is the demo's HTTP handler: the page at /, the via endpoint at
// /via (WebSocket) and /via/via.js (the browser client).
type server struct {
	http.Handler
	via   *via.Endpoint
	board *via.Value[Board]
}

func newServer(log *slog.Logger) *server {
	s := &server{board: via.NewValue(Board{Notes: []Note{}})}
	s.via = via.New(via.Options{
		Exports: []string{"board", "board/"},
		Logger:  log,
	})
	s.via.Publish("board", via.Shared(s.board))
	s.via.Handle("board/incr", s.incr)
	s.via.Handle("board/add", s.add)
	s.via.Handle("board/clear", s.clear)
	// Listeners run on the connection's goroutine: quick updates only.
	s.via.Listen(func(ev via.Event) {
		if ev.Kind == via.PeerConnected || ev.Kind == via.PeerRemoved {
			n := len(s.via.Peers())
			s.board.Update(func(b Board) Board { b.Peers = n; return b })
		}
	})

	mux := http.NewServeMux()
	mux.Handle("/via", s.via)
	mux.Handle("/via/", s.via) // /via/via.js and /via/via.d.ts
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	s.Handler = mux
	return s
}

// Close disconnects every peer with 1001: browsers and Go peers reconnect
// once a server is back.
func (s *server) Close() error { return s.via.Close() }

// incr adds one to the count and answers the new count.
func (s *server) incr(ctx context.Context, c *via.Call) error {
	b := s.board.Update(func(b Board) Board { b.Count++; return b })
	return c.Reply(200, b.Count)
}

// add appends a note (a JSON string) from the caller, keeping the last 20.
func (s *server) add(ctx context.Context, c *via.Call) error {
	var text string
	if err := c.Decode(&text); err != nil {
		return err // 400
	}
	text = strings.TrimSpace(text)
	if text == "" || utf8.RuneCountInString(text) > maxText {
		return c.Reply(400, map[string]string{"error": "a note has 1 to 200 characters"})
	}
	by := "tab " + c.Peer().ID()[:4]
	if c.Headers["agent"] == "go" {
		by = "Go peer " + c.Peer().ID()[:4]
	}
	s.board.Update(func(b Board) Board {
		// Values are replaced, never changed in place: copy the list.
		notes := make([]Note, 0, maxNotes)
		if len(b.Notes) >= maxNotes {
			b.Notes = b.Notes[len(b.Notes)-maxNotes+1:]
		}
		next := 1
		if len(b.Notes) > 0 {
			next = b.Notes[len(b.Notes)-1].ID + 1
		}
		b.Notes = append(append(notes, b.Notes...), Note{ID: next, Text: text, By: by})
		return b
	})
	return nil
}

// clear empties the list of notes.
func (s *server) clear(ctx context.Context, c *via.Call) error {
	s.board.Update(func(b Board) Board { b.Notes = []Note{}; return b })
	return nil
}
