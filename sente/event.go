package sente

import (
	"errors"
	"net/http"
)

// Event is one event received by the server: from a client, or one the
// server makes itself (chsk/uidport-open and -close, chsk/client-connect and
// -disconnect, chsk/bad-package, chsk/bad-event).
type Event struct {
	// ID is the event id, such as "chat/msg".
	ID string
	// Data is the event's data as packed by the client; nil when absent.
	// Decode unpacks it.
	Data Raw
	// UserID is the user the connection belongs to ("" when anonymous).
	UserID string
	// ClientID is the id the client chose for itself.
	ClientID string
	// Request is the handshake request of the connection (for Ajax, the
	// request that carried the event). Nil for events about users.
	Request *http.Request

	reply  func(v any) error
	packer Packer
}

// ErrNoReply is returned by Reply when the client asked for no reply.
var ErrNoReply = errors.New("sente: the client asked for no reply")

// ErrReplied is returned by Reply when the event was answered already.
var ErrReplied = errors.New("sente: already replied")

// WantsReply reports whether the client asked for a reply.
func (e *Event) WantsReply() bool { return e.reply != nil }

// Reply answers the event with v, once. It returns ErrNoReply when the
// client asked for no reply, and an error when the connection is gone.
func (e *Event) Reply(v any) error {
	if e.reply == nil {
		return ErrNoReply
	}
	return e.reply(v)
}

// Decode unpacks the event's data into v. Absent data leaves v as it is.
func (e *Event) Decode(v any) error {
	if e.Data == nil {
		return nil
	}
	p := e.packer
	if p == nil {
		p = JSON{}
	}
	return p.Unmarshal(e.Data, v)
}

// ErrGone is returned by Reply when the client is gone for good.
var ErrGone = errors.New("sente: client gone")
