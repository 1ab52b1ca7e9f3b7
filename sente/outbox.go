package sente

import (
	"sync"
	"time"
)

// outbox holds what waits to go to one client, in order: pushed events,
// which leave in batches, and replies, which leave as they are. It outlives a
// connection during the grace period, so that a client that reconnects
// quickly gets what was pushed meanwhile. A transport takes from it.
type outbox struct {
	mu    sync.Mutex
	items []outItem
	floor Position // pushes of its epoch up to it were sent or replayed: later copies are dropped
	// sent is the position up to which every push for the client was
	// handed to a transport (or predates the client): a client that
	// resumes from before it needs (from, sent] replayed, and what waits
	// here follows.
	sent   Position
	first  time.Time // when the oldest event waiting for its batch came; zero when none waits
	flush  bool      // send what waits now
	limit  int
	closed bool
	wake   chan struct{} // the current transport's; cap 1
}

type outItem struct {
	data  []byte // a packed event, or a whole frame for a reply
	frame bool
	pos   Position // a push's place in the log; zero for replies and unlogged pushes
}

// put queues it. It reports false when the queue is full (the client is too
// slow) or closed.
func (o *outbox) put(it outItem, flush bool) bool {
	o.mu.Lock()
	if o.closed || len(o.items) >= o.limit {
		o.mu.Unlock()
		return false
	}
	if o.floor.covers(it.pos) {
		o.mu.Unlock()
		return true // replayed already
	}
	if !it.frame && o.first.IsZero() {
		o.first = time.Now()
	}
	o.items = append(o.items, it)
	o.flush = o.flush || flush || it.frame
	wake := o.wake
	o.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	return true
}

// setWake makes wake the channel signalled when something is queued, and
// signals it if something already is.
func (o *outbox) setWake(wake chan struct{}) {
	o.mu.Lock()
	o.wake = wake
	pending := len(o.items) > 0
	o.mu.Unlock()
	if pending && wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// take returns the frames due at now: every item once a flush is asked for or
// the oldest event's window has passed, in at most max frames (0: no limit);
// what does not fit stays, due. Otherwise it returns how long until the
// window ends (0 when nothing waits). seen is a position up to which every
// push for the client was queued before take: when everything is taken, the
// last batch carries it, so that a client that gets no pushes still moves
// along the log. What is taken counts as handed to the client (sent) from
// here on: a client that resumes from before it gets it replayed.
func (o *outbox) take(w wire, window time.Duration, seen Position, max int) (frames [][]byte, wait time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) == 0 {
		return nil, 0
	}
	if !o.flush {
		if left := window - time.Since(o.first); left > 0 {
			return nil, left
		}
	}
	var (
		events [][]byte
		last   Position // of the batch's last logged push
		n      int      // items taken
	)
	full := func() bool { return max > 0 && len(frames) >= max }
	for _, it := range o.items {
		if !it.frame {
			if full() {
				break
			}
			events = append(events, it.data)
			if it.pos.Seq != 0 {
				last = it.pos
			}
			n++
			continue
		}
		if len(events) > 0 {
			frames = append(frames, w.batch(events, last))
			o.markSentLocked(last)
			events, last = nil, Position{}
		}
		if full() {
			break
		}
		frames = append(frames, it.data)
		n++
	}
	if len(events) > 0 {
		if n == len(o.items) && seen.Epoch == last.Epoch && seen.Seq > last.Seq {
			last = seen
		}
		frames = append(frames, w.batch(events, last))
		o.markSentLocked(last)
	}
	if n == len(o.items) {
		o.items = nil
		o.flush = false
		o.first = time.Time{}
		o.markSentLocked(seen)
	} else {
		o.items = append([]outItem(nil), o.items[n:]...) // the rest stays due
	}
	return frames, 0
}

// markSent records that the client was handed everything up to p.
func (o *outbox) markSent(p Position) {
	o.mu.Lock()
	o.markSentLocked(p)
	o.mu.Unlock()
}

func (o *outbox) markSentLocked(p Position) {
	if !p.IsZero() && (p.Epoch != o.sent.Epoch || p.Seq > o.sent.Seq) {
		o.sent = p
	}
}

func (o *outbox) sentPos() Position {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sent
}

// resume replaces the pushes that wait by replayed, the client's pushes after
// its position up to floor, followed by what waits after floor; pushes up to
// floor that come later are dropped. Replies stay, in their place relative
// to the pushes that stay.
func (o *outbox) resume(replayed []outItem, floor Position) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	items := make([]outItem, 0, len(replayed)+len(o.items))
	items = append(items, replayed...)
	for _, it := range o.items {
		if !floor.covers(it.pos) {
			items = append(items, it)
		}
	}
	o.items = items
	o.floor = floor
	if len(items) > 0 {
		o.flush = true
		if o.first.IsZero() {
			o.first = time.Now()
		}
	}
}

// idle reports that nothing waits.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items) == 0
}

// close drops what waits and refuses more.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.items = nil
	o.first = time.Time{}
	o.mu.Unlock()
}

// covers reports whether push position p is at or before f, in f's epoch.
func (f Position) covers(p Position) bool {
	return p.Seq != 0 && p.Epoch == f.Epoch && p.Seq <= f.Seq
}
