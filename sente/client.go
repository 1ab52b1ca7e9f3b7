package sente

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/wsasync/wsasync"
)

// Errors of [Client.Send] and [Client.Request].
var (
	// ErrClosed: the client is not connected (it is connecting, backing
	// off, or stopped), or the connection dropped before the reply came.
	ErrClosed error = errors.New("sente: client not connected")
	// ErrTimeout: no reply came before the request's deadline.
	// errors.Is(ErrTimeout, context.DeadlineExceeded) holds.
	ErrTimeout error = timeoutError{}
)

type timeoutError struct{}

func (timeoutError) Error() string { return "sente: request timed out" }
func (timeoutError) Unwrap() error { return context.DeadlineExceeded }
func (timeoutError) Timeout() bool { return true }

// Client defaults, used where a [ClientOptions] field is zero.
const (
	defaultRequestTimeout = 10 * time.Second
	defaultMinBackoff     = 500 * time.Millisecond
	defaultMaxBackoff     = 30 * time.Second
	defaultClientPing     = 20 * time.Second
	defaultClientPong     = 5 * time.Second
	clientEventBuffer     = 256
	stateBuffer           = 16
	// handshakeTimeout bounds one connection attempt: the TCP connect,
	// the HTTP upgrade and the wait for the handshake frame.
	handshakeTimeout = 10 * time.Second
	// stableAfter is how long a connection must stay open for its drop to
	// be followed by an immediate attempt. Connections that keep dropping
	// sooner back off like failed attempts, so that a server that accepts
	// and at once closes is not reconnected to in a tight loop.
	stableAfter = time.Second
)

// ClientOptions configure a [Client]. The zero value means the defaults.
type ClientOptions struct {
	// ClientID is the id the client gives itself (1 to 64 characters of
	// [A-Za-z0-9_-]), kept across reconnects. "" means a random 22-character
	// id. A malformed id stops the client at once.
	ClientID string
	// CSRFToken, when set, is called before each connection attempt; a
	// non-empty token is sent in the X-CSRF-Token header of the handshake.
	CSRFToken func() string
	// Header holds extra headers for the handshake request (cookies,
	// authorization). It must not be changed once the client is made.
	Header http.Header
	// Params are extra query parameters of the handshake URL.
	Params url.Values
	// Packer packs frames; it must match the server's. Nil means JSON. The
	// client offers the subprotocol "sente.v1."+Name().
	Packer Packer
	// RequestTimeout bounds a Request whose context has no deadline. Zero
	// means 10 s.
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff shape the reconnect schedule (see
	// [Backoff]). Zero means 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// WebSocket holds the core's settings. Where zero, the client pings
	// every 20 s (PingInterval) and drops a server silent for 5 s more
	// (PongTimeout), so a dead server is noticed within 25 s.
	WebSocket wsasync.Options
	// Logger receives connection failures and bad frames. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// CloseInfo says how a connection, or an attempt to make one, ended.
type CloseInfo struct {
	// Code is the close code: the server's when it closed, the one this
	// end sent when it did, StatusAbnormalClosure (1006) when no close
	// frame was exchanged or no connection was made.
	Code wsasync.StatusCode
	// Reason is the close reason, if any.
	Reason string
	// At is when the end was noticed.
	At time.Time
	// Err is why: the *wsasync.CloseError of the connection, or the error
	// of a failed attempt (a refused handshake wraps ws.StatusError, the
	// HTTP status, which errors.As finds).
	Err error
}

// State is a client's connection state.
type State struct {
	// Open reports that a connection is up and its handshake received.
	Open bool
	// EverOpened reports that a connection was open at some point.
	EverOpened bool
	// FirstOpen is true in the state of the change that opened the first
	// connection, and in no other.
	FirstOpen bool
	// UserID is the user id the server assigned in the last handshake.
	UserID string
	// HandshakeData is the data of the last handshake (nil when none).
	HandshakeData Raw
	// Lost reports that the last handshake resumed the client past the
	// server's history: pushes made while it was away may be missing.
	// (Without it, a reconnect delivers every push missed, in order, once.)
	Lost bool
	// LastClose is how the last connection or attempt ended; nil before
	// any did.
	LastClose *CloseInfo
	// Attempt is the number of connection attempts that failed since the
	// last open (or since the start).
	Attempt int
	// Stopped reports that the client will not connect again: it was
	// closed, kicked (CodeKicked) or replaced (CodeReplaced).
	Stopped bool
}

// Client is the Go end of a channel socket. It connects in the background,
// reconnects with backoff when the connection drops, and stops for good when
// closed or when the server kicks or replaces it. Its methods are safe for
// concurrent use.
//
//	c := sente.NewClient("wss://example.com/chsk", sente.ClientOptions{})
//	defer c.Close()
//	for ev := range c.Events() {
//		// a push from the server
//	}
type Client struct {
	url  string
	bad  error // a malformed URL or client id: the client stops at once
	id   string
	opts ClientOptions
	w    wire
	log  *slog.Logger

	events chan *Event
	states chan State
	done   chan struct{} // closed when stopped for good
	exited chan struct{} // closed when run has returned
	again  chan struct{} // Reconnect's request, cap 1
	ctx    context.Context
	cancel context.CancelFunc

	mu           sync.Mutex
	state        State
	statesClosed bool
	cur          *clientConn // the open connection; nil when not open
	pending      map[string]chan Raw
	pos          string // after the last push received: given back when reconnecting
}

// clientConn is one connection of the client.
type clientConn struct {
	in   <-chan wsasync.Message
	out  chan<- wsasync.Message
	errs <-chan error
	uid  string
	// down is closed once the client stops using the connection; it fails
	// the requests waiting on it.
	down chan struct{}
	// senders counts the Sends and Requests using out, which is closed
	// only once they are done with it.
	senders sync.WaitGroup
	opened  time.Time
}

// NewClient returns a client of the channel socket at url (ws://, wss://, or
// http:// and https:// meaning the same) and starts connecting in the
// background at once. The client id goes in the client-id query parameter.
func NewClient(url string, opts ClientOptions) *Client {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = defaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = defaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.WebSocket.PingInterval == 0 {
		opts.WebSocket.PingInterval = defaultClientPing
	}
	if opts.WebSocket.PongTimeout == 0 {
		opts.WebSocket.PongTimeout = defaultClientPong
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.WebSocket.Logger == nil {
		opts.WebSocket.Logger = log
	}
	c := &Client{
		id:      opts.ClientID,
		opts:    opts,
		w:       newWire(opts.Packer),
		log:     log,
		events:  make(chan *Event, clientEventBuffer),
		states:  make(chan State, stateBuffer),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
		again:   make(chan struct{}, 1),
		pending: make(map[string]chan Raw),
	}
	if c.id == "" {
		c.id = randomClientID()
	}
	if !clientIDPattern.MatchString(c.id) {
		c.bad = fmt.Errorf("sente: malformed client id %q", c.id)
	} else {
		c.url, c.bad = clientURL(url, c.id, opts.Params)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	return c
}

func randomClientID() string {
	var b [16]byte
	crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]) // 22 characters
}

func clientURL(raw, clientID string, params url.Values) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("sente: client URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("sente: client URL %q: scheme must be ws, wss, http or https", raw)
	}
	q := u.Query()
	for k, vs := range params {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	q.Set("client-id", clientID)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// ID returns the client id, the same on every connection.
func (c *Client) ID() string { return c.id }

// Events returns the pushes from the server, in order. Their UserID is the
// one of the connection's handshake, ClientID the client's own, and Request
// nil. The channel holds 256 events; while it is full the client stops
// reading the socket, so a slow reader slows the server down rather than
// filling memory (replies wait behind the pushes too). It is closed once the
// client has stopped (Close, or a kick).
func (c *Client) Events() <-chan *Event { return c.events }

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// StateChanges returns the states the client goes through, one per change.
// It holds 16; a reader that falls behind loses the oldest, never blocking
// the client. It is closed once the client has stopped, after the last
// state (Stopped).
func (c *Client) StateChanges() <-chan State { return c.states }

// Done returns a channel closed when the client has stopped for good: after
// Close, or when the server kicked or replaced it.
func (c *Client) Done() <-chan struct{} { return c.done }

// Reconnect drops the connection (closing it with 1000) and connects again at
// once with the same client id, or, while the client waits to reconnect,
// ends the wait. It is the way to pick up a new session after a login. It
// returns at once; a stopped client ignores it.
func (c *Client) Reconnect() {
	select {
	case c.again <- struct{}{}:
	default:
	}
}

// Close closes the connection with 1000, stops reconnecting, fails waiting
// requests with ErrClosed, and closes Events and StateChanges. It returns
// once every goroutine of the client has exited: when the server has
// answered the close, or after the WebSocket CloseTimeout (WriteTimeout too,
// if the server reads nothing). It always returns nil; calling it again does
// nothing.
func (c *Client) Close() error {
	c.cancel()
	<-c.exited
	return nil
}

// Send sends the event [id, data] to the server. data may be any value the
// packer packs, or Raw; nil sends [id]. It returns ErrClosed at once when the
// client is not open, and blocks while the connection's send buffer is full,
// until ctx ends. A nil error means the event was queued, not that the server
// received it.
func (c *Client) Send(ctx context.Context, id string, data any) error {
	if err := checkAppEventID(id); err != nil {
		return err
	}
	ev, err := c.w.event(id, data)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l := c.acquire()
	if l == nil {
		return ErrClosed
	}
	return c.put(ctx, l, c.w.frame(ev, ""))
}

// Request sends the event [id, data] asking for a reply and unpacks the reply
// into reply (a pointer, a *Raw to keep it packed, or nil to ignore it). When
// ctx has no deadline, the client's RequestTimeout applies. It returns
// ErrClosed when the client is not open or the connection drops before the
// reply comes (at once, not at the deadline), ErrTimeout when the deadline
// passes, ctx.Err() when ctx is canceled, and an error wrapping the
// packer's when the reply cannot be unpacked into reply.
func (c *Client) Request(ctx context.Context, id string, data any, reply any) error {
	if err := checkAppEventID(id); err != nil {
		return err
	}
	ev, err := c.w.event(id, data)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	if ctx.Err() != nil {
		return requestErr(ctx)
	}
	ch := make(chan Raw, 1)
	c.mu.Lock()
	l := c.cur
	if l == nil {
		c.mu.Unlock()
		return ErrClosed
	}
	cb := c.callbackIDLocked()
	c.pending[cb] = ch
	l.senders.Add(1)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cb)
		c.mu.Unlock()
	}()

	if err := c.put(ctx, l, c.w.frame(ev, cb)); err != nil {
		if err == ErrClosed {
			return err
		}
		return requestErr(ctx)
	}
	select {
	case raw := <-ch:
		return c.unpack(id, raw, reply)
	case <-l.down:
		select {
		case raw := <-ch: // the reply came with the end
			return c.unpack(id, raw, reply)
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return requestErr(ctx)
	}
}

func requestErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}

func (c *Client) unpack(id string, raw Raw, reply any) error {
	switch r := reply.(type) {
	case nil:
		return nil
	case *Raw:
		*r = raw
		return nil
	}
	if err := c.w.p.Unmarshal(raw, reply); err != nil {
		return fmt.Errorf("sente: unpacking the reply to %s: %w", id, err)
	}
	return nil
}

const callbackChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// callbackIDLocked returns a callback id no waiting request uses.
func (c *Client) callbackIDLocked() string {
	for {
		var b [8]byte
		for i := range b {
			b[i] = callbackChars[rand.IntN(len(callbackChars))]
		}
		if cb := string(b[:]); c.pending[cb] == nil {
			return cb
		}
	}
}

// acquire returns the open connection, counted as in use by a sender, or nil.
func (c *Client) acquire() *clientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.cur
	if l != nil {
		l.senders.Add(1)
	}
	return l
}

// put queues a frame on l, which acquire or Request counted as in use.
func (c *Client) put(ctx context.Context, l *clientConn, frame []byte) error {
	defer l.senders.Done()
	select {
	case l.out <- c.message(frame):
		return nil
	case <-l.down:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) message(frame []byte) wsasync.Message {
	if c.w.p.Binary() {
		return wsasync.Binary(frame)
	}
	return wsasync.Message{Type: wsasync.TextMessage, Data: frame}
}

// ---- the connection loop ----

// outcome is how one connection, or attempt, ended.
type outcome struct {
	opened bool          // the handshake came
	again  bool          // Reconnect ended it
	final  bool          // Close, a kick or a replacement: stop
	lived  time.Duration // how long it was open
	info   *CloseInfo    // nil when Close stopped an attempt
}

// run connects, serves and reconnects until the client stops.
func (c *Client) run() {
	defer close(c.exited)
	if c.bad != nil {
		c.log.Error("sente: client cannot connect", "err", c.bad)
		c.stop(&CloseInfo{Code: wsasync.StatusAbnormalClosure, At: time.Now(), Err: c.bad})
		return
	}
	// level is the backoff step of the next attempt. A failed attempt
	// raises it; an open resets it, except that a connection that drops
	// before stableAfter counts one more flap, and consecutive flaps back
	// off like failures.
	level, flaps := 0, 0
	for {
		if d := wsasync.Backoff(level, c.opts.MinBackoff, c.opts.MaxBackoff, rand.Float64()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.again:
				level, flaps = 0, 0
			case <-c.ctx.Done():
			}
			t.Stop()
		}
		if c.ctx.Err() != nil {
			c.stop(nil)
			return
		}
		// A Reconnect from before this attempt is served by it; one that
		// comes while it connects reconnects once it is open.
		select {
		case <-c.again:
		default:
		}
		o := c.session()
		switch {
		case o.final:
			c.stop(o.info)
			return
		case o.opened:
			c.update(func(s *State) {
				s.Open = false
				s.LastClose = o.info
			})
			if o.again || o.lived >= stableAfter {
				flaps = 0
			} else {
				flaps++
			}
			level = flaps
		default:
			c.update(func(s *State) {
				s.Attempt++
				s.LastClose = o.info
			})
			level++
		}
	}
}

// stop ends the client: the last state, then Events, StateChanges and Done
// close.
func (c *Client) stop(info *CloseInfo) {
	c.update(func(s *State) {
		s.Open = false
		s.Stopped = true
		if info != nil {
			s.LastClose = info
		}
	})
	c.mu.Lock()
	c.statesClosed = true
	close(c.states)
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

// update changes the state and publishes the result, dropping the oldest
// published state if the reader is behind.
func (c *Client) update(f func(s *State)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.statesClosed {
		return
	}
	c.state.FirstOpen = false
	f(&c.state)
	s := c.state
	for {
		select {
		case c.states <- s:
			return
		default:
		}
		select {
		case <-c.states:
		default:
		}
	}
}

// session makes one connection and serves it until it ends.
func (c *Client) session() outcome {
	dctx, cancel := context.WithTimeout(c.ctx, handshakeTimeout)
	defer cancel()
	conn, err := c.dial(dctx)
	if err != nil {
		if c.ctx.Err() != nil {
			return outcome{final: true}
		}
		c.log.Warn("sente: connecting failed", "url", c.url, "err", err)
		return outcome{info: &CloseInfo{Code: wsasync.StatusAbnormalClosure, At: time.Now(), Err: fmt.Errorf("sente: connecting: %w", err)}}
	}
	l := &clientConn{in: conn.In, out: conn.Out, errs: conn.Errs, down: make(chan struct{})}

	// The server answers the subprotocol offered; none means a server that
	// speaks JSON only (or a proxy that dropped the header).
	if want := subprotocol(c.w.p); conn.Subprotocol != want && (conn.Subprotocol != "" || c.w.p.Name() != (JSON{}).Name()) {
		return c.refuse(l, fmt.Errorf("sente: server did not accept subprotocol %s (chose %q)", want, conn.Subprotocol))
	}

	// The first frame must be the handshake.
	select {
	case m, ok := <-l.in:
		if !ok {
			c.release(l, nil)
			return c.ended(l, <-l.errs, false)
		}
		uid, data, at, lost, err := c.handshake(m.Data)
		if err != nil {
			return c.refuse(l, err)
		}
		l.uid = uid
		if at != "" {
			c.mu.Lock()
			c.pos = at
			c.mu.Unlock()
		}
		c.update(func(s *State) {
			l.opened = time.Now()
			c.cur = l
			s.Open = true
			s.FirstOpen = !s.EverOpened
			s.EverOpened = true
			s.UserID = uid
			s.HandshakeData = data
			s.Lost = lost
			s.Attempt = 0
		})
		c.log.Debug("sente: connected", "url", c.url, "uid", uid)
	case <-dctx.Done():
		c.release(l, nil)
		o := c.ended(l, <-c.drain(l), false)
		if !o.final {
			c.log.Warn("sente: no handshake from the server", "url", c.url, "timeout", handshakeTimeout)
			o.info.Err = fmt.Errorf("sente: no handshake from the server within %v", handshakeTimeout)
		}
		return o
	}

	for {
		select {
		case m, ok := <-l.in:
			if !ok {
				c.release(l, nil)
				return c.ended(l, <-l.errs, true)
			}
			if !c.receive(l, m) {
				c.release(l, nil)
				return c.ended(l, <-c.drain(l), true)
			}
		case <-c.ctx.Done():
			c.release(l, nil)
			return c.ended(l, <-c.drain(l), true)
		case <-c.again:
			c.release(l, nil)
			o := c.ended(l, <-c.drain(l), true)
			o.again = true
			return o
		}
	}
}

func (c *Client) dial(ctx context.Context) (*wsasync.Conn, error) {
	h := c.opts.Header.Clone()
	if c.opts.CSRFToken != nil {
		if t := c.opts.CSRFToken(); t != "" {
			if h == nil {
				h = make(http.Header)
			}
			h.Set("X-CSRF-Token", t)
		}
	}
	d := wsasync.Dialer{
		Options:      c.opts.WebSocket,
		Header:       h,
		Subprotocols: []string{subprotocol(c.w.p)},
	}
	u := c.url
	c.mu.Lock()
	if c.pos != "" {
		u += "&pos=" + url.QueryEscape(c.pos) // resume after the last push received
	}
	c.mu.Unlock()
	return d.Dial(ctx, u)
}

// refuse closes a connection whose server broke the protocol before the
// handshake, and counts it as a failed attempt.
func (c *Client) refuse(l *clientConn, cause error) outcome {
	c.log.Warn("sente: bad handshake", "url", c.url, "err", cause)
	m := wsasync.Closed(wsasync.StatusProtocolError, "bad handshake")
	c.release(l, &m)
	o := c.ended(l, <-c.drain(l), false)
	if !o.final {
		o.info.Code = wsasync.StatusProtocolError
		o.info.Reason = ""
		o.info.Err = cause
	}
	return o
}

// release stops using l: requests waiting on it fail, new sends see the
// client not open, and once the senders are done out is closed, with m first
// when it is not nil (otherwise closing out closes with 1000).
func (c *Client) release(l *clientConn, m *wsasync.Message) {
	c.mu.Lock()
	if c.cur == l {
		c.cur = nil
	}
	close(l.down)
	c.mu.Unlock()
	l.senders.Wait()
	if m != nil {
		select {
		case l.out <- *m:
		default: // out is full: closing it closes with 1000
		}
	}
	close(l.out)
}

// drain discards what still arrives on a released connection and returns
// why it ended once it has.
func (c *Client) drain(l *clientConn) <-chan error {
	for range l.in {
	}
	return l.errs
}

// ended makes the outcome of a connection from the error that ended it.
func (c *Client) ended(l *clientConn, err error, opened bool) outcome {
	info := &CloseInfo{Code: wsasync.StatusAbnormalClosure, At: time.Now(), Err: err}
	final := c.ctx.Err() != nil
	var ce *wsasync.CloseError
	if errors.As(err, &ce) {
		info.Code, info.Reason = ce.Code, ce.Reason
		if ce.Remote && (ce.Code == CodeKicked || ce.Code == CodeReplaced) {
			final = true
		}
	}
	o := outcome{opened: opened, final: final, info: info}
	if opened {
		o.lived = time.Since(l.opened)
	}
	if final && ce != nil && ce.Remote {
		c.log.Info("sente: stopped by the server", "url", c.url, "code", info.Code, "reason", info.Reason)
	} else {
		c.log.Debug("sente: connection ended", "url", c.url, "code", info.Code, "err", err)
	}
	return o
}

// handshake reads the first frame:
// [["chsk/handshake", [uid, null, data, pos, lost]], null] (servers that keep
// no log send the first three).
func (c *Client) handshake(frame []byte) (uid string, data Raw, pos string, lost bool, err error) {
	payload, cb, _, err := c.unframe(frame)
	if err != nil {
		return "", nil, "", false, err
	}
	id, args, err := c.w.unevent(payload)
	if err != nil || cb != "" || id != EventHandshake {
		return "", nil, "", false, errors.New("sente: the first frame is not a handshake")
	}
	parts, err := c.w.p.SplitArray(args)
	if err != nil || len(parts) < 1 {
		return "", nil, "", false, errors.New("sente: handshake arguments must be [uid, csrf, data, pos, lost]")
	}
	if !c.w.isNull(parts[0]) {
		if err := c.w.p.Unmarshal(parts[0], &uid); err != nil {
			return "", nil, "", false, fmt.Errorf("sente: handshake user id: %w", err)
		}
	}
	if len(parts) >= 3 && !c.w.isNull(parts[2]) {
		data = parts[2]
	}
	if len(parts) >= 5 {
		if c.w.p.Unmarshal(parts[3], &pos) != nil || c.w.p.Unmarshal(parts[4], &lost) != nil {
			return "", nil, "", false, errors.New("sente: handshake position must be a string and lost a boolean")
		}
	}
	return uid, data, pos, lost, nil
}

// unframe splits a frame from the server: [payload, cb], or [payload, null,
// pos] for a batch of pushes that moves the client along the log.
func (c *Client) unframe(frame []byte) (payload []byte, cb, pos string, err error) {
	parts, err := c.w.p.SplitArray(frame)
	if err == nil && len(parts) == 3 && c.w.isNull(parts[1]) {
		if c.w.p.Unmarshal(parts[2], &pos) != nil {
			return nil, "", "", fmt.Errorf("%w: position must be a string", errBadPackage)
		}
		return parts[0], "", pos, nil
	}
	payload, cb, err = c.w.unframe(frame)
	return payload, cb, "", err
}

// receive handles a frame of an open connection: a reply, or a batch of
// pushes. It reports false when Close came while it waited for room on
// Events.
func (c *Client) receive(l *clientConn, m wsasync.Message) bool {
	payload, cb, pos, err := c.unframe(m.Data)
	if err != nil {
		c.log.Warn("sente: bad frame from the server", "err", err, "len", len(m.Data))
		return true
	}
	if cb != "" {
		c.mu.Lock()
		ch := c.pending[cb]
		delete(c.pending, cb)
		c.mu.Unlock()
		if ch == nil {
			c.log.Warn("sente: reply to no waiting request, dropped", "cb", cb)
			return true
		}
		ch <- Raw(payload) // cap 1, and the entry is gone: the only send
		return true
	}
	parts, err := c.w.p.SplitArray(payload)
	if err != nil || (len(parts) == 0 && pos == "") {
		c.log.Warn("sente: bad push from the server: not an event or a batch", "len", len(payload))
		return true
	}
	if pos != "" {
		// Once the batch is handed over, the client is at pos.
		defer func() {
			c.mu.Lock()
			c.pos = pos
			c.mu.Unlock()
		}()
	}
	var first string
	if len(parts) > 0 && c.w.p.Unmarshal(parts[0], &first) == nil {
		parts = [][]byte{payload} // one event, not a batch
	}
	for _, p := range parts {
		id, data, err := c.w.unevent(p)
		if err != nil {
			c.log.Warn("sente: bad event from the server", "err", err, "len", len(p))
			continue
		}
		switch id {
		case EventHandshake:
			c.log.Warn("sente: handshake on an open connection, ignored")
			continue
		case EventPing, EventPong:
			continue
		}
		ev := &Event{ID: id, Data: data, UserID: l.uid, ClientID: c.id, packer: c.w.p}
		select {
		case c.events <- ev:
		case <-c.ctx.Done():
			return false
		}
	}
	return true
}
