package via

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Errors returned by calls to peers.
var (
	// ErrUnknownPeer: no peer has that id (it was never there, or it has
	// been removed).
	ErrUnknownPeer = errors.New("via: unknown peer")
	// ErrNotConnected: the peer is in the table but has no ready connection
	// (it is connecting, reconnecting or disconnecting). Nothing was sent;
	// nothing is queued for later.
	ErrNotConnected = errors.New("via: peer not connected")
	// ErrClosed: the connection ended before the message was sent or, for
	// Invoke, before the reply came. Invoke returns it as soon as the
	// connection drops, without waiting for its timeout.
	ErrClosed = errors.New("via: connection closed")
	// ErrTimeout: no reply came before the context's deadline (or
	// [Options.RequestTimeout]). errors.Is also matches
	// context.DeadlineExceeded.
	ErrTimeout = errors.New("via: request timed out")
	// ErrTooLarge: the encoded message is bigger than the read limit, so the
	// peer would close the connection on receiving it. Nothing was sent.
	ErrTooLarge = errors.New("via: message exceeds the read limit")
	// ErrEndpointClosed: the endpoint has been closed.
	ErrEndpointClosed = errors.New("via: endpoint closed")
	// ErrReplied: the call has already been answered.
	ErrReplied = errors.New("via: call already answered")
)

// StatusError is a reply whose status is not 200, as returned by Invoke. A
// handler may return one too: the caller then gets that status and body.
type StatusError struct {
	Status int
	// Body is the reply's body (JSON; "null" when there was none).
	Body json.RawMessage
	err  error
}

func (e *StatusError) Error() string {
	s := "via: status " + strconv.Itoa(e.Status)
	if t := http.StatusText(e.Status); t != "" {
		s += " " + t
	}
	if len(e.Body) > 0 && string(e.Body) != "null" {
		b := string(e.Body)
		if len(b) > 200 {
			b = b[:200] + "..."
		}
		s += ": " + b
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

// Unwrap returns the local cause, if any (a Decode error).
func (e *StatusError) Unwrap() error { return e.err }

// Decode unmarshals the reply's body into v.
func (e *StatusError) Decode(v any) error { return json.Unmarshal(e.Body, v) }

// Handler handles one call from a peer. It runs on the peer's worker: the
// calls of one peer are handled one at a time, in the order they arrived,
// while other peers' calls run on their own workers.
//
// If the caller asked for a reply ([Call.WantsReply]), the handler answers
// with [Call.Reply]; returning nil without replying answers 200 with a null
// body, returning a [*StatusError] answers its status and body, and
// returning any other error (or panicking) answers 500 with the body
// {"error":"internal error"}: the error is logged, never sent.
//
// ctx is cancelled when the connection the call came on ends or the endpoint
// closes. Calls already received when a connection ends are still handled,
// in order (a Dispatch followed by a disconnect is not lost), but their
// replies can no longer be sent.
//
// A handler may call any peer, the caller included: replies to its own
// Invokes are read by the connection's read loop, not queued behind it. It
// must not wait for the caller to call back into this endpoint, whose next
// call queues behind the running one.
type Handler func(ctx context.Context, c *Call) error

// Interceptor wraps a handler, as HTTP middleware does. It can act before
// and after next, or answer in its place (reply with 403 and return without
// calling next, or disconnect the peer).
type Interceptor func(next Handler) Handler

// Chain wraps h in interceptors; the first one is the outermost.
func Chain(h Handler, interceptors ...Interceptor) Handler {
	for i := len(interceptors) - 1; i >= 0; i-- {
		h = interceptors[i](h)
	}
	return h
}

// Call is one call from a peer, as a handler sees it.
type Call struct {
	// ID is the event id called.
	ID string
	// Body is the call's argument, as JSON ("null" when there was none).
	Body json.RawMessage
	// Headers are the call's headers, nil when there were none.
	Headers map[string]string

	h       Handler
	peer    *Peer
	link    *link
	rid     string
	key     string // of a sub or unsub
	sub     bool
	replied atomic.Bool
}

// IsSubscription reports whether the call is a peer subscribing to ID (see
// [Endpoint.Publish]) rather than an event. An interceptor that answers in
// the handler's place refuses the subscription.
func (c *Call) IsSubscription() bool { return c.sub }

// Peer returns the peer that made the call.
func (c *Call) Peer() *Peer { return c.peer }

// WantsReply reports whether the caller asked for a reply (Invoke) rather
// than firing and forgetting (Dispatch).
func (c *Call) WantsReply() bool { return c.rid != "" }

// Decode unmarshals the body into v. Its error is a *StatusError with status
// 400: returned from the handler, it answers the caller 400
// {"error":"bad request"}.
func (c *Call) Decode(v any) error {
	if err := json.Unmarshal(c.Body, v); err != nil {
		return &StatusError{Status: http.StatusBadRequest, Body: mustJSON(errorBody{Error: errBadRequest}), err: err}
	}
	return nil
}

// Reply answers the call with status (100 to 599; 200 means success) and
// body, which is encoded as JSON. Answer before the handler returns: the
// first answer counts, later ones (and the automatic answer of a handler
// that returned) make Reply return ErrReplied. When the caller asked for no reply, Reply does nothing.
// It waits while the connection's outgoing buffer is full, and fails with
// ErrClosed if the connection has ended.
func (c *Call) Reply(status int, body any) error {
	if status < 100 || status > 599 {
		return fmt.Errorf("via: reply status %d out of range", status)
	}
	if c.rid == "" {
		return nil
	}
	data, err := encodeReply(c.rid, status, body)
	if err != nil {
		return err
	}
	if !c.replied.CompareAndSwap(false, true) {
		return ErrReplied
	}
	return c.link.send(context.Background(), data)
}

// fail answers with an error status unless an answer was given.
func (c *Call) fail(status int, body json.RawMessage) {
	if c.rid == "" || c.replied.Load() {
		return
	}
	c.Reply(status, body)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type headersKey struct{}

// WithHeaders returns a context whose outgoing calls (Dispatch, Invoke,
// SendToTag, Broadcast) carry headers h. The map must not be changed
// afterwards.
func WithHeaders(ctx context.Context, h map[string]string) context.Context {
	return context.WithValue(ctx, headersKey{}, h)
}

func headersFrom(ctx context.Context) map[string]string {
	h, _ := ctx.Value(headersKey{}).(map[string]string)
	return h
}

// ctxErr turns the end of a call's context into its error.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}
