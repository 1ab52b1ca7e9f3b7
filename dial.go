package wsasync

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/gobwas/ws"
)

// Dialer opens client connections. Its zero value is ready to use with the
// defaults.
type Dialer struct {
	Options

	// Header is sent with the handshake request (cookies, authorization,
	// Origin).
	Header http.Header
	// Subprotocols are offered to the server in order of preference.
	Subprotocols []string
	// NetDial, when set, opens the TCP connection.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is used for wss URLs.
	TLSConfig *tls.Config
}

// Conn is a connection's three channels, made by [Dial] or [Upgrader.Accept],
// with the same semantics as a [Handler]'s: receive from In, send on Out, and
// read why it ended from Errs.
// Close Out (or send [Closed]) to close the connection; after the connection
// has ended, sends on Out are discarded until Out is closed, which also lets
// the connection's last goroutine exit.
type Conn struct {
	In   <-chan Message
	Out  chan<- Message
	Errs <-chan error
	// Subprotocol is the subprotocol the server chose, if any.
	Subprotocol string
	// Done is closed once the connection has ended and every goroutine it
	// started has exited (after Out is closed, since sends on Out are
	// drained until then).
	Done <-chan struct{}
}

// Dial connects to a ws:// or wss:// URL with the zero [Dialer].
func Dial(ctx context.Context, url string) (*Conn, error) {
	var d Dialer
	return d.Dial(ctx, url)
}

// Dial connects to a ws:// or wss:// URL. ctx bounds the connect and the
// handshake only; the connection lives until it is closed. A handshake the
// server refuses returns an error that wraps ws.StatusError with the status.
func (d *Dialer) Dial(ctx context.Context, url string) (*Conn, error) {
	gd := ws.Dialer{
		Protocols: d.Subprotocols,
		NetDial:   d.NetDial,
		TLSConfig: d.TLSConfig,
	}
	if d.Header != nil {
		gd.Header = ws.HandshakeHeaderHTTP(d.Header)
	}
	nc, br, hs, err := gd.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	pending := buffered(br)
	if br != nil {
		ws.PutReader(br)
	}
	cfg := d.Options.config()
	conn := dialConn(nc, &cfg, false, pending)
	conn.Subprotocol = hs.Protocol
	return conn, nil
}
