package wsasync

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"
)

// Listener returns a handler that upgrades each request and connects the
// socket to the caller's channels, with the zero [Upgrader].
func Listener(in chan<- Message, out <-chan Message, errs chan<- error) http.Handler {
	var u Upgrader
	return u.Listener(in, out, errs)
}

// Listener returns a handler that upgrades the request and connects the
// socket to the caller's channels, whose capacities it uses as they are. It is
// the lower level that GoWebsocket is built on: the caller owns the channels
// and the goroutines that use them. Mount it for one request at a time (for
// example, make it inside a handler): the channels belong to one connection.
//
// The library sends on in and closes it, sends on errs and closes it, and
// receives from out. errs should have a buffer of at least one, since the
// library never blocks on it: an error nobody is ready to receive is dropped.
// If the handshake fails, in and errs are closed, errs having received why.
//
// ServeHTTP returns as soon as the connection is upgraded (see GoWebsocket).
// After the connection ends, sends on out are discarded until the caller
// closes it, so that no sender blocks forever: close out when you are done,
// which also lets the connection's last goroutine exit.
func (u *Upgrader) Listener(in chan<- Message, out <-chan Message, errs chan<- error) http.Handler {
	cfg := u.Options.config()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, pending, err := u.upgrade(w, r, &cfg)
		if err != nil {
			select {
			case errs <- err:
			default:
			}
			close(in)
			close(errs)
			// As after a connection, sends on out are discarded until
			// the caller closes it.
			go func() {
				for range out {
				}
			}()
			return
		}
		c := newConn(nc, &cfg, true, pending, in, out, errs, false)
		go c.run()
	})
}

// Accept upgrades the request and returns the connection's channels, with the
// same semantics as Dial's: the caller runs its own goroutines, and closes Out
// when done. It is for callers that need to know whether the upgrade
// succeeded, or that keep track of their connections. A refused handshake
// has been answered with an HTTP status when Accept returns its error.
func (u *Upgrader) Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	cfg := u.Options.config()
	nc, pending, err := u.upgrade(w, r, &cfg)
	if err != nil {
		return nil, err
	}
	return dialConn(nc, &cfg, true, pending), nil
}

// upgrade checks the request and switches protocols. On success it returns the
// hijacked connection and any bytes read past the handshake; net/http's
// buffers are left for the garbage collector.
func (u *Upgrader) upgrade(w http.ResponseWriter, r *http.Request, cfg *config) (net.Conn, []byte, error) {
	if !u.CheckOrigin(r) {
		err := Refuse(http.StatusForbidden, "origin "+r.Header.Get("Origin")+" not allowed for host "+r.Host)
		cfg.log.Warn("wsasync: handshake refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
		return nil, nil, err
	}
	if u.BeforeUpgrade != nil {
		if err := u.BeforeUpgrade(r); err != nil {
			status := http.StatusForbidden
			var re *RefusedError
			if errors.As(err, &re) && re.Status >= 400 && re.Status <= 599 {
				status = re.Status
			}
			cfg.log.Warn("wsasync: handshake refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", status, "err", err)
			http.Error(w, http.StatusText(status), status)
			return nil, nil, err
		}
	}
	timeout := u.HandshakeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	hu := ws.HTTPUpgrader{Timeout: timeout, Header: u.Header}
	if chosen := u.subprotocol(r); chosen != "" {
		hu.Protocol = func(p string) bool { return p == chosen }
	}
	nc, rw, _, err := hu.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		cfg.log.Debug("wsasync: bad handshake", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		return nil, nil, err
	}
	var pending []byte
	if rw != nil {
		pending = buffered(rw.Reader)
	}
	return nc, pending, nil
}

// subprotocol picks the first of u.Subprotocols that the client offers: the
// server's preference wins, as with gorilla/websocket.
func (u *Upgrader) subprotocol(r *http.Request) string {
	if len(u.Subprotocols) == 0 {
		return ""
	}
	offered := OfferedSubprotocols(r)
	for _, p := range u.Subprotocols {
		if slices.Contains(offered, p) {
			return p
		}
	}
	return ""
}

// OfferedSubprotocols returns the subprotocols a handshake request offers, in
// its order.
func OfferedSubprotocols(r *http.Request) []string {
	var offered []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	return offered
}

// CheckOrigin reports whether r may open a connection: it has no Origin header
// (it is not from a browser), its Origin names the request's own host, or the
// Origin's host matches one of u.Origins. Layers with transports of their own
// (long-polling) apply the same rule with it.
func (u *Upgrader) CheckOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || slices.Contains(u.Origins, "*") {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false
	}
	if strings.EqualFold(o.Host, r.Host) {
		return true
	}
	host := strings.ToLower(o.Host)
	for _, pattern := range u.Origins {
		if pattern == "*" {
			return true
		}
		if ok, _ := path.Match(strings.ToLower(pattern), host); ok {
			return true
		}
	}
	return false
}
