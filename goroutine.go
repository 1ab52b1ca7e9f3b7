package wsasync

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// GoWebsocket returns a handler that upgrades each request and runs h in its
// own goroutine with the connection's channels, using the zero [Upgrader].
// Mount it on a route:
//
//	mux.Handle("/ws", wsasync.GoWebsocket(h))
//
// or call it from inside a handler, closing over the request:
//
//	func serve(w http.ResponseWriter, r *http.Request) {
//		user := r.URL.Query().Get("user")
//		wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
//			out <- wsasync.Text("hello " + user)
//			close(out)
//		}).ServeHTTP(w, r)
//	}
func GoWebsocket(h Handler) http.Handler {
	var u Upgrader
	return u.GoWebsocket(h)
}

// GoWebsocket returns a handler that upgrades each request and runs h in its
// own goroutine with channels it makes (buffered as InBuffer and OutBuffer
// say). h runs only once the handshake has succeeded; a refused handshake
// never starts it.
//
// ServeHTTP returns as soon as the connection is upgraded: the connection
// runs on in goroutines of its own, and net/http's goroutine and buffers are
// released (an idle connection costs a third of what it would otherwise).
// As with any net/http handler, r.Context() is cancelled when ServeHTTP
// returns; a handler that wants a context for the connection's life can close
// over context.WithoutCancel(r.Context()) and cancel its own. A panic in h is
// recovered, logged, and closes the connection with 1011.
func (u *Upgrader) GoWebsocket(h Handler) http.Handler {
	cfg := u.Options.config()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, pending, err := u.upgrade(w, r, &cfg)
		if err != nil {
			return
		}
		in := make(chan Message, cfg.inBuf)
		out := make(chan Message, cfg.outBuf)
		errs := make(chan error, 1)
		c := newConn(nc, &cfg, true, pending, in, out, errs, true)
		go c.runHandler(h, in, out, errs)
		go c.run()
	})
}

// runHandler runs h, turning a panic into a 1011 close, and tells the writer
// when h is done.
func (c *conn) runHandler(h Handler, in <-chan Message, out chan<- Message, errs <-chan error) {
	defer func() {
		c.returned.Store(true)
		c.notify()
	}()
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		c.cfg.log.Error("wsasync: handler panicked", "remote", c.nc.RemoteAddr().String(), "panic", v, "stack", string(debug.Stack()))
		c.terminate(&CloseError{Code: StatusInternalError, Reason: "internal error", Err: fmt.Errorf("%w: %v", ErrHandlerPanic, v)})
	}()
	h(in, out, errs)
}
