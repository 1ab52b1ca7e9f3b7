package sente

import (
	"context"
	"net/http"
	"time"
)

// recent is a node's log of the latest pushes: every push after start up to
// last, at most max of them. The ring grows as pushes come, up to max, then
// wraps. Guarded by the server's mu.
type recent struct {
	start, last Position
	ring        []Push
	max         int
	head        int // of the oldest push, once the ring wraps
}

func (r *recent) reset(start Position, size int) {
	r.start, r.last = start, start
	r.max = size
	clear(r.ring)
	r.ring = r.ring[:0]
	r.head = 0
}

// add records p, which follows last in the log.
func (r *recent) add(p Push) {
	if p.Pos.IsZero() {
		return // not in the log: sent while the broker was away
	}
	if p.Pos.Epoch != r.last.Epoch {
		// A new history: the broker delivers it from its start.
		r.reset(Position{Epoch: p.Pos.Epoch}, r.max)
	}
	r.last = p.Pos
	switch {
	case r.max <= 0:
		r.start = p.Pos
	case len(r.ring) < r.max:
		r.ring = append(r.ring, p)
	default:
		r.start = r.ring[r.head].Pos
		r.ring[r.head] = p
		r.head = (r.head + 1) % len(r.ring)
	}
}

// holds reports whether every push after from is here.
func (r *recent) holds(from Position) bool {
	return from.Epoch == r.start.Epoch && from.Seq >= r.start.Seq
}

// between appends to out the pushes after from up to upto that match (uid,
// clientID).
func (r *recent) between(out []outItem, from, upto Position, uid, clientID string) []outItem {
	for i := range r.ring {
		p := &r.ring[(r.head+i)%len(r.ring)]
		if p.Pos.Seq > from.Seq && p.Pos.Seq <= upto.Seq && addresses(p, uid, clientID) {
			out = append(out, outItem{data: p.Event, pos: p.Pos})
		}
	}
	return out
}

// addresses reports whether push p is for the client clientID of user uid.
func addresses(p *Push, uid, clientID string) bool {
	switch p.Target {
	case ToUser:
		return p.To == uid
	case ToClient:
		return p.To == clientID
	case ToAll:
		return true
	}
	return false
}

// replayTimeout bounds the broker's part of a resume.
const replayTimeout = 4 * time.Second

// resumeFrom reads the position a client asks to resume from: the "pos"
// query parameter. ok is false when there is none or it is malformed.
func resumeFrom(r *http.Request) (pos Position, ok bool) {
	v := r.URL.Query().Get("pos")
	if v == "" {
		return Position{}, false
	}
	pos, err := ParsePosition(v)
	return pos, err == nil
}

// resume fills c's outbox with what the client missed: the pushes after from
// up to upto, where its outbox takes over (what was handed to a transport of
// this node but may not have arrived, or what the node delivered before the
// client arrived here), then what waits in the outbox. held is what the
// node's log holds of that range; the broker is asked for the part before
// start when the log does not reach back to from. It returns the position
// the client is at now. lost reports that pushes after from could not be
// found: the client then gets what is held and is placed at start, the
// oldest position from which the node holds everything, so that a client
// resuming from there (an Ajax client's next poll) gets it again. Called by
// attach, before the transport starts taking from the outbox.
func (s *Server) resume(c *client, from, upto, last, start Position, held []outItem, inRing bool) (at Position, lost bool) {
	// The client is placed at the end of the range if nothing is replayed,
	// otherwise just before what is: its position moves on as the
	// replayed pushes reach it, and a drop meanwhile loses nothing.
	if from.Epoch != upto.Epoch {
		c.box.resume(held, last)
		return before(held, start, last), true
	}
	if from.Seq >= upto.Seq {
		// Nothing handed over is missing: what waits follows (without
		// what the client got on another node, up to from).
		c.box.resume(nil, from)
		return from, false
	}
	var items []outItem
	if !inRing {
		// Bounded well under the clients' handshake wait (10 s): a replay
		// that takes longer tells the client lost rather than making it
		// give up and come back with a larger gap.
		ctx, cancel := context.WithTimeout(s.ctx, replayTimeout)
		defer cancel()
		var err error
		lost, err = s.broker.Replay(ctx, from, start, func(p Push) {
			if addresses(&p, c.uid, c.id) {
				items = append(items, outItem{data: p.Event, pos: p.Pos})
			}
		})
		if err != nil {
			s.log.Error("sente: broker replay", "uid", c.uid, "client", c.id, "from", from.String(), "err", err)
			lost = true
		}
	}
	if lost {
		c.box.resume(held, upto)
		return before(held, start, upto), true
	}
	items = append(items, held...)
	c.box.resume(items, upto)
	return before(items, from, upto), false
}

// before returns from when items are to be replayed, upto otherwise.
func before(items []outItem, from, upto Position) Position {
	if len(items) > 0 {
		return from
	}
	return upto
}
