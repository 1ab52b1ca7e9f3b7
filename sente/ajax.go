package sente

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/wsasync/wsasync"
)

// The Ajax transport, for clients behind proxies that break WebSocket: a
// long-poll GET carries pushes, a POST per client event carries the event and
// its reply (see PROTOCOL.md, section 5).

const (
	replyAck   = "chsk/dummy-cb-200"
	eventClose = "chsk/close"
)

func (s *Server) serveAjax(w http.ResponseWriter, r *http.Request, clientID, uid string) {
	switch r.Method {
	case http.MethodGet:
		s.servePoll(w, r, clientID, uid)
	case http.MethodPost:
		s.servePost(w, r, clientID, uid)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.refuse(w, r, http.StatusMethodNotAllowed, errors.New("method not allowed"))
	}
}

// writeFrame answers an Ajax request with one frame.
func (s *Server) writeFrame(w http.ResponseWriter, frame []byte) {
	h := w.Header()
	if s.w.p.Binary() {
		h.Set("Content-Type", "application/octet-stream")
	} else {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	h.Set("Cache-Control", "no-store")
	w.Write(frame)
}

// marker packs [value, null] for a protocol string such as "chsk/timeout".
func (s *Server) marker(v string) []byte {
	pv, _ := s.w.p.Marshal(v)
	return s.w.frame(pv, "")
}

// servePoll answers a handshake at once, or holds the request until pushes
// are due, the client is closed, or the poll timeout passes.
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request, clientID, uid string) {
	s.mu.Lock()
	c := s.clients[clientID]
	known := c != nil && c.uid == uid
	stranger := c != nil && c.uid != uid
	s.mu.Unlock()
	_, resuming := resumeFrom(r)

	l := s.attach(clientID, uid, r, true)
	defer s.detach(l)
	if stranger || (!known && !resuming) || l.lost || r.URL.Query().Has("handshake") {
		// A client the server does not know (new, or after a restart or a
		// login) learns its user id first; one whose missed pushes are
		// lost learns it too. A client that gives its position may have
		// polled another node last: its pushes are replayed here.
		hs, err := s.handshake(r, uid, l)
		if err != nil {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		s.writeFrame(w, hs)
		return
	}

	poll := time.NewTimer(s.pollTimeout)
	defer poll.Stop()
	var (
		window  *time.Timer
		windowC <-chan time.Time
	)
	defer func() {
		if window != nil {
			window.Stop()
		}
	}()
	for {
		select {
		case <-l.wake:
		case <-windowC:
			windowC = nil
		case m := <-l.kick:
			if m.Type == 0 {
				s.writeFrame(w, s.marker(replyTimeout)) // superseded
			} else {
				s.writeFrame(w, s.closeFrame(m))
			}
			return
		case <-poll.C:
			// An idle poll carries the node's position (see take).
			if at := s.last(); l.c.box.idle() && !at.IsZero() {
				pv, _ := s.w.p.Marshal(replyTimeout)
				pos, _ := s.w.p.Marshal(at.String())
				l.c.box.markSent(at)
				s.writeFrame(w, s.w.p.AppendArray(nil, pv, s.w.null, pos))
			} else {
				s.writeFrame(w, s.marker(replyTimeout))
			}
			return
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			s.writeFrame(w, s.closeFrame(wsasync.Closed(CodeRestart, "server shutting down")))
			return
		}
		// One response carries one frame; anything after the first (a
		// reply queued for a WebSocket connection of this client) waits
		// for the next poll.
		frames, wait := l.c.box.take(s.w, s.ajaxWindow, s.last(), 1)
		if len(frames) > 0 {
			s.writeFrame(w, frames[0])
			return
		}
		if wait > 0 && windowC == nil {
			window = time.NewTimer(wait)
			windowC = window.C
		}
	}
}

// closeFrame packs the in-band close of the Ajax transport:
// [["chsk/close", [code, reason]], null].
func (s *Server) closeFrame(m wsasync.Message) []byte {
	code := wsasync.StatusNormalClosure
	reason := ""
	if len(m.Data) >= 2 {
		code = wsasync.StatusCode(m.Data[0])<<8 | wsasync.StatusCode(m.Data[1])
		reason = string(m.Data[2:])
	}
	ev, err := s.w.event(eventClose, []any{int(code), reason})
	if err != nil {
		return s.marker(replyTimeout)
	}
	return s.w.frame(ev, "")
}

// servePost takes one client event and answers with its reply, an
// acknowledgement, or the timeout marker.
func (s *Server) servePost(w http.ResponseWriter, r *http.Request, clientID, uid string) {
	limit := s.up.ReadLimit
	if limit == 0 {
		limit = wsasync.DefaultReadLimit
	}
	var src io.Reader = r.Body
	if limit > 0 { // negative: no limit
		src = http.MaxBytesReader(w, r.Body, limit)
	}
	body, err := io.ReadAll(src)
	if err != nil {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, err)
		return
	}
	replies := make(chan []byte, 1)
	var (
		mu       sync.Mutex
		answered bool
	)
	ev := s.parse(body, uid, clientID, r, func(cb string, v any) error {
		pv, err := s.w.value(v)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if answered {
			return ErrGone
		}
		select {
		case replies <- s.w.frame(pv, cb):
			return nil
		default:
			return ErrReplied
		}
	})
	if ev == nil {
		// A bad package or event, or a protocol event: acknowledged, or
		// answered (chsk/ws-ping's "pong").
		select {
		case f := <-replies:
			s.writeFrame(w, f)
		default:
			s.writeFrame(w, s.marker(replyAck))
		}
		return
	}
	if !ev.WantsReply() {
		s.emit(ev)
		s.writeFrame(w, s.marker(replyAck))
		return
	}
	s.emit(ev)
	t := time.NewTimer(s.pollTimeout)
	defer t.Stop()
	defer func() { // a later Reply reaches nobody: it says so
		mu.Lock()
		answered = true
		mu.Unlock()
	}()
	select {
	case f := <-replies:
		s.writeFrame(w, f)
	case <-t.C:
		s.writeFrame(w, s.marker(replyTimeout))
	case <-r.Context().Done():
	case <-s.ctx.Done():
		s.writeFrame(w, s.marker(replyTimeout))
	}
}
