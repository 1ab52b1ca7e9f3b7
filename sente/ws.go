package sente

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/wsasync/wsasync"
)

// serveWebSocket runs the WebSocket transport: one goroutine per connection
// (the core's handler) owns out; it sends the handshake, then takes events
// from the socket and frames from the client's outbox.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, clientID, uid string) {
	c, err := s.up.Accept(w, r)
	if err != nil {
		return // answered with an HTTP status, and logged by the core
	}
	s.conns.Add(1) // Shutdown waits for the connection, not just this request
	go func() {
		defer s.conns.Done()
		defer func() { <-c.Done }()
		defer close(c.Out) // closes with 1000 unless a close was sent
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("sente: connection panicked", "uid", uid, "client", clientID, "panic", v)
				select {
				case c.Out <- wsasync.Closed(wsasync.StatusInternalError, "internal error"):
				default:
				}
			}
		}()
		l := s.attach(clientID, uid, r, false)
		defer s.detach(l)
		s.runWebSocket(l, uid, clientID, r, c.In, c.Out)
	}()
}

func (s *Server) runWebSocket(l *link, uid, clientID string, r *http.Request, in <-chan wsasync.Message, out chan<- wsasync.Message) {
	msg := func(frame []byte) wsasync.Message {
		if s.w.p.Binary() {
			return wsasync.Binary(frame)
		}
		return wsasync.Message{Type: wsasync.TextMessage, Data: frame}
	}
	hs, err := s.handshake(r, uid, l)
	if err != nil {
		out <- wsasync.Closed(wsasync.StatusInternalError, "handshake")
		return
	}
	out <- msg(hs)

	var (
		timer  *time.Timer
		timerC <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// The beacon moves an idle client along the log (see take), so that
	// its position stays within the history when it resumes.
	beacon := time.NewTicker(beaconInterval)
	defer beacon.Stop()
	told := l.at
	closing := false
	for {
		select {
		case <-beacon.C:
			if closing {
				continue
			}
			if at := s.last(); at != told && l.c.box.idle() {
				told = at
				l.c.box.markSent(at)
				out <- msg(s.w.batch(nil, at))
			}
			continue
		case m, ok := <-in:
			if !ok {
				return
			}
			c := l.c
			if ev := s.parse(m.Data, uid, clientID, r, func(cb string, v any) error { return s.reply(c, cb, v) }); ev != nil {
				s.emit(ev)
			}
			continue
		case m := <-l.kick:
			if !closing {
				closing = true
				out <- m
			}
			continue
		case <-l.wake:
		case <-timerC:
			timerC = nil
		}
		if closing {
			continue
		}
		seen := s.last()
		frames, wait := l.c.box.take(s.w, s.window, seen, 0)
		for _, f := range frames {
			select {
			case out <- msg(f):
			case m := <-l.kick:
				closing = true
				out <- m
			}
			if closing {
				break
			}
		}
		if len(frames) > 0 {
			told = seen
		}
		if wait > 0 && timerC == nil {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}
	}
}

// beaconInterval is how often an idle WebSocket client is told the node's
// position.
const beaconInterval = 15 * time.Second

// handshake packs the first frame for a client of user uid whose request is r
// and whose link is l: [["chsk/handshake", [uid, null, data, pos, lost]],
// null]. A failure is logged.
func (s *Server) handshake(r *http.Request, uid string, l *link) (hs []byte, err error) {
	defer func() {
		if err != nil {
			s.log.Error("sente: packing handshake", "err", err)
		}
	}()
	var data any
	if s.opts.HandshakeData != nil {
		data = s.opts.HandshakeData(r)
	}
	pd, err := s.w.value(data)
	if err != nil {
		return nil, err
	}
	if data == nil {
		pd = s.w.null
	}
	puid, err := s.w.p.Marshal(uid)
	if err != nil {
		return nil, err
	}
	ppos, err := s.w.p.Marshal(l.at.String())
	if err != nil {
		return nil, err
	}
	plost, err := s.w.p.Marshal(l.lost)
	if err != nil {
		return nil, err
	}
	args := s.w.p.AppendArray(nil, puid, s.w.null, pd, ppos, plost)
	pid, err := s.w.p.Marshal(EventHandshake)
	if err != nil {
		return nil, err
	}
	return s.w.frame(s.w.p.AppendArray(nil, pid, args), ""), nil
}

// parse turns one frame from a client into an event for the application,
// with reply sending the answer when the client asked for one. It returns nil
// for frames the protocol consumes itself (pings, and bad packages and events,
// which it reports).
func (s *Server) parse(frame []byte, uid, clientID string, r *http.Request, reply func(cb string, v any) error) *Event {
	payload, cb, err := s.w.unframe(frame)
	if err != nil {
		s.bad(EventBadPackage, uid, clientID, r, frame, err)
		return nil
	}
	id, data, err := s.w.unevent(payload)
	if err != nil {
		s.bad(EventBadEvent, uid, clientID, r, payload, err)
		return nil
	}
	switch id {
	case EventPing:
		if cb != "" {
			reply(cb, replyPong)
		}
		return nil
	case EventPong:
		return nil
	}
	if err := checkAppEventID(id); err != nil {
		s.bad(EventBadEvent, uid, clientID, r, payload, err)
		return nil
	}
	ev := &Event{ID: id, Data: data, UserID: uid, ClientID: clientID, Request: r}
	if cb != "" {
		var once atomic.Bool
		ev.reply = func(v any) error {
			if once.Swap(true) {
				return ErrReplied
			}
			return reply(cb, v)
		}
	}
	return ev
}

// reply queues [v, cb] for the client, after what waits for it already.
func (s *Server) reply(c *client, cb string, v any) error {
	pv, err := s.w.value(v)
	if err != nil {
		return err
	}
	if v == nil {
		pv = s.w.null
	}
	if !c.box.put(outItem{data: s.w.frame(pv, cb), frame: true}, true) {
		return ErrGone
	}
	return nil
}

// bad reports a frame that could not be read as an event.
func (s *Server) bad(id, uid, clientID string, r *http.Request, raw []byte, err error) {
	s.log.Warn("sente: "+id, "uid", uid, "client", clientID, "err", err, "len", len(raw))
	var v any = string(raw)
	if s.w.p.Binary() {
		v = raw
	}
	data, perr := s.w.p.Marshal(v)
	if perr != nil {
		data = nil
	}
	s.emit(&Event{ID: id, Data: data, UserID: uid, ClientID: clientID, Request: r})
}
