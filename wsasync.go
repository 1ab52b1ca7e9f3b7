// Package wsasync turns each WebSocket connection into three Go channels.
//
// A handler receives messages from the peer on in, sends messages to the peer
// on out, and learns on errs why the connection ended:
//
//	http.Handle("/echo", wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
//		defer close(out) // close with 1000 once everything queued is written
//		for m := range in {
//			out <- m
//		}
//	}))
//
// Sending [Closed] on out closes the connection with that code and reason after
// what was queued before it; closing out closes with 1000 (normal closure).
// When the connection ends, in is closed after every message received before
// the end has been delivered, and errs carries one [*CloseError] that says why
// (the peer's close code and reason, a protocol violation, a ping or write
// timeout, an I/O error) and is then closed.
//
// Backpressure works both ways. A handler that stops reading in stops the
// library reading the socket, so a fast peer cannot fill the server's memory.
// A peer that stops reading makes sends on out block once its buffer is full,
// and after [Upgrader.WriteTimeout] the connection is dropped.
//
// Each connection has one reader goroutine, one writer goroutine that owns
// every write to the socket (data, pings, pongs and the close frame, so a
// frame never tears), and, with [GoWebsocket], the handler's goroutine. The
// net/http goroutine that served the upgrade returns at once, releasing its
// stack and buffers. On Linux the reader of a connection whose peer has been
// silent for [Options.ReaderLinger] exits too, leaving the socket to a poller
// shared by the process that starts a new reader when bytes arrive. None of
// them outlives the connection as long as the handler returns once in is
// closed. An idle connection holds no read or write buffer.
//
// [Dial] gives a client the same three channels with the same semantics, and
// [Upgrader.Accept] gives them to a server that runs its own goroutines.
//
// The package is the lowest layer of the project: the pipe package holds
// channel helpers to compose handlers from, and the sente and via packages build
// event protocols on top of both.
package wsasync

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// MessageType says whether a message is text or binary. Its values are the
// RFC 6455 opcodes.
type MessageType uint8

// Message types.
const (
	// TextMessage carries UTF-8 text. Received text is always valid UTF-8.
	TextMessage MessageType = 1
	// BinaryMessage carries arbitrary bytes.
	BinaryMessage MessageType = 2
	// CloseMessage is the type of the message [Closed] makes. It is never
	// received on in: the peer's close arrives on errs as a [*CloseError].
	CloseMessage MessageType = 8
)

// String returns "text", "binary", "close" or the number.
func (t MessageType) String() string {
	switch t {
	case TextMessage:
		return "text"
	case BinaryMessage:
		return "binary"
	case CloseMessage:
		return "close"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one WebSocket message, whole, however many frames carried it.
//
// A received message's Data is the caller's to keep: the library never reuses
// it unless the caller gives it back ([Message.Release], [Message.Recycled]).
// A sent message's Data must not be changed until the message has been
// written; treat it as handed over.
type Message struct {
	Type MessageType
	// recycle: the writer releases Data once it has taken the message.
	// (Beside Type, in what would be padding: a Message stays 32 bytes.)
	recycle bool
	Data    []byte
}

// Release gives m.Data back for reuse: a later read of a message of about its
// size fills it instead of allocating. Call it once nothing holds Data, or any
// slice of it, any more, and only once: a released buffer's bytes change under
// whoever still reads them.
//
// Releasing is optional. A message never released is garbage collected as
// usual; releasing spares the collector the work, which counts for payloads
// of a few KiB at high rates. Any Data may be released, not only a received
// one; buffers above 32 KiB are left to the collector.
func (m Message) Release() { release(m.Data) }

// Recycled returns m marked so that the writer that takes it from out releases
// its Data (see [Message.Release]) once the bytes are copied into the write
// buffer or onto the socket, or once it discards the message. An echo then
// allocates nothing per message:
//
//	for m := range in {
//		out <- m.Recycled()
//	}
//
// Send a recycled message once, on one out, and keep nothing of its Data. A
// message sent to several connections must not be recycled.
func (m Message) Recycled() Message {
	m.recycle = true
	return m
}

// Text returns a text message holding s.
func Text(s string) Message { return Message{Type: TextMessage, Data: []byte(s)} }

// Binary returns a binary message holding b (not copied).
func Binary(b []byte) Message { return Message{Type: BinaryMessage, Data: b} }

// Handler is the body of a connection, run by [GoWebsocket] in its own
// goroutine.
//
// in delivers the peer's messages and is closed when the peer can send no
// more. Sends on out go to the peer; closing out, or sending [Closed], closes
// the connection. errs receives exactly one error when the connection ends and
// is then closed.
//
// Returning from the handler means it is done with the connection: the
// messages already queued on out are written and the connection closes with
// 1000, as if out had been closed (nothing happens if it is already closed).
// No goroutine the handler started may send on out after it returns.
type Handler func(in <-chan Message, out chan<- Message, errs <-chan error)

// Defaults used where an [Upgrader] or [Dialer] field is zero.
const (
	// DefaultReadLimit bounds one received message, summed over its
	// fragments. 1 MiB holds any ordinary JSON event while keeping what a
	// hostile peer can make the server hold small.
	DefaultReadLimit = 1 << 20
	// DefaultPingInterval is how often a ping is sent. 30 s is below the idle
	// timeouts of common proxies and load balancers (60 s).
	DefaultPingInterval = 30 * time.Second
	// DefaultPongTimeout is how long after a ping's interval the peer may stay
	// silent before the connection is dropped.
	DefaultPongTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds one batch of writes to a peer that reads
	// nothing.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultCloseTimeout bounds the wait for the peer's reply to a close.
	DefaultCloseTimeout = 5 * time.Second
	// DefaultBuffer is the capacity of the in and out channels that
	// GoWebsocket and Dial make: deep enough for the writer to coalesce a
	// burst into one syscall, shallow enough that backpressure is felt early.
	DefaultBuffer = 8
	// DefaultReaderLinger is how long an idle connection keeps its reader
	// goroutine: short enough that idle connections hold none, long enough
	// that a connection with steady traffic never hands its socket over.
	DefaultReaderLinger = 50 * time.Millisecond
	// DefaultBufferSize is the size of the pooled read and write buffers.
	// A connection holds them only while bytes are moving, so they can be
	// large enough for a burst of messages to cross in one syscall.
	DefaultBufferSize = 16 << 10
)

// Options are the per-connection settings shared by [Upgrader] and [Dialer].
// The zero value means the defaults above. A negative duration or limit
// disables that mechanism.
type Options struct {
	// ReadLimit is the largest message accepted, summed over fragments; a
	// bigger one closes the connection with 1009. Zero means
	// DefaultReadLimit; negative means no limit.
	ReadLimit int64
	// PingInterval is how often to ping the peer. Zero means
	// DefaultPingInterval; negative disables pings and the idle check.
	PingInterval time.Duration
	// PongTimeout is added to PingInterval to give how long the peer may
	// send nothing at all before the connection is dropped with
	// [ErrPingTimeout]. Zero means DefaultPongTimeout.
	PongTimeout time.Duration
	// WriteTimeout bounds each batch of writes; when it passes the
	// connection is dropped with [ErrWriteTimeout]. The deadline moves at
	// most once per half WriteTimeout, not once per batch, so a stalled
	// batch may get up to half again as long. Zero means
	// DefaultWriteTimeout; negative means no timeout.
	WriteTimeout time.Duration
	// CloseTimeout bounds the wait for the peer's close frame after this end
	// sent one. Zero means DefaultCloseTimeout.
	CloseTimeout time.Duration
	// InBuffer and OutBuffer are the capacities of the channels made by
	// GoWebsocket and Dial. Zero means DefaultBuffer; negative means
	// unbuffered. Listener uses the caller's channels as they are.
	InBuffer, OutBuffer int
	// ReadBufferSize and WriteBufferSize size the pooled socket buffers.
	// Zero means DefaultBufferSize.
	ReadBufferSize, WriteBufferSize int
	// Logger receives handler panics and refused handshakes. Nil means
	// slog.Default().
	Logger *slog.Logger
	// ReaderLinger is how long a connection's reader goroutine waits for
	// the peer's next bytes, parked in the Go runtime's poller, before it
	// exits and leaves the socket to a poller shared by the process (one
	// goroutine on an epoll instance, running only while connections use
	// it), which starts a new reader when bytes arrive. An idle connection
	// then holds one goroutine less; a peer that sends more often than this
	// keeps its reader and costs nothing more. Zero means
	// DefaultReaderLinger; a negative value keeps the reader for the whole
	// connection; a tiny one (time.Nanosecond) lets it exit as soon as it
	// has read everything. Only on Linux, for connections with a socket
	// descriptor (not TLS); elsewhere the reader is always kept.
	ReaderLinger time.Duration
}

// Upgrader accepts WebSocket connections on a net/http server. Its zero value
// is ready to use with the defaults.
type Upgrader struct {
	Options

	// Origins lists the hosts (patterns as in path.Match, compared without
	// case, such as "example.com" or "*.example.com") whose pages may open a
	// connection. A request whose Origin header names the request's own host,
	// or that has no Origin header (not a browser), is always allowed. "*"
	// allows every origin.
	Origins []string
	// Subprotocols lists the subprotocols the server speaks, in order of
	// preference: the first of them that the client offers is chosen.
	Subprotocols []string
	// Header is added to the handshake response.
	Header http.Header
	// BeforeUpgrade, when set, runs after the origin check and before the
	// upgrade. A non-nil error refuses the handshake: its status is the
	// error's if it is a [*RefusedError] (see [Refuse]), 403 otherwise. The
	// error is logged, never sent to the client.
	BeforeUpgrade func(r *http.Request) error
	// HandshakeTimeout bounds writing the handshake response. Zero means
	// 10 s.
	HandshakeTimeout time.Duration
}

// RefusedError refuses a handshake with an HTTP status. Make one with
// [Refuse].
type RefusedError struct {
	Status int
	Reason string
}

// Refuse returns an error that makes [Upgrader.BeforeUpgrade] answer status.
// The reason is logged on the server only.
func Refuse(status int, reason string) error {
	return &RefusedError{Status: status, Reason: reason}
}

func (e *RefusedError) Error() string {
	return "wsasync: handshake refused with " + strconv.Itoa(e.Status) + ": " + e.Reason
}

// config is Options resolved to concrete values.
type config struct {
	readLimit    int64 // <= 0: no limit
	idle         time.Duration
	pingInterval time.Duration // <= 0: no pings
	writeTimeout time.Duration // <= 0: none
	closeTimeout time.Duration
	inBuf        int
	outBuf       int
	readBufSize  int
	writeBufSize int
	log          *slog.Logger
	linger       time.Duration // <= 0: the reader never parks in the shared poller
}

func (o *Options) config() config {
	c := config{
		readLimit:    o.ReadLimit,
		pingInterval: o.PingInterval,
		writeTimeout: o.WriteTimeout,
		closeTimeout: o.CloseTimeout,
		inBuf:        bufCap(o.InBuffer),
		outBuf:       bufCap(o.OutBuffer),
		readBufSize:  o.ReadBufferSize,
		writeBufSize: o.WriteBufferSize,
		log:          o.Logger,
		linger:       o.ReaderLinger,
	}
	if c.readLimit == 0 {
		c.readLimit = DefaultReadLimit
	}
	if c.pingInterval == 0 {
		c.pingInterval = DefaultPingInterval
	}
	if c.pingInterval > 0 {
		pong := o.PongTimeout
		if pong <= 0 {
			pong = DefaultPongTimeout
		}
		c.idle = c.pingInterval + pong
	}
	if c.writeTimeout == 0 {
		c.writeTimeout = DefaultWriteTimeout
	}
	if c.linger == 0 {
		c.linger = defaultReaderLinger
	}
	if c.closeTimeout <= 0 {
		c.closeTimeout = DefaultCloseTimeout
	}
	if c.readBufSize <= 0 {
		c.readBufSize = DefaultBufferSize
	}
	if c.writeBufSize <= 0 {
		c.writeBufSize = DefaultBufferSize
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// defaultReaderLinger is DefaultReaderLinger, but tests may change it to run
// every connection in another mode.
var defaultReaderLinger = DefaultReaderLinger

func bufCap(n int) int {
	switch {
	case n == 0:
		return DefaultBuffer
	case n < 0:
		return 0
	}
	return n
}
