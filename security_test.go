package wsasync_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/wsasync/wsasync"
)

// secEcho echoes until in is closed and counts its runs.
func secEcho(runs *atomic.Int64) wsasync.Handler {
	return func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		runs.Add(1)
		defer close(out)
		for m := range in {
			out <- m
		}
	}
}

// secHandshake dials with hdr and returns the status: 101 after a checked
// echo and a clean close, or the refusal's status and body.
func secHandshake(t *testing.T, srv *lcServer, hdr http.Header) (status int, body string) {
	t.Helper()
	c, resp, err := lcDial(srv.WS, hdr)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v, no response", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(lcWait))
	c.SetReadDeadline(time.Now().Add(lcWait))
	if err := c.WriteMessage(websocket.TextMessage, []byte("ping?")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "ping?" {
		t.Fatalf("echo: %q %v", p, err)
	}
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(lcWait))
	if code, _, err := lcReadClose(c); code != websocket.CloseNormalClosure {
		t.Fatalf("close: %d %v", code, err)
	}
	return http.StatusSwitchingProtocols, ""
}

func TestSecurityOrigin(t *testing.T) {
	cases := []struct {
		name    string
		origins []string
		origin  string // "{host}" is replaced by the server's host:port
		want    int
	}{
		{"cross-origin refused", nil, "http://evil.example", http.StatusForbidden},
		{"same host", nil, "http://{host}", http.StatusSwitchingProtocols},
		{"same host other scheme", nil, "https://{host}", http.StatusSwitchingProtocols},
		{"same name other port refused", nil, "http://127.0.0.1:1", http.StatusForbidden},
		{"no Origin", nil, "", http.StatusSwitchingProtocols},
		{"null refused by default", nil, "null", http.StatusForbidden},
		{"unparsable refused", nil, "http://[::1", http.StatusForbidden},
		{"pattern: subdomain", []string{"*.example.com"}, "https://app.example.com", http.StatusSwitchingProtocols},
		{"pattern: any case", []string{"*.example.com"}, "https://APP.Example.COM", http.StatusSwitchingProtocols},
		{"pattern: bare domain not matched", []string{"*.example.com"}, "https://example.com", http.StatusForbidden},
		{"pattern: suffix trick", []string{"*.example.com"}, "https://app.example.com.evil.example", http.StatusForbidden},
		{"pattern: lookalike", []string{"*.example.com"}, "https://evilexample.com", http.StatusForbidden},
		{"pattern: other host", []string{"*.example.com"}, "http://evil.example", http.StatusForbidden},
		{"exact host", []string{"example.com"}, "https://example.com", http.StatusSwitchingProtocols},
		{"star: any host", []string{"*"}, "http://evil.example", http.StatusSwitchingProtocols},
		{"star: null", []string{"*"}, "null", http.StatusSwitchingProtocols},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var runs atomic.Int64
			var logBuf lcLog
			u := wsasync.Upgrader{Origins: tc.origins, Options: wsasync.Options{Logger: logBuf.logger()}}
			srv := lcServe(t, u.GoWebsocket(secEcho(&runs)))
			var hdr http.Header
			if tc.origin != "" {
				hdr = http.Header{"Origin": {strings.ReplaceAll(tc.origin, "{host}", srv.Listener.Addr().String())}}
			}
			status, _ := secHandshake(t, srv, hdr)
			srv.waitServed(t, 1, lcWait)
			if status != tc.want {
				t.Errorf("Origin %q with Origins %q: status %d, want %d", tc.origin, tc.origins, status, tc.want)
			}
			if want := int64(0); tc.want == http.StatusSwitchingProtocols {
				want = 1
				if runs.Load() != want {
					t.Errorf("handler ran %d times, want %d", runs.Load(), want)
				}
			} else if runs.Load() != want {
				t.Errorf("handler ran %d times after a refused handshake", runs.Load())
			}
			if tc.want == http.StatusForbidden && !strings.Contains(logBuf.String(), "handshake refused") {
				t.Errorf("refusal not logged: %q", logBuf.String())
			}
		})
	}
}

func TestSecurityBeforeUpgrade(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		want   int
		reason string // logged, never in the body
	}{
		{"Refuse 401", wsasync.Refuse(http.StatusUnauthorized, "no token"), http.StatusUnauthorized, "no token"},
		{"Refuse 429", wsasync.Refuse(http.StatusTooManyRequests, "slow down xyzzy"), http.StatusTooManyRequests, "slow down xyzzy"},
		{"plain error", errors.New("secret detail 42"), http.StatusForbidden, "secret detail 42"},
		{"wrapped Refuse", errorsJoin("ctx", wsasync.Refuse(http.StatusUnauthorized, "wrapped token")), http.StatusUnauthorized, "wrapped token"},
		{"Refuse with a success status", wsasync.Refuse(http.StatusOK, "not a refusal status"), http.StatusForbidden, "not a refusal status"},
		{"Refuse with a redirect", wsasync.Refuse(http.StatusFound, "redirect status"), http.StatusForbidden, "redirect status"},
		{"nil", nil, http.StatusSwitchingProtocols, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var runs, calls atomic.Int64
			var logBuf lcLog
			u := wsasync.Upgrader{
				Options: wsasync.Options{Logger: logBuf.logger()},
				BeforeUpgrade: func(r *http.Request) error {
					calls.Add(1)
					if r.URL.Query().Get("token") != "t0k" {
						t.Errorf("BeforeUpgrade saw query %q", r.URL.RawQuery)
					}
					return tc.err
				},
			}
			srv := lcServe(t, u.GoWebsocket(secEcho(&runs)))
			c, resp, err := lcDial(srv.WS+"/?token=t0k", nil)
			if tc.want == http.StatusSwitchingProtocols {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(lcWait))
				lcReadClose(c)
				c.Close()
				srv.waitServed(t, 1, lcWait)
				if runs.Load() != 1 || calls.Load() != 1 {
					t.Errorf("handler ran %d times, BeforeUpgrade %d; want 1, 1", runs.Load(), calls.Load())
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("upgraded; want %d", tc.want)
			}
			if resp == nil {
				t.Fatalf("dial: %v, no response", err)
			}
			srv.waitServed(t, 1, lcWait)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if strings.Contains(string(body), tc.reason) {
				t.Errorf("the reason %q is in the response body %q", tc.reason, body)
			}
			if !strings.Contains(logBuf.String(), tc.reason) {
				t.Errorf("the reason %q is not logged: %q", tc.reason, logBuf.String())
			}
			if runs.Load() != 0 {
				t.Errorf("handler ran %d times after a refused handshake", runs.Load())
			}
		})
	}

	t.Run("not called for a refused origin", func(t *testing.T) {
		var runs, calls atomic.Int64
		u := wsasync.Upgrader{
			Options:       wsasync.Options{Logger: new(lcLog).logger()},
			BeforeUpgrade: func(*http.Request) error { calls.Add(1); return nil },
		}
		srv := lcServe(t, u.GoWebsocket(secEcho(&runs)))
		status, _ := secHandshake(t, srv, http.Header{"Origin": {"http://evil.example"}})
		srv.waitServed(t, 1, lcWait)
		if status != http.StatusForbidden || calls.Load() != 0 || runs.Load() != 0 {
			t.Errorf("status %d, BeforeUpgrade called %d times, handler %d; want 403, 0, 0", status, calls.Load(), runs.Load())
		}
	})
}

// errorsJoin wraps err with a prefix, as a caller's own error type would.
func errorsJoin(prefix string, err error) error { return &secWrapped{prefix, err} }

type secWrapped struct {
	prefix string
	err    error
}

func (e *secWrapped) Error() string { return e.prefix + ": " + e.err.Error() }
func (e *secWrapped) Unwrap() error { return e.err }

// TestSecurityBadHandshake: requests that are not WebSocket handshakes get a
// 4xx answer at once, the handler never runs, and a Listener reports why.
func TestSecurityBadHandshake(t *testing.T) {
	upgrade := func(h http.Header) http.Header {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
		h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return h
	}
	cases := []struct {
		name   string
		method string
		header http.Header
	}{
		{"plain GET", http.MethodGet, http.Header{}},
		{"POST with upgrade headers", http.MethodPost, upgrade(http.Header{})},
		{"PUT with upgrade headers", http.MethodPut, upgrade(http.Header{})},
		{"no Upgrade", http.MethodGet, func() http.Header { h := upgrade(http.Header{}); h.Del("Upgrade"); return h }()},
		{"no Connection", http.MethodGet, func() http.Header { h := upgrade(http.Header{}); h.Del("Connection"); return h }()},
		{"no key", http.MethodGet, func() http.Header { h := upgrade(http.Header{}); h.Del("Sec-WebSocket-Key"); return h }()},
		{"short key", http.MethodGet, func() http.Header { h := upgrade(http.Header{}); h.Set("Sec-WebSocket-Key", "c2hvcnQ="); return h }()},
		{"no version", http.MethodGet, func() http.Header { h := upgrade(http.Header{}); h.Del("Sec-WebSocket-Version"); return h }()},
		{"version 8", http.MethodGet, func() http.Header { h := upgrade(http.Header{}); h.Set("Sec-WebSocket-Version", "8"); return h }()},
	}
	do := func(t *testing.T, srv *lcServer, method string, hdr http.Header) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), lcWait)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = hdr.Clone()
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("GoWebsocket", func(t *testing.T) {
				var runs atomic.Int64
				u := wsasync.Upgrader{Options: wsasync.Options{Logger: new(lcLog).logger()}}
				srv := lcServe(t, u.GoWebsocket(secEcho(&runs)))
				if status := do(t, srv, tc.method, tc.header); status < 400 || status > 499 {
					t.Errorf("status %d, want 4xx", status)
				}
				srv.waitServed(t, 1, lcWait)
				if runs.Load() != 0 {
					t.Error("handler ran")
				}
			})
			t.Run("Listener", func(t *testing.T) {
				in := make(chan wsasync.Message)
				out := make(chan wsasync.Message)
				errs := make(chan error, 1)
				u := wsasync.Upgrader{Options: wsasync.Options{Logger: new(lcLog).logger()}}
				srv := lcServe(t, u.Listener(in, out, errs))
				defer close(out)
				if status := do(t, srv, tc.method, tc.header); status < 400 || status > 499 {
					t.Errorf("status %d, want 4xx", status)
				}
				srv.waitServed(t, 1, lcWait)
				if _, ok := lcRecv(t, in, lcWait, "in"); ok {
					t.Error("in delivered a message")
				}
				if err, ok := lcRecv(t, errs, lcWait, "errs"); !ok || err == nil {
					t.Errorf("errs: %v, %v; want the handshake error", err, ok)
				}
				if _, ok := lcRecv(t, errs, lcWait, "errs"); ok {
					t.Error("errs not closed")
				}
			})
		})
	}
}

// TestSecurityDialRefused: a refused client handshake returns an error with
// the status and starts nothing.
func TestSecurityDialRefused(t *testing.T) {
	var runs atomic.Int64
	u := wsasync.Upgrader{Options: wsasync.Options{Logger: new(lcLog).logger()}}
	srv := lcServe(t, u.GoWebsocket(secEcho(&runs)))
	ctx, cancel := context.WithTimeout(context.Background(), lcWait)
	defer cancel()
	d := wsasync.Dialer{Header: http.Header{"Origin": {"http://evil.example"}}}
	c, err := d.Dial(ctx, srv.WS)
	if err == nil {
		close(c.Out)
		t.Fatal("dial succeeded across origins")
	}
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != http.StatusForbidden {
		t.Errorf("dial: %v, want a ws.StatusError 403", err)
	}
	srv.waitServed(t, 1, lcWait)
	if runs.Load() != 0 {
		t.Error("handler ran")
	}
}
