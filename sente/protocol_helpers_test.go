package sente_test

// A raw client of the wire protocol (PROTOCOL.md), written against the
// document rather than against the package's Go client: it dials with
// wsasync, sends JSON frames as text and decodes what it receives with
// encoding/json.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// waitFor bounds every wait of the tests.
const waitFor = 5 * time.Second

const proto = "sente.v1.json"

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is a sente.Server on a loopback httptest server.
type testServer struct {
	*sente.Server
	srv  *httptest.Server
	URL  string // ws://host/chsk
	Logs *syncBuffer
	Log  *slog.Logger
}

// startServer starts a server with opts. A nil UserID takes the user id from
// the "uid" query parameter; the logger writes to ts.Logs. The server is shut
// down when the test ends.
func startServer(t *testing.T, opts sente.Options) *testServer {
	t.Helper()
	return startServerOn(t, opts, 0)
}

// sndbufListener sets the send buffer of the connections it accepts.
type sndbufListener struct {
	net.Listener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return nc, err
}

// startServerOn is startServer with the server's socket send buffers fixed
// at sndbuf bytes (0: the system's, autotuned).
func startServerOn(t *testing.T, opts sente.Options, sndbuf int) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Logger == nil {
		opts.Logger = log
	}
	if opts.UserID == nil {
		opts.UserID = func(r *http.Request, _ string) string { return r.URL.Query().Get("uid") }
	}
	if opts.WebSocket.CloseTimeout == 0 {
		opts.WebSocket.CloseTimeout = time.Second
	}
	s := sente.NewServer(opts)
	mux := http.NewServeMux()
	mux.Handle("/chsk", s)
	srv := httptest.NewUnstartedServer(mux)
	if sndbuf > 0 {
		srv.Listener = sndbufListener{srv.Listener, sndbuf}
	}
	srv.Start()
	ts := &testServer{Server: s, srv: srv, URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/chsk", Logs: logs, Log: log}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return ts
}

// query builds the query of a connection: client-id, uid when not empty, and
// then key, value pairs.
func query(clientID, uid string, kv ...string) url.Values {
	q := url.Values{}
	if clientID != "" {
		q.Set("client-id", clientID)
	}
	if uid != "" {
		q.Set("uid", uid)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	return q
}

// rawClient is one WebSocket connection speaking the protocol by hand.
type rawClient struct {
	t           *testing.T
	c           *wsasync.Conn
	ClientID    string
	Subprotocol string
	// From the handshake frame.
	UID           string
	HandshakeData json.RawMessage
	Pos           string // the position the handshake placed the client at
	Lost          bool   // the handshake says pushes were lost

	outOnce sync.Once
}

// dialOpts says how to dial; the zero value offers sente.v1.json only.
type dialOpts struct {
	Header    http.Header
	Protocols []string // nil: proto
	ReadLimit int64
	InBuffer  int
}

// dial connects as clientID of user uid and reads the handshake; it fails the
// test on error.
func (ts *testServer) dial(t *testing.T, clientID, uid string) *rawClient {
	t.Helper()
	c, err := ts.dialWith(t, query(clientID, uid), dialOpts{})
	if err != nil {
		t.Fatalf("dial %s/%s: %v", uid, clientID, err)
	}
	return c
}

// dialWith connects with the query q and reads the handshake, which must be
// the first frame. The connection is closed when the test ends.
func (ts *testServer) dialWith(t *testing.T, q url.Values, o dialOpts) (*rawClient, error) {
	t.Helper()
	protos := o.Protocols
	if protos == nil {
		protos = []string{proto}
	}
	d := wsasync.Dialer{Header: o.Header, Subprotocols: protos}
	d.ReadLimit = o.ReadLimit
	d.InBuffer = o.InBuffer
	d.CloseTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, err := d.Dial(ctx, ts.URL+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	rc := &rawClient{t: t, c: conn, ClientID: q.Get("client-id"), Subprotocol: conn.Subprotocol}
	t.Cleanup(func() { rc.close() })
	f := rc.next()
	if f.CB != nil {
		t.Fatalf("handshake frame with cb %q: %s", *f.CB, f.Raw)
	}
	var ev []json.RawMessage
	if err := json.Unmarshal(f.Payload, &ev); err != nil || len(ev) != 2 || string(ev[0]) != `"chsk/handshake"` {
		t.Fatalf("first frame is not a handshake: %s", f.Raw)
	}
	var args []json.RawMessage
	if err := json.Unmarshal(ev[1], &args); err != nil || len(args) != 5 || string(args[1]) != "null" {
		t.Fatalf("handshake arguments are not [uid, null, data, pos, lost]: %s", f.Raw)
	}
	if err := json.Unmarshal(args[0], &rc.UID); err != nil {
		t.Fatalf("handshake uid is not a string: %s", f.Raw)
	}
	rc.HandshakeData = args[2]
	if json.Unmarshal(args[3], &rc.Pos) != nil || json.Unmarshal(args[4], &rc.Lost) != nil {
		t.Fatalf("handshake position is not a string and lost a boolean: %s", f.Raw)
	}
	return rc, nil
}

// dialStatus is the HTTP status of a refused dial, 0 if err is not one.
func dialStatus(err error) int {
	var se ws.StatusError
	if errors.As(err, &se) {
		return int(se)
	}
	return 0
}

// handshakeResponse sends a WebSocket handshake request by hand and returns
// the status and body of a refusal (the connection is closed at once, so a
// 101 is returned with an empty body).
func (ts *testServer) handshakeResponse(t *testing.T, q url.Values, h http.Header) (int, string) {
	t.Helper()
	u, err := url.Parse(ts.srv.URL + "/chsk?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout("tcp", u.Host, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitFor))
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if req.Header.Get("Sec-WebSocket-Protocol") == "" {
		req.Header.Set("Sec-WebSocket-Protocol", proto)
	}
	if err := req.Write(nc); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// frame is a received envelope [payload, cb], or [payload, null, pos].
type frame struct {
	Raw     []byte
	Payload json.RawMessage
	CB      *string // nil for null
	Pos     string  // "" when absent
}

// pushed is one event [id] or [id, data] of a push batch.
type pushed struct {
	ID   string
	Data json.RawMessage // nil when absent
}

func decodeFrame(t *testing.T, data []byte) frame {
	t.Helper()
	var env []json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil || len(env) < 2 || len(env) > 3 {
		t.Fatalf("frame is not [payload, cb] or [payload, null, pos]: %q", data)
	}
	f := frame{Raw: data, Payload: env[0]}
	if len(env) == 3 {
		if string(env[1]) != "null" || json.Unmarshal(env[2], &f.Pos) != nil || f.Pos == "" {
			t.Fatalf("frame is not [payload, null, pos]: %q", data)
		}
	}
	if string(env[1]) != "null" {
		var cb string
		if err := json.Unmarshal(env[1], &cb); err != nil {
			t.Fatalf("frame's cb is not a string or null: %q", data)
		}
		f.CB = &cb
	}
	return f
}

// events decodes a push batch [event, event, ...].
func (f frame) events(t *testing.T) []pushed {
	t.Helper()
	if f.CB != nil {
		t.Fatalf("expected a push batch, got a reply to %q: %s", *f.CB, f.Raw)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(f.Payload, &raws); err != nil || len(raws) == 0 {
		t.Fatalf("payload is not a batch of events: %s", f.Raw)
	}
	evs := make([]pushed, len(raws))
	for i, r := range raws {
		var parts []json.RawMessage
		if err := json.Unmarshal(r, &parts); err != nil || len(parts) < 1 || len(parts) > 2 {
			t.Fatalf("batch element %d is not [id, data]: %s", i, f.Raw)
		}
		if err := json.Unmarshal(parts[0], &evs[i].ID); err != nil || !sente.ValidEventID(evs[i].ID) {
			t.Fatalf("batch element %d has a bad id: %s", i, f.Raw)
		}
		if len(parts) == 2 {
			evs[i].Data = parts[1]
		}
	}
	return evs
}

// recv returns the next message, failing the test if none comes in time or
// the connection ends.
func (c *rawClient) recv() wsasync.Message {
	c.t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case m, ok := <-c.c.In:
		if !ok {
			c.t.Fatalf("%s: connection ended: %v", c.ClientID, <-c.c.Errs)
		}
		if m.Type != wsasync.TextMessage {
			c.t.Fatalf("%s: %v message from a JSON server", c.ClientID, m.Type)
		}
		return m
	case <-timer.C:
		c.t.Fatalf("%s: no frame within %v", c.ClientID, waitFor)
	}
	panic("unreachable")
}

// next reads and decodes the next frame.
func (c *rawClient) next() frame {
	c.t.Helper()
	return decodeFrame(c.t, c.recv().Data)
}

// pushes reads push batches until n events have come, failing on a reply.
func (c *rawClient) pushes(n int) []pushed {
	c.t.Helper()
	var evs []pushed
	for len(evs) < n {
		evs = append(evs, c.next().events(c.t)...)
	}
	if len(evs) > n {
		c.t.Fatalf("%s: %d events, want %d: %v", c.ClientID, len(evs), n, evs)
	}
	return evs
}

// reply reads the next frame, which must be the reply to cb.
func (c *rawClient) reply(cb string) json.RawMessage {
	c.t.Helper()
	f := c.next()
	if f.CB == nil || *f.CB != cb {
		c.t.Fatalf("%s: want the reply to %q, got %s", c.ClientID, cb, f.Raw)
	}
	return f.Payload
}

// send sends one text frame as it is.
func (c *rawClient) send(text string) {
	c.t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case c.c.Out <- wsasync.Text(text):
	case <-timer.C:
		c.t.Fatalf("%s: could not send within %v", c.ClientID, waitFor)
	}
}

// event sends [[id, data], cb] (cb "" for null).
func (c *rawClient) event(id string, data any, cb string) {
	c.t.Helper()
	ev := []any{id}
	if data != nil {
		ev = append(ev, data)
	}
	var pcb any
	if cb != "" {
		pcb = cb
	}
	b, err := json.Marshal([]any{ev, pcb})
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(string(b))
}

// ping sends chsk/ws-ping with cb and expects "pong": proof the connection
// works and that everything sent before was read.
func (c *rawClient) ping(cb string) {
	c.t.Helper()
	c.event("chsk/ws-ping", nil, cb)
	if got := c.reply(cb); string(got) != `"pong"` {
		c.t.Fatalf("%s: ping reply %s, want \"pong\"", c.ClientID, got)
	}
}

// waitClosed waits for the connection to end, discarding what still arrives,
// and returns why it ended.
func (c *rawClient) waitClosed() error {
	c.t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.c.In:
			if ok {
				continue
			}
			err := <-c.c.Errs
			c.closeOut()
			return err
		case <-timer.C:
			c.t.Fatalf("%s: connection did not end within %v", c.ClientID, waitFor)
		}
	}
}

// closeCode waits for the end and returns the close code.
func (c *rawClient) closeCode() wsasync.StatusCode {
	c.t.Helper()
	return wsasync.CloseStatus(c.waitClosed())
}

func (c *rawClient) closeOut() { c.outOnce.Do(func() { close(c.c.Out) }) }

// close closes the connection with 1000 and waits for its end.
func (c *rawClient) close() {
	c.closeOut()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.c.In:
			if ok {
				continue
			}
			<-c.c.Errs
			return
		case <-timer.C:
			c.t.Errorf("%s: connection did not end within %v of its close", c.ClientID, waitFor)
			return
		}
	}
}

// nextEvent returns the next server event.
func nextEvent(t *testing.T, events <-chan *sente.Event) *sente.Event {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("Events closed")
		}
		return ev
	case <-timer.C:
		t.Fatalf("no event within %v", waitFor)
	}
	panic("unreachable")
}

// awaitEvent returns the first event with id (and clientID, if not empty),
// and the events before it.
func awaitEvent(t *testing.T, events <-chan *sente.Event, id, clientID string) (*sente.Event, []*sente.Event) {
	t.Helper()
	var skipped []*sente.Event
	for {
		ev := nextEvent(t, events)
		if ev.ID == id && (clientID == "" || ev.ClientID == clientID) {
			return ev, skipped
		}
		skipped = append(skipped, ev)
	}
}

// expectEvents reads len(want) events, which must be want ("id uid client"
// strings, as describe makes them), in order.
func expectEvents(t *testing.T, events <-chan *sente.Event, want ...string) []*sente.Event {
	t.Helper()
	got := make([]*sente.Event, len(want))
	for i := range want {
		got[i] = nextEvent(t, events)
		if d := describe(got[i]); d != want[i] {
			t.Fatalf("event %d is %q, want %q (expected sequence %q)", i, d, want[i], want)
		}
	}
	return got
}

// describe is "id uid client" of an event.
func describe(ev *sente.Event) string { return ev.ID + " " + ev.UserID + " " + ev.ClientID }

// drainEvents shuts the server down and returns the events left in Events,
// described, once it is closed: after Shutdown nothing more can arrive.
func (ts *testServer) drainEvents(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var rest []string
	for ev := range ts.Events() {
		rest = append(rest, describe(ev))
	}
	return rest
}

// bigString is a JSON string of n bytes.
func bigString(n int) sente.Raw {
	b := make([]byte, n+2)
	for i := range b {
		b[i] = 'x'
	}
	b[0], b[len(b)-1] = '"', '"'
	return sente.Raw(b)
}
