package via

import (
	"runtime/debug"
	"strconv"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// Event kinds.
const (
	// PeerConnected: a connection to the peer is ready: it was accepted, or
	// dialed (and, after a reconnect, [Options.OnReconnect] has succeeded).
	// Fires on every reconnect.
	PeerConnected EventKind = iota + 1
	// PeerDisconnected: the connection announced by PeerConnected ended.
	// Err is why (a *wsasync.CloseError), nil when this end closed it. An
	// originator then reconnects unless it was disconnected on purpose.
	PeerDisconnected
	// PeerRemoved: the peer left the peer table, for good.
	PeerRemoved
	// HeartbeatFailed: the peer sent nothing, not even a pong, for the
	// heartbeat interval plus the heartbeat timeout, and its connection was
	// dropped. Err wraps wsasync.ErrPingTimeout. PeerDisconnected follows.
	HeartbeatFailed
	// UnknownEvent: the peer called an id that is not exported or has no
	// handler (ID says which). It was answered 400 if it asked for a reply.
	UnknownEvent
	// UnhandledReply: a reply came whose request id is not waiting, most
	// often because the Invoke had timed out.
	UnhandledReply
	// SessionChanged: the peer's session context changed, locally or by an
	// accepted sync from the peer. Session is the new context.
	SessionChanged
	// BadMessage: a message could not be decoded or its envelope was
	// malformed (Err says why). It was answered 400 if it carried a request
	// id; the connection carries on.
	BadMessage

	// Subscription outcomes, on the subscriber's side ([Subscribe]); Key
	// is the subscription's key and ID its id. A sequence gap in a
	// subscription's pushes is reported as BadMessage with Key set.

	// Subscribed: the peer accepted a subscription, first or again after a
	// reconnect or a resync.
	Subscribed
	// SubscribeFailed: the peer refused a subscription, or did not answer
	// in time (Err says why; it matches ErrInvalidSubscription when the
	// peer does not publish the id).
	SubscribeFailed
	// Unsubscribed: a subscription the peer had accepted ended; Err says
	// why (see [Remote.Err]).
	Unsubscribed
	// UnknownSubscription: the peer subscribed to something this endpoint
	// does not publish or export (it was answered 400), or sent a value or
	// patch for a key that is not subscribed (Message is the message).
	UnknownSubscription
)

var kindNames = [...]string{
	PeerConnected:       "peer connected",
	PeerDisconnected:    "peer disconnected",
	PeerRemoved:         "peer removed",
	HeartbeatFailed:     "heartbeat failed",
	UnknownEvent:        "unknown event",
	UnhandledReply:      "unhandled reply",
	SessionChanged:      "session changed",
	BadMessage:          "bad message",
	Subscribed:          "subscribed",
	SubscribeFailed:     "subscribe failed",
	Unsubscribed:        "unsubscribed",
	UnknownSubscription: "unknown subscription",
}

func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a lifecycle or diagnostic event of an endpoint. Read them from
// [Endpoint.Events] or with a listener ([Endpoint.Listen]).
type Event struct {
	Kind   EventKind
	Time   time.Time
	PeerID string
	Role   Role
	// ID is the event id, for UnknownEvent, or the subscription id, for
	// the subscription kinds.
	ID string
	// Key is the subscription key, for the subscription kinds.
	Key string
	// Err is the cause, for PeerDisconnected, HeartbeatFailed, BadMessage,
	// SubscribeFailed and Unsubscribed.
	Err error
	// Session is the new session context, for SessionChanged. It is a copy.
	Session map[string]any
	// Message is the message as received, for BadMessage, UnknownEvent,
	// UnhandledReply and UnknownSubscription. It may not be valid JSON.
	Message []byte
}

type listener struct{ f func(Event) }

// Listen calls f with every event from now on, and returns a function that
// stops it. f runs synchronously on the goroutine that caused the event (a
// connection's read loop, a reconnect loop, a caller of
// [Peer.SetSession]), so it sees the events of one peer in order, but it
// must be quick and must not block: to call the peer, or to wait for
// anything, start a goroutine. A listener that panics is logged and the
// panic goes no further.
func (e *Endpoint) Listen(f func(Event)) (remove func()) {
	l := &listener{f: f}
	e.lmu.Lock()
	e.listeners = append(e.listeners[:len(e.listeners):len(e.listeners)], l)
	e.lmu.Unlock()
	return func() {
		e.lmu.Lock()
		defer e.lmu.Unlock()
		for i, x := range e.listeners {
			if x == l {
				ls := make([]*listener, 0, len(e.listeners)-1)
				ls = append(ls, e.listeners[:i]...)
				e.listeners = append(ls, e.listeners[i+1:]...)
				return
			}
		}
	}
}

// Events returns the endpoint's event stream: every event, in a sliding
// buffer of [Options.EventBuffer] events. The endpoint never waits for its
// reader: when the buffer is full the oldest event is dropped to make room.
// Read it promptly, or use [Endpoint.Listen] when no event may be missed.
// Every call returns the same channel; it is closed, after the events still
// buffered, once [Endpoint.Close] has finished.
func (e *Endpoint) Events() <-chan Event { return e.events.Out() }

// emit delivers ev to the listeners and the stream.
func (e *Endpoint) emit(ev Event) {
	ev.Time = time.Now()
	e.lmu.Lock()
	ls := e.listeners
	e.lmu.Unlock()
	for _, l := range ls {
		e.callListener(l, ev)
	}
	e.emu.RLock()
	if !e.evClosed {
		// The sliding buffer reads at once and never waits.
		e.evIn <- ev
	}
	e.emu.RUnlock()
}

func (e *Endpoint) callListener(l *listener, ev Event) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("via: event listener panicked", "event", ev.Kind.String(), "panic", v, "stack", string(debug.Stack()))
		}
	}()
	l.f(ev)
}

// peerEvent makes an event about p.
func (p *Peer) event(k EventKind) Event {
	return Event{Kind: k, PeerID: p.id, Role: p.role}
}
